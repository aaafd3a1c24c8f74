"""A sink delivers verdict messages on its own thread, so inference never waits on a network.

``submit`` only appends to a bounded in-memory queue (microseconds); when the queue is full the
oldest message is dropped and counted. The worker connects, delivers in order and, when the far
end fails, reconnects with exponential backoff, saying so in one line per outage. ``wait`` and
``stop`` end a run: wait (bounded) until the queue is empty, then stop and report what was sent,
dropped and what stays queued.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque

from ..log import notice
from ..loop.outputs import json_safe
from .target import SinkSettings, SinkTarget

BACKOFF_START_S = 0.1


class PermanentDeliveryError(Exception):
    """The far end refused this message for good (retrying cannot help): it is dropped and counted."""


class Backoff:
    """Waits that double from ``BACKOFF_START_S`` to ``limit_s``; ``reset`` after a success."""

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self.next_s = BACKOFF_START_S

    def step(self) -> float:
        wait, self.next_s = self.next_s, min(self.next_s * 2, self.limit_s)
        return wait

    def reset(self) -> None:
        self.next_s = BACKOFF_START_S


class Sink:
    """Base of every sink. Subclasses set ``kind`` and implement ``_connect``, ``_deliver`` and
    ``_disconnect`` (all called on the worker thread only); a sink that keeps messages across runs
    (``durable``) overrides ``_work`` instead."""

    kind = ""
    durable = False

    def __init__(self, target: SinkTarget, settings: SinkSettings) -> None:
        self.target = target
        self.settings = settings
        self.name = target.url
        self.sent = 0
        self.dropped = 0
        self.failures = 0
        self.refused = 0
        self.overflowed = 0  # the part of ``dropped`` a full queue pushed out (said at the first)
        self.last_error: str | None = None
        self._queue: deque[dict] = deque()
        self._held = 0  # messages the worker has taken and not yet settled
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._connected = False
        self._failing = False
        self._thread = threading.Thread(target=self._main, name=f"sink {self.name}", daemon=True)

    def start(self) -> Sink:
        self._thread.start()
        return self

    def submit(self, message: dict) -> None:
        """Queue one message for delivery; never blocks (a full queue drops its oldest, counted)."""
        with self._cond:
            overflow = len(self._queue) >= self.settings.queue_size
            if overflow:
                self._queue.popleft()
                self.dropped += 1
                self.overflowed += 1
            self._queue.append(message)
            self._cond.notify_all()
        if overflow and self.overflowed == 1:
            notice(f"sink {self.name}: queue full ({self.settings.queue_size} messages); dropping the oldest, "
                   "each one counted")

    @property
    def queued(self) -> int:
        """Messages not yet delivered (in memory, in hand or spooled)."""
        with self._cond:
            return len(self._queue) + self._held

    def wait(self, deadline: float) -> bool:
        """Block until every message is delivered or ``time.monotonic()`` passes ``deadline``; True when empty."""
        with self._cond:
            while len(self._queue) + self._held and self._thread.is_alive():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return not (len(self._queue) + self._held)

    def stop(self, join_s: float = 1.0) -> dict:
        """Stop the worker (waiting up to ``join_s`` for it) and return ``report()``."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(join_s)
        return self.report()

    def report(self) -> dict:
        """Counts so far: ``sent``, ``dropped`` (queue overflow or refused), ``queued`` (undelivered;
        kept for the next run when ``durable``), ``failures`` (failed attempts), ``refused`` (the
        part of ``dropped`` the far end refused)."""
        return {"sink": self.name, "kind": self.kind, "sent": self.sent, "dropped": self.dropped,
                "queued": self.queued, "durable": self.durable, "failures": self.failures, "refused": self.refused,
                "last_error": self.last_error}

    # -- the worker ---------------------------------------------------------------------------

    def _main(self) -> None:
        try:
            self._work()
        finally:
            if self._connected:
                self._close_quietly()
            with self._cond:
                self._cond.notify_all()

    def _work(self) -> None:
        """Deliver queued messages one by one, oldest first, until stopped."""
        backoff = Backoff(self.settings.backoff_max_s)
        while True:
            message = self._take()
            if message is None:
                return
            while not self._stop.is_set():
                try:
                    self._ensure_connected()
                    self._deliver(message)
                except PermanentDeliveryError as exc:
                    self._settle(dropped=1)
                    self._refused(message, exc)
                    break
                except Exception as exc:  # the far end or the network: retry after a wait
                    self._failed(exc)
                    self._stop.wait(backoff.step())
                    continue
                backoff.reset()
                self._recovered()
                self._settle(sent=1)
                break

    def _take(self) -> dict | None:
        """The oldest queued message, held by the worker (None once stopped)."""
        with self._cond:
            while not self._queue and not self._stop.is_set():
                self._cond.wait()
            if self._stop.is_set():
                return None
            self._held += 1
            return self._queue.popleft()

    def _settle(self, sent: int = 0, dropped: int = 0) -> None:
        """Count held messages as sent or dropped and wake ``wait``."""
        with self._cond:
            self._held -= sent + dropped
            self.sent += sent
            self.dropped += dropped
            self._cond.notify_all()

    def _ensure_connected(self) -> None:
        """Connect unless connected; a failed attempt releases what it opened before raising."""
        if not self._connected:
            try:
                self._connect()
            except BaseException:
                self._close_quietly()
                raise
            self._connected = True

    def _failed(self, exc: Exception) -> None:
        """Count a failed attempt, drop the connection and say so once per outage."""
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if self._connected:
            self._close_quietly()
        if not self._failing:
            self._failing = True
            notice(f"sink {self.name}: cannot deliver ({self.last_error}); retrying with backoff up to "
                   f"{self.settings.backoff_max_s:g} s, up to {self.settings.queue_size} messages wait")

    def _refused(self, message: dict, exc: PermanentDeliveryError) -> None:
        """Count a message the far end refused for good; the first refusal is said."""
        self.refused += 1
        self.last_error = str(exc)
        if self.refused == 1:
            notice(f"sink {self.name}: message {message.get('message_id')} refused ({exc}); dropped "
                   "(further refusals are counted, not said)")

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            notice(f"sink {self.name}: delivering again after {self.failures} failed attempts")

    def _close_quietly(self) -> None:
        self._connected = False
        try:
            self._disconnect()
        except Exception:  # closing a broken connection may fail too; it is dropped either way
            pass

    def _connect(self) -> None:
        raise NotImplementedError

    def _deliver(self, message: dict) -> None:
        raise NotImplementedError

    def _disconnect(self) -> None:
        raise NotImplementedError



def payload(message: dict) -> bytes:
    """The message as strict JSON bytes (NaN and infinities as null)."""
    return json.dumps(json_safe(message), allow_nan=False, separators=(",", ":")).encode("utf-8")
