"""Report JSON layout, Markdown rows and speed-ups, and the plot file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mmad_edge.bench.tables import (
    FLOOR_KEYS,
    RESULT_KEYS,
    ReportError,
    add_roofline,
    build_report,
    markdown,
    speedups,
    write_markdown,
    write_plot,
)
from mmad_edge.fileio import write_json


def row(name: str, batch: int, images_per_s: float, protocol: str = "paper", **extra) -> dict:
    mean = batch * 1000.0 / images_per_s
    return {
        "name": name, "backend": "torch", "precision": "fp32", "protocol": protocol, "batch": batch,
        "p50_ms": mean, "p90_ms": mean * 1.1, "p99_ms": mean * 1.2, "images_per_s": images_per_s,
        "mean_ms": mean, "min_ms": mean * 0.9, "std_ms": 0.1, **extra,
    }


FLOOR = {
    "gflop_per_image": 14.0, "peak_gflops": 460.0, "floor_ms_per_image": 0.03, "bytes_per_image": 1e6,
    "peak_gb_per_s": 20.0, "peak_source": "onnxruntime fp32 GEMM",
}


def sample_rows() -> list[dict]:
    return [
        row("torch-eager-trainform", 1, 100.0),
        row("torch-eager", 1, 250.0),
        row("torch-eager-trainform", 16, 400.0),
        row("tensorrt-fp16", 16, 1600.0),
        row("e2e-ort", 4, 50.0, protocol="e2e", stages={"preprocess": 1.5, "inference": 70.0, "postprocess": 8.5}),
        row("peer-only-b8", 8, 10.0),
    ]


def test_json_layout(tmp_path: Path) -> None:
    report = build_report(sample_rows(), FLOOR, {"cpu_model": "test"}, skipped=[])
    path = write_json(tmp_path / "out" / "bench.json", report)
    data = json.loads(path.read_text())
    assert set(data) == {"results", "floor", "machine", "skipped"}
    assert all(set(RESULT_KEYS) <= set(r) for r in data["results"])
    assert set(FLOOR_KEYS) == set(data["floor"])
    assert data["results"][4]["stages"]["inference"] == 70.0
    assert data["machine"] == {"cpu_model": "test"}


def test_rows_and_floor_are_checked() -> None:
    bad = row("x", 1, 1.0)
    del bad["p99_ms"]
    with pytest.raises(ReportError, match="'x' lacks p99_ms"):
        build_report([bad])
    with pytest.raises(ReportError, match="protocol 'fast'"):
        build_report([row("x", 1, 1.0, protocol="fast")])
    with pytest.raises(ReportError, match="needs a 'stages' dict"):
        build_report([row("x", 1, 1.0, protocol="e2e")])
    with pytest.raises(ReportError, match="floor section lacks peak_source"):
        build_report([], {k: 1.0 for k in FLOOR_KEYS if k != "peak_source"})


def test_roofline_fields() -> None:
    out = add_roofline(row("a", 1, 100.0), floor_ms=2.5)  # p50 10 ms
    assert out["floor_ms"] == 2.5
    assert out["roofline_pct"] == pytest.approx(25.0)


def test_speedups_match_batch_and_prefer_protocol() -> None:
    rows = sample_rows()
    assert speedups(rows) == [1.0, 2.5, 1.0, 4.0, None, None]
    mixed = [row("torch-eager-trainform", 4, 10.0), row("torch-eager-trainform", 4, 20.0, protocol="e2e", stages={}),
             row("e2e", 4, 40.0, protocol="e2e", stages={})]
    assert speedups(mixed)[2] == pytest.approx(2.0)  # against the e2e baseline


def test_markdown_has_every_row(tmp_path: Path) -> None:
    rows = [add_roofline(r, 1.0) if r["name"] == "tensorrt-fp16" else r for r in sample_rows()]
    report = build_report(rows, FLOOR, {"cpu_model": "EPYC", "logical_cores": 2, "libraries": {"torch": "2.13"}})
    text = write_markdown(tmp_path / "bench.md", report).read_text()
    table = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(table) == 1 + len(rows) + 2  # header, rows, e2e stage header + row
    for r in rows:
        assert f"| {r['name']} | torch | fp32 | {r['protocol']} | {r['batch']} |" in text
    assert "| tensorrt-fp16 | torch | fp32 | paper | 16 | 10.000 | 11.000 | 12.000 | 1600.0 | 1.000 | 10.0 | 4.00x |" in text
    assert "| e2e-ort | 4 | 1.500 | 70.000 | 8.500 |" in text
    assert "speedup vs torch-eager-trainform" in text
    assert "peak 460 GFLOP/s" in text and "Machine: EPYC, 2 cores; torch 2.13." in text


def test_bench_markdown_file_has_each_section_once_and_every_row(tmp_path: Path) -> None:
    """What `mmad-edge bench --markdown` and `bench.record` write: the table, the floor, the machine
    line and the claims section once each (the table renders the machine, the console adds the claims)."""
    from mmad_edge.bench.claims import format_claims, speed_claim
    from mmad_edge.bench.console import write_outputs
    from mmad_edge.config import ModelConfig

    rows = sample_rows()
    machine = {"cpu_model": "EPYC", "logical_cores": 2, "libraries": {"torch": "2.13"}}
    claims = speed_claim(rows, FLOOR, machine, ModelConfig())
    report = build_report(rows, FLOOR, machine, skipped=[], speed_claim=claims)
    (path,) = write_outputs(report, markdown_path=tmp_path / "bench.md")
    lines = path.read_text().splitlines()
    assert lines.count("Machine: EPYC, 2 cores; torch 2.13.") == 1
    assert sum(line.startswith("Machine:") for line in lines) == 1
    assert lines.count("Speed claims:") == 1 and sum("Speed claims" in line for line in lines) == 1
    assert sum(line.startswith("Floor: 14.00 GFLOP and 1.0 MB per image") for line in lines) == 1
    claim_lines = [f"- {line}" for line in format_claims(claims).splitlines()]
    assert len(claim_lines) == len(claims) and all(lines.count(line) == 1 for line in claim_lines)
    assert lines[-len(claim_lines):] == claim_lines  # the claims close the file
    assert lines.count("| torch-eager-trainform | torch | fp32 | paper | 16 | 40.000 | 44.000 | 48.000 | 400.0 | - | "
                       "- | 1.00x |") == 1
    table = [line for line in lines if line.startswith("| ") and "---" not in line]
    assert len(table) == 1 + len(rows) + 2  # header, rows, e2e stage header + row: nothing repeated
    assert [line.split(" | ")[0][2:] for line in table[1:1 + len(rows)]] == [r["name"] for r in rows]


def test_markdown_without_floor_or_machine() -> None:
    text = markdown(build_report([row("solo", 1, 10.0)]))
    assert "| solo |" in text and "Floor" not in text and "Machine" not in text


def test_plot_is_a_png(tmp_path: Path) -> None:
    path = write_plot(tmp_path / "bench.png", build_report(sample_rows()))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ReportError, match="no result rows"):
        write_plot(tmp_path / "empty.png", build_report([]))


def test_plot_uses_log_axes_and_draws_the_floor() -> None:
    from mmad_edge.bench.tables import plot_figure

    rows = [add_roofline(r, 0.5 * r["batch"]) if r["name"] != "peer-only-b8" else r for r in sample_rows()]
    fig = plot_figure(build_report(rows))
    latency, throughput = fig.axes[:2]
    assert latency.get_xscale() == throughput.get_xscale() == "log"
    floors = [axis.collections[-1].get_offsets() for axis in (latency, throughput)]
    ms = [r["floor_ms"] for r in rows if "floor_ms" in r]
    assert np.allclose(floors[0][:, 0], ms) and np.allclose(floors[1][:, 0], [2000.0] * len(ms))
    assert list(floors[0][:, 1]) == [0, 1, 2, 3, 4]  # the peer row (no floor) gets no tick


def test_markdown_lists_each_measured_rows_accuracy_once() -> None:
    accuracy = {"reference": "onnx-fp32 (ONNX Runtime CPU)", "frames": 16, "map_relative": 0.0421,
                "score_relative": 3e-7, "spearman": 0.89082}
    rows = [row("ov-int8", batch, 50.0, protocol="e2e", stages={"inference": 1.0}, accuracy_vs_ort_fp32=accuracy)
            for batch in (1, 16)] + [row("onnx-fp32", 1, 40.0)]
    text = markdown(build_report(rows))
    assert "Accuracy vs onnx-fp32 (ONNX Runtime CPU) on 16 seeded random frames" in text
    assert text.count("| ov-int8 | torch | fp32 | 0.042 | 3e-07 | 0.8908 |") == 1
    assert "| onnx-fp32 | torch | fp32 | " not in text.split("Accuracy vs")[1]
