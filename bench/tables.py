"""The bench's result tables: the rows' JSON document, its Markdown table and a bar plot.

One layout for every timed run (`mmad-edge bench`, `python -m mmad_edge.bench.record`), so the
recorded files in ``bench/results`` read alike.

JSON layout: ``{"results": [row, ...], "floor": {...} | null, "machine": {...}}`` where a row
holds ``RESULT_KEYS`` (plus ``stages``, stage -> mean ms per call, for e2e rows, usually
among ``STAGES``; optionally ``floor_ms`` / ``roofline_pct``) and the floor holds ``FLOOR_KEYS``. Speed-ups are relative to the row named
``BASELINE`` at the same batch (same protocol preferred).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mmad_edge.runtime.backends.base import precision_label

RESULT_KEYS = (
    "name", "backend", "precision", "protocol", "batch", "p50_ms", "p90_ms", "p99_ms",
    "images_per_s", "mean_ms", "min_ms", "std_ms",
)
FLOOR_KEYS = (
    "gflop_per_image", "peak_gflops", "floor_ms_per_image", "bytes_per_image", "peak_gb_per_s", "peak_source",
)
STAGES = ("preprocess", "copy_in", "inference", "copy_out", "postprocess")
PROTOCOLS = ("paper", "e2e")
BASELINE = "torch-eager-trainform"
REPARAM = "torch-reparam"
ACCURACY_KEY = "image_auroc"  # bench --data: the row's image AUROC on the labelled test split


class ReportError(ValueError):
    """A result row or report that does not follow the benchmark JSON layout."""


def computes(row: dict[str, Any]) -> str:
    """The precision a row's arithmetic ran in (rows recorded before ``compute_precision``: the graph's)."""
    return row.get("compute_precision") or row["precision"]


def shown_precision(row: dict[str, Any]) -> str:
    """A row's precision cell: ``fp32``, or ``bf16 (fp32 graph)`` where the backend computed lower."""
    return precision_label(row["precision"], computes(row))


def add_roofline(row: dict[str, Any], floor_ms: float) -> dict[str, Any]:
    """A copy of ``row`` with ``floor_ms`` (for its whole batch) and ``roofline_pct`` = floor / p50."""
    return {**row, "floor_ms": floor_ms, "roofline_pct": 100.0 * floor_ms / row["p50_ms"]}


def validate_row(row: dict[str, Any]) -> None:
    missing = [key for key in RESULT_KEYS if key not in row]
    if missing:
        raise ReportError(f"result row {row.get('name', '?')!r} lacks {', '.join(missing)}; build rows with run_cases")
    if row["protocol"] not in PROTOCOLS:
        raise ReportError(f"row {row['name']!r}: protocol {row['protocol']!r} is not one of {PROTOCOLS}")
    if row["protocol"] == "e2e":
        stages = row.get("stages")
        if not isinstance(stages, dict) or not all(isinstance(ms, (int, float)) for ms in stages.values()):
            raise ReportError(f"e2e row {row['name']!r} needs a 'stages' dict of stage -> mean ms, got {stages!r}")


