"""A runtime-only install (``pip install ".[ort]"``: no torch, no onnx), built by blocking those
imports in a fresh interpreter: the training and export commands stop with one line naming the
extra; ``bench`` runs on an export folder with the rows that need torch listed as skipped."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

BLOCKER = textwrap.dedent(
    """
    import sys

    class Absent:
        BLOCKED = {"torch", "onnx", "onnxsim", "torchvision", "matplotlib"}

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Absent())
    from mmad_edge.cli import main
    sys.argv = ["mmad-edge", *sys.argv[1:]]
    main()
    """
)


def runtime_only(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER, *args], capture_output=True, text=True, timeout=300)


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


def test_bench_names_the_extra_for_now(tmp_path):
    result = runtime_only("bench", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        'error: mmad-edge bench needs onnx, which this install lacks; pip install ".[export]" from the mmad-edge checkout']
