"""Activation ranges of the FP32 graph over the calibration images (ONNX Runtime's
calibrators), looked up in the cache first."""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from onnxruntime.quantization import CalibrationMethod, create_calibrator

from mmad_edge.calib.cache import Ranges, cache_key, cache_path, load_ranges, save_ranges
from mmad_edge.calib.reader import CalibrationDataError, FrameReader, load_frames

METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
# Histogram calibrators keep every intermediate tensor of a collect_data call in memory, so
# images are fed in chunks (of about this many, a multiple of the graph's fixed batch); ranges
# and histograms merge across calls.
CHUNK = 8


@dataclass(frozen=True)
class CalibrationSettings:
    """What determines the ranges (and so the cache key), besides the model and the images."""

    method: str = "minmax"
    count: int = 200
    seed: int = 0
    percentile: float = 99.999
    image_size: int = 256
    op_types: tuple[str, ...] = ("Conv", "ConvTranspose")

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise CalibrationDataError(
                f"unknown calibration method {self.method!r}; choose one of {', '.join(METHODS)}"
            )
        if not 0.0 < self.percentile <= 100.0:
            raise CalibrationDataError(f"percentile must be in (0, 100], got {self.percentile}")

    def key_fields(self) -> dict[str, Any]:
        fields = {"method": self.method, "count": self.count, "image_size": self.image_size,
                  "op_types": sorted(self.op_types)}
        if self.method == "percentile":
            fields["percentile"] = self.percentile
        return fields


def collect_ranges(fp32_onnx: Path, frames: np.ndarray, settings: CalibrationSettings, batch: int) -> Ranges:
    """Run ONNX Runtime's calibrator for ``settings.method`` and return ``{tensor: (min, max)}``;
    ``batch``: the graph's fixed batch (1 for a dynamic one)."""
    chunk = batch * max(1, CHUNK // batch)
    options = {"percentile": settings.percentile} if settings.method == "percentile" else {}
    with tempfile.TemporaryDirectory(prefix="mmad-calib-") as tmp:
        calibrator = create_calibrator(
            Path(fp32_onnx),
            list(settings.op_types),
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=METHODS[settings.method],
            extra_options=options,
        )
        with contextlib.redirect_stdout(sys.stderr):  # ORT prints progress; stdout may carry JSON
            for start in range(0, len(frames), chunk):
                calibrator.collect_data(FrameReader(frames[start : start + chunk], batch))
            data = calibrator.compute_data()
        del calibrator  # its session holds the augmented model file open
    return {name: (_scalar(td.range_value[0]), _scalar(td.range_value[1])) for name, td in data.items()}


def _scalar(value: object) -> float:
    """ORT stores ranges as numpy scalars or 1-element arrays, depending on the method."""
    return float(np.asarray(value).reshape(-1)[0])


@dataclass(frozen=True)
class CalibrationRun:
    """Ranges plus how they were obtained (for the report)."""

    ranges: Ranges
    cache_hit: bool
    cache_file: Path
    images: tuple[Path, ...]


def calibrated_ranges(
    fp32_onnx: Path,
    model_sha256: str,
    images: Sequence[Path],
    folder: Path,
    settings: CalibrationSettings,
    cache_dir: Path,
    batch: int,
) -> CalibrationRun:
    """Cached ranges for these exact inputs, else calibrate (and cache) them; ``batch``: the
    graph's fixed batch (1 for a dynamic one; part of the model, so of its key too)."""
    key = cache_key(model_sha256, images, settings.key_fields())
    path = cache_path(cache_dir, key)
    cached = load_ranges(path)
    if cached is not None:
        return CalibrationRun(cached, True, path, tuple(images))
    used, frames = load_frames(images, settings.image_size, folder)
    ranges = collect_ranges(fp32_onnx, frames, settings, batch)
    save_ranges(path, ranges, {**settings.key_fields(), "seed": settings.seed, "images": len(used)})
    return CalibrationRun(ranges, False, path, tuple(used))
