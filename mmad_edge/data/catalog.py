"""Which images a split holds, per layout, without torch: records and labelled test frames.

``AnomalyDataset`` (torch) wraps these records for training and evaluation; the device-side
checks (``mmad-edge verify``, ``bench --data``) read the same records and frames here, so a
runtime-only install (numpy, OpenCV, no torch) scores exactly the images ``eval`` scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmad_edge.data.layouts import aebad_records, folder_records, mvtec_records
from mmad_edge.data.realiad import realiad_categories, realiad_records
from mmad_edge.data.records import DatasetError, Record, list_subfolders
from mmad_edge.data.split import evenly_spaced
from mmad_edge.runtime.imageio import read_image, read_mask
from mmad_edge.runtime.preprocess import resize_frame, resize_mask

LAYOUTS = ("mvtec", "aebad", "realiad", "folder")
SPLITS = ("train", "test")


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


def split_records(
    root: str | Path,
    layout: str,
    categories: str | Sequence[str] | None,
    split: str,
    image_size: int,
    *,
    domains: Sequence[str] | None = None,
    realiad_json: str = "realiad_jsons",
    realiad_resolution: str | int | None = None,
) -> list[Record]:
    """The records of one split over one or several categories (several: a unified model's).

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
        return [r for c in (names or [None]) for r in folder_records(root, c, split)]
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
    return records


@dataclass(frozen=True)
class LabelledSplit:
    """A labelled test split at the model size: uint8 BGR ``frames`` (N, S, S, 3), 0/1 ``labels``,
    bool ``masks`` (N, S, S) and ``has_mask`` (normals and defects with a mask file)."""

    frames: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    has_mask: np.ndarray
    records: list[Record]


def labelled_split(
    root: str | Path, layout: str, categories: str | Sequence[str] | None, size: int, max_images: int | None = None,
) -> LabelledSplit:
    """The test split as the runtime sees it (``resize_frame``, as ``eval`` and ``run`` resize);
    ``max_images`` thins it evenly."""
    records = split_records(root, layout, categories, "test", size)
    if max_images is not None:
        records = [records[i] for i in evenly_spaced(np.arange(len(records)), max_images)]
    frames, masks = [], []
    for record in records:
        image, mask = load_record(record)
        frames.append(resize_frame(image, size))
        masks.append(resize_mask(mask, size))
    return LabelledSplit(np.stack(frames), np.array([r.label for r in records], dtype=np.int64), np.stack(masks).astype(bool),
                   np.array([r.has_mask for r in records], dtype=bool), records)


def load_record(record: Record) -> tuple[np.ndarray, np.ndarray]:
    """Full-resolution image and mask (all False without a mask file); a mask must match its image's size."""
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
