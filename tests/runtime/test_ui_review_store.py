"""The review store's cap, order of eviction and restart; the what-if's counts; the live state's bounds."""

import sqlite3
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from mmad_edge.runtime.result import Result
from mmad_edge.runtime.ui.review_store import INDEX_FILE, ReviewItem, ReviewStore, ReviewStoreError
from mmad_edge.runtime.ui.state import REVIEW_QUEUE, LiveState
from mmad_edge.runtime.ui.whatif import what_if


def noisy(seed: int, size: int = 32) -> np.ndarray:
    """A frame PNG cannot shrink much, so each item's size is known roughly."""
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def add(store: ReviewStore, seed: int, score: float = 0.6, category=None) -> int:
    frame = noisy(seed)
    return store.add(frame, frame, source="cam", category=category, score=score, threshold=0.5, reason="flagged")


def folder_bytes(store: ReviewStore) -> int:
    return sum(path.stat().st_size for path in store.folder.iterdir() if path.suffix in (".png", ".jpg"))


def test_store_keeps_its_item_cap_evicting_the_oldest_unmarked_first(tmp_path):
    store = ReviewStore(tmp_path, max_items=3)
    first, second, third = (add(store, seed) for seed in range(3))
    store.mark(first, "defect")
    fourth = add(store, 3)
    assert [item.id for item in store.items()] == [fourth, third, first]  # second: the oldest unmarked
    fifth, sixth = add(store, 4), add(store, 5)
    assert [item.id for item in store.items()] == [sixth, fifth, first]
    assert not (tmp_path / f"{second}.png").exists() and not (tmp_path / f"{third}.jpg").exists()
    assert store.usage()["items"] == 3 and store.usage()["marked"] == 1


def test_store_never_grows_past_its_byte_cap_and_refuses_an_item_larger_than_it(tmp_path):
    one = len(cv2.imencode(".png", noisy(0))[1]) + len(cv2.imencode(".jpg", noisy(0), [cv2.IMWRITE_JPEG_QUALITY, 85])[1])
    store = ReviewStore(tmp_path, max_bytes=int(one * 3.5))
    for seed in range(20):
        add(store, seed)
        assert store.usage()["bytes"] <= store.max_bytes
        assert folder_bytes(store) == store.usage()["bytes"]
    assert store.usage()["items"] == 3
    tiny = ReviewStore(tmp_path / "tiny", max_bytes=100)
    assert add(tiny, 0) is None and tiny.usage()["items"] == 0


def test_store_survives_a_restart_and_clears_files_a_killed_writer_left(tmp_path):
    store = ReviewStore(tmp_path)
    kept = add(store, 1, score=0.7, category="screw")
    store.mark(kept, "good")
    store.close()
    (tmp_path / "99.png").write_bytes(b"left by a killed process")
    again = ReviewStore(tmp_path, max_items=5)
    [item] = again.items()
    assert (item.id, item.label, item.category, item.score) == (kept, "good", "screw", 0.7)
    assert not (tmp_path / "99.png").exists()
    assert add(again, 2) > kept  # ids are never reused, so a page never shows an old item's image under a new id


def test_lowering_the_cap_evicts_at_open(tmp_path):
    store = ReviewStore(tmp_path)
    ids = [add(store, seed) for seed in range(4)]
    store.close()
    assert [item.id for item in ReviewStore(tmp_path, max_items=2).items()] == ids[:1:-1]


