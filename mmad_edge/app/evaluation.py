"""`mmad-edge eval`: a training checkpoint's metrics table (an export is `verify`'s to score)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import typer

from mmad_edge.app.exits import fail
from mmad_edge.app.json_output import write_json
from mmad_edge.runtime.artifact.contract import ENGINE_SUFFIX, ONNX_SUFFIX


def refuse_export(checkpoint: Path, data: Path) -> None:
    """`eval` scores a PyTorch checkpoint; an export folder or graph is scored by `verify` (the same
    labelled split, on this machine's backend, against the FP32 reference)."""
    if checkpoint.is_dir() or checkpoint.suffix in (ONNX_SUFFIX, ENGINE_SUFFIX):
        fail(f"{checkpoint}: eval takes a training checkpoint (RUN_DIR/checkpoint.pt), not an export; "
             f"score an export with 'mmad-edge verify {checkpoint} --data {data}' "
             "(its report.json holds the export's accuracy at export time)")


def evaluate_and_report(checkpoint: Path, data: Path, layout: str, categories: Sequence[str] | None, batch_size: int,
                        device: str, json_path: Path | None) -> None:
    """Print the metrics table and the encoder weights it was scored with."""
    refuse_export(checkpoint, data)
    from mmad_edge.evaluate import evaluate_checkpoint, format_table
    from mmad_edge.runtime.artifact.metadata import describe_encoder_weights as describe

    metrics = evaluate_checkpoint(checkpoint, data, layout, categories or None, batch_size, device)
    typer.echo(format_table(metrics))
    typer.echo(f"encoder weights: {describe(metrics['encoder_weights'])}")
    write_json(json_path, metrics)
