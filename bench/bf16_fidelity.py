"""BF16 fidelity of OpenVINO's CPU plugin on a trained model: plain bf16 against bf16 with the
numerically sensitive nodes kept in f32 (``runtime/backends/openvino_f32.py``), both against f32.

    python -m mmad_edge.bench.bf16_fidelity EXPORT/model.fp32.onnx --data ROOT [--layout mvtec]
        [--category C] [--json out.json] [--md out.md]

Each variant scores the labelled test split one frame at a time (the export's batch 1) through
OpenVINO directly: the backend refuses bf16 on a CPU without BF16 units, while the plugin still
compiles it there by emulation, which computes the same numbers slower. So this measures BF16
numerics on any AVX-512 CPU; the timings of an emulated run say nothing about BF16 units and are
recorded only as what they are. Per variant: Spearman of the scores against f32, image AUROC and
its drop, map and score errors (``runtime.monitor.compare.error_metrics``), and for the kept
variant how many marked nodes the compiled model really runs in f32 (per-node ``runtimePrecision``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmad_edge.data.catalog import labelled_split
from mmad_edge.runtime.backends import openvino as ov_backend
from mmad_edge.runtime.backends.openvino_f32 import keep_f32, runtime_precisions, sensitive_nodes
from mmad_edge.runtime.log import say
from mmad_edge.runtime.monitor.compare import error_metrics

from .console import write_text_report
from .machine import cpu_model, library_versions

VARIANTS = ("f32", "bf16", "bf16-keep-f32")
METRICS = ("spearman", "auroc", "auroc_drop", "map_max_abs", "map_relative", "score_relative", "score_error")


def compile_variant(core: Any, model: Any, variant: str) -> tuple[Any, set[str]]:
    """The compiled model of ``variant`` and the node names marked f32 (empty unless kept)."""
    marked = sensitive_nodes(model) if variant == "bf16-keep-f32" else set()
    graph = keep_f32(core, model, marked) if marked else model
    config = {"INFERENCE_PRECISION_HINT": variant.split("-")[0], "PERFORMANCE_HINT": "LATENCY"}
    return core.compile_model(graph, ov_backend.DEVICE, config), marked


def score(compiled: Any, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Maps, scores and the median ms per frame, one frame per inference."""
    request = compiled.create_infer_request()
    outputs = [compiled.output(name) for name in ov_backend.OUTPUT_NAMES]
    maps, scores, times = [], [], []
    for frame in frames:
        start = time.perf_counter()
        request.infer({ov_backend.INPUT_NAME: frame[None]})
        times.append((time.perf_counter() - start) * 1e3)
        maps.append(np.array(request.get_tensor(outputs[0]).data[0], copy=True))
        scores.append(float(np.asarray(request.get_tensor(outputs[1]).data).reshape(-1)[0]))
    return np.stack(maps), np.asarray(scores), statistics.median(times)


def precision_check(compiled: Any, model: Any, marked: set[str]) -> dict[str, Any]:
    """Which marked nodes ran f32, and in what the multi-channel convolutions ran."""
    ran = runtime_precisions(compiled)
    types = {op.get_friendly_name(): op.get_type_name() for op in model.get_ordered_ops()}
    visible = {name: ran[name] for name in marked if name in ran}
    not_f32 = sorted(f"{types[name]} {name}: {precision}" for name, precision in visible.items() if precision != "f32")
    convs = [ran[name] for name, kind in types.items() if kind in ("Convolution", "GroupConvolution") and name in ran]
    return {"marked": len(marked), "marked_in_runtime_model": len(visible),
            "marked_f32": sum(precision == "f32" for precision in visible.values()),
            "marked_not_f32": not_f32, "convolutions_bf16": convs.count("bf16"), "convolutions": len(convs)}


def measure(onnx_path: Path, data: Path, layout: str, categories: Sequence[str] | None) -> dict[str, Any]:
    ov = ov_backend.import_openvino()
    core = ov.Core()
    model = ov_backend.read_onnx(core, onnx_path)
    size = model.input(0).get_partial_shape()[1].get_length()
    split = labelled_split(data, layout, categories, size)
    say(f"{len(split.labels)} test images of {layout}:{data} at {size} px")
    capabilities = ov_backend.cpu_capabilities(core)
    results: dict[str, Any] = {}
    reference = None
    for variant in VARIANTS:
        say(f"compiling and scoring {variant}")
        compiled, marked = compile_variant(core, model, variant)
        maps, scores, ms = score(compiled, split.frames)
        row: dict[str, Any] = {"ms_per_frame_p50": ms}
        if reference is None:
            reference = (maps, scores)
        row.update(error_metrics(reference, (maps, scores), split.labels))
        if marked:
            row["precision_check"] = precision_check(compiled, model, marked)
        results[variant] = row
    return {"cpu": cpu_model(), "logical_cores": os.cpu_count(), "openvino_capabilities": capabilities,
            "bf16_emulated": "BF16" not in capabilities, "libraries": library_versions(),
            "model": str(onnx_path), "data": f"{layout}:{data}", "categories": list(categories or []),
            "images": int(len(split.labels)), "defective": int(split.labels.sum()), "load_average": os.getloadavg()[0],
            "variants": results}


def markdown(report: dict[str, Any], command: str) -> str:
    emulated = ("BF16 emulated: this CPU has no BF16 units (OpenVINO capabilities "
                f"{', '.join(report['openvino_capabilities'])}); the plugin computes bf16 numerics in software, so "
                "the timings are not BF16 timings") if report["bf16_emulated"] else "BF16 units present"
    lines = [f"# BF16 fidelity, OpenVINO CPU ({report['cpu']})", "", f"`{command}`", "",
             f"{emulated}. {report['images']} test images ({report['defective']} defective) of {report['data']}; "
             f"every metric against f32 on the same engine.", "",
             "| variant | Spearman | image AUROC | AUROC drop | map max abs | map relative | score relative | "
             "score error (std) | ms/frame p50 |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, row in report["variants"].items():
        cells = [f"{row[key]:.4f}" if row[key] is not None else "" for key in METRICS]
        lines.append(f"| {name} | {' | '.join(cells)} | {row['ms_per_frame_p50']:.1f} |")
    check = report["variants"]["bf16-keep-f32"].get("precision_check")
    if check:
        lines += ["", f"Kept variant, per node in the compiled model: {check['marked']} nodes marked, "
                  f"{check['marked_in_runtime_model']} still present under their names, {check['marked_f32']} of "
                  f"those run f32; convolutions in bf16: {check['convolutions_bf16']} of {check['convolutions']}.",
                  "Marked nodes that still run bf16 (the plugin replaced or fused them; the mark is not copied):", ""]
        lines += [f"- {entry}" for entry in check["marked_not_f32"]] or ["- none"]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="an FP32 ONNX written by mmad-edge export (batch 1)")
    parser.add_argument("--data", type=Path, required=True, help="labelled dataset root")
    parser.add_argument("--layout", default="mvtec")
    parser.add_argument("--category", action="append", default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--md", type=Path, default=None)
    args = parser.parse_args(argv)
    if not args.model.is_file():
        parser.error(f"no such ONNX file: {args.model}; export one with mmad-edge export")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = " ".join(["python -m mmad_edge.bench.bf16_fidelity", str(args.model), f"--data {args.data}",
                        f"--layout {args.layout}", *(f"--category {name}" for name in args.category or [])])
    report = {"command": command, **measure(args.model, args.data, args.layout, args.category)}
    write_text_report(report, markdown(report, command), args.json, args.md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