def test_a_reader_never_evicts_a_writer_with_larger_caps_nor_adds(tmp_path, monkeypatch):
    """`review export` opens a live run's folder; with default caps below the run's it used to evict
    the run's items (marked ones too) at open. The defaults are lowered to five items to show it."""
    writer = ReviewStore(tmp_path, max_items=50)
    ids = [add(writer, seed) for seed in range(30)]
    for item_id in ids[::3]:
        writer.mark(item_id, "good")
    monkeypatch.setattr(ReviewStore.__init__, "__defaults__", (ReviewStore.__init__.__defaults__[0], 5))
    reader = ReviewStore.reader(tmp_path)
    assert sorted(item.id for item in reader.items()) == ids
    assert reader.usage() == {"items": 30, "marked": 10, "unmarked": 20, "bytes": writer.usage()["bytes"],
                              "max_items": None, "max_bytes": None}
    assert len([path for path in tmp_path.iterdir() if path.suffix in (".png", ".jpg")]) == 60
    with pytest.raises(ReviewStoreError, match="was opened to read .* open it with caps to add items"):
        add(reader, 99)
    reader.close()
    assert writer.usage()["items"] == 30 and add(writer, 30) > ids[-1]
    with pytest.raises(ReviewStoreError, match="caps must both be set .* or both None"):
        ReviewStore(tmp_path, None, 5)


def test_marks_are_checked_and_unknown_ids_named(tmp_path):
    store = ReviewStore(tmp_path)
    item = add(store, 0)
    with pytest.raises(ReviewStoreError, match="label must be 'good' or 'defect'"):
        store.mark(item, "maybe")
    with pytest.raises(ReviewStoreError, match="no review item 12345"):
        store.mark(12345, "good")
    with pytest.raises(ReviewStoreError, match="image kind must be 'frame' or 'overlay'"):
        store.image(item, "../index.sqlite")
    assert store.mark(item, None).label is None
    assert store.image(item, "frame") == (tmp_path / f"{item}.png").read_bytes()
    rows = sqlite3.connect(tmp_path / INDEX_FILE).execute("SELECT reason FROM items").fetchall()
    assert rows == [("flagged",)]


def test_opening_the_folder_again_never_takes_the_files_of_an_add_in_flight(tmp_path, monkeypatch):
    """A second opener (`review export`, a test's reader) clears files without a row; an add between
    writing its files and committing its row keeps them (it lost them before: the page answered 500)."""
    store, write_bytes, opener, failed = ReviewStore(tmp_path), Path.write_bytes, [], []

    def open_again() -> None:
        try:
            ReviewStore.reader(tmp_path).close()
        except BaseException as exc:  # handed to the test
            failed.append(exc)

    def writing(path: Path, data: bytes) -> int:
        written = write_bytes(path, data)
        if path.suffix == ".jpg" and not opener:  # both files written, the row not committed yet
            opener.append(threading.Thread(target=open_again))
            opener[0].start()
            opener[0].join(timeout=1.0)  # it waits for this add's row (before the fix it swept at once)
        return written

    monkeypatch.setattr(Path, "write_bytes", writing)
    item = add(store, 0)
    opener[0].join(10)
    assert not opener[0].is_alive() and failed == []
    assert sorted(path.name for path in tmp_path.iterdir() if path.suffix in (".png", ".jpg")) == [
        f"{item}.jpg", f"{item}.png"]
    assert store.image(item, "overlay")[:2] == b"\xff\xd8"  # a JPEG


def test_an_image_asked_after_its_item_was_evicted_is_refused_naming_it(tmp_path):
    store = ReviewStore(tmp_path, max_items=1)
    first = add(store, 0)
    assert [item.id for item in store.items()] == [first]  # listed, as the page saw it
    second = add(store, 1)  # evicts the first (cap of one item)
    for kind in ("frame", "overlay"):
        with pytest.raises(ReviewStoreError, match=f"^no review item {first}; it may have been evicted"):
            store.image(first, kind)
    (tmp_path / f"{second}.png").unlink()  # another process evicted it: its row went first, this one lags
    with pytest.raises(ReviewStoreError, match=f"^no review item {second}; it may have been evicted"):
        store.image(second, "frame")
    overlay = cv2.imdecode(np.frombuffer(store.image(second, "overlay"), np.uint8), cv2.IMREAD_COLOR)
    assert overlay.shape == (32, 32, 3)


