"""`mmad-edge export` and `build-engine`: run, report, and end with the exit code of what failed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import typer

from mmad_edge.app.exits import build_exit_code, fail
from mmad_edge.app.json_output import write_json
from mmad_edge.app.verification import verify_and_report
from mmad_edge.export.options import EngineOptions, ExportOptions, VerifyOptions


def export_and_report(checkpoint: Path, out: Path, options: ExportOptions, json_path: Path | None) -> None:
    """Export; a failure still writes this run's report to ``--json`` (never an older one), then
    exits 1 (verification failed) or with the engine build's code."""
    from mmad_edge.export.pipeline import ExportFailed, VerificationFailed, export_checkpoint

    code = 0
    try:
        result = export_checkpoint(checkpoint, out, options)
    except ExportFailed as exc:
        typer.echo(f"error: {exc}", err=True)
        result = exc.report
        code = 1 if isinstance(exc, VerificationFailed) else build_exit_code(exc.__cause__)
    write_json(json_path, result)
    raise typer.Exit(code)


def build_and_report(onnx_path: Path, out: Path | None, options: EngineOptions, json_path: Path | None,
                     verify: VerifyOptions | None) -> None:
    """Build the engine (timing cache and engine beside the ONNX unless given), say what was built,
    and verify it when asked."""
    from mmad_edge.export import tensorrt as trt_build

    if options.timing_cache is None:
        options = dataclasses.replace(options, timing_cache=onnx_path.parent / trt_build.TIMING_CACHE_NAME)
    try:
        info = trt_build.build_engine(onnx_path, out or trt_build.default_engine_path(onnx_path), options)
    except (trt_build.TensorRTUnavailable, trt_build.EngineBuildError) as exc:
        fail(str(exc), build_exit_code(exc))
    typer.echo(trt_build.build_summary(info))
    if json_path is not None:  # the sidecar is read only for --json
        write_json(json_path, {**info, "metadata": json.loads(Path(info["sidecar"]).read_text())})
    if verify is not None:
        verify_and_report(Path(info["engine"]), verify)
