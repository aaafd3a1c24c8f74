"""Where the time of one batch-1 inference goes, per op type, in ONNX Runtime and OpenVINO.

    python -m mmad_edge.bench.op_profile MODEL.onnx [MODEL2.onnx ...] [--label before --label after]
        [--runs 20] [--repeats 3] [--threads N] [--floor] [--json out.json] [--md out.md]

Each engine runs the graph ``runs`` times on one seeded frame (after a warm-up), ``repeats`` times
over (a fresh session each), and the medians are kept: on a shared machine single runs lie. ONNX
Runtime's own profiler (``SessionOptions.enable_profiling``) gives each node's kernel time;
OpenVINO's ``PERF_COUNT`` gives each executed layer's time (after its fusions, so its layer types
are what really ran: a ``Subgraph`` is a fused elementwise chain, an ``MVN`` a fused norm). The
per-op share is the op type's summed time over the engine's summed op time; the wall time per run
is timed around ``run`` / ``infer`` and also includes what no node accounts for. The machine's
load average is recorded before and after, since compute may be shared. ``--floor`` adds the
roofline floor of ``bench/floor.py`` (measured peak; a few seconds) and each wall time's ratio to it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmad_edge.runtime.backends import onnxruntime as ort_backend
from mmad_edge.runtime.backends import openvino as ov_backend
from mmad_edge.runtime.log import say

from .console import write_text_report
from .floor import count_graph_cost, graph_floor, measure_peak
from .machine import cpu_model, library_versions

ENGINES = ("onnxruntime", "openvino")
TOP = 12  # op types listed in the Markdown table per engine and model (the rest summed as "other")

# The convolution work each engine's layer type runs (ONNX node classes of ``conv_class``): the
# part of the graph whose speed the floor's GEMM peak stands for.
CONV_WORK = {
    "onnxruntime": {"Conv": ("Conv", "GroupConv"), "ConvTranspose": ("ConvTranspose",)},
    "openvino": {"Convolution": ("Conv",), "GroupConvolution": ("GroupConv",),
                 "ConvolutionBackpropData": ("ConvTranspose",)},
}

# One engine's profile of one model: (wall ms per run, {op type: (ms per run, node count)}).
Profile = tuple[float, dict[str, tuple[float, int]]]


def frame(path: Path, seed: int = 0) -> np.ndarray:
    """A seeded random input for the graph's only input (uint8 NHWC or float NCHW), batch 1."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {init.name for init in graph.initializer}
    value = next(item for item in graph.input if item.name not in weights)
    dims = [d.dim_value if d.HasField("dim_value") else 1 for d in value.type.tensor_type.shape.dim]
    rng = np.random.default_rng(seed)
    if value.type.tensor_type.elem_type == onnx.TensorProto.UINT8:
        return rng.integers(0, 256, dims, dtype=np.uint8)
    return rng.standard_normal(dims).astype(np.float32)


def _timed(run: Callable[[], object], runs: int) -> float:
    """Median wall ms of ``runs`` calls after one warm-up call."""
    run()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(samples)


def profile_onnxruntime(path: Path, image: np.ndarray, runs: int, threads: int | None) -> Profile:
    """Wall ms per run and per-op-type kernel ms per run from ONNX Runtime's profiler trace."""
    ort = ort_backend._import_onnxruntime()
    with tempfile.TemporaryDirectory(prefix="mmad-op-profile-") as folder:
        options = ort_backend.session_options(ort, threads)
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(folder, "ort")
        session = ort_backend.open_session(path, options)
        feed = {session.get_inputs()[0].name: image}
        wall = _timed(lambda: session.run(None, feed), runs)
        trace = json.loads(Path(session.end_profiling()).read_text(encoding="utf-8"))
    return wall, _ort_ops(trace, runs + 1)


def _ort_ops(trace: list[dict[str, Any]], calls: int) -> dict[str, tuple[float, int]]:
    """{op type: (kernel ms per call, distinct nodes)} from a profiler trace of ``calls`` runs."""
    total: dict[str, float] = {}
    nodes: dict[str, set[str]] = {}
    for event in trace:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        op = event["args"]["op_name"]
        total[op] = total.get(op, 0.0) + event["dur"] / 1000.0
        nodes.setdefault(op, set()).add(event["name"])
    return {op: (ms / calls, len(nodes[op])) for op, ms in total.items()}


