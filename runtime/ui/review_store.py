"""The review queue on disk: frames a person should look at, and what they said about each.

One folder: ``index.sqlite`` (one row per item) and, per item, ``<id>.png`` (the frame as seen,
lossless, for datasets) and ``<id>.jpg`` (its heat-map overlay, for the page). File names come
from the row id only, so no request can name a file. The folder is capped in bytes and items: an
add that would pass a cap first evicts the oldest unmarked items (marked ones only when no
unmarked are left), and an item larger than the byte cap by itself is refused. Files are written
before their row and deleted after it, and files without a row are cleared at open, so a killed
process leaves nothing the cap does not count. An add holds SQLite's write lock from before its
files are written until its row commits, and the clearing at open waits for that lock, so a second
process opening the folder (``review export``, a test) never takes the files of an add in flight.
Only the writer (the page of ``run --ui``) applies caps, at open too (caps lowered since the last
run); a reader (``ReviewStore.reader``: ``review export``) has none, so its default caps never
evict a live run's items, and it cannot add.
Thread-safe (one lock around the connection); images are read under that lock (``image``), so an
item is served whole or answered as gone, never half-evicted.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..artifact.contract import OUTPUT_NAMES

SCORE = OUTPUT_NAMES[1]

LABELS = ("good", "defect")
INDEX_FILE = "index.sqlite"
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_ITEMS = 2000
IMAGE_KINDS = {"frame": ("png", "image/png"), "overlay": ("jpg", "image/jpeg")}  # kind: (suffix, media type)
_SCHEMA = """CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL, source TEXT NOT NULL, category TEXT,
    score REAL NOT NULL, threshold REAL, reason TEXT NOT NULL, label TEXT, marked REAL, bytes INTEGER NOT NULL)"""
_COLUMNS = "id, created, source, category, score, threshold, reason, label, marked, bytes"


class ReviewStoreError(ValueError):
    """A review store that cannot be opened or an item that cannot be stored or marked."""


@dataclass(frozen=True)
class ReviewItem:
    """One stored frame: where and when it came from, its score, why it was kept (``reason``:
    "flagged", "near threshold", or another producer's word such as a shadow model's
    disagreement) and the person's ``label`` ("good", "defect" or None while unmarked)."""

    id: int
    created: float
    source: str
    category: str | None
    score: float
    threshold: float | None
    reason: str
    label: str | None
    marked: float | None
    bytes: int

    def to_json(self) -> dict:
        return {"id": self.id, "created": self.created, "source": self.source, "category": self.category,
                SCORE: self.score, "threshold": self.threshold, "reason": self.reason, "label": self.label,
                "marked": self.marked}


