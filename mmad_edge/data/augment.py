"""Training augmentation of the AeBAD recipe on uint8 frames: random resized crop + h-flip."""

from __future__ import annotations

import math

import numpy as np

from mmad_edge.runtime.preprocess import resize_frame, resize_mask

CROP_SCALE = (0.7, 1.0)
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)


def crop_box(height: int, width: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(top, left, h, w) covering 70-100 % of the area at an aspect ratio of 3/4 to 4/3."""
    area = height * width
    for _ in range(10):
        target = area * rng.uniform(*CROP_SCALE)
        ratio = math.exp(rng.uniform(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])))
        w = int(round(math.sqrt(target * ratio)))
        h = int(round(math.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    return 0, 0, height, width


def augment_pair(
    image: np.ndarray, mask: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Crop one random box of the full-resolution frame and its mask, resize to ``size``, flip half the time."""
    top, left, h, w = crop_box(image.shape[0], image.shape[1], rng)
    box = (slice(top, top + h), slice(left, left + w))
    out_image = resize_frame(np.ascontiguousarray(image[box]), size)
    out_mask = resize_mask(np.ascontiguousarray(mask[box]), size)
    if rng.random() < 0.5:
        out_image, out_mask = out_image[:, ::-1], out_mask[:, ::-1]
    return np.ascontiguousarray(out_image), np.ascontiguousarray(out_mask)
