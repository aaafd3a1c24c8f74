"""Calibration images: pick them from a folder and feed them to ONNX Runtime exactly as the
runtime would (``read_image`` + ``resize_frame``, uint8 BGR NHWC batches named ``image``).

Calibration on other pixels than the deployed detector sees would calibrate another model.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from mmad_edge.data.records import list_images
from mmad_edge.runtime.artifact.contract import INPUT_NAME
from mmad_edge.runtime.backends.onnxruntime import padded_batches
from mmad_edge.runtime.imageio import ImageReadError, read_image
from mmad_edge.runtime.loop.sources import IMAGE_EXTENSIONS
from mmad_edge.runtime.preprocess import resize_frame


class CalibrationDataError(ValueError):
    """A calibration or evaluation folder that cannot be used (message names the fix)."""


class CalibrationWarning(UserWarning):
    """Calibration went ahead with less than was asked for (fewer or unreadable images)."""


def find_images(folder: Path) -> list[Path]:
    """All images under ``folder`` (recursive, sorted), or a one-line error naming the fix."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationDataError(
            f"{folder}: calibration folder not found; pass a folder of normal (defect-free) images"
        )
    images = list_images(folder, recursive=True)
    if not images:
        raise CalibrationDataError(
            f"{folder}: no images found ({', '.join(IMAGE_EXTENSIONS)}); "
            "put a few hundred normal images there (e.g. the training set's train/good)"
        )
    return images


def select_images(images: Sequence[Path], count: int, seed: int, folder: Path) -> list[Path]:
    """``count`` images drawn at random (seeded), in sorted order; all of them, with a warning,
    when the folder holds fewer."""
    if count < 1:
        raise CalibrationDataError(f"calibration count must be at least 1, got {count}")
    if len(images) < count:
        warnings.warn(
            f"{folder}: {len(images)} images found, {count} requested; calibrating on all {len(images)}",
            CalibrationWarning,
            stacklevel=2,
        )
    return seeded_pick(images, count, seed)


def seeded_pick(items: Sequence[Path], count: int, seed: int) -> list[Path]:
    """``count`` of ``items`` drawn at random (seeded), in sorted order; all of them when fewer."""
    if len(items) <= count:
        return sorted(items)
    chosen = np.random.default_rng(seed).choice(len(items), size=count, replace=False)
    return sorted(items[i] for i in chosen)


def load_frames(paths: Sequence[Path], size: int, folder: Path) -> tuple[list[Path], np.ndarray]:
    """Read and resize every image; unreadable ones are skipped with one warning naming them."""
    kept: list[Path] = []
    frames: list[np.ndarray] = []
    skipped: list[str] = []
    for path in paths:
        try:
            frames.append(resize_frame(read_image(path), size))
        except ImageReadError:
            skipped.append(str(path))
            continue
        kept.append(path)
    if not frames:
        raise CalibrationDataError(
            f"{folder}: none of the {len(paths)} images could be read; replace them with PNG/JPEG images"
        )
    if skipped:
        warnings.warn(
            f"skipped {len(skipped)} unreadable image(s): {', '.join(skipped)}", CalibrationWarning, stacklevel=2
        )
    return kept, np.stack(frames)


class FrameReader(CalibrationDataReader):
    """Feeds uint8 BGR NHWC frames to an ONNX Runtime calibrator in batches of ``batch`` (the
    graph's fixed batch, or 1). The last batch is padded by repeating its final frame, which
    then counts a few times more in histogram calibration; min/max ranges are unaffected."""

    def __init__(self, frames: np.ndarray, batch: int = 1) -> None:
        self._batches: Iterator[tuple[np.ndarray, int]] = padded_batches(frames, batch, pad=True)

    def get_next(self) -> dict[str, np.ndarray] | None:
        chunk = next(self._batches, None)
        return None if chunk is None else {INPUT_NAME: chunk[0]}