class ReviewStore:
    """A capped folder of review items (see the module docstring); ``close`` when done. Caps of
    None (``reader``) open it to read and mark only: no adds, no eviction."""

    def __init__(self, folder: str | os.PathLike[str], max_bytes: int | None = DEFAULT_MAX_BYTES,
                 max_items: int | None = DEFAULT_MAX_ITEMS) -> None:
        if (max_bytes is None) != (max_items is None):
            raise ReviewStoreError(f"review store caps must both be set (a writer) or both None (a reader), got "
                                   f"{max_bytes} bytes and {max_items} items; pass both or use ReviewStore.reader")
        if max_bytes is not None and (max_bytes < 1 or max_items < 1):
            raise ReviewStoreError(f"review store caps must be at least 1, got {max_bytes} bytes and {max_items} "
                                   "items; pass positive caps")
        self.folder = Path(folder)
        self.max_bytes = None if max_bytes is None else int(max_bytes)
        self.max_items = None if max_items is None else int(max_items)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.folder / INDEX_FILE, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ReviewStoreError(f"review store {self.folder}: cannot open it ({exc}); pass a folder you can "
                                   "write to") from None
        self._lock = threading.Lock()
        try:
            with self._sqlite("open it"):
                self._clear_orphans()
                if self.max_bytes is not None:
                    self._evict(0)  # caps lowered since the last run
        except ReviewStoreError:
            self._db.close()
            raise

    @classmethod
    def reader(cls, folder: str | os.PathLike[str]) -> ReviewStore:
        """Open a folder another process may be writing to, to read it: never evicts (its caps are
        the writer's business) and cannot add."""
        return cls(folder, None, None)

    def add(self, frame: np.ndarray, overlay: np.ndarray, *, source: str, category: str | None, score: float,
            threshold: float | None, reason: str) -> int | None:
        """Store a frame and its overlay (BGR uint8); the new id, or None when the item alone is
        larger than the byte cap. ReviewStoreError on a reader."""
        if self.max_bytes is None:
            raise ReviewStoreError(f"review store {self.folder} was opened to read (ReviewStore.reader); open it "
                                   "with caps to add items")
        frame_png = _encode(".png", frame)
        overlay_jpg = _encode(".jpg", overlay)
        size = len(frame_png) + len(overlay_jpg)
        if size > self.max_bytes:
            return None
        with self._lock, self._sqlite("add an item"):
            self._evict(size)
            self._db.execute("BEGIN IMMEDIATE")  # the write lock first: another opener's sweep waits for the row
            try:  # the row commits after its files exist; a kill before leaves files _clear_orphans removes
                item_id = self._db.execute(
                    f"INSERT INTO items ({_COLUMNS}) VALUES (NULL, ?, ?, ?, ?, ?, ?, NULL, NULL, ?)",
                    (time.time(), source, category, float(score), threshold, reason, size)).lastrowid
                for suffix, data in (("png", frame_png), ("jpg", overlay_jpg)):
                    (self.folder / f"{item_id}.{suffix}").write_bytes(data)
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # SQLite may have rolled back already (a full disk)
                    self._db.execute("ROLLBACK")
                self._clear_orphans()
                raise
        return item_id

    def mark(self, item_id: int, label: str | None) -> ReviewItem:
        """Set an item's label ("good", "defect"; None unmarks it); ReviewStoreError for an unknown
        id or label."""
        if label is not None and label not in LABELS:
            raise ReviewStoreError(f"label must be 'good' or 'defect' (or none to unmark), got {label!r}")
        with self._lock:
            updated = self._db.execute("UPDATE items SET label = ?, marked = ? WHERE id = ?",
                                       (label, None if label is None else time.time(), item_id)).rowcount
        if not updated:
            raise _gone(item_id)
        return self.get(item_id)

    def get(self, item_id: int) -> ReviewItem:
        rows = self._select("WHERE id = ?", (item_id,))
        if not rows:
            raise _gone(item_id)
        return rows[0]

    def items(self, marked: bool | None = None, limit: int | None = None) -> list[ReviewItem]:
        """Items, newest first: all, only marked (True) or only unmarked (False)."""
        where = "" if marked is None else f"WHERE label IS {'NOT ' if marked else ''}NULL"
        return self._select(f"{where} ORDER BY id DESC" + ("" if limit is None else f" LIMIT {int(limit)}"), ())

    def image(self, item_id: int, kind: str) -> bytes:
        """The encoded image of an item in the index: "frame" (PNG) or "overlay" (JPEG). Read under
        the lock eviction takes, so an item listed a moment ago and evicted since (the cap) raises
        ReviewStoreError like any unknown id; so does one another process evicted (file gone)."""
        if kind not in IMAGE_KINDS:
            raise ReviewStoreError(f"image kind must be 'frame' or 'overlay', got {kind!r}")
        with self._lock:
            if self._db.execute("SELECT 1 FROM items WHERE id = ?", (item_id,)).fetchone() is None:
                raise _gone(item_id)
            try:
                return (self.folder / f"{item_id}.{IMAGE_KINDS[kind][0]}").read_bytes()
            except FileNotFoundError:
                raise _gone(item_id) from None

    def usage(self) -> dict:
        """Items, marked items and bytes held, with the caps (None for a reader: it enforces none)."""
        with self._lock:
            count, marked, size = self._db.execute(
                "SELECT COUNT(*), COUNT(label), COALESCE(SUM(bytes), 0) FROM items").fetchone()
        return {"items": count, "marked": marked, "unmarked": count - marked, "bytes": size,
                "max_items": self.max_items, "max_bytes": self.max_bytes}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ReviewStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _sqlite(self, doing: str) -> Iterator[None]:
        """SQLite's errors as one ReviewStoreError: another process holding the write lock past the
        busy timeout, or a store closed while a thread was still adding, must not kill that thread."""
        try:
            yield
        except sqlite3.Error as exc:
            raise ReviewStoreError(f"review store {self.folder}: could not {doing} ({type(exc).__name__}: {exc}); "
                                   "close other programs writing to it, or pass another folder") from None

    def _select(self, tail: str, args: tuple) -> list[ReviewItem]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM items {tail}", args).fetchall()
        return [ReviewItem(*row) for row in rows]

    def _evict(self, incoming: int) -> None:
        """Delete the oldest items (unmarked first) until ``incoming`` more bytes and one more item fit
        (none more when ``incoming`` is 0: only what exceeds the caps now). Called under the lock or
        at open."""
        extra = 1 if incoming else 0
        count, size = self._db.execute("SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM items").fetchone()
        victims = self._db.execute("SELECT id, bytes FROM items ORDER BY label IS NOT NULL, id").fetchall()
        for item_id, item_bytes in victims:
            if count + extra <= self.max_items and size + incoming <= self.max_bytes:
                break
            self._db.execute("DELETE FROM items WHERE id = ?", (item_id,))
            for suffix, _ in IMAGE_KINDS.values():
                (self.folder / f"{item_id}.{suffix}").unlink(missing_ok=True)
            count, size = count - 1, size - item_bytes

    def _clear_orphans(self) -> None:
        """Remove image files without a row (a process killed between writing files and the row).
        Under SQLite's write lock, which an add in another process holds until its row commits."""
        suffixes = {suffix for suffix, _ in IMAGE_KINDS.values()}
        self._db.execute("BEGIN IMMEDIATE")
        try:
            known = {str(row[0]) for row in self._db.execute("SELECT id FROM items")}
            for path in self.folder.iterdir():
                if path.suffix[1:] in suffixes and path.stem not in known:
                    path.unlink(missing_ok=True)
        finally:
            self._db.execute("COMMIT")


def _gone(item_id: int) -> ReviewStoreError:
    return ReviewStoreError(f"no review item {item_id}; it may have been evicted to keep the store's cap")


def _encode(suffix: str, image: np.ndarray) -> bytes:
    import cv2  # here, not at import: the CLI reads this module's caps at start

    ok, data = cv2.imencode(suffix, image, [cv2.IMWRITE_JPEG_QUALITY, 85] if suffix == ".jpg" else [])
    if not ok:
        raise ReviewStoreError(f"could not encode a {image.shape} image as {suffix[1:]}; pass a BGR uint8 frame")
    return data.tobytes()