def profile_openvino(path: Path, image: np.ndarray, runs: int, threads: int | None) -> Profile:
    """Wall ms per run and per-layer-type ms (median over runs) from OpenVINO's PERF_COUNT."""
    ov = ov_backend.import_openvino()
    core = ov.Core()
    config = {**ov_backend.compile_config("f32", "latency", None, threads), "PERF_COUNT": True}
    request = core.compile_model(ov_backend.read_onnx(core, path), ov_backend.DEVICE, config).create_infer_request()
    per_run: list[dict[str, tuple[float, int]]] = []

    def run() -> None:
        request.infer([image], share_inputs=True)

    request.infer([image])
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) * 1000.0)
        per_run.append(_ov_ops(request.profiling_info))
    ops = {op: (statistics.median(run_ops.get(op, (0.0, 0))[0] for run_ops in per_run), per_run[-1][op][1])
           for op in per_run[-1]}
    return statistics.median(samples), ops


def _ov_ops(info: Sequence[Any]) -> dict[str, tuple[float, int]]:
    """{executed layer type: (ms, layers that ran)} of one infer's profiling info."""
    ops: dict[str, tuple[float, int]] = {}
    for item in info:
        if str(item.status).endswith("NOT_RUN"):
            continue
        ms, count = ops.get(item.node_type, (0.0, 0))
        ops[item.node_type] = (ms + item.real_time.total_seconds() * 1000.0, count + 1)
    return ops


def conv_class(node: Any) -> str:
    """A node's work class: grouped (depthwise) convolutions apart from dense ones."""
    group = next((attr.i for attr in node.attribute if attr.name == "group"), 1)
    return "GroupConv" if node.op_type == "Conv" and group > 1 else node.op_type


def conv_efficiency(path: Path, engines: dict[str, Any], peak_gflops: float) -> dict[str, dict[str, Any]]:
    """Per engine and convolution layer type: its GFLOP, ms, achieved GFLOP/s and time over the
    time at the GEMM peak (1.0 = at the floor's rate)."""
    import onnx

    work = count_graph_cost(onnx.load(str(path)), key=conv_class).by_op
    table: dict[str, dict[str, Any]] = {}
    for engine, result in engines.items():
        ms = {row["op"]: row["ms"] for row in result["ops"]}
        for layer, classes in CONV_WORK[engine].items():
            gflop = sum(work.get(name, 0.0) for name in classes)
            if gflop and ms.get(layer):
                table.setdefault(engine, {})[layer] = {
                    "gflop": gflop, "ms": ms[layer], "gflops": gflop / (ms[layer] / 1000.0),
                    "x_peak_time": ms[layer] / (1000.0 * gflop / peak_gflops)}
    return table


PROFILERS: dict[str, Callable[[Path, np.ndarray, int, int | None], Profile]] = {
    "onnxruntime": profile_onnxruntime, "openvino": profile_openvino}


def median_profile(profiles: list[Profile]) -> dict[str, Any]:
    """The repeats' medians: wall ms, per-op ms and share of the summed op time, sorted by time."""
    ops = sorted({op for _, by_op in profiles for op in by_op})
    per_op = {op: statistics.median(by_op.get(op, (0.0, 0))[0] for _, by_op in profiles) for op in ops}
    counts = {op: max(by_op.get(op, (0.0, 0))[1] for _, by_op in profiles) for op in ops}
    summed = sum(per_op.values()) or 1.0
    rows = [{"op": op, "ms": per_op[op], "share_pct": 100.0 * per_op[op] / summed, "nodes": counts[op]}
            for op in sorted(ops, key=lambda name: -per_op[name])]
    walls = [wall for wall, _ in profiles]
    return {"wall_ms": statistics.median(walls), "wall_ms_repeats": walls, "op_ms": sum(per_op.values()), "ops": rows}


def profile_model(path: Path, engines: Sequence[str], runs: int, repeats: int, threads: int | None) -> dict[str, Any]:
    """Every engine's median profile of ``path`` (a fresh session per repeat, engines alternating)."""
    image = frame(path)
    collected: dict[str, list[Profile]] = {engine: [] for engine in engines}
    for repeat in range(repeats):
        for engine in engines:
            say(f"{path.name}: {engine} repeat {repeat + 1}/{repeats} ({runs} runs)")
            collected[engine].append(PROFILERS[engine](path, image, runs, threads))
    return {engine: median_profile(profiles) for engine, profiles in collected.items()}


