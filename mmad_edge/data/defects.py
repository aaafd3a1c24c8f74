"""Synthetic surface defects with exact masks, for the demo dataset.

Every defect changes pixels only inside its mask, at a random size, place and contrast:
scratches (polylines of exposed base material), stains (soft ellipses of shifted colour),
holes (dark, almost flat irregular blobs) and cut-and-paste patches (a magnified, rotated disc
of foreign texture). Each is drawn to stay visible at half the generated resolution.
"""

from __future__ import annotations

import cv2
import numpy as np

DEFECT_KINDS = ("scratch", "stain", "hole", "patch")


def _centre(size: int, rng: np.random.Generator) -> tuple[int, int]:
    x, y = rng.uniform(0.2, 0.8, 2) * size
    return int(x), int(y)


def _shift(image: np.ndarray, mask: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Add ``delta`` (per pixel and/or channel) inside ``mask`` only."""
    out = image.copy()
    moved = np.clip(np.rint(image.astype(np.float32) + delta), 0, 255).astype(np.uint8)
    out[mask] = moved[mask]
    return out


def scratch(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    size = image.shape[0]
    points = [np.array(_centre(size, rng), dtype=np.float64)]
    heading = rng.uniform(0, 2 * np.pi)
    for _ in range(int(rng.integers(2, 6))):
        heading += rng.uniform(-0.6, 0.6)
        step = rng.uniform(0.06, 0.16) * size
        points.append(points[-1] + step * np.array([np.cos(heading), np.sin(heading)]))
    canvas = np.zeros(image.shape[:2], dtype=np.uint8)
    line = np.clip(np.rint(points), 0, size - 1).astype(np.int32)
    cv2.polylines(canvas, [line], False, 255, thickness=int(rng.integers(2, 5)), lineType=cv2.LINE_8)
    mask = canvas > 0
    tone = 235.0 if image[mask].mean() < 128 else 20.0  # exposed base material: bright on dark, dark on bright
    alpha = rng.uniform(0.55, 0.9)
    return _shift(image, mask, np.float32(alpha) * (tone - image.astype(np.float32))), mask


def stain(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    size = image.shape[0]
    axes = (int(rng.uniform(0.06, 0.16) * size), int(rng.uniform(0.06, 0.16) * size))
    canvas = np.zeros(image.shape[:2], dtype=np.float32)
    cv2.ellipse(canvas, _centre(size, rng), axes, float(rng.uniform(0, 180)), 0, 360, 1.0, thickness=-1)
    alpha = cv2.GaussianBlur(canvas, (0, 0), sigmaX=max(axes) / 3.0)
    alpha /= max(float(alpha.max()), 1e-6)
    alpha[alpha < 0.3] = 0.0
    direction = rng.uniform(-1.0, 1.0, 3)
    colour = direction / max(float(np.linalg.norm(direction)), 1e-6) * rng.uniform(50, 90)
    delta = alpha[..., None] * rng.uniform(0.6, 1.0) * colour.astype(np.float32)
    return _shift(image, alpha > 0, delta), alpha > 0


def hole(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    size = image.shape[0]
    cx, cy = _centre(size, rng)
    radius = rng.uniform(0.04, 0.1) * size
    angles = np.sort(rng.uniform(0, 2 * np.pi, 12))
    radii = radius * rng.uniform(0.6, 1.3, angles.size)
    polygon = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
    canvas = np.zeros(image.shape[:2], dtype=np.uint8)
    cv2.fillPoly(canvas, [np.rint(polygon).astype(np.int32)], 255)
    mask = canvas > 0
    # Seen through: an almost flat dark fill with a faint trace of the texture and a little noise.
    base = rng.uniform(8.0, 30.0)
    noise = rng.normal(0.0, 2.0, image.shape[:2])[..., None]
    target = base + 0.08 * image.astype(np.float32) + noise
    return _shift(image, mask, target - image.astype(np.float32)), mask


def patch(image: np.ndarray, rng: np.random.Generator, source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A disc cut from ``source`` (another texture: foreign material), magnified, rotated off-axis
    and rescaled in brightness. Not the product's own texture: a same-scale piece of an isotropic
    texture (gravel, grass) is indistinguishable from its surroundings at any angle."""
    size = image.shape[0]
    side = max(8, int(rng.uniform(0.12, 0.25) * size))
    cut = max(4, int(round(side / rng.uniform(1.8, 2.6))))
    top, left = rng.integers(0, source.shape[0] - cut + 1), rng.integers(0, source.shape[1] - cut + 1)
    piece = cv2.resize(np.ascontiguousarray(source[top : top + cut, left : left + cut]), (side, side),
                       interpolation=cv2.INTER_LINEAR)
    angle = float(rng.uniform(15, 75) + 90 * rng.integers(0, 2))
    rotation = cv2.getRotationMatrix2D(((side - 1) / 2.0, (side - 1) / 2.0), angle, 1.0)
    piece = cv2.warpAffine(piece, rotation, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    gain = rng.choice([-1.0, 1.0]) * rng.uniform(0.1, 0.3) + 1.0
    cx, cy = _centre(size, rng)
    canvas = np.zeros(image.shape[:2], dtype=np.uint8)
    cv2.circle(canvas, (cx, cy), side // 2 - 1, 255, thickness=-1)
    mask = canvas > 0
    pasted = np.zeros_like(image, dtype=np.float32)
    y0, x0 = cy - side // 2, cx - side // 2
    ys, xs = np.nonzero(mask)
    pasted[ys, xs] = piece[np.clip(ys - y0, 0, side - 1), np.clip(xs - x0, 0, side - 1)] * gain
    return _shift(image, mask, pasted - image.astype(np.float32)), mask


def add_defect(
    image: np.ndarray, kind: str, rng: np.random.Generator, source: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(defective copy of a square uint8 BGR image, bool mask of the pixels the defect covers).

    ``source``: the texture "patch" cuts from (foreign material; default: the image itself)."""
    if kind == "scratch":
        return scratch(image, rng)
    if kind == "stain":
        return stain(image, rng)
    if kind == "hole":
        return hole(image, rng)
    if kind == "patch":
        return patch(image, rng, image if source is None else source)
    raise ValueError(f"unknown defect kind {kind!r}; choose one of {', '.join(DEFECT_KINDS)}")
