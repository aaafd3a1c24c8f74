"""Each flag is declared once (in the options dataclasses or the shared declarations), every command
still offers the flags it had before the commands were built from those declarations, and the
adapter hands each command the dataclass the flags describe."""

from __future__ import annotations

import ast
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from mmad_edge.app.options_cli import declared
from mmad_edge.cli import app
from mmad_edge.runtime.flags import Flag, nested

ROOT = Path(__file__).resolve().parents[2]
DECLARING = ["mmad_edge/cli.py", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "mmad_edge/app").glob("*.py")),
             "mmad_edge/flags.py", "mmad_edge/train_options.py", "export/options.py", "calib/options.py",
             "bench/options.py", "runtime/flags.py", "runtime/loop/options.py", "runtime/serving/options.py",
             "runtime/sinks/options.py", "runtime/ui/options.py"]
FLAG = re.compile(r"--[a-z0-9]+(-[a-z0-9]+)*(/--[a-z0-9-]+)?")
BASE_FLAGS = {  # each command's flags at 1f56e31 (before the commands were built from declarations) and since
    "bench": {"--backend", "--batch-size", "--cache-dir", "--case-budget", "--category", "--checkpoint", "--data",
        "--image-size", "--inference-precision", "--iters", "--json", "--layout", "--markdown", "--micro-batch",
        "--no-peers", "--no-quiet", "--peers", "--performance-hint", "--plot", "--protocol", "--quiet", "--serve",
        "--warmup"},
    "build-engine": {"--batch", "--category", "--dla-core", "--json", "--layout", "--no-version-compatible",
        "--optimization-level", "--out", "--timing-cache", "--verify", "--version-compatible", "--workspace-gib"},
    "calibrate-threshold": {"--backend", "--bad", "--batch-size", "--category", "--fpr", "--frames", "--good", "--json",
        "--precision", "--rule", "--source"},
    "demo": {"--epochs", "--image-size", "--json", "--loss", "--out", "--variant"},
    "eval": {"--batch-size", "--category", "--data", "--device", "--json", "--layout"},
    "export": {"--batch", "--calib-count", "--calib-data", "--calib-method", "--calib-seed", "--category", "--data",
        "--engine", "--image-size", "--input-format", "--int8-auroc-drop", "--int8-score-error", "--int8-spearman",
        "--json", "--layout", "--no-engine", "--opset", "--out", "--precision", "--target", "--variant"},
    "import-checkpoint": {"--encoder", "--image-size", "--json", "--minimaxad", "--out", "--variant"},
    "run": {"--backend", "--batch-size", "--category", "--drift-tolerance", "--drift-window", "--follow",
        "--no-follow", "--inference-precision", "--json", "--jsonl", "--map-size", "--max-frames", "--metrics-port", "--no-jsonl",
        "--no-show", "--performance-hint", "--precision", "--retry-seconds", "--save", "--shadow", "--shadow-log",
        "--shadow-log-max", "--show", "--source", "--threshold", "--sink", "--sink-drain-s", "--sink-credentials",
        "--sink-ca-file", "--sink-spool", "--sink-queue"},  # the --sink* flags since: issue 27
    "promote": {"--json", "--keep", "--to"},
    "rollback": {"--json"},
    "serve": {"--app-metrics-port", "--backend", "--drift-tolerance", "--drift-window", "--events", "--grpc-port",
        "--host", "--instances", "--json", "--log-file", "--max-batch", "--max-queue-delay-us", "--metrics-port", "--port",
        "--precision", "--threads", "--token-file", "--follow", "--no-follow"},  # --follow since: serve follows too
    "train": {"--augment", "--batch-size", "--camera-augment", "--no-camera-augment", "--category", "--data", "--device", "--encoder-init", "--epochs",
        "--force", "--holdout", "--image-size", "--json", "--layout", "--loss", "--lr", "--max-steps", "--no-augment",
        "--no-force", "--no-resume", "--out", "--pretrained", "--resume", "--score", "--seed", "--threshold-rule",
        "--variant", "--workers"},
    "tune": {"--batch-size", "--category", "--data", "--good", "--json", "--layout", "--max-auroc-drop",
        "--max-images", "--max-score-shift", "--min-agreement", "--try-threads"},
    "triton-repo": {"--backend", "--instances", "--json", "--max-batch", "--max-queue-delay-us", "--precision"},
    "verify": {"--against", "--backend", "--batch-size", "--category", "--data", "--inference-precision", "--json",
        "--layout", "--max-images", "--min-agreement", "--precision"},  # --min-agreement since: tune's rule
    "weights": {"--json"},
}


# Flags added since (issue 28: the live page of run / serve, the `review` group).
PAGE_FLAGS = {"--ui", "--ui-token-file", "--review-dir", "--review-max-mb", "--review-max-items"}
BASE_FLAGS = {**BASE_FLAGS, "run": BASE_FLAGS["run"] | PAGE_FLAGS, "serve": BASE_FLAGS["serve"] | PAGE_FLAGS,
              "review": set()}


