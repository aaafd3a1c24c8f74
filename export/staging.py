"""The export folder: staged on its own filesystem, owned files replaced as one set, leftovers cleared.

An export owns ``model.*``, ``metadata.json`` and ``report.*`` in its folder; every other file
there is the user's and stays. The staging folder lives inside the export folder, so the final
moves are renames on one filesystem (a folder on another disk or a mount point works) and the
first write happens before any long work (a read-only or missing destination fails at once).
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mmad_edge.export.onnx_export import ExportError
from mmad_edge.fileio import removed_if_left_empty
from mmad_edge.runtime.artifact.contract import METADATA_FILE, REPORT_FILE

OWNED = ("model.*", METADATA_FILE, "report.*")
LAST = REPORT_FILE  # moved in last: its presence means the rest of the set is there
STAGING_PREFIX = ".mmad-export-"
OLD_STAGING = ".{name}.export-*"  # staging folders of earlier versions, beside the export folder


def owns(name: str) -> bool:
    """Whether an export writes (and so may replace or remove) a file of this name."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in OWNED)


@contextlib.contextmanager
def staged(out_dir: Path) -> Iterator[Path]:
    """A fresh staging folder inside ``out_dir`` (created if missing), removed on exit; a
    folder this call created is removed again when it is still empty (a failed first export)."""
    with removed_if_left_empty(out_dir):
        staging = _open(out_dir)
        try:
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _open(out_dir: Path) -> Path:
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"--out {out_dir} is a file; pass a folder (it is created if missing)")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        remove_leftovers(out_dir)
        return Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=out_dir))
    except OSError as exc:
        raise ExportError(f"--out {out_dir} is not writable ({exc.strerror or exc}); "
                          "choose a writable folder or fix its permissions") from None


def remove_leftovers(out_dir: Path) -> list[Path]:
    """Delete what a killed export left: staging folders of processes no longer running and
    half-written ``.tmp`` copies of the files an export owns. Returns what was removed."""
    removed = []
    stale = [p for p in out_dir.glob(f"{STAGING_PREFIX}*") if p.is_dir() and not _running(p.name)]
    stale += [p for p in out_dir.parent.glob(OLD_STAGING.format(name=out_dir.name)) if p.is_dir()]
    for folder in stale:
        shutil.rmtree(folder)
        removed.append(folder)
    for temp in out_dir.glob(".*.tmp"):  # fileio's atomic writes: .<name>.<random>.tmp
        if temp.is_file() and owns(temp.name[1:-len(".tmp")].rsplit(".", 1)[0]):
            temp.unlink()
            removed.append(temp)
    return removed


def _running(staging_name: str) -> bool:
    """Whether the process whose id is in a staging folder's name is alive (its export may be too)."""
    pid = staging_name[len(STAGING_PREFIX):].split("-", 1)[0]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True


def place(staging: Path, out_dir: Path) -> list[str]:
    """Make the staged files the folder's whole export: the old report goes first (so no report
    vouches for a half-replaced set), then the new files, then the old owned files the new
    export does not have (e.g. ``model.int8.*`` of an earlier run), the new report last."""
    new = sorted(p.name for p in staging.iterdir())
    (out_dir / LAST).unlink(missing_ok=True)
    for name in new:
        if name != LAST:
            os.replace(staging / name, out_dir / name)
    for old in out_dir.iterdir():
        if old.is_file() and owns(old.name) and old.name not in new:
            old.unlink()
    if LAST in new:
        os.replace(staging / LAST, out_dir / LAST)
    return new
