"""The one resize every stage uses (training, calibration, runtime) so all see the same pixels."""

from __future__ import annotations

import cv2
import numpy as np


def resize_frame(frame: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize an H x W x C uint8 frame to ``size`` (int: square; tuple: (height, width)).

    INTER_AREA when shrinking (no aliasing), INTER_LINEAR when enlarging. A frame already at
    the size is returned as is.
    """
    height, width = (size, size) if isinstance(size, int) else size
    if frame.shape[0] == height and frame.shape[1] == width:
        return frame
    shrinking = frame.shape[0] * frame.shape[1] > height * width
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(frame, (width, height), interpolation=interpolation)


def resize_mask(mask: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize a bool mask with nearest neighbour (labels must not blend)."""
    height, width = (size, size) if isinstance(size, int) else size
    if mask.shape[0] == height and mask.shape[1] == width:
        return mask
    resized = cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    return resized > 0
