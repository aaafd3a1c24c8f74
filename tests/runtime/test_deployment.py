"""`mmad-edge promote` / `rollback`: versioned folders, an atomic `current` link, readers that follow it,
one-line errors, and a deployment that survives kill -9 at any point of a promote."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from runtime_fixtures import write_export_dir
from typer.testing import CliRunner

from mmad_edge.cli import app
from mmad_edge.runtime import Detector
from mmad_edge.runtime.artifact.deployment import (
    CURRENT,
    HISTORY,
    INCOMING,
    REMOVING,
    VERSIONS,
    promote,
    rollback,
)
from mmad_edge.runtime.errors import ArtifactError

SIZE = 32


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("deploy")
    return {name: write_export_dir(root / name, SIZE, threshold=threshold, low=0.3)
            for name, threshold in (("first", 0.6), ("second", 0.45), ("third", 0.5))}


def cli(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def contents(folder: Path) -> dict:
    """Every file under ``folder`` (relative path -> sha256), the way a reader would see it."""
    return {path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def test_promote_and_rollback_move_the_pointer_and_readers_follow(exports, tmp_path):
    deploy = tmp_path / "deploy"
    result = cli("promote", str(exports["first"]), "--to", str(deploy))
    assert result.exit_code == 0, result.output
    assert result.output == (f"promoted {exports['first']} to {deploy}/versions/0001-first (2 files, "
                             f"{sum(p.stat().st_size for p in exports['first'].iterdir()) / 1e6:.1f} MB); "
                             f"{deploy}/current: nothing -> 0001-first\n")
    result = cli("promote", str(exports["second"]), "--to", str(deploy), "--json", str(tmp_path / "p.json"))
    assert result.exit_code == 0, result.output
    moved = json.loads((tmp_path / "p.json").read_text())
    assert (moved["from"], moved["to"], moved["history"]) == ("0001-first", "0002-second", ["0001-first", "0002-second"])
    assert os.readlink(deploy / CURRENT) == "versions/0002-second"  # relative: the folder can move
    assert contents(deploy / VERSIONS / "0002-second") == contents(exports["second"])
    with Detector.load(deploy) as detector:
        assert detector.threshold == 0.45 and Path(detector.backend.path).parent == deploy / VERSIONS / "0002-second"
    result = cli("rollback", str(deploy), "--json", str(tmp_path / "r.json"))
    assert result.exit_code == 0 and result.stdout == f"rolled back {deploy}/current: 0002-second -> 0001-first\n"
    assert json.loads((tmp_path / "r.json").read_text())["history"] == ["0001-first"]
    with Detector.load(deploy) as detector:
        assert detector.threshold == 0.6
    moved = promote(exports["third"], deploy)  # numbers keep counting: the rolled-back version stays on disk
    assert (moved["from"], moved["to"], moved["history"]) == ("0001-first", "0003-third", ["0001-first", "0003-third"])
    assert sorted(p.name for p in (deploy / VERSIONS).iterdir()) == ["0001-first", "0002-second", "0003-third"]
    (exports["third"] / "metadata.json").write_text("{}")  # the source changing later leaves the version alone
    write_export_dir(exports["third"], SIZE, threshold=0.5, low=0.3)
    assert rollback(deploy)["to"] == "0001-first"
    with pytest.raises(ArtifactError) as first:
        rollback(deploy)
    assert str(first.value) == (f"{deploy}: nothing to roll back to: 0001-first was the first version deployed "
                                "(0002-second, 0003-third were rolled back from)")
    shutil.rmtree(deploy / VERSIONS / "0003-third")
    with pytest.raises(ArtifactError, match=r"^\S+: nothing to roll back to: 0001-first was the first version "
                                            r"deployed \(0002-second was rolled back from\)$"):
        rollback(deploy)


def test_promoting_a_deployment_copies_its_current_version(exports, tmp_path):
    promote(exports["first"], tmp_path / "staging")
    moved = promote(tmp_path / "staging", tmp_path / "line")
    assert moved["to"] == "0001-first" and contents(tmp_path / "line" / CURRENT) == contents(exports["first"])


def test_the_history_is_repaired_from_the_pointer_after_a_kill_between_them(exports, tmp_path):
    deploy = tmp_path / "deploy"
    for name in ("first", "second", "third"):
        promote(exports[name], deploy)
    (deploy / HISTORY).write_text(json.dumps(["0001-first", "0002-second"]))  # killed after the switch to 0003
    assert rollback(deploy)["to"] == "0002-second"
    (deploy / HISTORY).write_text(json.dumps(["0001-first", "0002-second"]))  # a rollback killed after its switch
    os.replace(deploy / CURRENT, deploy / "kept")
    os.symlink("versions/0001-first", deploy / CURRENT)
    with pytest.raises(ArtifactError, match="nothing to roll back to"):
        rollback(deploy)


@pytest.mark.parametrize("args, message", [
    (["promote", "{tmp}/none", "--to", "{tmp}/d"], "{tmp}/none: not an export folder; pass the folder mmad-edge export "
                                                   "wrote"),
    (["promote", "{tmp}/empty", "--to", "{tmp}/d"], "{tmp}/empty: not an export (no model.<precision>.onnx or .engine);"
                                                    " pass the folder mmad-edge export wrote"),
    (["promote", "{tmp}/broken", "--to", "{tmp}/d"], "{tmp}/broken/model.fp32.onnx: not a loadable ONNX model"),
    (["promote", "{first}", "--to", "{tmp}/empty/notes.txt"], "{tmp}/empty/notes.txt: not a folder; pass --to a new "
                                                              "or empty folder, or a deployment folder"),
    (["promote", "{first}", "--to", "{tmp}/empty"], "{tmp}/empty: holds other files and no versions/; pass --to a new "
                                                    "or empty folder, or a deployment folder"),
    (["promote", "{first}", "--to", "{tmp}/d", "--keep", "1"], "--keep 1: keep at least 2 versions (the current one "
                                                                "and the one rollback returns to)"),
    (["rollback", "{tmp}/empty"], "{tmp}/empty: not a deployment folder (no versions/); run mmad-edge promote EXPORT "
                                  "--to {tmp}/empty first"),
    (["rollback", "{tmp}/fresh"], "{tmp}/fresh: nothing deployed, so nothing to roll back; run mmad-edge promote "
                                  "EXPORT --to {tmp}/fresh"),
    (["rollback", "{tmp}/single"], "{tmp}/single: nothing to roll back to: 0001-first is the only version deployed "
                                   "so far"),
    (["run", "{tmp}/fresh", "--source", "{tmp}/empty"], "{tmp}/fresh: a deployment folder with nothing deployed; run "
                                                         "mmad-edge promote EXPORT --to {tmp}/fresh"),
])
def test_errors_are_one_line(exports, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not a model")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model.fp32.onnx").write_text("not a protobuf")
    (tmp_path / "fresh" / VERSIONS).mkdir(parents=True)
    promote(exports["first"], tmp_path / "single")
    values = {"tmp": str(tmp_path), "first": str(exports["first"])}
    result = cli(*[arg.format(**values) for arg in args])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {message.format(**values)}") and result.output.count("\n") == 1
    assert not (tmp_path / "d").exists()


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def test_promote_keeps_the_newest_versions_and_rollback_walks_back_through_them(tmp_path):
    """7 promotes with --keep 3 (each export a different size): the 3 newest versions remain, the bytes
    freed are those of the folders removed, and rollback goes back 2 steps, then stops with one line."""
    deploy, sizes, removed, freed = tmp_path / "deploy", {}, [], 0
    for index in range(1, 8):
        export = write_export_dir(tmp_path / f"v{index}", SIZE, threshold=(40 + index) / 100, low=0.3)
        (export / "notes.bin").write_bytes(bytes(100_000 * index))
        moved = promote(export, deploy, keep=3) if index < 7 else None
        if moved is None:
            result = cli("promote", str(export), "--to", str(deploy), "--keep", "3", "--json", str(tmp_path / "p.json"))
            assert result.exit_code == 0, result.output
            moved = json.loads((tmp_path / "p.json").read_text())
            assert result.stdout.endswith(f"0006-v6 -> 0007-v7; pruned 0004-v4 ({sizes['0004-v4'] / 1e6:.1f} MB freed, "
                                          "--keep 3)\n")
        sizes[moved["to"]] = folder_bytes(deploy / VERSIONS / moved["to"])
        assert moved["removed"] == ([] if index <= 3 else [f"{index - 3:04d}-v{index - 3}"]), index
        removed += moved["removed"]
        freed += moved["freed_bytes"]
    assert len(set(sizes.values())) == 7 and freed == sum(sizes[name] for name in removed) > 0
    assert removed == ["0001-v1", "0002-v2", "0003-v3", "0004-v4"]
    assert sorted(p.name for p in (deploy / VERSIONS).iterdir()) == ["0005-v5", "0006-v6", "0007-v7"]
    assert os.readlink(deploy / CURRENT) == "versions/0007-v7" and moved["from"] == "0006-v6"
    assert moved["history"] == ["0004-v4", "0005-v5", "0006-v6", "0007-v7"]  # the newest pruned entry stays, to name
    assert [rollback(deploy)["to"] for _ in range(2)] == ["0006-v6", "0005-v5"]
    with Detector.load(deploy) as detector:
        assert detector.threshold == 0.45
    result = cli("rollback", str(deploy))
    assert result.exit_code == 2 and result.output == (
        f"error: {deploy}: nothing to roll back to; 0004-v4, deployed before 0005-v5, was pruned (promote keeps the "
        "--keep newest versions)\n")
    assert os.readlink(deploy / CURRENT) == "versions/0005-v5"


def test_versions_outside_the_history_are_pruned_first(exports, tmp_path):
    deploy = tmp_path / "deploy"
    for name in ("first", "second", "third"):
        promote(exports[name], deploy)
    rollback(deploy)
    rollback(deploy)  # 0002 and 0003 are on disk but no rollback reaches them
    moved = promote(exports["second"], deploy, keep=3)
    assert (moved["removed"], moved["history"]) == (["0002-second"], ["0001-first", "0004-second"])
    assert sorted(p.name for p in (deploy / VERSIONS).iterdir()) == ["0001-first", "0003-third", "0004-second"]
    assert rollback(deploy)["to"] == "0001-first"


def test_a_prune_killed_midway_is_finished_by_the_next_promote(exports, tmp_path):
    deploy = tmp_path / "deploy"
    for name in ("first", "second", "third"):
        promote(exports[name], deploy)
    half = deploy / VERSIONS / f"{REMOVING}0001-first"  # killed after its rename, during the rmtree
    os.rename(deploy / VERSIONS / "0001-first", half)
    (half / "metadata.json").unlink()
    moved = promote(exports["first"], deploy, keep=3)
    assert not half.exists() and (moved["removed"], moved["freed_bytes"]) == ([], 0)
    assert sorted(p.name for p in (deploy / VERSIONS).iterdir()) == ["0002-second", "0003-third", "0004-first"]
    assert [rollback(deploy)["to"] for _ in range(2)] == ["0003-third", "0002-second"]
    with pytest.raises(ArtifactError, match="0001-first, deployed before 0002-second, was pruned"):
        rollback(deploy)


PROMOTE = "import sys; from mmad_edge.runtime.artifact.deployment import promote; promote(sys.argv[1], sys.argv[2])"


def test_kill_9_at_random_points_of_a_promote_leaves_a_complete_version_current(exports, tmp_path):
    """A promote of a 200-file export (the copy takes most of a second) killed with SIGKILL 10 times:
    at a random time from its start, or at a random time in the first half of its copy. After each
    kill the pointer names a complete version (the old one, or the new one in full; the old one while
    a half-copied incoming folder is left), and a rollback and a later promote work."""
    rng = random.Random(28)
    big = write_export_dir(tmp_path / "big", SIZE, threshold=0.45, low=0.3)
    (big / "blobs").mkdir()
    for index in range(200):
        (big / "blobs" / f"{index:03d}.bin").write_bytes(rng.randbytes(64 << 10))
    expected = {"first": contents(exports["first"]), "big": contents(big)}
    deploy = tmp_path / "deploy"
    promote(exports["first"], deploy)
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", PROMOTE, str(big), str(deploy)])
    assert _wait_for_copy(process)
    copying = time.perf_counter()
    assert process.wait() == 0
    duration, copy_s = time.perf_counter() - started, time.perf_counter() - copying
    outcomes = {"old": 0, "new": 0, "mid-copy": 0}
    for attempt in range(10):
        before = os.readlink(deploy / CURRENT)
        process = subprocess.Popen([sys.executable, "-c", PROMOTE, str(big), str(deploy)])
        if attempt % 2 and _wait_for_copy(process):
            time.sleep(rng.uniform(0, copy_s / 2))
        else:
            time.sleep(rng.uniform(0, duration))
        process.send_signal(signal.SIGKILL)
        process.wait()
        current = os.readlink(deploy / CURRENT)
        assert current.startswith(f"{VERSIONS}/0") and (deploy / current).is_dir()
        assert contents(deploy / current) in expected.values(), f"attempt {attempt}: {current} is incomplete"
        outcomes["old" if current == before else "new"] += 1
        if list((deploy / VERSIONS).glob(f"{INCOMING}*")):  # killed before the rename: the copy was cut short
            assert current == before, f"attempt {attempt}: {current} made current before its copy was complete"
            outcomes["mid-copy"] += 1
        if len(json.loads((deploy / HISTORY).read_text())) > 1 and attempt % 3 == 0:
            assert contents(deploy / VERSIONS / rollback(deploy)["to"]) in expected.values()
    assert outcomes["old"] and outcomes["mid-copy"], outcomes  # kills did land before the switch, some in the copy
    moved = promote(exports["first"], deploy)
    assert contents(deploy / CURRENT) == expected["first"] and not list((deploy / VERSIONS).glob(f"{INCOMING}*"))
    assert rollback(deploy)["to"] == moved["history"][-2]
    assert contents(deploy / CURRENT) in expected.values()
    with Detector.load(deploy) as detector:
        assert detector.threshold in (0.6, 0.45)


def _wait_for_copy(process: subprocess.Popen, timeout_s: float = 10.0) -> bool:
    """Wait until the promote is copying (it holds a file of its incoming folder open, as /proc shows);
    False if it never did (it ended first)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            links = [os.readlink(f"/proc/{process.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{process.pid}/fd")]
        except OSError:  # a descriptor closed while listing
            links = []
        if any(f"/{INCOMING}" in link for link in links):
            return True
        time.sleep(0.001)
    return False
