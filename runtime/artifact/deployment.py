"""A deployment folder: versioned copies of exports and a pointer to the one in use.

``promote`` copies an export into ``DEPLOY_DIR/versions/NNNN-<name>/`` and then points
``DEPLOY_DIR/current`` at it; ``rollback`` points it back at the version deployed before. Every
reader of export folders (``Detector.load``, ``run``, ``serve``, ``triton-repo``) follows the
pointer, so the deployment folder stands for the export in use; a running ``run`` also watches it
and swaps in the version it comes to name between two frames (``loop.follow``).

The pointer is a relative symlink, replaced by ``os.replace`` of a fresh temporary link: rename(2)
swaps the link itself in one step on Linux, so a reader (or a kill -9 at any instant) sees the old
target or the new one, never none and never a half one; ``ls -l`` shows it and any tool reading a
folder follows it. A pointer file would need the same rename and a parser in every reader.

A version appears complete or not at all: it is copied to ``versions/.incoming-*`` (each file
fsynced), renamed into place, and only then pointed at. ``history`` (the stack of versions in the
order they became current) is written after the pointer and reconciled with it at each read, the
pointer being the truth: a kill between the two leaves a history one step behind, which the next
read repairs. Leftovers of a killed promote are removed by the next one. ``.lock`` (flock, released
by the kernel when its holder dies) lets one promote or rollback run at a time.

Once the new version is current, promote keeps the ``keep`` newest versions (history from the top,
then versions outside it, newest number first) and prunes the rest: each is renamed to
``versions/.removing-*`` before it is deleted, so a version folder is whole or gone, and what a kill
mid-prune leaves is removed by the next promote. ``keep`` >= 2 spares the current version and the
one rollback returns to. The history is trimmed to the kept entries plus the newest pruned one,
which lets rollback say why it cannot go further.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..backends import REGISTRY
from ..errors import ArtifactError
from .contract import PRECISIONS, artifact_name
from .metadata import load_contract

VERSIONS = "versions"
CURRENT = "current"
HISTORY = "history"
LOCK = ".lock"
INCOMING = ".incoming-"
REMOVING = ".removing-"
KEEP = 5
_TEMP_LINK = ".current.tmp-"
_VERSION = re.compile(r"^(\d{4,})-")


def is_deployment(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a deployment folder (it holds ``versions/``)."""
    return (Path(path) / VERSIONS).is_dir()


def deployment_holding(path: str | os.PathLike[str]) -> Path | None:
    """The deployment folder ``path`` is or lies in (its ``current``, a version or a file of one);
    None for any other path. Versions are immutable: what would change one in place asks this."""
    path = Path(path)
    if is_deployment(path):
        return path
    for parent in path.resolve().parents:
        if parent.name == VERSIONS and is_deployment(parent.parent):
            return parent.parent
    return None


def deployed_folder(path: str | os.PathLike[str]) -> Path:
    """The version folder a deployment folder points at; any other path unchanged. ArtifactError
    for a deployment folder with nothing deployed."""
    path = Path(path)
    if not is_deployment(path):
        return path
    current = current_version(path)
    if current is None:
        raise ArtifactError(f"{path}: a deployment folder with nothing deployed; run mmad-edge promote EXPORT "
                            f"--to {path}")
    return path / VERSIONS / current


def promote(export: str | os.PathLike[str], deploy_dir: str | os.PathLike[str], keep: int = KEEP) -> dict:
    """Copy ``export`` (an export folder, or a deployment folder's current version) into a new
    version of ``deploy_dir`` (created when missing), make it current and prune all but the ``keep``
    newest versions; returns what moved and what was removed."""
    if keep < 2:
        raise ArtifactError(f"--keep {keep}: keep at least 2 versions (the current one and the one rollback "
                            "returns to)")
    source = deployed_folder(export)
    files = _export_files(source)
    deploy_dir = Path(deploy_dir)
    _check_deploy_dir(deploy_dir)
    versions = deploy_dir / VERSIONS
    versions.mkdir(parents=True, exist_ok=True)
    with _locked(deploy_dir):
        _clear_leftovers(deploy_dir)
        name = f"{_next_number(versions):04d}-{_slug(_export_name(export, source))}"
        incoming = versions / f"{INCOMING}{name}"
        shutil.copytree(source, incoming, copy_function=_copy_synced, symlinks=False)
        _fsync_tree(incoming)
        os.rename(incoming, versions / name)
        _fsync(versions)
        history = _history(deploy_dir)
        _point(deploy_dir, name)
        _write_history(deploy_dir, [*history, name])
        removed, freed, history = _prune(deploy_dir, [*history, name], keep)
    size = sum(path.stat().st_size for path in files)
    return {"action": "promote", "deploy_dir": str(deploy_dir), "source": str(source),
            "from": history[-2] if len(history) > 1 else None, "to": name, "version": str(versions / name),
            "files": len(files), "bytes": size, "history": history, "keep": keep, "removed": removed,
            "freed_bytes": freed}