def declarations() -> Counter:
    """Every string literal in the CLI's sources that is a flag's spelling, counted."""
    found: Counter = Counter()
    for relative in DECLARING:
        for node in ast.walk(ast.parse((ROOT / relative).read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and FLAG.fullmatch(node.value):
                found[node.value] += 1
    return found


def test_no_flag_is_declared_twice():
    found = declarations()
    assert {flag: n for flag, n in found.items() if n > 1} == {}
    spelled = {name for flag in found for name in flag.split("/")}
    assert set().union(*BASE_FLAGS.values()) <= spelled


def test_every_command_keeps_its_flags_and_lists_them_in_help():
    command = typer.main.get_command(app)
    assert set(command.commands) == set(BASE_FLAGS)
    runner = CliRunner()
    for name, cmd in command.commands.items():
        flags = {opt for param in cmd.params for opt in [*param.opts, *param.secondary_opts] if opt.startswith("-")}
        assert flags == BASE_FLAGS[name], name
        result = runner.invoke(app, [name, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        missing = {f for f in BASE_FLAGS[name] if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", result.output)}
        assert missing == set(), (name, missing)


@dataclass(frozen=True)
class Inner:
    level: int = 3


@dataclass(frozen=True)
class Sample:
    root: Path = Flag("--root", "Root.").field()
    names: Sequence[str] | None = Flag("--name", "Name; repeat.").field(None)
    verbose: bool = Flag("--quiet/--no-quiet", "Quiet.").field(True, cli_default=False, parse=lambda q: not q)
    rate: float = Flag("--rate", "Rate.").field(0.5)
    inner: Inner = nested(Inner, level=Flag("--level", "Level."))
    hidden: int = 7


def sample_app(seen: list) -> typer.Typer:
    sample = typer.Typer()

    @sample.command()
    @declared
    def go(options: Sample, tag: Annotated[str | None, Flag("--tag", "Tag.")] = None) -> None:
        seen.append((options, tag))

    @sample.command()
    def other() -> None:  # two commands: typer keeps each one's name
        pass

    return sample


@pytest.mark.parametrize("args, expected", [
    (["--root", "r"], (Sample(root=Path("r")), None)),
    (["--root", "r", "--name", "a", "--name", "b", "--quiet", "--rate", "2", "--level", "5", "--tag", "t"],
     (Sample(root=Path("r"), names=["a", "b"], verbose=False, rate=2.0, inner=Inner(5)), "t")),
])
def test_the_command_gets_the_dataclass_its_flags_describe(args, expected):
    seen: list = []
    result = CliRunner().invoke(sample_app(seen), ["go", *args])
    assert result.exit_code == 0, result.output
    assert seen == [expected]


def test_a_required_field_is_a_required_flag_and_unflagged_fields_stay_out():
    result = CliRunner().invoke(sample_app([]), ["go"], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "Missing option '--root'" in result.output
    result = CliRunner().invoke(sample_app([]), ["go", "--root", "r", "--hidden", "1"], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "No such option: --hidden" in result.output
    command = typer.main.get_command(sample_app([])).commands["go"]
    assert {p.opts[0] for p in command.params} == {"--root", "--name", "--quiet", "--rate", "--level", "--tag"}


def test_export_and_bench_get_their_options_from_the_flags(monkeypatch, tmp_path):
    import mmad_edge.app.benchmark as benchmark
    import mmad_edge.app.exporting as exporting

    seen = {}
    monkeypatch.setattr(exporting, "export_and_report", lambda *args: seen.setdefault("export", args))
    monkeypatch.setattr(benchmark, "bench_and_report", lambda *args: seen.setdefault("bench", args))
    runner = CliRunner()
    result = runner.invoke(app, ["export", "c.pt", "--out", "e", "--precision", "fp32,int8", "--calib-count", "9",
                                 "--int8-spearman", "0.9", "--category", "a", "--category", "b"])
    assert result.exit_code == 0, result.output
    checkpoint, out, options, json_path = seen["export"]
    assert (checkpoint, out, json_path) == (Path("c.pt"), Path("e"), None)
    assert options.precisions == "fp32,int8" and options.categories == ["a", "b"] and options.layout == "mvtec"
    assert options.int8.count == 9 and options.int8.method == "minmax" and options.int8.accuracy.spearman_min == 0.9
    assert options.int8.accuracy.auroc_drop_max == 0.005
    result = runner.invoke(app, ["bench", "x.onnx", "--quiet", "--batch-size", "1,4", "--no-peers"])
    assert result.exit_code == 0, result.output
    artifacts, options, *outputs = seen["bench"]
    assert artifacts == [Path("x.onnx")] and outputs == [None, None, None]
    assert (options.progress, options.batches, options.peers, options.categories) == (False, "1,4", False, None)
