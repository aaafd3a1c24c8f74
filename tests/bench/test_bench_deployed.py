"""The bench's `deployed` row (an export folder as auto loads its tuned choice) and its claims."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from runtime_fixtures import write_export_dir

from mmad_edge.bench.artifacts import find_artifacts
from mmad_edge.bench.claims import format_claims
from mmad_edge.bench.deployed import DEPLOYED, deployed_cases, deployed_claims
from mmad_edge.bench.runner import run_case
from mmad_edge.bench.tables import BASELINE
from mmad_edge.runtime import Detector
from mmad_edge.runtime.artifact.contract import TUNED_FILE
from mmad_edge.runtime.backends.base import BackendOptions
from mmad_edge.runtime.tuning.candidates import Candidate
from mmad_edge.runtime.tuning.choice import choice_document
from mmad_edge.runtime.tuning.selection import Trial

SIZE = 32
FRAMES = [np.full((SIZE, SIZE, 3), 100, np.uint8)]


def _tuned(folder: Path) -> None:
    """tuned.json choosing the folder's INT8 graph on ONNX Runtime, as tune writes it on this machine."""
    with Detector.load(folder / "model.int8.onnx", "onnxruntime") as detector:
        ran_on = detector.backend.describe()
    candidate = Candidate("onnx-int8", "onnxruntime", folder / "model.int8.onnx", "int8", BackendOptions())
    chosen = Trial(candidate, {"p50_ms": 2.0}, {"auroc": 0.91, "auroc_drop": 0.002}, True, None, ran_on)
    (folder / TUNED_FILE).write_text(json.dumps(choice_document(chosen, [chosen], {"batch": 1})))


def test_a_tuned_folder_gets_a_deployed_row_per_batch_timing_what_auto_loads(tmp_path):
    folder = write_export_dir(tmp_path / "export", SIZE, precisions=("fp32", "int8"))
    assert deployed_cases(find_artifacts([folder]), [1, 4], FRAMES, None) == []  # not tuned: no row
    _tuned(folder)
    cases = deployed_cases(find_artifacts([folder]), [1, 4], FRAMES, None)
    assert [(c.name, c.batch, c.protocol) for c in cases] == [(DEPLOYED, 1, "e2e"), (DEPLOYED, 4, "e2e")]
    assert cases[0].extra["verified"]["auroc"] == 0.91 and cases[0].extra["tuned"] == "onnx-int8"
    row = run_case(cases[0], warmup=0, iters=2)
    assert (row["backend"], row["precision"], row["artifact"]) == ("onnxruntime", "int8", str(folder))
    other = write_export_dir(tmp_path / "other", SIZE, precisions=("fp32", "int8"))
    _tuned(other)
    named = {c.name for c in deployed_cases(find_artifacts([folder, other]), [1], FRAMES, None)}
    assert named == {f"{DEPLOYED}@export", f"{DEPLOYED}@other"}


def _row(name: str, backend: str, precision: str, protocol: str, p50: float, **extra) -> dict:
    return {"name": name, "backend": backend, "precision": precision, "protocol": protocol, "batch": 1,
            "p50_ms": p50, "images_per_s": 1000.0 / p50, **extra}


def test_deployed_claims_compare_with_torch_eager_and_onnx_fp32_stating_the_verified_accuracy():
    verified = {"candidate": "ov-int8-latency", "auroc": 0.93, "auroc_drop": 0.001}
    rows = [_row(BASELINE, "torch", "fp32", "paper", 160.0), _row("onnx-fp32", "onnxruntime", "fp32", "e2e", 110.0),
            _row(DEPLOYED, "openvino", "int8", "e2e", 40.0, tuned="ov-int8-latency", verified=verified)]
    claims = deployed_claims(rows)
    torch, fp32 = claims["deployed_vs_trainform"], claims["deployed_vs_onnx_fp32"]
    assert torch["passed"] is True and torch["speedup"] == pytest.approx(4.0)
    assert torch["verified_auroc"] == 0.93 and torch["verified_auroc_drop"] == 0.001
    assert fp32["passed"] is True and fp32["ratio"] == pytest.approx(40.0 / 110.0)
    slower = deployed_claims([*rows[:2], {**rows[2], "p50_ms": 120.0}])
    assert slower["deployed_vs_trainform"]["passed"] is False and slower["deployed_vs_onnx_fp32"]["passed"] is False
    untuned = deployed_claims(rows[:2])
    assert all(c["passed"] is None and "mmad-edge tune" in c["reason"] for c in untuned.values())
    no_torch = deployed_claims(rows[1:])
    assert no_torch["deployed_vs_trainform"]["passed"] is None and no_torch["deployed_vs_onnx_fp32"]["passed"] is True
    text = format_claims({"paper": {"reported": "-", "this_model": "-", "this_device": "-",
                                    "measured_images_per_s": None, "note": "-"}, **claims})
    assert "PASS: deployed (tuned) e2e batch-1 latency at least 4x lower" in text and "verified_auroc 0.93" in text
