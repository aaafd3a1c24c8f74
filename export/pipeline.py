"""`mmad-edge export`: checkpoint -> verified model.<precision>.onnx + metadata.json + report.json.

All artifacts are written into a staging folder inside the output folder (``staging.py``) and
replace the folder's earlier export only once every precision has exported and passed
verification, so a failed export leaves no partial files and never touches what the output
folder already held. Engines (when
asked) are built after that, from the ONNX files in place: a machine without TensorRT keeps
the verified ONNX and gets the command to build the engine on the target.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from mmad_edge.checkpoint import model_from_checkpoint, read_checkpoint
from mmad_edge.config import IMAGENET_MEAN, IMAGENET_STD, ModelConfig
from mmad_edge.export import tensorrt as trt_build
from mmad_edge.export.fp16 import convert_fp16
from mmad_edge.export.metadata import (
    METADATA_FILENAME,
    METADATA_KEY,
    PRECISIONS,
    build_metadata,
    write_onnx_metadata,
)
from mmad_edge.export.onnx_export import ExportError, check_request_options, export_onnx
from mmad_edge.export.options import EngineOptions, ExportOptions
from mmad_edge.export.parity import (
    dataset_frames,
    format_results,
    generated_frames,
    torch_outputs,
    verify_onnx,
)
from mmad_edge.export.staging import place, staged
from mmad_edge.export.trt_ops import Issue, check_tensorrt_compat, format_issues
from mmad_edge.fileio import write_json_atomic
from mmad_edge.model.minimaxad import MiniMaxAD
from mmad_edge.runtime.artifact.contract import REPORT_FILE as REPORT_FILENAME
from mmad_edge.runtime.artifact.contract import artifact_name
from mmad_edge.runtime.artifact.metadata import describe_encoder_weights as describe_encoder
from mmad_edge.runtime.log import say as progress_line

GENERATED_FRAMES = 12
COMPAT_LINES = 10  # TensorRT issues listed on stderr per graph; report.json has all


class ExportFailed(RuntimeError):
    """An export that failed after its report was built: ``report`` is this run's report (what
    --json gets, never an older one from the output folder). An engine build failure is the
    ``__cause__`` (TensorRT missing, build error, bad input), which the CLI turns into its code."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


class VerificationFailed(ExportFailed):
    """An exported graph does not reproduce the PyTorch model within tolerance; nothing was written."""


def onnx_filename(precision: str) -> str:
    """The export's file for ``precision`` (the contract's ``model.<precision>.onnx``)."""
    return artifact_name(precision)


def parse_precisions(precisions: str | Sequence[str]) -> list[str]:
    """"fp32,fp16" or a sequence -> ordered unique list; one-line error for unknown names."""
    names = precisions.split(",") if isinstance(precisions, str) else list(precisions)
    chosen: list[str] = []
    for name in (n.strip().lower() for n in names):
        if name and name not in chosen:
            if name not in PRECISIONS:
                raise ExportError(f"unknown precision {name!r}; use a comma-separated subset of {','.join(PRECISIONS)}")
            chosen.append(name)
    if not chosen:
        raise ExportError(f"no precision given; use e.g. --precision fp32,fp16 (choices: {','.join(PRECISIONS)})")
    return chosen


def load_for_export(
    checkpoint: str | os.PathLike[str], image_size: int | None, variant: str | None,
) -> tuple[MiniMaxAD, dict[str, Any]]:
    """The training-form model at the export size, and the checkpoint dict (one-line errors)."""
    raw = read_checkpoint(checkpoint)
    config = dict(raw["config"])
    if variant is not None and config["variant"] != variant:
        raise ExportError(f"{checkpoint} holds variant {config['variant']!r} but variant {variant!r} was asked; "
                          f"pass the variant-{variant} checkpoint or drop the variant option")
    if image_size is not None:
        config["image_size"] = int(image_size)
    return model_from_checkpoint(raw, os.fspath(checkpoint), ModelConfig.from_dict(config)), raw


def export_checkpoint(
    checkpoint: str | os.PathLike[str], out_dir: str | os.PathLike[str], options: ExportOptions = ExportOptions(),
) -> dict[str, Any]:
    """Export, verify and place the artifacts; returns the report (also written as report.json).

    Raises ExportError/CheckpointError/ConfigError/DatasetError (ValueErrors, bad input),
    VerificationFailed (nothing written), and with ``engine`` ExportFailed when no engine could
    be built (the ONNX artifacts are in place; the report's ``engines.error`` says why).
    """
    chosen, profile = _checked_request(options)
    out_dir = Path(out_dir)
    say = functools.partial(progress_line, enabled=options.progress)
    with staged(out_dir) as staging:  # fails here, before any long work, when --out is not writable
        report, table, int8_info = _export_staged(checkpoint, out_dir, staging, chosen, profile, options, say)
        place(staging, out_dir)
    print(table, flush=True)  # the verification results: stdout
    _warn(report, int8_info)
    say(f"wrote {', '.join(onnx_filename(p) for p in chosen)}, {METADATA_FILENAME}, {REPORT_FILENAME} to {out_dir}")
    if options.engine:
        _build_engines(out_dir, chosen, profile, report, say)
    return report


