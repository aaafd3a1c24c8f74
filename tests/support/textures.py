"""Calibration and evaluation images without a dataset: smooth random colour textures."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def write_textures(folder: Path, count: int, seed: int, size: int = 80) -> None:
    """Smooth random colour textures (bicubic-upsampled noise), as PNGs."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        coarse = rng.normal(128, 45, (6, 6, 3)).astype(np.float32)
        image = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC) + rng.normal(0, 5, (size, size, 3))
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.clip(image, 0, 255).astype(np.uint8))
