"""A cache of calibrated activation ranges, so re-exports and the sensitivity search never
re-run calibration for the same model, images and method.

Key: sha256 over the FP32 ONNX bytes, the contents of the chosen images (in path order, so a
copied or moved folder still hits), the count, the method (+ percentile) and the model input
size. Value: JSON ``{tensor: [min, max]}``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmad_edge.fileio import file_sha256, write_bytes_atomic

CACHE_FORMAT = 2
Ranges = dict[str, tuple[float, float]]


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "mmad-edge" / "calib"


def cache_key(model_sha256: str, images: Sequence[Path], settings: dict[str, Any]) -> str:
    """Key of one calibration: the model, the image contents and the calibration settings."""
    files = [file_sha256(path) for path in sorted(Path(p) for p in images)]
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
    """Written atomically, so a crash never leaves half a cache entry."""
    data = {"format": CACHE_FORMAT, "settings": settings, "ranges": {k: [lo, hi] for k, (lo, hi) in ranges.items()}}
    write_bytes_atomic(path, json.dumps(data).encode("utf-8"))