def _checked_request(options: ExportOptions) -> tuple[list[str], tuple[int, int, int]]:
    """The precisions and batch profile; one-line ExportErrors for requests that cannot work."""
    chosen = parse_precisions(options.precisions)
    try:
        profile = trt_build.parse_batch(options.batch)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    check_request_options(profile, options.opset, options.input_format)
    if options.engine and options.input_format == "float_rgb_nchw":
        raise ExportError("TensorRT engines take uint8 BGR NHWC frames only; drop --engine or export with "
                          "--input-format uint8_bgr_nhwc")
    if "int8" in chosen and options.calib_data is None:
        raise ExportError("int8 needs calibration images: add --calib-data FOLDER (normal images of the product)")
    if options.engine and options.int8.target == "cpu":
        raise ExportError("--target cpu makes an INT8 graph for ONNX Runtime on CPUs, which TensorRT cannot build; "
                          "use --target tensorrt with --engine, or drop --engine")
    return chosen, profile


def _export_staged(
    checkpoint: str | os.PathLike[str], out_dir: Path, staging: Path, chosen: list[str],
    profile: tuple[int, int, int], options: ExportOptions, say: Callable[[str], None],
) -> tuple[dict[str, Any], str, dict[str, Any] | None]:
    """Export and verify every precision into ``staging``: (report, verification table, INT8 report)."""
    model, ckpt = load_for_export(checkpoint, options.image_size, options.variant)
    size = model.config.image_size
    frames, labels, source = _verification_frames(options, size)
    say(f"encoder weights: {describe_encoder(ckpt.get('encoder_weights'))}")
    say(f"reference: PyTorch model on {len(frames)} {source} frames at {size}x{size}")
    reference = torch_outputs(model, frames)
    strict = bool(ckpt.get("training"))
    exported = export_onnx(model, staging / onnx_filename("fp32"), profile, options.opset, options.input_format)
    say(f"fp32 graph: {exported.simplification}")
    graphs = {"fp32": exported.graph}  # in memory from here on; only INT8 calibration reads the file
    if "fp16" in chosen:
        graphs["fp16"] = convert_fp16(exported.graph)
    int8_info = None
    if "int8" in chosen:
        say("int8: calibrating (mmad_edge.calib)")
        int8_info = _export_int8(exported.path, staging / onnx_filename("int8"), options)
        graphs["int8"] = onnx.load(str(staging / onnx_filename("int8")))
        int8_info["path"] = str(out_dir / onnx_filename("int8"))  # where it is once placed
    results = {}
    for precision in chosen:
        say(f"verifying {precision} with ONNX Runtime (CPU)")
        results[precision] = verify_onnx(graphs[precision], model, frames, precision, labels, strict, source, reference)
    table = format_results(list(results.values()))
    report = _report(checkpoint, out_dir, options, chosen, size, exported.simplification, {
        "trained_weights": strict,
        "verification": {p: r.to_dict() for p, r in results.items()},
        "tensorrt_compat": {p: _tensorrt_issues(graphs[p], p, int8_info) for p in chosen},
        "int8": int8_info,
    })
    if not all(r.passed for r in results.values()):
        raise VerificationFailed(f"verification failed; nothing was written to {out_dir}:\n{table}",
                                 dict(report, files={}))  # no file was written
    metadata = _base_metadata(model.config, options.opset, profile, ckpt.get("statistics"), checkpoint,
                              options.input_format, ckpt.get("encoder_weights"))
    if "fp32" not in chosen:
        exported.path.unlink()
    save_graphs(staging, {p: graphs[p] for p in chosen}, metadata, options.input_format)
    write_json_atomic(staging / REPORT_FILENAME, report)
    return report, table, int8_info


def _warn(report: dict[str, Any], int8_info: dict[str, Any] | None) -> None:
    """TensorRT parser issues of the placed graphs and a missed INT8 target, on stderr."""
    for precision, issues in report["tensorrt_compat"].items():
        if issues:
            print(f"warning: {onnx_filename(precision)} may not build with TensorRT:\n"
                  + format_issues([Issue(**i) for i in issues], limit=COMPAT_LINES), file=sys.stderr)
    if int8_info is not None and not int8_info.get("passed", True):
        print(f"warning: INT8 missed its accuracy target ({int8_info['search'].get('message', '')}); "
              "see the int8 section of report.json, or deploy fp16", file=sys.stderr)


def _verification_frames(options: ExportOptions, size: int) -> tuple[np.ndarray, np.ndarray | None, str]:
    if options.data is None:
        return generated_frames(GENERATED_FRAMES, size), None, "generated"
    frames, labels = dataset_frames(options.data, options.layout, options.categories, size, options.max_images)
    return frames, labels, f"{options.layout}:{options.data}" + (f" ({options.categories})" if options.categories else "")


