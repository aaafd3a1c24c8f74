"""The camera-stream augmentation: bounded, seeded, and what the dataset feeds with it."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from mmad_edge.data.augment import camera_augment, jpeg
from mmad_edge.data.dataset import AnomalyDataset
from mmad_edge.data.records import Record


def textured(seed: int = 0) -> np.ndarray:
    """A smooth random texture (JPEG's error on pure noise would say little about photographs)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 216, (16, 16, 3)).astype(np.float32)
    return np.clip(cv2.resize(small, (96, 96), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


def test_jpeg_error_shrinks_with_quality():
    image = textured()
    errors = [np.abs(jpeg(image, quality).astype(int) - image).mean() for quality in (50, 75, 95)]
    assert errors[0] > errors[1] > errors[2] > 0
    assert jpeg(image, 75).shape == image.shape and jpeg(image, 75).dtype == np.uint8


def test_camera_augment_is_seeded_bounded_and_varied():
    image = textured()
    same = [camera_augment(image, np.random.default_rng(seed)) for seed in (3, 3)]
    assert np.array_equal(*same)
    outs = [camera_augment(image, np.random.default_rng(seed)) for seed in range(200)]
    assert all(out.shape == image.shape and out.dtype == np.uint8 for out in outs)
    change = np.array([np.abs(out.astype(int) - image).mean() for out in outs])
    shift = np.array([abs(out.mean() - image.mean()) for out in outs])
    assert (change > 0).mean() > 0.9  # nearly every draw changes the frame ...
    assert change.max() < 20 and shift.max() < 18  # ... by what a camera would, not into another image
    assert len({round(value, 1) for value in change}) > 50  # strengths vary from draw to draw


def test_dataset_applies_it_to_the_full_frame_from_torch_rng(tmp_path):
    path = tmp_path / "good.png"
    cv2.imwrite(str(path), textured(1))
    record = Record(image=path, mask=None, label=0, category="widget")
    plain = AnomalyDataset([record], 48)[0]["image"]
    camera = AnomalyDataset([record], 48, camera=True)
    torch.manual_seed(7)
    first = [camera[0]["image"] for _ in range(3)]
    torch.manual_seed(7)
    again = [camera[0]["image"] for _ in range(3)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert first[0].shape == plain.shape == (48, 48, 3)
    assert any(not torch.equal(item, plain) for item in first)
    assert float((first[0].float() - plain.float()).abs().mean()) < 20
