"""The frames people marked on the review page as a dataset: ``mmad-edge review export DIR``.

MVTec layout (``<category>/train/good``, ``test/good``, ``test/defect``), so ``train``, ``eval``,
``verify`` and ``calibrate-threshold`` (``--good .../test/good --bad .../test/defect``) read it.
"""

from __future__ import annotations

import os
from pathlib import Path

from mmad_edge.data.layouts import GOOD
from mmad_edge.data.records import DatasetError
from mmad_edge.runtime.ui.options import DEFAULT_REVIEW_CATEGORY
from mmad_edge.runtime.ui.review_store import INDEX_FILE, ReviewItem, ReviewStore

DEFECT = "defect"
TEST_SHARE = 5  # one good frame in five (the 2nd, 7th, ... by id) goes to test/good, the rest to train/good


def export_review(review_dir: str | os.PathLike[str], out: str | os.PathLike[str],
                  category: str = DEFAULT_REVIEW_CATEGORY) -> dict:
    """Write the marked frames of the review queue in ``review_dir`` under ``out/<category>/`` as
    ``train/good``, ``test/good`` (one good frame in ``TEST_SHARE``, from the second on, so two
    goods already give a test split) and ``test/defect``; frames of no category go under
    ``category``. ``out`` must be new or empty. Returns counts per category and folder."""
    review_dir, out = Path(review_dir), Path(out)
    if not (review_dir / INDEX_FILE).is_file():
        raise DatasetError(f"{review_dir}: no review queue there; pass the --review-dir that `run --ui` kept it in")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DatasetError(f"{out}: exists and is not an empty folder; pass a new folder for the dataset")
    store = ReviewStore.reader(review_dir)  # never evicts: a live run's caps may be larger than the defaults
    try:
        return _write(store, out, category)
    finally:
        store.close()


def _write(store: ReviewStore, out: Path, category: str) -> dict:
    marked = sorted(store.items(marked=True), key=lambda item: item.id)
    if not marked:
        raise DatasetError(f"review queue {store.folder} has no marked frames; mark some on the page first")
    counts: dict[str, dict[str, int]] = {}
    goods_seen: dict[str, int] = {}
    for item in marked:
        name = item.category or category
        split = _split_of(item, goods_seen.setdefault(name, 0))
        if item.label == GOOD:
            goods_seen[name] += 1
        target = out / name / split / f"review_{item.id}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(store.image(item.id, "frame"))
        per = counts.setdefault(name, {})
        per[split] = per.get(split, 0) + 1
    return {"out": str(out), "frames": len(marked), "categories": counts}


def _split_of(item: ReviewItem, goods_before: int) -> str:
    if item.label == DEFECT:
        return f"test/{DEFECT}"
    return f"test/{GOOD}" if goods_before % TEST_SHARE == 1 else f"train/{GOOD}"


def export_summary(result: dict) -> str:
    """One line per category for the console: how many frames went where."""
    lines = [f"wrote {result['frames']} marked frames to {result['out']}"]
    for name, splits in result["categories"].items():
        lines.append(f"  {name}: " + ", ".join(f"{split} {count}" for split, count in sorted(splits.items())))
    return "\n".join(lines)
