"""``export_int8``: FP32 ONNX + a folder of normal images -> a verified INT8 ONNX and its report.

Calibrate (cached) -> build the Q/DQ graph for the target -> measure it against FP32 on
held-out images -> when the accuracy target is missed, keep the most sensitive blocks in float
(``sensitivity.search``) -> for the cpu target pick the faster ORT format by timing -> write
the artifact atomically (nothing is left at ``out_path`` if anything fails).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from mmad_edge.calib.cache import default_cache_dir
from mmad_edge.calib.compare import held_out_set, labelled_set, run_outputs
from mmad_edge.calib.graph import QUANTIZED_OPS, conv_blocks, head_nodes, input_shape
from mmad_edge.calib.int8_graph import CPU_FORMATS, TARGETS, QuantizationError, build_int8_graph
from mmad_edge.calib.options import Int8Options
from mmad_edge.calib.qdq import with_float_nodes
from mmad_edge.calib.ranges import CalibrationRun, CalibrationSettings, calibrated_ranges
from mmad_edge.calib.reader import CalibrationWarning, find_images, select_images
from mmad_edge.calib.result import Int8Result
from mmad_edge.calib.sensitivity import SearchResult, search
from mmad_edge.calib.timing import median_latency_ms
from mmad_edge.fileio import file_sha256
from mmad_edge.runtime.monitor.compare import error_metrics

ALWAYS_FLOAT_REASON = (
    "only Conv/ConvTranspose are quantised: GRN (L2 reduction and normalisation), LayerNorm "
    "statistics, SE gates, GELU and residual adds run in float, and Q/DQ sit only on convolution "
    "inputs{outputs}, so no reduction or normalisation sees INT8 values"
)
HEAD_REASON = "cosine maps, upsampling, Gaussian smoothing and top-k score stay FP32 (they are the score)"


@contextlib.contextmanager
def _collected_warnings(messages: list[str]) -> Iterator[None]:
    """Record calibration warnings for the report and still show them to the caller (also when
    the block fails, so a warning that explains the failure is not lost)."""
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CalibrationWarning)
            yield
    finally:
        for item in caught:
            if issubclass(item.category, CalibrationWarning):
                messages.append(str(item.message))
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)


def _check_exclude(exclude: Iterable[str], known: set[str]) -> set[str]:
    names = set(exclude)
    unknown = sorted(names - known)
    if unknown:
        raise QuantizationError(
            f"nodes to exclude not found among the quantisable convolutions: {', '.join(unknown)}; "
            "use Conv/ConvTranspose node names of the FP32 ONNX (e.g. /decoder/stages.0/stages.0.1/pw2/Conv)"
        )
    return names


@dataclass
class _Prepared:
    """The FP32 graph and what calibration made of it: blocks to search, ranges, evaluation set."""

    fp32_onnx: Path
    model: onnx.ModelProto
    batch: int
    blocks: dict[str, list[str]]
    user_float: set[str]
    settings: CalibrationSettings
    calibration: CalibrationRun
    evaluation: Any
    notes: list[str]


def export_int8(
    fp32_onnx: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    calib_dir: str | os.PathLike[str],
    options: Int8Options = Int8Options(),
) -> Int8Result:
    """Calibrate on ``calib_dir`` and write the INT8 graph of ``fp32_onnx`` to ``out_path``
    (``Int8Options`` says how); the graph is measured against FP32 and reported."""
    fp32_onnx, out_path, calib_dir = Path(fp32_onnx), Path(out_path), Path(calib_dir)
    _check_options(fp32_onnx, options)
    prepared = _prepare(fp32_onnx, calib_dir, options)
    reference = run_outputs(fp32_onnx, prepared.evaluation.frames)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=f".{out_path.name}.") as tmp:
        graphs = _GraphBuilder(prepared, options, Path(tmp))
        found = _search(graphs, prepared, reference, options)
        probe = np.repeat(prepared.evaluation.frames[:1], prepared.batch, axis=0)
        formats = (list(CPU_FORMATS) if options.cpu_format == "auto" else [options.cpu_format]) \
            if options.target == "cpu" else ["qdq"]
        candidates = {fmt: graphs.build(found.float_nodes, fmt) for fmt in formats}
        timings = {fmt: median_latency_ms(path, probe, options.timing_runs) for fmt, (path, _) in candidates.items()}
        best = min(timings, key=timings.__getitem__)
        final, quantized = candidates[best]
        metrics = error_metrics(reference, run_outputs(final, prepared.evaluation.frames, graphs.emulate),
                                prepared.evaluation.labels)
        latency = _latency(fp32_onnx, probe, options.timing_runs, timings, best, options.target)
        os.replace(final, out_path)
    return Int8Result(
        path=out_path,
        target=options.target,
        metrics=metrics,
        accuracy_target=asdict(options.accuracy),
        target_met=not options.accuracy.shortfalls(metrics),
        search={"enabled": options.sensitivity, "attempts": found.attempts, "max_attempts": options.max_attempts,
                "graphs_measured": found.graphs, "message": found.message,
                "ranking": [{"block": r["block"], "error_alone": r["error_alone"]} for r in found.ranking]},
        float_blocks=found.float_blocks,
        always_float=_always_float(prepared.model, options.target, prepared.user_float),
        quantized_nodes=quantized,
        calibration=_calibration_report(prepared.settings, calib_dir, prepared.calibration, options.target, best),
        eval_source=prepared.evaluation.source,
        latency_ms=latency,
        warnings=prepared.notes,
    )


def _check_options(fp32_onnx: Path, options: Int8Options) -> None:
    if not fp32_onnx.is_file():
        raise QuantizationError(f"{fp32_onnx}: FP32 ONNX not found; export the FP32 model first")
    if options.target not in TARGETS:
        raise QuantizationError(f"unknown INT8 target {options.target!r}; choose one of {', '.join(TARGETS)}")
    if options.cpu_format not in ("auto", *CPU_FORMATS):
        raise QuantizationError(f"unknown CPU INT8 format {options.cpu_format!r}; "
                                f"choose auto, {', '.join(CPU_FORMATS)}")


def _prepare(fp32_onnx: Path, calib_dir: Path, options: Int8Options) -> _Prepared:
    """Load the graph, calibrate (cached) and draw the evaluation set; warnings are kept as notes."""
    model = onnx.load(str(fp32_onnx))
    batch, size = input_shape(model)
    blocks = conv_blocks(model)
    user_float = _check_exclude(options.exclude, {n for nodes in blocks.values() for n in nodes})
    blocks = {b: [n for n in nodes if n not in user_float] for b, nodes in blocks.items()}
    settings = CalibrationSettings(options.method, options.count, options.seed, options.percentile, size,
                                   QUANTIZED_OPS)
    notes: list[str] = []
    with _collected_warnings(notes):
        all_images = find_images(calib_dir)
        chosen = select_images(all_images, options.count, options.seed, calib_dir)
        calibration = calibrated_ranges(
            fp32_onnx, file_sha256(fp32_onnx), chosen, calib_dir, settings,
            Path(options.cache_dir) if options.cache_dir is not None else default_cache_dir(), batch or 1,
        )
        if options.eval_data is not None:
            evaluation = labelled_set(Path(options.eval_data), options.eval_layout, options.eval_categories,
                                      options.eval_count, options.seed, size)
        else:
            evaluation = held_out_set(all_images, calibration.images, calib_dir, options.eval_count, options.seed, size)
    return _Prepared(fp32_onnx, model, batch or 1, {b: nodes for b, nodes in blocks.items() if nodes}, user_float,
                     settings, calibration, evaluation, notes)


class _GraphBuilder:
    """quantize_static graphs in a temporary folder, each (float nodes, format) built once."""

    def __init__(self, prepared: _Prepared, options: Int8Options, folder: Path) -> None:
        self.prepared, self.options, self.folder = prepared, options, folder
        self.emulate = options.target == "tensorrt"
        self.built: dict[tuple[frozenset[str], str], tuple[Path, int]] = {}

    def build(self, float_nodes: Iterable[str], fmt: str = "qdq") -> tuple[Path, int]:
        """The graph's path and its quantised node count."""
        key = (frozenset(float_nodes), fmt)
        if key not in self.built:
            path = self.folder / f"graph{len(self.built)}.onnx"
            p = self.prepared
            nodes = build_int8_graph(p.fp32_onnx, path, p.calibration.ranges, self.options.method, self.options.target,
                                     key[0] | p.user_float, fmt)
            self.built[key] = (path, len(nodes))
        return self.built[key]


