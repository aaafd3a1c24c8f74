"""A small durable queue on disk (SQLite): what the MQTT sink has not yet seen acknowledged.

A message leaves the spool only once the broker acknowledged it, so a broker that is down when
the run starts, or restarts mid-run, or a run that ends first, loses nothing: the next connection
(or the next run with the same sink and spool folder) sends what is left, oldest first.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import threading
from pathlib import Path

from ..errors import SinkError

# A spool holds at most this many messages; beyond it the oldest are dropped (and counted).
MAX_SPOOLED = 1_000_000


def default_spool_dir() -> Path:
    """``$XDG_CACHE_HOME/mmad-edge/spool`` (``~/.cache/...`` without it)."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "mmad-edge" / "spool"


def spool_path(folder: Path, url: str) -> Path:
    """The spool file of one sink URL: readable name plus a hash, so two URLs never share one."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", url.split("://", 1)[-1]).strip("_")[:60]
    return folder / f"{readable}-{hashlib.sha256(url.encode()).hexdigest()[:10]}.sqlite"


class Spool:
    """Messages in arrival order, each with a row id; safe to share between threads (the sink's
    worker, and ``stop`` while the worker hangs in a connect)."""

    def __init__(self, path: Path, limit: int = MAX_SPOOLED) -> None:
        self.path = path
        self.limit = limit
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a crash of the process
            self._db.execute("CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY AUTOINCREMENT, body BLOB)")
        except (OSError, sqlite3.Error) as exc:
            raise SinkError(f"cannot open the sink spool {path} ({exc}); pass a writable spool folder") from None

    def add(self, bodies: list[bytes]) -> int:
        """Append ``bodies`` in one transaction; returns how many old ones were dropped to stay in ``limit``."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO messages (body) VALUES (?)", [(body,) for body in bodies])
            excess = self._count() - self.limit
            if excess > 0:
                self._db.execute("DELETE FROM messages WHERE id IN (SELECT id FROM messages ORDER BY id LIMIT ?)",
                                 (excess,))
        return max(excess, 0)

    def after(self, row_id: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` messages with ids above ``row_id``, oldest first."""
        with self._lock:
            return self._db.execute("SELECT id, body FROM messages WHERE id > ? ORDER BY id LIMIT ?",
                                    (row_id, limit)).fetchall()

    def remove(self, row_id: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM messages WHERE id = ?", (row_id,))

    def count(self) -> int:
        with self._lock:
            return self._count()

    def _count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
