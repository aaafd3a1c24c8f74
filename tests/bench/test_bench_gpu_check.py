"""The GPU script: imports and --help without a GPU, and its --dry-run flow on a tiny peer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mmad_edge.bench import gpu_check


def test_help_works_without_a_gpu(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        gpu_check.main(["--help"])
    assert exit_info.value.code == 0
    assert "--dry-run" in capsys.readouterr().out


def test_dry_run_on_a_tiny_peer(tmp_path: Path) -> None:
    out = tmp_path / "gpu"
    args = ["--dry-run", "--out", str(out), "--model", "none", "--peers", "patchcore-wrn50", "--image-size", "32",
            "--batch", "1", "--patchcore-bank", "8"]
    assert gpu_check.main(args) == 0
    report = json.loads((out / "gpu_check.json").read_text())
    (row,) = report["results"]
    assert (row["name"], row["device"], row["batch"], row["protocol"]) == ("patchcore-wrn50", "cpu", 1, "paper")
    assert row["floor_ms"] > 0 and row["roofline_pct"] > 0
    assert report["skipped"] == [] and report["floor"] is None
    assert report["settings"]["iters"] == 2 and set(report["peaks"]) == {"fp32"}
    assert "| patchcore-wrn50 | torch | fp32 | paper | 1 |" in (out / "gpu_check.md").read_text()
    assert (out / "gpu_check.png").stat().st_size > 0


def test_dry_run_records_failing_cases(tmp_path: Path) -> None:
    args = ["--dry-run", "--out", str(tmp_path), "--model", "none", "--peers", "efficientad-s", "--image-size", "64",
            "--batch", "1"]
    assert gpu_check.main(args) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["results"] == []
    assert "at least 256 px" in report["skipped"][0]["reason"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_gpu_run_without_gpu_says_how_to_proceed(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no CUDA device here.*--dry-run"):
        gpu_check.main(["--out", str(tmp_path)])


def test_argument_errors() -> None:
    with pytest.raises(SystemExit, match="--batch must be comma-separated integers"):
        gpu_check.parse_batches("1,x")
    with pytest.raises(SystemExit, match="positive batch sizes"):
        gpu_check.parse_batches("0")
    with pytest.raises(SystemExit, match="unknown peer\\(s\\) padim"):
        gpu_check.parse_peers("padim,rd4ad-wrn50")
    assert gpu_check.parse_peers("none") == []


def test_time_limit_interrupts() -> None:
    import time

    with pytest.raises(TimeoutError, match="0 s limit"):
        with gpu_check.time_limit(0.05):
            time.sleep(2)


def test_spent_budget_skips_the_remaining_cases(tmp_path: Path) -> None:
    args = ["--dry-run", "--out", str(tmp_path), "--model", "none", "--peers", "patchcore-wrn50", "--image-size", "32",
            "--batch", "1,2", "--patchcore-bank", "8", "--budget-s", "0"]
    assert gpu_check.main(args) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["results"] == []
    assert [s["reason"] for s in report["skipped"]] == ["time budget of 0 s spent"] * 2