def _search(graphs: _GraphBuilder, prepared: _Prepared, reference: Any, options: Int8Options) -> SearchResult:
    """The blocks to keep in float: searched when asked, else none (and the target checked once)."""
    all_int8 = onnx.load(str(graphs.build(())[0]))
    evaluation = prepared.evaluation

    def trial(float_nodes: frozenset[str]) -> dict[str, float | None]:
        candidate = with_float_nodes(all_int8, prepared.model, set(float_nodes))
        return error_metrics(reference, run_outputs(candidate, evaluation.frames, graphs.emulate), evaluation.labels)

    if options.sensitivity:
        return search(trial, prepared.blocks, options.accuracy, options.max_attempts)
    metrics = trial(frozenset())
    met = not options.accuracy.shortfalls(metrics)
    return SearchResult([], metrics, met, 0, 1, "sensitivity search off" + ("" if met else ": target missed"))


def _latency(
    fp32: Path, probe: np.ndarray, runs: int, timings: dict[str, float], best: str, target: str
) -> dict[str, Any]:
    fp32_ms = median_latency_ms(fp32, probe, runs)
    report = {"fp32": fp32_ms, "int8": timings[best], "speedup": fp32_ms / timings[best], "batch": len(probe),
              "runs": runs, "provider": "CPUExecutionProvider"}
    if target == "cpu":
        report["int8_by_format"] = dict(timings)
    else:
        report["note"] = "ONNX Runtime runs the TensorRT Q/DQ graph unfused on the CPU; time TensorRT with the bench"
    return report


