"""The marked frames of the review store exported as an MVTec-layout dataset the readers take."""

import numpy as np
import pytest

from mmad_edge.data.layouts import folder_records, mvtec_records
from mmad_edge.data.records import DatasetError
from mmad_edge.data.review_dataset import export_review
from mmad_edge.runtime.ui.review_store import ReviewStore


def noisy(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)


def test_export_review_writes_an_mvtec_dataset_the_readers_take(tmp_path):
    store = ReviewStore(tmp_path / "review")
    ids = []
    for index, label in enumerate(["good", "good", "defect", "good", None, "defect", "good"]):
        frame = np.full((32, 32, 3), 20 * index, np.uint8)
        ids.append(store.add(frame, frame, source="cam", category=None, score=0.1 * index, threshold=0.5,
                             reason="flagged"))
        if label is not None:
            store.mark(ids[-1], label)
    store.close()
    summary = export_review(tmp_path / "review", tmp_path / "dataset")
    assert summary["frames"] == 6
    assert summary["categories"] == {"line": {"train/good": 3, "test/good": 1, "test/defect": 2}}
    train = mvtec_records(tmp_path / "dataset", "line", "train")
    test = mvtec_records(tmp_path / "dataset", "line", "test")
    assert len(train) == 3 and sorted(record.label for record in test) == [0, 1, 1]
    assert len(folder_records(tmp_path / "dataset", "line", "train")) == 3
    exported = tmp_path / "dataset" / "line" / "test" / "defect" / f"review_{ids[2]}.png"
    assert exported.read_bytes() == (tmp_path / "review" / f"{ids[2]}.png").read_bytes()
    with pytest.raises(DatasetError, match="exists and is not an empty folder; pass a new folder"):
        export_review(tmp_path / "review", tmp_path / "dataset")


def test_export_review_needs_a_review_queue_with_marked_frames(tmp_path):
    with pytest.raises(DatasetError, match="no review queue there; pass the --review-dir"):
        export_review(tmp_path / "nothing", tmp_path / "dataset")
    ReviewStore(tmp_path / "review").close()
    with pytest.raises(DatasetError, match="has no marked frames; mark some on the page first"):
        export_review(tmp_path / "review", tmp_path / "dataset")


def test_export_review_of_a_live_run_with_larger_caps_keeps_every_item(tmp_path, monkeypatch):
    """The export used to open the store with the default caps and evict down to them: with defaults
    below the run's caps (lowered to five items here) it deleted unmarked items, then marked ones."""
    writer = ReviewStore(tmp_path / "review", max_items=50)  # the live run's page, still open
    ids = [writer.add(noisy(seed), noisy(seed), source="cam", category=None, score=0.6, threshold=0.5,
                      reason="flagged") for seed in range(30)]
    marked = {item_id: "defect" if index % 2 else "good" for index, item_id in enumerate(ids[::3])}
    for item_id, label in marked.items():
        writer.mark(item_id, label)
    monkeypatch.setattr(ReviewStore.__init__, "__defaults__", (ReviewStore.__init__.__defaults__[0], 5))
    summary = export_review(tmp_path / "review", tmp_path / "dataset")
    assert summary["frames"] == 10
    assert summary["categories"] == {"line": {"train/good": 4, "test/good": 1, "test/defect": 5}}
    exported = sorted(int(path.stem.removeprefix("review_")) for path in (tmp_path / "dataset").rglob("*.png"))
    assert exported == sorted(marked)
    assert sorted(item.id for item in writer.items()) == ids
    assert len([path for path in (tmp_path / "review").iterdir() if path.suffix in (".png", ".jpg")]) == 60
    writer.close()