def build_report(
    results: Iterable[dict[str, Any]],
    floor: dict[str, Any] | None = None,
    machine: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Assemble and check the report document; ``extra`` keys (e.g. ``skipped``) ride along."""
    rows = list(results)
    for row in rows:
        validate_row(row)
    if floor is not None:
        missing = [key for key in FLOOR_KEYS if key not in floor]
        if missing:
            raise ReportError(f"floor section lacks {', '.join(missing)}; build it with floor.floor_summary")
    return {"results": rows, "floor": floor, "machine": machine or {}, **extra}


def speedups(rows: list[dict[str, Any]], baseline: str = BASELINE) -> list[float | None]:
    """images/s of each row over the baseline row's at the same batch; None without a baseline."""
    out: list[float | None] = []
    for row in rows:
        candidates = [r for r in rows if r["name"] == baseline and r["batch"] == row["batch"]]
        candidates.sort(key=lambda r: r["protocol"] != row["protocol"])
        out.append(row["images_per_s"] / candidates[0]["images_per_s"] if candidates else None)
    return out


def format_value(value: Any, digits: int = 2) -> str:
    """A table cell: "-" for None / NaN, floats to ``digits`` places."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(report: dict[str, Any], baseline: str = BASELINE) -> str:
    """Results table (plus per-stage table for e2e rows, the floor and the machine) as Markdown."""
    rows = report["results"]
    accuracy = any(ACCURACY_KEY in row for row in rows)  # bench --data
    lines = [
        "| name | backend | precision | protocol | batch | p50 ms | p90 ms | p99 ms | images/s "
        f"| floor ms | % of roofline | speedup vs {baseline} |" + (" image AUROC |" if accuracy else ""),
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if accuracy else ""),
    ]
    for row, speedup in zip(rows, speedups(rows, baseline)):
        cells = [
            row["name"], row["backend"], shown_precision(row), row["protocol"], row["batch"],
            format_value(row["p50_ms"], 3), format_value(row["p90_ms"], 3), format_value(row["p99_ms"], 3), format_value(row["images_per_s"], 1),
            format_value(row.get("floor_ms"), 3), format_value(row.get("roofline_pct"), 1),
            "-" if speedup is None else f"{speedup:.2f}x", *([format_value(row.get(ACCURACY_KEY), 4)] if accuracy else []),
        ]
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    split = sorted({(row["batch"], row["micro_batch"]) for row in rows
                    if row.get("micro_batch") and row["micro_batch"] < row["batch"]})
    if split:
        runs = ", ".join(f"batch {batch} as runs of {count}" for batch, count in split)
        lines += ["", f"ONNX Runtime CPU rows run a batch in cache-sized runs, as the runtime does ({runs}); "
                      "`--micro-batch 0` times whole-batch runs."]
    e2e = [row for row in rows if row["protocol"] == "e2e"]
    if e2e:
        seen = {stage for row in e2e for stage in row["stages"]}
        columns = [s for s in STAGES if s in seen] + sorted(seen - set(STAGES))
        lines += ["", "Per-stage mean ms per call (e2e):", "", "| name | batch | " + " | ".join(columns) + " |"]
        lines.append("|---|---:|" + "---:|" * len(columns))
        for row in e2e:
            stages = [format_value(row["stages"].get(stage), 3) for stage in columns]
            lines.append(f"| {row['name']} | {row['batch']} | " + " | ".join(stages) + " |")
    lines += _accuracy_lines(rows)
    lines += _skipped_lines(report.get("skipped") or [])
    floor = report.get("floor")
    if floor:
        lines += [
            "",
            f"Floor: {floor['gflop_per_image']:.2f} GFLOP and {floor['bytes_per_image'] / 1e6:.1f} MB per image; "
            f"peak {floor['peak_gflops']:.0f} GFLOP/s, {floor['peak_gb_per_s']:.1f} GB/s ({floor['peak_source']}); "
            f"floor {floor['floor_ms_per_image']:.3f} ms per image.",
        ]
    machine = report.get("machine") or {}
    if machine:
        libraries = ", ".join(f"{k} {v}" for k, v in (machine.get("libraries") or {}).items())
        gpu = (machine.get("gpu") or {}).get("name")
        lines += [
            "",
            f"Machine: {machine.get('cpu_model', '?')}, {machine.get('logical_cores', '?')} cores"
            + (f", GPU {gpu}" if gpu else "")
            + (f"; {libraries}" if libraries else "")
            + ".",
        ]
    return "\n".join(lines) + "\n"


def _accuracy_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The e2e rows' outputs against the reference (``bench.fidelity``), once per row name."""
    measured = {row["name"]: row for row in rows if row.get("accuracy_vs_ort_fp32")}
    if not measured:
        return []
    first = next(iter(measured.values()))["accuracy_vs_ort_fp32"]
    lines = ["", f"Accuracy vs {first['reference']} on {first['frames']} seeded random frames (e2e rows; with random "
                 "weights this is fidelity to the FP32 graph, not detection quality):", "",
             "| name | backend | precision | map max rel. error | score max rel. error | score Spearman |",
             "|---|---|---|---:|---:|---:|"]
    for name, row in measured.items():
        accuracy = row["accuracy_vs_ort_fp32"]
        cells = [format_value(accuracy[key], 4) if key == "spearman" else _small(accuracy[key])
                 for key in ("map_relative", "score_relative", "spearman")]
        lines.append(f"| {name} | {row['backend']} | {shown_precision(row)} | " + " | ".join(cells) + " |")
    return lines


def _small(value: float | None) -> str:
    return "-" if value is None else f"{value:.2g}"


def _skipped_lines(skipped: list[dict[str, Any]]) -> list[str]:
    """The rows that did not run here, each with its reason (e.g. the extra to install)."""
    if not skipped:
        return []
    lines = ["", "Skipped (not timed here):", "", "| name | backend | protocol | batch | reason |", "|---|---|---|---:|---|"]
    for item in skipped:  # the bench's entries; the GPU record's name only the case (its label)
        cells = [item.get("name") or item.get("case"), *(item.get(key) for key in ("backend", "protocol", "batch"))]
        reason = str(item.get("reason")).replace("|", "\\|")
        lines.append("| " + " | ".join(format_value(cell) for cell in cells) + f" | {reason} |")
    return lines


def write_markdown(path: str | Path, report: dict[str, Any], baseline: str = BASELINE) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown(report, baseline), encoding="utf-8")
    return path


