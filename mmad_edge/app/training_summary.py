"""What `mmad-edge train` and `import-checkpoint` wrote, said in one line each (and as JSON)."""

from __future__ import annotations

from pathlib import Path

import typer

from mmad_edge.app.json_output import report, write_json


def summary_line(path: Path, ckpt: dict) -> str:
    """Epochs, steps, final loss, threshold and encoder weights of a training checkpoint."""
    from mmad_edge.runtime.artifact.metadata import describe_encoder_weights as describe

    training, stats = ckpt["training"], ckpt["statistics"]
    last = training["history"][-1]["loss"] if training.get("history") else None
    threshold = f", threshold {stats['threshold']:.4f}" if stats else ", no held-out statistics"
    return (f"wrote {path}: {training['epoch']} epochs, {training['step']} steps, final loss "
            f"{'-' if last is None else f'{last:.4f}'}{threshold}; encoder weights: "
            f"{describe(ckpt.get('encoder_weights'))}")


def report_training(path: Path, json_path: Path | None) -> None:
    """Print the checkpoint's summary line; ``--json`` gets its config, training and statistics."""
    from mmad_edge.checkpoint import read_checkpoint

    ckpt = read_checkpoint(path)
    report({"checkpoint": str(path), "config": ckpt["config"], "training": ckpt["training"],
            "statistics": ckpt["statistics"], "encoder_weights": ckpt.get("encoder_weights")},
           summary_line(path, ckpt), json_path)


def import_and_report(config, out: Path, encoder: str | None, minimaxad: Path | None, json_path: Path | None) -> None:
    """`import-checkpoint`: convert, then say what each part loaded and ignored."""
    from mmad_edge.checkpoint import import_checkpoint
    from mmad_edge.runtime.artifact.metadata import describe_encoder_weights as describe

    path, reports, record = import_checkpoint(config, out, encoder, minimaxad)
    for imported in reports:
        typer.echo(imported.summary())
    typer.echo(f"encoder weights: {describe(record)}")
    typer.echo(f"wrote {path}")
    write_json(json_path, {"checkpoint": str(path), "imports": [vars(r) for r in reports], "encoder_weights": record})
