"""The torch Dataset every layout feeds, and the factory that picks a layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from mmad_edge.data.augment import augment_pair
from mmad_edge.data.layouts import aebad_records, folder_records, mvtec_records
from mmad_edge.data.realiad import realiad_categories, realiad_records
from mmad_edge.data.records import DatasetError, Record, list_subfolders
from mmad_edge.runtime.imageio import read_image, read_mask
from mmad_edge.runtime.preprocess import resize_frame, resize_mask

LAYOUTS = ("mvtec", "aebad", "realiad", "folder")
SPLITS = ("train", "test")


class AnomalyDataset(Dataset):
    """Images of one split, read and resized on access (``resize_frame``, like the runtime).

    Items: ``{"image": uint8 (S, S, 3) BGR, "mask": bool (S, S), "has_mask": bool,
    "label": 0/1, "path": str, "category": str, "defect": str}``. ``has_mask`` is True for
    normal images (their mask is known to be empty) and for defects with a mask file.
    With ``augment`` every access draws a random resized crop + flip from torch's RNG, so
    ``torch.manual_seed`` and DataLoader worker seeding make it reproducible.
    """

    def __init__(self, records: Sequence[Record], image_size: int, augment: bool = False) -> None:
        self.records = list(records)
        self.image_size = int(image_size)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.records)

    @property
    def labels(self) -> np.ndarray:
        return np.array([r.label for r in self.records], dtype=np.int64)

    @property
    def categories(self) -> list[str]:
        return sorted({r.category for r in self.records})

    def load(self, record: Record) -> tuple[np.ndarray, np.ndarray]:
        """Full-resolution image and mask; a mask must match its image's size."""
        image = read_image(record.image)
        if record.mask is None:
            return image, np.zeros(image.shape[:2], dtype=bool)
        mask = read_mask(record.mask)
        if mask.shape != image.shape[:2]:
            raise DatasetError(
                f"{record.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but image {record.image} is "
                f"{image.shape[1]}x{image.shape[0]}; regenerate the mask at the image size"
            )
        return image, mask

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        image, mask = self.load(record)
        if self.augment:
            rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
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


def _discover(root: Path, layout: str, realiad_json: str) -> list[str]:
    if layout == "realiad":
        return realiad_categories(root, realiad_json)
    found = [c for c in list_subfolders(root) if (root / c / "train").is_dir() or (root / c / "test").is_dir()]
    if not found:
        raise DatasetError(f"{root}: no category folders with train/ or test/ inside; check --layout and the path")
    return found


def _category_list(categories: str | Sequence[str] | None) -> list[str] | None:
    if categories is None:
        return None
    names = [c.strip() for c in categories.split(",")] if isinstance(categories, str) else list(categories)
    names = [c for c in names if c]
    return names or None


def build_dataset(
    root: str | Path,
    layout: str,
    categories: str | Sequence[str] | None,
    split: str,
    image_size: int,
    augment: bool = False,
    *,
    domains: Sequence[str] | None = None,
    realiad_json: str = "realiad_jsons",
    realiad_resolution: str | int | None = None,
) -> AnomalyDataset:
    """One dataset over one or several categories (several: unified training, items carry it).

    ``categories`` None (or "") means every category found under ``root``; a comma-separated
    string is split. ``domains`` limits AeBAD-S test domains (default: all). ``realiad_json``
    picks the Real-IAD split set (``realiad_jsons``, ``realiad_jsons_sv``, ...) and
    ``realiad_resolution`` its image folder (default: the smallest at least ``image_size``).
    """
    root = Path(root)
    if layout not in LAYOUTS:
        raise DatasetError(f"unknown dataset layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; choose train or test")
    if image_size <= 0:
        raise DatasetError(f"image size must be positive, got {image_size}")
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset root not found; check the path")
    names = _category_list(categories)
    if layout == "folder":
        records = [r for c in (names or [None]) for r in folder_records(root, c, split)]
        return AnomalyDataset(records, image_size, augment)
    if names is None and layout != "realiad" and ((root / "train").is_dir() or (root / "test").is_dir()):
        root, names = root.parent, [root.name]
    records = []
    for category in names or _discover(root, layout, realiad_json):
        if layout == "mvtec":
            records += mvtec_records(root, category, split)
        elif layout == "aebad":
            records += aebad_records(root, category, split, domains)
        else:
            records += realiad_records(root, category, split, image_size, realiad_json, realiad_resolution)
    return AnomalyDataset(records, image_size, augment)
