"""The part ID a camera frame carries into the results.

By default it is the camera's own frame counter (its block ID, kept increasing across reopens;
a gap means frames the camera sent and the host lost). A line that names its parts (a PLC, an
MQTT message) announces each ID to a ``PartIdQueue``; a camera on ``trigger=software&part_ids=NAME``
takes the IDs of the queue called NAME in order and fires one software trigger per ID, so each
frame carries the ID that armed it. Any object with ``take(timeout_s)`` can stand in for a queue.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Protocol


class PartIdProvider(Protocol):
    """Gives the next part's ID, or None when none arrived within ``timeout_s``."""

    def take(self, timeout_s: float) -> str | None: ...


class PartIdQueue:
    """Part IDs announced from any thread, taken in order by one camera (thread-safe)."""

    def __init__(self) -> None:
        self._ids: deque[str] = deque()
        self._cond = threading.Condition()

    def announce(self, part_id: object) -> None:
        """Queue one part; its ID becomes text (``str``). An empty ID is refused."""
        text = str(part_id).strip()
        if not text:
            raise ValueError("an empty part ID was announced; send the part's ID (e.g. its serial or counter)")
        with self._cond:
            self._ids.append(text)
            self._cond.notify()

    def take(self, timeout_s: float) -> str | None:
        with self._cond:
            if not self._ids:
                self._cond.wait(timeout_s)
            return self._ids.popleft() if self._ids else None

    def __len__(self) -> int:
        with self._cond:
            return len(self._ids)


_QUEUES: dict[str, PartIdQueue] = {}
_QUEUES_LOCK = threading.Lock()


def part_id_queue(name: str) -> PartIdQueue:
    """The queue called ``name`` (made on first use): what announces and what takes meet here."""
    with _QUEUES_LOCK:
        return _QUEUES.setdefault(name, PartIdQueue())


class FrameCounter:
    """Part numbers from the camera's block IDs: those of one acquisition as they come (gaps kept),
    continued after the last number when a reopened camera starts counting again."""

    def __init__(self) -> None:
        self._offset = 0
        self._next: int | None = None
        self._restarted = True

    def restart(self) -> None:
        """The camera was (re)started: its block IDs begin again."""
        self._restarted = True

    def number(self, block_id: int) -> int:
        if self._restarted:
            self._offset = 0 if self._next is None else self._next - block_id
            self._restarted = False
        value = self._offset + block_id
        self._next = value + 1
        return value
