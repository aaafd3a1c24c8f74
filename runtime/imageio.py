"""Read any image a camera or a dataset produces as uint8 BGR, or fail naming the file."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Union

import cv2
import numpy as np

PathLike = Union[str, "os.PathLike[str]"]
_quiet_lock = threading.Lock()
_quiet_depth = 0
_saved_level = 0
# OpenCV's log level API: cv2.utils.logging in 4.12+, only cv2.get/setLogLevel in 4.11 and
# older (the `serve` extra keeps OpenCV below 4.12). 0 is LOG_LEVEL_SILENT in both.
LOG_LEVEL_SILENT = 0
_log_api = getattr(cv2.utils, "logging", cv2)
_get_log_level, _set_log_level = _log_api.getLogLevel, _log_api.setLogLevel


class ImageReadError(ValueError):
    """An image file that is missing, unreadable or not an image."""


def to_bgr_uint8(image: np.ndarray, source: str = "frame") -> np.ndarray:
    """Convert grayscale, BGRA and 16-bit/float images to H x W x 3 uint8 BGR."""
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ImageReadError(f"{source}: expected an H x W, H x W x 1, x3 or x4 image, got shape {image.shape}")
    if image.dtype == np.uint16:
        image = (image.astype(np.uint32) * 255 + 32767) // 65535
        image = image.astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        scale = 255.0 if float(np.nanmax(image)) <= 1.0 else 1.0
        image = np.clip(np.nan_to_num(image) * scale + 0.5, 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageReadError(f"{source}: unsupported pixel type {image.dtype}; save it as 8- or 16-bit")
    channels = image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(image)


@contextmanager
def opencv_quiet() -> Iterator[None]:
    """Silence OpenCV's own log while we decode files or open captures: it prints its internal
    WARN/ERROR lines for every corrupt file and every failed camera open, and we already say
    what failed in one line. Nested and concurrent uses restore the level once, at the end."""
    global _quiet_depth, _saved_level
    with _quiet_lock:
        if _quiet_depth == 0:
            _saved_level = _get_log_level()
            _set_log_level(LOG_LEVEL_SILENT)
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                _set_log_level(_saved_level)


def _decode(path: PathLike, what: str, fix: str) -> tuple[str, np.ndarray]:
    """The file decoded as stored (any depth and channel count), or a one-line error."""
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise ImageReadError(f"{name}: no such {what} file; {fix}")
    data = np.fromfile(name, dtype=np.uint8)
    with opencv_quiet():
        decoded = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if decoded is None:
        raise ImageReadError(f"{name}: cannot decode {what} (corrupt or not an image); replace or remove the file")
    return name, decoded


def read_image(path: PathLike) -> np.ndarray:
    """Read an image file as H x W x 3 uint8 BGR (grayscale, RGBA and 16-bit converted)."""
    name, image = _decode(path, "image", "check the path")
    return to_bgr_uint8(image, name)


def read_mask(path: PathLike) -> np.ndarray:
    """Read a ground-truth mask as H x W bool (any non-zero pixel is defect)."""
    _, mask = _decode(path, "mask", "check the ground_truth folder")
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    return mask > 0