def row_label(row: dict[str, Any]) -> str:
    return f"{row['name']} ({row['backend']} {shown_precision(row)}, {row['protocol']}, b{row['batch']})"


def plot_figure(report: dict[str, Any]) -> Any:
    """Two horizontal bar charts on log axes (rows span 100x): p50 latency per call and throughput.

    Rows with a roofline floor get it drawn as a black tick: the floor latency of their batch on
    the left, the throughput it would allow on the right, so each bar's distance to it shows.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    rows = report["results"]
    if not rows:
        raise ReportError("no result rows to plot; run at least one case")
    positions = list(range(len(rows)))
    fig, (latency, throughput) = plt.subplots(
        1, 2, figsize=(12, 1.4 + 0.4 * len(rows)), sharey=True, constrained_layout=True
    )
    latency.barh(positions, [row["p50_ms"] for row in rows], color="tab:blue")
    throughput.barh(positions, [row["images_per_s"] for row in rows], color="tab:green")
    floored = [(i, row) for i, row in enumerate(rows) if row.get("floor_ms")]
    if floored:
        ticks = [i for i, _ in floored]
        latency.scatter([row["floor_ms"] for _, row in floored], ticks, marker="|", s=300, color="black",
                        zorder=3, label="roofline floor")
        throughput.scatter([1000.0 * row["batch"] / row["floor_ms"] for _, row in floored], ticks, marker="|",
                           s=300, color="black", zorder=3, label="roofline floor")
        fig.legend(handles=latency.collections[-1:], loc="outside upper right")
    for axis, label in ((latency, "p50 latency per call (ms, log)"), (throughput, "throughput (images/s, log)")):
        axis.set_xscale("log")
        axis.xaxis.set_minor_formatter(NullFormatter())  # decade labels only: minor ones collide on short spans
        axis.set_xlabel(label)
    latency.set_yticks(positions, [row_label(row) for row in rows])
    latency.invert_yaxis()
    return fig


def write_plot(path: str | Path, report: dict[str, Any]) -> Path:
    """``plot_figure`` as a PNG (needs matplotlib, in the train extra)."""
    import matplotlib.pyplot as plt

    fig = plot_figure(report)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
