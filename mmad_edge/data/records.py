"""What a dataset layout produces: one record per image, and the error layouts raise."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mmad_edge.runtime.loop.sources import IMAGE_EXTENSIONS, is_image_file


class DatasetError(ValueError):
    """A dataset folder or split file that cannot be used as given (message names the fix)."""


@dataclass(frozen=True)
class Record:
    """One image of a split: where it is, its mask (None when unknown) and its label."""

    image: Path
    mask: Path | None
    label: int
    category: str
    defect: str = "good"

    @property
    def has_mask(self) -> bool:
        """Normal images have a known (empty) mask; defects only when a mask file exists."""
        return self.label == 0 or self.mask is not None


def list_images(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` (sorted, so every run sees the same order)."""
    if not folder.is_dir():
        return []
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in candidates if is_image_file(p))


def list_subfolders(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def require_folder(folder: Path, what: str, hint: str) -> Path:
    if not folder.is_dir():
        raise DatasetError(f"{folder}: {what} not found; {hint}")
    return folder


def require_images(records: list[Record], where: Path, split: str) -> list[Record]:
    if not records:
        raise DatasetError(
            f"{where}: no {split} images found ({', '.join(IMAGE_EXTENSIONS)}); "
            f"add images there or check the --layout"
        )
    return records


def mask_index(folder: Path) -> dict[str, Path]:
    """Masks in ``folder`` keyed by image stem: ``<stem>_mask.*`` (MVTec) or ``<stem>.*`` (VisA, AeBAD)."""
    index: dict[str, Path] = {}
    for path in list_images(folder):
        stem = path.stem
        if stem.endswith("_mask"):
            index[stem[: -len("_mask")]] = path
        else:
            index.setdefault(stem, path)
    return index
