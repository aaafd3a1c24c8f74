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
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import onnx

from mmad_edge.calib.cache import default_cache_dir
from mmad_edge.calib.compare import held_out_set, labelled_set, run_outputs
from mmad_edge.runtime.compare import error_metrics
from mmad_edge.calib.graph import QUANTIZED_OPS, conv_blocks, head_nodes, input_shape
from mmad_edge.calib.int8_graph import CPU_FORMATS, TARGETS, QuantizationError, build_int8_graph
from mmad_edge.calib.qdq import with_float_nodes
from mmad_edge.calib.ranges import CalibrationRun, CalibrationSettings, calibrated_ranges
from mmad_edge.calib.reader import CalibrationWarning, find_images, select_images
from mmad_edge.calib.result import Int8Result
from mmad_edge.calib.sensitivity import AccuracyTarget, SearchResult, search
from mmad_edge.calib.timing import median_latency_ms
from mmad_edge.fileio import file_sha256

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


def export_int8(
    fp32_onnx: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    calib_dir: str | os.PathLike[str],
    target: str = "tensorrt",
    method: str = "minmax",
    count: int = 200,
    seed: int = 0,
    exclude: Iterable[str] = (),
    *,
    percentile: float = 99.999,
    eval_data: str | os.PathLike[str] | None = None,
    eval_layout: str = "mvtec",
    eval_categories: str | Sequence[str] | None = None,
    eval_count: int = 24,
    sensitivity: bool = True,
    spearman_min: float = AccuracyTarget.spearman_min,
    auroc_drop_max: float = AccuracyTarget.auroc_drop_max,
    score_error_max: float = AccuracyTarget.score_error_max,
    max_attempts: int = 8,
    cpu_format: str = "auto",
    cache_dir: str | os.PathLike[str] | None = None,
    timing_runs: int = 5,
) -> Int8Result:
    """Calibrate on ``calib_dir`` and write the INT8 graph of ``fp32_onnx`` to ``out_path``.

    ``target``: ``tensorrt`` (symmetric INT8 Q/DQ) or ``cpu`` (ONNX Runtime, u8/s8).
    ``method``: ``minmax``, ``entropy`` or ``percentile`` (``percentile``). ``exclude``: conv
    node names always kept in float. ``eval_data``: a dataset root whose test split
    (``eval_layout``: mvtec, aebad, realiad or folder; ``eval_categories``: None for all) gives
    normal and defective images for AUROC; otherwise held-out normal images of ``calib_dir``.
    ``sensitivity``: search for blocks to keep in float when the target (``spearman_min``,
    ``auroc_drop_max``, ``score_error_max``) is missed, within ``max_attempts`` graphs after the block ranking.
    ``cpu_format``: ``auto`` (time Q/DQ and QOperator, keep the faster), ``qdq``, ``qoperator``.
    """
    fp32_onnx, out_path, calib_dir = Path(fp32_onnx), Path(out_path), Path(calib_dir)
    if not fp32_onnx.is_file():
        raise QuantizationError(f"{fp32_onnx}: FP32 ONNX not found; export the FP32 model first")
    if target not in TARGETS:
        raise QuantizationError(f"unknown INT8 target {target!r}; choose one of {', '.join(TARGETS)}")
    if cpu_format not in ("auto", *CPU_FORMATS):
        raise QuantizationError(f"unknown CPU INT8 format {cpu_format!r}; choose auto, {', '.join(CPU_FORMATS)}")
    model = onnx.load(str(fp32_onnx))
    batch, size = input_shape(model)
    blocks = conv_blocks(model)
    user_float = _check_exclude(exclude, {n for nodes in blocks.values() for n in nodes})
    blocks = {b: [n for n in nodes if n not in user_float] for b, nodes in blocks.items()}
    blocks = {b: nodes for b, nodes in blocks.items() if nodes}
    settings = CalibrationSettings(method, count, seed, percentile, size, QUANTIZED_OPS)
    accuracy = AccuracyTarget(spearman_min, auroc_drop_max, score_error_max)
    notes: list[str] = []

    with _collected_warnings(notes):
        all_images = find_images(calib_dir)
        chosen = select_images(all_images, count, seed, calib_dir)
        calibration = calibrated_ranges(
            fp32_onnx, file_sha256(fp32_onnx), chosen, calib_dir, settings,
            Path(cache_dir) if cache_dir is not None else default_cache_dir(), batch or 1,
        )
        if eval_data is not None:
            evaluation = labelled_set(Path(eval_data), eval_layout, eval_categories, eval_count, seed, size)
        else:
            evaluation = held_out_set(all_images, calibration.images, calib_dir, eval_count, seed, size)

    reference = run_outputs(fp32_onnx, evaluation.frames)
    emulate = target == "tensorrt"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=f".{out_path.name}.") as tmp:
        built: dict[tuple[frozenset[str], str], tuple[Path, int]] = {}

        def build(float_nodes: Iterable[str], fmt: str = "qdq") -> tuple[Path, int]:
            """A quantize_static graph (path, quantised node count), built once per setting."""
            key = (frozenset(float_nodes), fmt)
            if key not in built:
                path = Path(tmp) / f"graph{len(built)}.onnx"
                nodes = build_int8_graph(fp32_onnx, path, calibration.ranges, method, target, key[0] | user_float, fmt)
                built[key] = (path, len(nodes))
            return built[key]

        all_int8 = onnx.load(str(build(())[0]))

        def trial(float_nodes: frozenset[str]) -> dict[str, float | None]:
            candidate = with_float_nodes(all_int8, model, set(float_nodes))
            return error_metrics(reference, run_outputs(candidate, evaluation.frames, emulate), evaluation.labels)

        if sensitivity:
            found = search(trial, blocks, accuracy, max_attempts)
        else:
            metrics = trial(frozenset())
            met = not accuracy.shortfalls(metrics)
            found = SearchResult([], metrics, met, 0, 1, "sensitivity search off" + ("" if met else ": target missed"))

        probe = np.repeat(evaluation.frames[:1], batch or 1, axis=0)
        formats = (list(CPU_FORMATS) if cpu_format == "auto" else [cpu_format]) if target == "cpu" else ["qdq"]
        candidates = {fmt: build(found.float_nodes, fmt) for fmt in formats}
        timings = {fmt: median_latency_ms(path, probe, timing_runs) for fmt, (path, _) in candidates.items()}
        best = min(timings, key=timings.__getitem__)
        final, quantized = candidates[best]
        metrics = error_metrics(reference, run_outputs(final, evaluation.frames, emulate), evaluation.labels)
        latency = _latency(fp32_onnx, probe, timing_runs, timings, best, target)
        os.replace(final, out_path)

    return Int8Result(
        path=out_path,
        target=target,
        metrics=metrics,
        accuracy_target=asdict(accuracy),
        target_met=not accuracy.shortfalls(metrics),
        search={"enabled": sensitivity, "attempts": found.attempts, "max_attempts": max_attempts,
                "graphs_measured": found.graphs, "message": found.message,
                "ranking": [{"block": r["block"], "error_alone": r["error_alone"]} for r in found.ranking]},
        float_blocks=found.float_blocks,
        always_float=_always_float(model, target, user_float),
        quantized_nodes=quantized,
        calibration=_calibration_report(settings, calib_dir, calibration, target, best),
        eval_source=evaluation.source,
        latency_ms=latency,
        warnings=notes,
    )


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