def markdown(report: dict[str, Any]) -> str:
    """The wall times (and floor ratios) per model and engine, then each one's top op types."""
    floors = report.get("floor", {})
    lines = [f"# Per-op profile, batch 1 ({report['cpu']})", "",
             f"`{report['command']}`; {report['runs']} runs x {report['repeats']} repeats, medians; "
             f"threads {report['threads'] or 'engine default'}; load average {report['load_before']:.2f} before, "
             f"{report['load_after']:.2f} after on {report['logical_cores']} logical cores.", ""]
    for label, floor in floors.items():
        lines.append(f"Floor of {label} (bench/floor.py): {floor['floor_ms_per_image']:.2f} ms "
                     f"({floor['gflop_per_image']:.2f} GFLOP at {floor['peak_gflops']:.0f} GFLOP/s, {floor['peak_source']}).")
    lines += ["", "| model | engine | wall ms | summed op ms | x floor |", "|---|---|---:|---:|---:|"]
    for label, engines in report["models"].items():
        for engine, result in engines.items():
            floor = floors.get(label)
            ratio = f"{result['wall_ms'] / floor['floor_ms_per_image']:.2f}" if floor else "-"
            lines.append(f"| {label} | {engine} | {result['wall_ms']:.1f} | {result['op_ms']:.1f} | {ratio} |")
    efficiency = report.get("conv_efficiency", {})
    if efficiency:
        lines += ["", "Convolutions against the floor's GEMM peak (x peak time 1.0 = at the floor's rate):", "",
                  "| model | engine | layer | GFLOP | ms | GFLOP/s | x peak time |", "|---|---|---|---:|---:|---:|---:|"]
        lines += [f"| {label} | {engine} | {layer} | {row['gflop']:.2f} | {row['ms']:.1f} | {row['gflops']:.0f} | "
                  f"{row['x_peak_time']:.2f} |" for label, engines in efficiency.items()
                  for engine, layers in engines.items() for layer, row in layers.items()]
    for label, engines in report["models"].items():
        for engine, result in engines.items():
            lines += ["", f"## {label}: {engine}", "", "| op | nodes | ms | share |", "|---|---:|---:|---:|"]
            rows = result["ops"][:TOP]
            lines += [f"| {row['op']} | {row['nodes']} | {row['ms']:.2f} | {row['share_pct']:.1f}% |" for row in rows]
            rest = result["ops"][TOP:]
            if rest:
                lines.append(f"| other ({len(rest)} types) | {sum(r['nodes'] for r in rest)} | "
                             f"{sum(r['ms'] for r in rest):.2f} | {sum(r['share_pct'] for r in rest):.1f}% |")
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="ONNX graphs (batch 1 or a dynamic batch)")
    parser.add_argument("--label", action="append", default=None, help="a name per model (default: file names)")
    parser.add_argument("--engine", action="append", choices=ENGINES, default=None, help="default: both")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per session")
    parser.add_argument("--repeats", type=int, default=3, help="fresh sessions per engine; medians are kept")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: the engine's)")
    parser.add_argument("--floor", action="store_true", help="measure the peak and add the roofline floor")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--md", type=Path, default=None)
    args = parser.parse_args(argv)
    labels = args.label or [path.stem for path in args.models]
    if len(labels) != len(args.models) or len(set(labels)) != len(labels):
        parser.error(f"give one distinct --label per model ({len(args.models)} models, labels {labels})")
    if args.runs < 1 or args.repeats < 1:
        parser.error("--runs and --repeats must be at least 1")
    missing = [str(path) for path in args.models if not path.is_file()]
    if missing:
        parser.error(f"no such ONNX file: {', '.join(missing)}")
    args.label = labels
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    engines = tuple(args.engine or ENGINES)
    load_before = os.getloadavg()[0]
    models = {label: profile_model(path, engines, args.runs, args.repeats, args.threads)
              for label, path in zip(args.label, args.models)}
    report: dict[str, Any] = {
        "command": "python -m mmad_edge.bench.op_profile " + " ".join(
            [*map(str, args.models), *(f"--label {label}" for label in args.label), f"--runs {args.runs}",
             f"--repeats {args.repeats}", *([f"--threads {args.threads}"] if args.threads else []),
             *(["--floor"] if args.floor else [])]),
        "cpu": cpu_model(), "logical_cores": os.cpu_count(), "libraries": library_versions(),
        "runs": args.runs, "repeats": args.repeats, "threads": args.threads,
        "load_before": load_before, "load_after": os.getloadavg()[0], "models": models,
    }
    if args.floor:
        say("measuring the peak GEMM and copy bandwidth for the floor")
        peak = measure_peak()
        report["floor"] = {label: graph_floor(path, peak) for label, path in zip(args.label, args.models)}
        report["conv_efficiency"] = {label: conv_efficiency(path, models[label], peak.gflops)
                                     for label, path in zip(args.label, args.models)}
    write_text_report(report, markdown(report), args.json, args.md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
