"""Training augmentation on uint8 frames: the AeBAD recipe (random resized crop + h-flip) and what
a camera stream does to frames (compression, noise, brightness, blur)."""

from __future__ import annotations

import math

import cv2
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


# Camera-stream degradations (``camera_augment``): how strong each may be.
JPEG_QUALITY = (50, 95)
VIDEO_QUALITY = (25, 60)  # coarser quantisation than a still, then the codec's deblocking blur
NOISE_SIGMA = (0.0, 4.0)  # grey levels, per pixel and channel
GAIN = (0.92, 1.08)
OFFSET = (-8.0, 8.0)
BLUR_SIGMA = (0.3, 0.9)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """``image`` through a JPEG round trip at ``quality`` (OpenCV: 8x8 DCT blocks, 4:2:0 chroma)."""
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"JPEG encoding failed for an image of shape {image.shape}")
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED).reshape(image.shape)


def camera_augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What a camera stream does to a frame, each step drawn at random: a small brightness change
    (gain and offset), a slight blur (focus, motion), sensor noise, then compression as a still
    (JPEG quality 50-95, like MJPG) or as video (H.264-like: coarse block quantisation followed by
    a deblocking blur). Trained on, the model stops reading these as defects; the image keeps its
    shape and dtype (uint8)."""
    out = image.astype(np.float32)
    if rng.random() < 0.5:
        out = out * rng.uniform(*GAIN) + rng.uniform(*OFFSET)
    if rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(*BLUR_SIGMA))
    if rng.random() < 0.5:
        out = out + rng.normal(0.0, rng.uniform(*NOISE_SIGMA), out.shape)
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    kind = rng.random()
    if kind < 0.5:
        return jpeg(out, int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1)))
    if kind < 0.8:
        decoded = jpeg(out, int(rng.integers(VIDEO_QUALITY[0], VIDEO_QUALITY[1] + 1)))
        return cv2.GaussianBlur(decoded, (3, 3), 0.6)
    return out
