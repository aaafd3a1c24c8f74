"""Real-IAD: images listed by JSON split files instead of folders.

Layout of the official release::

    <root>/realiad_jsons/<json_set>/<category>.json    json_set: realiad_jsons (multi-view),
                                                        realiad_jsons_sv, realiad_jsons_fuiad_0.4, ...
    <root>/realiad_<256|512|1024|raw>/<category>/OK/S0001/<name>.jpg
    <root>/realiad_<res>/<category>/NG/<defect>/S0002/<name>.jpg (+ <name>.png mask)

Each JSON file is ``{"meta": {"normal_class": "OK", ...}, "train": [entry, ...],
"test": [entry, ...]}`` with entries ``{"category", "anomaly_class", "image_path",
"mask_path"}``; paths are relative to ``realiad_<res>/<category>``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mmad_edge.data.records import DatasetError, Record, require_images

RESOLUTIONS = ("256", "512", "1024", "raw")


def json_folder(root: Path, json_set: str) -> Path:
    for candidate in (root / "realiad_jsons" / json_set, root / json_set, root / "realiad_jsons"):
        if candidate.is_dir() and any(candidate.glob("*.json")):
            return candidate
    raise DatasetError(
        f"{root}: no Real-IAD JSON split files found (looked in realiad_jsons/{json_set}); "
        "unpack realiad_jsons.zip there or pick --layout mvtec"
    )


def realiad_categories(root: Path, json_set: str) -> list[str]:
    return sorted(p.stem for p in json_folder(root, json_set).glob("*.json"))


def image_folder(root: Path, image_size: int, resolution: str | int | None) -> Path:
    """``realiad_<resolution>``; by default the smallest one at least ``image_size``."""
    present = [r for r in RESOLUTIONS if (root / f"realiad_{r}").is_dir()]
    if resolution is not None:
        if str(resolution) not in present:
            raise DatasetError(
                f"{root / f'realiad_{resolution}'}: Real-IAD image folder not found; "
                f"present: {', '.join('realiad_' + r for r in present) or 'none'}"
            )
        return root / f"realiad_{resolution}"
    if not present:
        raise DatasetError(f"{root}: no realiad_256/512/1024/raw image folder; unpack the Real-IAD images there")
    large_enough = [r for r in present if r == "raw" or int(r) >= image_size]
    return root / f"realiad_{(large_enough or present)[0]}"


def _load(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DatasetError(f"{path}: cannot read Real-IAD JSON ({error}); re-extract the file") from error
    if not isinstance(document, dict) or not any(k in document for k in ("train", "test")):
        raise DatasetError(f"{path}: not a Real-IAD split file (needs 'train'/'test' lists); check --layout")
    return document


def _entry_base(images: Path, category: str, first: str) -> Path:
    """Entries are relative to the category folder; some copies include the category prefix."""
    for base in (images / category, images):
        if (base / first).is_file():
            return base
    raise DatasetError(
        f"{images / category / first}: image listed in the Real-IAD JSON is missing; "
        "check --realiad-resolution or re-extract the images"
    )


def realiad_records(
    root: Path, category: str, split: str, image_size: int, json_set: str, resolution: str | int | None
) -> list[Record]:
    split_file = json_folder(root, json_set) / f"{category}.json"
    if not split_file.is_file():
        found = ", ".join(realiad_categories(root, json_set))
        raise DatasetError(f"{split_file}: Real-IAD category not found; available: {found}")
    document = _load(split_file)
    entries = document.get(split) or []
    normal = (document.get("meta") or {}).get("normal_class", "OK")
    if not entries:
        return require_images([], split_file, split)
    base = _entry_base(image_folder(root, image_size, resolution), category, entries[0]["image_path"])
    records = []
    for entry in entries:
        label = 0 if entry.get("anomaly_class", normal) == normal else 1
        mask = entry.get("mask_path")
        defect = "good" if label == 0 else str(entry["anomaly_class"])
        records.append(Record(base / entry["image_path"], base / mask if mask else None, label, category, defect))
    return records
