"""A cache of calibrated activation ranges, so re-exports and the sensitivity search never
re-run calibration for the same model, images and method.

Key: sha256 over the FP32 ONNX bytes, the sorted image list (path, size, mtime), the count,
the method (+ percentile) and the model input size. Value: JSON ``{tensor: [min, max]}``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

CACHE_FORMAT = 1
Ranges = dict[str, tuple[float, float]]


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "mmad-edge" / "calib"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_key(model_sha256: str, images: Sequence[Path], settings: dict[str, Any]) -> str:
    """Key of one calibration: the model, the exact image files and the calibration settings."""
    files = []
    for path in sorted(Path(p) for p in images):
        stat = path.stat()
        files.append([str(path.resolve()), stat.st_size, stat.st_mtime_ns])
    payload = {"format": CACHE_FORMAT, "model": model_sha256, "images": files, "settings": settings}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def cache_path(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / f"{key}.json"


def load_ranges(path: Path) -> Ranges | None:
    """The cached ranges, or None when absent or unusable (a broken file is recalibrated)."""
    try:
        data = json.loads(Path(path).read_text())
        if data.get("format") != CACHE_FORMAT:
            return None
        return {name: (float(lo), float(hi)) for name, (lo, hi) in data["ranges"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_ranges(path: Path, ranges: Ranges, settings: dict[str, Any]) -> None:
    """Write atomically (temp file + rename) so a crash never leaves half a cache entry."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": CACHE_FORMAT, "settings": settings, "ranges": {k: [lo, hi] for k, (lo, hi) in ranges.items()}}
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        staging.write_text(json.dumps(data))
        os.replace(staging, path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
