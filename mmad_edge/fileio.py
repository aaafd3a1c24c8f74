"""Whole-file writes and file hashes shared by training, export, calibration and the bench.

Pure Python (no torch, no onnx): the engine builder on a Jetson imports it with nothing but
TensorRT installed. Temporary files are staged beside their destination (same filesystem, so the
final rename is atomic) and named ``.<name>.<random>.tmp`` so a later run can clear a killed
run's leftovers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


class WriteError(OSError):
    """A destination that cannot take a file (read-only, no permission, disk full); one-line message."""


def file_sha256(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks so multi-GB checkpoints need no memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def current_umask() -> int:
    """The process umask; read from /proc where possible because os.umask can only set it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def staging_prefix(path: Path) -> str:
    return f".{path.name}."


@contextmanager
def staged_write(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """A binary handle on a temp file beside ``path``; on success it is flushed to disk, given the
    mode a plain ``open`` would (0666 minus the umask; temp files start at 0600) and renamed over
    ``path``. On any error the temp file is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=staging_prefix(path), suffix=".tmp", delete=False)
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(handle.name, 0o666 & ~current_umask())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes | bytearray | memoryview) -> None:
    """Write a file through a temp file in the same folder + rename: readers never see half a file."""
    with staged_write(path) as handle:
        handle.write(data)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write JSON (2-space indent, trailing newline) atomically; paths and other values JSON
    lacks are written as their text."""
    write_bytes_atomic(path, (json.dumps(obj, indent=2, default=str) + "\n").encode("utf-8"))


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """``write_json_atomic`` into a folder made if missing (reports and summaries); the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, obj)
    return path


def remove_staging_leftovers(path: str | os.PathLike[str]) -> list[Path]:
    """Delete the temp files a killed writer of ``path`` left beside it; returns what was removed."""
    path = Path(path)
    removed = []
    for leftover in sorted(path.parent.glob(f"{staging_prefix(path)}*.tmp")):
        leftover.unlink(missing_ok=True)
        removed.append(leftover)
    return removed


@contextmanager
def removed_if_left_empty(folder: str | os.PathLike[str]) -> Iterator[None]:
    """Run a block that may create ``folder``; if it did and the block then fails with the folder
    still empty, remove the folder again, so a run that stops on bad input leaves no trace."""
    folder = Path(folder)
    created = not folder.exists()
    try:
        yield
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only succeeds when nothing was written there
        raise


def ensure_writable_folder(folder: str | os.PathLike[str], what: str) -> Path:
    """Create ``folder`` and create (and drop) an unnamed file in it, so a read-only, foreign or
    unwritable destination fails at the start instead of after the work is done."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise WriteError(f"{what} {folder}: cannot write there ({exc.strerror or exc}); "
                         "pass a folder you can write to") from exc
    return folder
