"""The export folder (issue 16): a re-export replaces the whole earlier export and keeps the
user's files, a killed export's leftovers are cleared, staging stays on --out's filesystem,
an unwritable --out fails before any work, the graphs carry only our metadata (the same as
metadata.json), report.json names files that exist, calibration warnings are one line."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
from pathlib import Path

import onnx
import pytest
from model_utils import STATISTICS, random_checkpoint
from textures import write_textures
from typer.testing import CliRunner

from mmad_edge.calib.options import Int8Options
from mmad_edge.cli import app
from mmad_edge.data.demo import make_demo_dataset
from mmad_edge.export import pipeline
from mmad_edge.export.metadata import METADATA_KEY
from mmad_edge.export.options import ExportOptions
from mmad_edge.export.pipeline import export_checkpoint

DEAD_PID = 2 ** 22 + 12345  # above Linux's pid_max: never a running process
EARLIER_EXPORT = ("model.int8.onnx", "model.int8.engine", "model.int8.engine.json", "model.fp16.onnx",
                  "report.md", "metadata.json", "report.json")


def _inside(path: str | os.PathLike[str], folder: Path) -> bool:
    return os.path.realpath(path).startswith(os.path.realpath(folder) + os.sep)


@pytest.fixture(scope="module")
def reexport(tmp_path_factory):
    """An INT8 + FP32 export into a folder that holds an earlier export, the user's files, a
    killed export's leftovers and another export's live staging. The folder is made to behave
    as a mount point: a rename into it from outside fails with EXDEV."""
    root = tmp_path_factory.mktemp("folder")
    out = root / "out"
    out.mkdir()
    for name in EARLIER_EXPORT:
        (out / name).write_text("earlier export")
    user = {"notes.txt": "keep me", "model-notes.md": "mine", ".notes.txt.tmp": "mine too"}
    for name, text in user.items():
        (out / name).write_text(text)
    killed = [out / f".mmad-export-{DEAD_PID}-x1y2", root / ".out.export-a1b2"]  # this and the old layout
    for folder in killed:
        folder.mkdir()
        (folder / "model.fp32.onnx").write_text("half")
    half_written = [out / ".report.json.k3j4h5.tmp", out / ".model.fp16.engine.abcdefgh.tmp"]
    for path in half_written:
        path.write_text("half")
    live = out / f".mmad-export-{os.getpid()}-live"  # a running export's staging (this process is alive)
    live.mkdir()
    write_textures(root / "few", 3, seed=4, size=64)
    checkpoint = random_checkpoint(root / "ckpt.pt")
    real_replace = os.replace

    def mount_point_replace(src, dst):
        if _inside(dst, out) and not _inside(src, out):
            raise OSError(errno.EXDEV, "Invalid cross-device link", str(src))
        return real_replace(src, dst)

    stderr, stdout = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
        patch.setattr(os, "replace", mount_point_replace)
        int8 = Int8Options(count=8, eval_count=3, sensitivity=False, timing_runs=1, cache_dir=root / "cache")
        export_checkpoint(checkpoint, out, ExportOptions(precisions="fp32,int8", calib_data=root / "few", int8=int8))
    return {"root": root, "out": out, "stderr": stderr.getvalue(), "user": user, "killed": killed,
            "half_written": half_written, "live": live}


def test_reexport_leaves_exactly_the_new_export_and_the_users_files(reexport):
    out = reexport["out"]
    names = sorted(p.name for p in out.iterdir() if p != reexport["live"])
    assert names == sorted(["metadata.json", "model.fp32.onnx", "model.int8.onnx", "report.json",
                            *reexport["user"]])
    for name, text in reexport["user"].items():
        assert (out / name).read_text() == text
    assert json.loads((out / "metadata.json").read_text())["statistics"] == STATISTICS  # the new files


def test_a_killed_exports_leftovers_are_removed_and_a_running_ones_kept(reexport):
    for path in reexport["killed"] + reexport["half_written"]:
        assert not path.exists(), path
    assert reexport["live"].is_dir()
    assert [p.name for p in reexport["out"].glob(".mmad-export-*")] == [reexport["live"].name]


def test_graphs_carry_only_our_metadata_and_agree_with_metadata_json(reexport):
    shared = json.loads((reexport["out"] / "metadata.json").read_text())
    for precision in ("fp32", "int8"):
        graph = onnx.load(str(reexport["out"] / f"model.{precision}.onnx"))
        assert [p.key for p in graph.metadata_props] == [METADATA_KEY]
        embedded = json.loads(graph.metadata_props[0].value)
        assert embedded["precision"] == precision
        assert {k: v for k, v in embedded.items() if k != "precision"} == \
            {k: v for k, v in shared.items() if k != "precision"}


def _paths(node, key=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from _paths(v, key)
    elif isinstance(node, str) and (key == "path" or key.endswith("_file") or key.endswith("_folder")):
        yield node


def test_report_paths_point_at_files_that_exist(reexport):
    out = reexport["out"]
    report = json.loads((out / "report.json").read_text())
    assert report["int8"]["path"] == str(out / "model.int8.onnx")
    named = list(_paths(report))
    assert len(named) >= 3  # the INT8 graph, the calibration cache file and images folder
    for path in named:
        assert Path(path).exists(), path
    assert all((out / name).is_file() for name in report["files"].values())


def test_int8_attempt_counts_agree_with_the_limit(reexport):
    search = json.loads((reexport["out"] / "report.json").read_text())["int8"]["search"]
    assert search["attempts"] <= search["max_attempts"]
    assert (search["attempts"], search["graphs_measured"]) == (0, 1)  # search off: the all-INT8 graph only


def test_calibration_warnings_print_as_one_line_each(reexport):
    err = reexport["stderr"]
    lines = [line for line in err.splitlines() if "3 images found, 8 requested" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: int8 calibration: "), err
    assert "warn_explicit" not in err and "CalibrationWarning" not in err


def _unwritable(monkeypatch, folder: Path) -> None:
    """Make ``folder`` behave as read-only (the tests may run as root, which chmod does not stop)."""
    real_mkdir, real_replace = os.mkdir, os.replace

    def mkdir(path, *args, **kwargs):
        if _inside(path, folder) or os.path.realpath(path) == os.path.realpath(folder):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_mkdir(path, *args, **kwargs)

    def replace(src, dst):
        if _inside(dst, folder):
            raise OSError(errno.EROFS, "Read-only file system", str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "replace", replace)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def _cli(*args: str):
    return CliRunner().invoke(app, list(args))


def _one_line_exit_2(result, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], result.output


def test_read_only_out_fails_at_once_with_one_line_and_nothing_changed(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.fp32.onnx").write_text("earlier export")
    before = _snapshot(out)
    _unwritable(monkeypatch, out)
    monkeypatch.setattr(pipeline, "torch_outputs", lambda *a, **k: pytest.fail("long work before the check"))
    # A missing checkpoint: were it read first, the error would name the checkpoint instead.
    result = _cli("export", str(tmp_path / "missing.pt"), "--out", str(out))
    _one_line_exit_2(result, f"--out {out} is not writable (Read-only file system)")
    assert _snapshot(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_out_that_is_a_file_is_refused_unchanged(tmp_path):
    out = tmp_path / "out"
    out.write_text("a file of the user")
    result = _cli("export", str(tmp_path / "missing.pt"), "--out", str(out))
    _one_line_exit_2(result, f"--out {out} is a file; pass a folder")
    assert out.read_text() == "a file of the user"


def test_cpu_target_with_engine_is_refused_up_front(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.fp32.onnx").write_text("earlier export")
    result = _cli("export", str(tmp_path / "missing.pt"), "--out", str(out), "--precision", "int8",
                  "--calib-data", str(tmp_path), "--target", "cpu", "--engine")
    _one_line_exit_2(result, "use --target tensorrt with --engine")
    assert _snapshot(out) == {"model.fp32.onnx": b"earlier export"}


def test_eval_prints_the_thresholds_an_export_would_carry(tmp_path):
    data = make_demo_dataset(tmp_path / "data", ("brick",), n_train=2, n_test_good=2, n_test_defect=2, size=64)
    statistics = {**STATISTICS, "categories": {"brick": {"threshold": 0.25, "normalization": {"low": 0.1, "high": 0.25}},
                                               "gravel": {"threshold": 0.0625, "normalization": {"low": 0.01, "high": 0.0625}}}}
    checkpoint = random_checkpoint(tmp_path / "ckpt.pt", statistics=statistics)
    result = _cli("eval", str(checkpoint), "--data", str(data), "--category", "brick", "--json", str(tmp_path / "m.json"))
    assert result.exit_code == 0, result.output
    assert "thresholds an export would carry: pooled 0.3, brick 0.25, gravel 0.0625" in result.output.splitlines()
    saved = json.loads((tmp_path / "m.json").read_text())
    assert saved["thresholds"] == {"pooled": 0.3, "categories": {"brick": 0.25, "gravel": 0.0625}}
    from mmad_edge.evaluate import export_thresholds  # here: the module's other tests need no evaluate

    assert export_thresholds(None) is None