def rollback(deploy_dir: str | os.PathLike[str]) -> dict:
    """Point ``deploy_dir`` back at the version current before this one; returns what moved."""
    deploy_dir = Path(deploy_dir)
    if not is_deployment(deploy_dir):
        raise ArtifactError(f"{deploy_dir}: not a deployment folder (no {VERSIONS}/); run mmad-edge promote EXPORT "
                            f"--to {deploy_dir} first")
    with _locked(deploy_dir):
        _clear_leftovers(deploy_dir)
        history = _history(deploy_dir)
        if not history:
            raise ArtifactError(f"{deploy_dir}: nothing deployed, so nothing to roll back; run mmad-edge promote "
                                f"EXPORT --to {deploy_dir}")
        if len(history) < 2:
            raise ArtifactError(f"{deploy_dir}: nothing to roll back to: {_first_deployed(deploy_dir, history[-1])}")
        if not (deploy_dir / VERSIONS / history[-2]).is_dir():
            raise ArtifactError(f"{deploy_dir}: nothing to roll back to; {history[-2]}, deployed before {history[-1]}, "
                                "was pruned (promote keeps the --keep newest versions)")
        _point(deploy_dir, history[-2])
        _write_history(deploy_dir, history[:-1])
    return {"action": "rollback", "deploy_dir": str(deploy_dir), "from": history[-1], "to": history[-2],
            "version": str(deploy_dir / VERSIONS / history[-2]), "history": history[:-1]}


def summary_line(moved: dict) -> str:
    """One line saying what ``promote`` or ``rollback`` moved."""
    was = moved["from"] or "nothing"
    if moved["action"] == "promote":
        pruned = (f"; pruned {', '.join(moved['removed'])} ({moved['freed_bytes'] / 1e6:.1f} MB freed, "
                  f"--keep {moved['keep']})" if moved["removed"] else "")
        return (f"promoted {moved['source']} to {moved['version']} ({moved['files']} files, "
                f"{moved['bytes'] / 1e6:.1f} MB); {moved['deploy_dir']}/{CURRENT}: {was} -> {moved['to']}{pruned}")
    return f"rolled back {moved['deploy_dir']}/{CURRENT}: {was} -> {moved['to']}"


def _export_files(folder: Path) -> list[Path]:
    """The files of an export folder, checked: at least one model whose metadata reads."""
    if not folder.is_dir():
        raise ArtifactError(f"{folder}: not an export folder; pass the folder mmad-edge export wrote")
    suffixes = {suffix for entry in REGISTRY.values() for suffix in entry.suffixes}
    models = [folder / artifact_name(precision, suffix) for precision in PRECISIONS for suffix in sorted(suffixes)
              if (folder / artifact_name(precision, suffix)).is_file()]
    if not models:
        raise ArtifactError(f"{folder}: not an export (no model.<precision>.onnx or .engine); pass the folder "
                            "mmad-edge export wrote")
    for model in models:
        load_contract(model)  # a model without readable metadata would fail at load time, after the switch
    return [path for path in folder.rglob("*") if path.is_file()]


def _check_deploy_dir(deploy_dir: Path) -> None:
    """A deployment folder, or a new or empty folder to make one (never a folder of other files)."""
    if deploy_dir.exists() and not deploy_dir.is_dir():
        raise ArtifactError(f"{deploy_dir}: not a folder; pass --to a new or empty folder, or a deployment folder")
    if deploy_dir.is_dir() and not is_deployment(deploy_dir) and any(deploy_dir.iterdir()):
        raise ArtifactError(f"{deploy_dir}: holds other files and no {VERSIONS}/; pass --to a new or empty folder, "
                            "or a deployment folder")


