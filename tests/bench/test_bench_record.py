"""`python -m mmad_edge.bench.record`: shared options, --help without a GPU, and the GPU flow on the CPU."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from mmad_edge.bench import record, record_gpu
from mmad_edge.bench.peers import PEERS


def test_help_works_without_a_gpu(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        record.main(["gpu", "--help"])
    assert exit_info.value.code == 0
    assert "--dry-run" in capsys.readouterr().out


def test_runs_share_options_with_their_own_defaults() -> None:
    cpu = record.parse_args(["cpu"])
    assert (cpu.out, cpu.name, cpu.warmup, cpu.iters) == (Path("bench/results"), "cpu", 5, 30)
    assert cpu.batch_size == [1, 16] and cpu.peers == list(PEERS)
    gpu = record.parse_args(["gpu", "--out", "o", "--batch-size", "4,1,4", "--peers", "rd4ad-wrn50"])
    assert (gpu.out, gpu.name, gpu.warmup, gpu.iters) == (Path("o"), "gpu_check", 50, 500)
    assert gpu.batch_size == [4, 1] and gpu.peers == ["rd4ad-wrn50"]


@pytest.mark.parametrize("argv, message", [
    (["gpu"], "the following arguments are required: --out"),
    (["gpu", "--out", "o", "--batch-size", "1,x"], "argument --batch-size: must be comma-separated integers"),
    (["cpu", "--batch-size", "0"], "argument --batch-size: needs positive batch sizes"),
    (["cpu", "--peers", "padim,rd4ad-wrn50"], "argument --peers: unknown peer\\(s\\) padim; choose from"),
    (["cpu", "--dry-run"], "unrecognized arguments: --dry-run"),
    ([], "the following arguments are required: {cpu,gpu}"),
])
def test_argument_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        record.parse_args(argv)
    assert exit_info.value.code == 2
    assert re.search(message, capsys.readouterr().err)


def test_cpu_run_times_all_peers_or_none(tmp_path: Path) -> None:
    from mmad_edge.bench.record_cpu import bench_options

    options = bench_options(record.parse_args(["cpu", "--peers", "none", "--iters", "3", "--batch-size", "2"]),
                            tmp_path / "c.pt")
    assert (options.peers, list(options.batches), options.iters, options.warmup) == (False, [2], 3, 5)
    assert options.checkpoint == tmp_path / "c.pt" and options.protocols == "paper,e2e"
    assert bench_options(record.parse_args(["cpu"]), tmp_path / "c.pt").peers is True
    with pytest.raises(SystemExit, match="every peer or none: pass --peers all or --peers none"):
        bench_options(record.parse_args(["cpu", "--peers", "rd4ad-wrn50"]), tmp_path / "c.pt")


def test_gpu_dry_run_on_a_tiny_peer(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "gpu"
    args = ["gpu", "--dry-run", "--out", str(out), "--model", "none", "--peers", "patchcore-wrn50",
            "--image-size", "32", "--batch-size", "1", "--patchcore-bank", "8"]
    assert record.main(args) == 0
    report = json.loads((out / "gpu_check.json").read_text())
    (row,) = report["results"]
    assert (row["name"], row["device"], row["batch"], row["protocol"]) == ("patchcore-wrn50", "cpu", 1, "paper")
    assert row["floor_ms"] > 0 and row["roofline_pct"] > 0
    assert report["skipped"] == [] and report["floor"] is None and "speed_claim" not in report
    assert report["settings"]["iters"] == 2 and set(report["peaks"]) == {"fp32"}
    assert report["settings"]["command"] == "gpu" and report["settings"]["out"] == str(out)
    markdown = (out / "gpu_check.md").read_text()
    assert "| patchcore-wrn50 | torch | fp32 | paper | 1 |" in markdown and "Speed claims" not in markdown
    assert (out / "gpu_check.png").stat().st_size > 0
    printed = capsys.readouterr()
    assert printed.out.splitlines()[1].startswith("patchcore-wrn50  torch    fp32")
    assert f"wrote {out / 'gpu_check.json'}, {out / 'gpu_check.md'}, {out / 'gpu_check.png'} (1 rows" in printed.err


def test_gpu_dry_run_records_failing_cases(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["gpu", "--dry-run", "--out", str(tmp_path), "--name", "tiny", "--model", "none",
            "--peers", "efficientad-s", "--image-size", "64", "--batch-size", "1"]
    assert record.main(args) == 0
    report = json.loads((tmp_path / "tiny.json").read_text())
    assert report["results"] == [] and not (tmp_path / "tiny.png").exists()
    assert "at least 256 px" in report["skipped"][0]["reason"]
    assert "skipped efficientad-s [torch fp32 paper b1]: ValueError" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_gpu_run_without_gpu_says_how_to_proceed(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no CUDA device here.*--dry-run"):
        record.main(["gpu", "--out", str(tmp_path)])


def test_time_limit_interrupts() -> None:
    import time

    with pytest.raises(TimeoutError, match="0 s limit"):
        with record_gpu.time_limit(0.05):
            time.sleep(2)


def test_spent_budget_skips_the_remaining_cases(tmp_path: Path) -> None:
    args = ["gpu", "--dry-run", "--out", str(tmp_path), "--model", "none", "--peers", "patchcore-wrn50",
            "--image-size", "32", "--batch-size", "1,2", "--patchcore-bank", "8", "--budget-s", "0"]
    assert record.main(args) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["results"] == []
    assert [s["reason"] for s in report["skipped"]] == ["time budget of 0 s spent"] * 2
