"""A runtime-only install (``pip install ".[ort]"``: no torch, no onnx), built by blocking those
imports in a fresh interpreter: the training and export commands stop with one line naming the
extra; ``bench`` runs on an export folder with the rows that need torch listed as skipped."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from runtime_only_cli import runtime_only

from mmad_edge.bench.default_export import default_artifacts
from mmad_edge.bench.peers import PEERS
from mmad_edge.bench.tables import BASELINE, REPARAM
from mmad_edge.config import ModelConfig


@pytest.mark.parametrize("args, extra", [
    (["train", "--data", "DATA", "--out", "RUN"], "train"),
    (["eval", "RUN/checkpoint.pt", "--data", "DATA"], "train"),
    (["import-checkpoint", "--variant", "n", "--out", "c.pt"], "train"),
    (["export", "RUN/checkpoint.pt", "--out", "EXPORT"], "export"),
    (["demo", "--out", "DEMO"], "export"),
])
def test_training_commands_name_the_extra(args, extra, tmp_path):
    result = runtime_only(*[str(tmp_path / a) if a.isupper() or "/" in a or a.endswith(".pt") else a for a in args])
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f'pip install ".[{extra}]"' in lines[0] and ("needs torch" in lines[0] or "needs onnx" in lines[0]), lines
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_bench_without_an_artifact_names_the_export_extra(tmp_path):
    result = runtime_only("bench", "--cache-dir", str(tmp_path / "cache"), "--quiet")
    assert result.returncode == 2 and "Traceback" not in result.stderr and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "error: bench without an artifact exports the built-in default model, which needs onnx: "
        'pip install ".[export]" from the mmad-edge checkout, or pass an export folder, a .onnx or a .engine']
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.fixture(scope="module")
def small_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real export (variant a at 64 px: FP32, FP16, the FP32 float-input twin, metadata.json)."""
    return default_artifacts(ModelConfig(variant="a", image_size=64), tmp_path_factory.mktemp("export"), progress=False)


def test_bench_times_an_export_without_torch_or_onnx(small_export, tmp_path):
    before = {p.name: p.read_bytes() for p in small_export.iterdir()}
    loaded = tmp_path / "loaded.json"
    result = runtime_only("bench", str(small_export), "--batch-size", "1", "--warmup", "0", "--iters", "2",
                          "--case-budget", "0.5", "--json", str(tmp_path / "b.json"), "--markdown",
                          str(tmp_path / "b.md"), loaded_report=loaded, home=tmp_path)  # OpenVINO's cache
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads(loaded.read_text()) == []  # no torch / onnx module got imported
    report = json.loads((tmp_path / "b.json").read_text())
    rows = {(r["name"], r["protocol"]): r for r in report["results"]}
    openvino = ("ov-fp32",) if importlib.util.find_spec("openvino") is not None else ()  # its own extra
    runs = {key for key in rows if key[0] not in ("ov-fp32-bf16", "ov-fp32-f16")}  # where the CPU has the units
    assert runs == {(n, p) for n in ("onnx-fp32", "onnx-fp16", *openvino) for p in ("paper", "e2e")}
    assert all(r["backend"] in ("onnxruntime", "openvino") and r["p50_ms"] > 0 and r["images_per_s"] > 0
               for r in rows.values())
    torch_reason = 'needs torch: pip install ".[train]" from the mmad-edge checkout'
    skipped = {s["name"]: s["reason"] for s in report["skipped"]}
    assert {name: skipped.get(name) for name in (BASELINE, REPARAM, *PEERS)} == dict.fromkeys(
        (BASELINE, REPARAM, *PEERS), torch_reason)
    assert skipped["floor"].startswith('needs onnx: pip install ".[export]"') and report["floor"] is None
    assert report["speed_claim"]["e2e_onnx_fp32_vs_trainform"]["passed"] is None
    assert f"skipped {BASELINE} (torch paper): {torch_reason}" in result.stdout.splitlines()
    table = (tmp_path / "b.md").read_text()
    assert f"| {BASELINE} | torch | paper | - | {torch_reason} |" in table
    assert {p.name: p.read_bytes() for p in small_export.iterdir()} == before  # the export is untouched