@contextmanager
def _locked(deploy_dir: Path) -> Iterator[None]:
    """One promote or rollback at a time on ``deploy_dir`` (a second waits)."""
    with open(deploy_dir / LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _clear_leftovers(deploy_dir: Path) -> None:
    """Remove what a killed promote, prune or rollback left (under the lock, so nobody is writing them)."""
    for prefix in (INCOMING, REMOVING):
        for path in (deploy_dir / VERSIONS).glob(f"{prefix}*"):
            shutil.rmtree(path, ignore_errors=True)
    for path in deploy_dir.glob(f"{_TEMP_LINK}*"):
        path.unlink(missing_ok=True)


def _prune(deploy_dir: Path, history: list[str], keep: int) -> tuple[list[str], int, list[str]]:
    """Delete all but the ``keep`` newest versions (see the module docstring); returns the removed
    names, the bytes they held and the history as written."""
    versions = deploy_dir / VERSIONS
    on_disk = _on_disk(versions)
    ranked = [name for name in reversed(history) if name in on_disk]
    ranked += sorted(on_disk - set(history), key=version_number, reverse=True)
    removed = sorted(ranked[keep:], key=version_number)
    if not removed:
        return [], 0, history
    freed = sum(path.stat().st_size for name in removed for path in (versions / name).rglob("*") if path.is_file())
    for name in removed:
        os.rename(versions / name, versions / f"{REMOVING}{name}")
    _fsync(versions)
    kept = set(ranked[:keep])
    gone = [index for index, name in enumerate(history) if name not in kept]
    history = history[gone[-1]:] if gone else history
    _write_history(deploy_dir, history)
    for name in removed:
        shutil.rmtree(versions / f"{REMOVING}{name}")
    return removed, freed, history


def _on_disk(versions: Path) -> set[str]:
    """The names of the whole version folders in ``versions/``."""
    return {path.name for path in versions.iterdir() if path.is_dir() and _VERSION.match(path.name)}


def _first_deployed(deploy_dir: Path, current: str) -> str:
    """Why rollback stops at ``current``, alone on the history stack: it was the first version made
    current; the newer versions still on disk were promoted after it and rolled back from."""
    later = sorted((name for name in _on_disk(deploy_dir / VERSIONS) if version_number(name) > version_number(current)),
                   key=version_number)
    if not later:
        return f"{current} is the only version deployed so far"
    return (f"{current} was the first version deployed ({', '.join(later)} {'was' if len(later) == 1 else 'were'} "
            "rolled back from)")


def current_version(deploy_dir: str | os.PathLike[str]) -> str | None:
    """The version name ``current`` points at (None: no pointer yet); one readlink, cheap enough to
    poll (``run`` follows the pointer this way)."""
    try:
        return Path(os.readlink(Path(deploy_dir) / CURRENT)).name
    except FileNotFoundError:
        return None


def _history(deploy_dir: Path) -> list[str]:
    """The stack of versions made current, reconciled with the pointer (see the module docstring)."""
    try:
        stack = json.loads((deploy_dir / HISTORY).read_text(encoding="utf-8"))
    except FileNotFoundError:
        stack = []
    current = current_version(deploy_dir)
    if current is None:
        return []
    return stack[: stack.index(current) + 1] if current in stack else [*stack, current]


def _point(deploy_dir: Path, name: str) -> None:
    """Replace the ``current`` link by one to ``versions/NAME`` in one rename."""
    if not (deploy_dir / VERSIONS / name).is_dir():
        raise ArtifactError(f"{deploy_dir}: version {name} is missing from {VERSIONS}/; promote an export again")
    temp = deploy_dir / f"{_TEMP_LINK}{os.getpid()}"
    temp.unlink(missing_ok=True)
    os.symlink(f"{VERSIONS}/{name}", temp)
    os.replace(temp, deploy_dir / CURRENT)
    _fsync(deploy_dir)


def _write_history(deploy_dir: Path, stack: list[str]) -> None:
    temp = deploy_dir / f"{HISTORY}.tmp"
    with open(temp, "w", encoding="utf-8") as handle:
        json.dump(stack, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, deploy_dir / HISTORY)
    _fsync(deploy_dir)


def _next_number(versions: Path) -> int:
    return max((version_number(path.name) for path in versions.iterdir() if _VERSION.match(path.name)), default=0) + 1


def version_number(name: str) -> int:
    """The number of a version folder's name (``0012-export`` -> 12; -1 for a name promote did not give)."""
    match = _VERSION.match(name)
    return int(match.group(1)) if match else -1


def _export_name(given: str | os.PathLike[str], source: Path) -> str:
    """The name a version takes after: the export folder's, or a deployment's current version's without
    its number."""
    name = source.resolve().name
    return _VERSION.sub("", name, count=1) if source != Path(given) else name


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "export"


def _copy_synced(source: str, target: str) -> str:
    """shutil.copy2, then the copy flushed to disk (a renamed-in version must survive a power cut)."""
    shutil.copy2(source, target)
    with open(target, "rb") as handle:
        os.fsync(handle.fileno())
    return target


def _fsync_tree(folder: Path) -> None:
    """fsync every folder of ``folder`` (their entries; the files were synced as they were copied)."""
    for path in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
        _fsync(path)


def _fsync(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