def _base_metadata(
    config: ModelConfig, opset: int, profile: tuple[int, int, int], statistics: dict | None,
    checkpoint: str | os.PathLike[str], input_format: str, encoder_weights: dict | None,
) -> dict[str, Any]:
    metadata = build_metadata(config.to_dict(), "fp32", opset, dict(zip(("min", "opt", "max"), profile)),
                              statistics, checkpoint, encoder_weights)
    if input_format == "float_rgb_nchw":
        size = config.image_size
        metadata["input"] = {"name": "image", "layout": "NCHW", "dtype": "float32", "channel_order": "RGB",
                             "height": size, "width": size,
                             "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}}
    return metadata


def save_graphs(folder: Path, graphs: dict[str, onnx.ModelProto], metadata: dict[str, Any],
                input_format: str = "uint8_bgr_nhwc") -> None:
    """Write each graph as model.<precision>.onnx carrying its metadata, and metadata.json (the
    first graph's precision): the one way an export folder's graphs and metadata are written."""
    for precision, graph in graphs.items():
        _embed_metadata(graph, dict(metadata, precision=precision), input_format)
        onnx.save(graph, str(folder / onnx_filename(precision)))
    write_json_atomic(folder / METADATA_FILENAME, dict(metadata, precision=next(iter(graphs))))


def _embed_metadata(model: onnx.ModelProto, metadata: dict[str, Any], input_format: str) -> None:
    """Ours becomes the graph's only metadata_props entry (onnxsim's ~19 bookkeeping entries and
    the quantiser's ``onnx.infer`` go). The schema (and so write_onnx_metadata) describes uint8
    input only; a float-input graph carries its true input description, which the uint8-only
    runtime will refuse by name."""
    del model.metadata_props[:]
    if input_format == "uint8_bgr_nhwc":
        write_onnx_metadata(model, metadata)
        return
    onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(metadata)})


def _report(
    checkpoint: str | os.PathLike[str], out_dir: Path, options: ExportOptions, precisions: list[str], size: int,
    simplification: str, sections: dict[str, Any],
) -> dict[str, Any]:
    return {
        "checkpoint": str(checkpoint),
        "out_dir": str(out_dir),
        "precisions": precisions,
        "files": {p: onnx_filename(p) for p in precisions},
        "image_size": size,
        "batch": dict(zip(("min", "opt", "max"), trt_build.parse_batch(options.batch))),
        "opset": options.opset,
        "input_format": options.input_format,
        "simplification": simplification,
        **sections,
        "engines": None,
    }


def _tensorrt_issues(graph: onnx.ModelProto, precision: str, int8_info: Mapping[str, Any] | None) -> list[dict] | None:
    """TensorRT parser issues of a graph meant for TensorRT; None for the INT8 graph made for
    ONNX Runtime on CPUs (``--target cpu``): asymmetric uint8 Q/DQ is its design, not a defect."""
    if precision == "int8" and int8_info is not None and int8_info.get("target") == "cpu":
        return None
    return [asdict(i) for i in check_tensorrt_compat(graph)]


def _export_int8(fp32_onnx: Path, int8_onnx: Path, options: ExportOptions) -> dict[str, Any]:
    """Run the INT8 calibrator (``mmad_edge.calib.quantize.export_int8``) on ``options.calib_data``.
    It writes ``int8_onnx``; its report goes into ours. With ``options.data``, the test split of
    its categories (any layout) is its accuracy set; without, held-out calibration images."""
    from mmad_edge.calib.quantize import export_int8  # only INT8 exports need the calibrator
    from mmad_edge.calib.reader import CalibrationWarning

    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CalibrationWarning)
            int8 = replace(options.int8, eval_data=options.data, eval_layout=options.layout,
                           eval_categories=options.categories)
            return export_int8(fp32_onnx, int8_onnx, options.calib_data, int8).to_report()
    finally:  # also when calibration fails (a warning may explain why); outside the recording
        for item in caught:
            if issubclass(item.category, CalibrationWarning):
                print(f"warning: int8 calibration: {' '.join(str(item.message).split())}", file=sys.stderr)
            else:
                warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)


def _build_engines(out_dir: Path, precisions: list[str], profile: tuple[int, int, int], report: dict[str, Any],
                   say) -> None:
    """One engine per exported precision; the report in ``out_dir`` records what was built (or why
    not). A failure raises ExportFailed carrying that report, so --json gets it too."""
    engines: dict[str, Any] = {}
    report["engines"] = engines
    try:
        for precision in precisions:
            onnx_path = out_dir / onnx_filename(precision)
            say(f"building TensorRT engine for {onnx_path.name}")
            engines[precision] = trt_build.build_engine(onnx_path, trt_build.default_engine_path(onnx_path),
                                                        EngineOptions(batch=profile))
    except (trt_build.TensorRTUnavailable, trt_build.EngineBuildError, ValueError, OSError) as exc:
        engines["error"] = str(exc)
        raise ExportFailed(str(exc), report) from exc
    finally:
        write_json_atomic(out_dir / REPORT_FILENAME, report)
