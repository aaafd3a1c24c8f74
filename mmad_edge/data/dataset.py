"""The torch Dataset every layout feeds, and the factory that picks a layout."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mmad_edge.data.augment import augment_pair, camera_augment
from mmad_edge.data.catalog import load_record, split_records
from mmad_edge.data.records import Record
from mmad_edge.runtime.preprocess import resize_frame, resize_mask


class AnomalyDataset(Dataset):
    """Images of one split, read and resized on access (``resize_frame``, like the runtime).

    Items: ``{"image": uint8 (S, S, 3) BGR, "mask": bool (S, S), "has_mask": bool,
    "label": 0/1, "path": str, "category": str, "defect": str}``. ``has_mask`` is True for
    normal images (their mask is known to be empty) and for defects with a mask file.
    With ``augment`` every access draws a random resized crop + flip, with ``camera`` a camera
    stream's degradation of the full frame first (``camera_augment``), from torch's RNG, so
    ``torch.manual_seed`` and DataLoader worker seeding make it reproducible.
    """

    def __init__(self, records: Sequence[Record], image_size: int, augment: bool = False, camera: bool = False) -> None:
        self.records = list(records)
        self.image_size = int(image_size)
        self.augment = augment
        self.camera = camera

    def __len__(self) -> int:
        return len(self.records)

    @property
    def labels(self) -> np.ndarray:
        return np.array([r.label for r in self.records], dtype=np.int64)

    @property
    def categories(self) -> list[str]:
        return sorted({r.category for r in self.records})

    def load(self, record: Record) -> tuple[np.ndarray, np.ndarray]:
        """Full-resolution image and mask (``catalog.load_record``)."""
        return load_record(record)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        image, mask = self.load(record)
        rng = None
        if self.augment or self.camera:
            rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
        if self.camera:
            image = camera_augment(image, rng)
        if self.augment:
            image, mask = augment_pair(image, mask, self.image_size, rng)
        else:
            image, mask = resize_frame(image, self.image_size), resize_mask(mask, self.image_size)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image)),
            "mask": torch.from_numpy(np.ascontiguousarray(mask, dtype=bool)),
            "has_mask": record.has_mask,
            "label": record.label,
            "path": str(record.image),
            "category": record.category,
            "defect": record.defect,
        }


def build_dataset(
    root: str | Path,
    layout: str,
    categories: str | Sequence[str] | None,
    split: str,
    image_size: int,
    augment: bool = False,
    camera: bool = False,
    *,
    domains: Sequence[str] | None = None,
    realiad_json: str = "realiad_jsons",
    realiad_resolution: str | int | None = None,
) -> AnomalyDataset:
    """One dataset over one or several categories (several: unified training, items carry it);
    the records are ``catalog.split_records``'s.

    ``categories`` None (or "") means every category found under ``root``; a comma-separated
    string is split. ``domains`` limits AeBAD-S test domains (default: all). ``realiad_json``
    picks the Real-IAD split set (``realiad_jsons``, ``realiad_jsons_sv``, ...) and
    ``realiad_resolution`` its image folder (default: the smallest at least ``image_size``).
    """
    records = split_records(root, layout, categories, split, image_size, domains=domains, realiad_json=realiad_json,
                            realiad_resolution=realiad_resolution)
    return AnomalyDataset(records, image_size, augment, camera)