def _always_float(model: onnx.ModelProto, target: str, user_float: set[str]) -> list[dict[str, Any]]:
    head = head_nodes(model)
    head_convs = sorted(n.name for n in model.graph.node if n.name in head and n.op_type in QUANTIZED_OPS)
    entries = [
        {"what": "head", "nodes": head_convs, "reason": HEAD_REASON},
        {"what": "GRN, LayerNorm, SE, GELU, residual adds", "nodes": [],
         "reason": ALWAYS_FLOAT_REASON.format(outputs=" and outputs" if target == "cpu" else "")},
    ]
    if user_float:
        entries.append({"what": "caller", "nodes": sorted(user_float), "reason": "excluded by the caller"})
    return entries


def _calibration_report(
    settings: CalibrationSettings, folder: Path, run: CalibrationRun, target: str, fmt: str
) -> dict[str, Any]:
    report = {
        "library": "onnxruntime.quantization (quantize_static, QDQ)",
        "method": settings.method,
        "count": settings.count,
        "images_used": len(run.images),
        "seed": settings.seed,
        "images_folder": str(folder),
        "cache_hit": run.cache_hit,
        "cache_file": str(run.cache_file),
    }
    if settings.method == "percentile":
        report["percentile"] = settings.percentile
    if target == "tensorrt":
        report["activations"] = "int8 symmetric per-tensor (zero point 0), Q/DQ on conv inputs"
        report["weights"] = "int8 symmetric per-channel (Conv axis 0; ConvTranspose axis 0, TensorRT's convention)"
        report["bias"] = "float (TensorRT quantises it itself)"
    else:
        report["format"] = fmt
        report["activations"] = "uint8 asymmetric per-tensor"
        report["weights"] = "int8 symmetric per-channel"
    return report
