"""Folder layouts (MVTec-style, AeBAD-S, plain folder) turned into lists of records.

MVTec AD, VisA (1cls), GoodsAD and MAD-Sim share one layout::

    <root>/<category>/train/good/*.png
    <root>/<category>/test/good/*.png
    <root>/<category>/test/<defect>/*.png
    <root>/<category>/ground_truth/<defect>/<stem>_mask.png   (or <stem>.png)

AeBAD-S adds a test-domain level (``same``, ``background``, ``illumination``, ``view``)::

    <root>/AeBAD_S/train/good/<subfolder>/*.png
    <root>/AeBAD_S/test/<good|defect>/<domain>/*.png
    <root>/AeBAD_S/ground_truth/<defect>/<domain>/<stem>.png

Test records of AeBAD-S carry ``<category>/<domain>`` as their category, so evaluating per
category reports each domain, and the mean over categories is the usual AeBAD-S mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mmad_edge.data.records import (
    DatasetError,
    Record,
    list_images,
    list_subfolders,
    mask_index,
    require_folder,
    require_images,
)

GOOD = "good"


def category_folder(root: Path, category: str) -> Path:
    folder = root / category
    if not folder.is_dir():
        found = list_subfolders(root)
        raise DatasetError(
            f"{folder}: category folder not found; available under {root}: {', '.join(found) or 'none'}"
        )
    return folder


def test_records(base: Path, category: str, domain: str | None = None) -> list[Record]:
    """``test/good`` and ``test/<defect>`` images with their masks (``ground_truth/<defect>``)."""
    test_dir = require_folder(base / "test", "test folder", "the test split needs test/good and test/<defect>")
    records: list[Record] = []
    for defect in list_subfolders(test_dir):
        image_dir = test_dir / defect if domain is None else test_dir / defect / domain
        label = 0 if defect == GOOD else 1
        masks = {} if label == 0 else mask_index(_with_domain(base / "ground_truth" / defect, domain))
        name = category if domain is None else f"{category}/{domain}"
        for image in list_images(image_dir):
            records.append(Record(image, masks.get(image.stem), label, name, defect))
    return records


def _with_domain(folder: Path, domain: str | None) -> Path:
    return folder if domain is None else folder / domain


def mvtec_records(root: Path, category: str, split: str) -> list[Record]:
    base = category_folder(root, category)
    if split == "train":
        good = base / "train" / GOOD
        return require_images([Record(p, None, 0, category) for p in list_images(good)], good, split)
    return require_images(test_records(base, category), base / "test", split)


def folder_records(root: Path, category: str | None, split: str) -> list[Record]:
    """A plain folder: good training images in ``train/good``, ``train`` or the folder itself.

    The test split (optional) is MVTec-like: ``test/good``, ``test/<defect>``, masks in
    ``ground_truth/<defect>`` when there are any.
    """
    base = root if category is None else category_folder(root, category)
    name = category or root.name
    if split == "train":
        for candidate in (base / "train" / GOOD, base / "train", base):
            images = list_images(candidate)
            if images:
                return [Record(p, None, 0, name) for p in images]
        return require_images([], base, split)
    return require_images(test_records(base, name), base / "test", split)


def aebad_domains(base: Path) -> list[str]:
    return list_subfolders(base / "test" / GOOD) or sorted(
        {d for defect in list_subfolders(base / "test") for d in list_subfolders(base / "test" / defect)}
    )


def aebad_records(root: Path, category: str, split: str, domains: Sequence[str] | None) -> list[Record]:
    base = category_folder(root, category)
    if split == "train":
        good = base / "train" / GOOD
        return require_images([Record(p, None, 0, category) for p in list_images(good, recursive=True)], good, split)
    available = aebad_domains(base)
    chosen = list(domains) if domains else available
    unknown = [d for d in chosen if d not in available]
    if unknown:
        raise DatasetError(
            f"{base / 'test'}: unknown AeBAD test domain(s) {', '.join(unknown)}; "
            f"choose from {', '.join(available) or 'none (no test/<type>/<domain> folders)'}"
        )
    records = [r for domain in chosen for r in test_records(base, category, domain)]
    return require_images(records, base / "test", split)