def marked(category, scores_and_labels):
    return [ReviewItem(index, 0.0, "cam", category, score, 0.5, "flagged", label, 1.0, 0)
            for index, (score, label) in enumerate(scores_and_labels)]


def test_what_if_counts_false_alarms_and_misses_per_category():
    items = marked("screw", [(0.4, "good"), (0.55, "good"), (0.6, "defect"), (0.9, "defect")]) + \
        marked(None, [(0.3, "good"), (0.7, "defect")]) + marked("screw", [(0.8, None)])  # unmarked: left out
    pooled, screw = what_if(items, {"screw": 0.5, None: 0.65})
    assert (pooled["category"], pooled["marked"], pooled["current"]) == (
        None, 2, {"threshold": 0.65, "false_alarms": 0, "misses": 0})
    assert (screw["good"], screw["defect"]) == (2, 2)
    assert screw["current"] == {"threshold": 0.5, "false_alarms": 1, "misses": 0}
    curve = [(round(row["threshold"], 4), row["false_alarms"], row["misses"]) for row in screw["curve"]]
    assert curve == [(0.3975, 2, 0), (0.475, 1, 0), (0.575, 0, 0), (0.75, 0, 1), (0.905, 0, 2)]
    assert screw["suggested"]["threshold"] == pytest.approx(0.575)


def result(score: float, normalized: float, threshold: float = 0.5) -> Result:
    return Result(score, normalized, score > threshold, threshold, np.zeros((4, 4), np.float32))


def test_live_state_keeps_the_newest_frame_and_bounded_review_candidates():
    state = LiveState(review_per_s=1e6)
    index = state.add_source("cam", None)
    for step in range(REVIEW_QUEUE + 10):
        state.offer(index, np.full((4, 4, 3), step, np.uint8), result(0.6, 0.75))
    state.offer(index, np.zeros((4, 4, 3), np.uint8), result(0.46, 0.45))  # near threshold
    state.offer(index, np.zeros((4, 4, 3), np.uint8), result(0.2, 0.0))  # neither
    source, latest = state.latest(index)
    assert (source.frames, source.anomalies, latest.seq, latest.result.score) == (REVIEW_QUEUE + 12, REVIEW_QUEUE + 10,
                                                                                   REVIEW_QUEUE + 12, 0.2)
    taken = [state.take_review(0) for _ in range(REVIEW_QUEUE + 1)]
    assert taken[-1] is None  # only the newest REVIEW_QUEUE waited
    assert [c.reason for c in taken[:-1]][-2:] == ["flagged", "near threshold"]
    assert int(taken[0].frame[0, 0, 0]) == 11  # the oldest ones were dropped


def test_review_candidates_are_rate_limited_per_source():
    state = LiveState(review_per_s=0.001)
    index = state.add_source("cam", None)
    for _ in range(50):
        state.offer(index, np.zeros((4, 4, 3), np.uint8), result(0.9, 1.0))
    assert state.take_review(0) is not None and state.take_review(0) is None


def test_sqlite_errors_in_an_add_are_one_review_store_error_not_a_dead_worker(tmp_path):
    store = ReviewStore(tmp_path, max_items=5)
    store._db.execute("PRAGMA busy_timeout = 50")  # the default 5 s wait, shortened for the test
    other = sqlite3.connect(tmp_path / INDEX_FILE, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # a reader holding the write lock
    with pytest.raises(ReviewStoreError, match=r"could not add an item \(OperationalError: database is locked\); "
                                                r"close other programs writing to it"):
        add(store, 0)
    other.execute("COMMIT")
    other.close()
    assert add(store, 1) == 1 and store.usage()["items"] == 1  # the lock gone, adds go on
    store.close()
    with pytest.raises(ReviewStoreError, match=r"could not add an item \(ProgrammingError: Cannot operate on a "
                                                r"closed database"):
        add(store, 2)
