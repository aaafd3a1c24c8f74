"""Overlap capture with inference: a reader thread fills a bounded buffer, the caller detects.

For live sources the buffer keeps only the newest frames (the camera is never made to wait; the
stale frames are counted as drops). For files the reader waits for room, so every frame is
processed in order.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Deque, Iterator, List, Optional, Tuple

import numpy as np

from .detector import Detector, check_map_size
from .result import Result
from .sources import Frame, FrameSource, SourceId

_POLL_S = 0.1


class FrameReader:
    """Reads ``source`` on a daemon thread into a bounded buffer; ``take`` hands out batches."""

    def __init__(self, source: FrameSource, capacity: int) -> None:
        self.source = source
        self.capacity = max(1, int(capacity))
        self.dropped = 0
        self._items: Deque[Frame] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._done = False
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._read, name="mmad-edge-reader", daemon=True)

    def start(self) -> "FrameReader":
        self._thread.start()
        return self

    def _read(self) -> None:
        frames = iter(self.source.frames())
        try:
            for item in frames:
                with self._cond:
                    while not self.source.live and len(self._items) >= self.capacity and not self._stopping:
                        self._cond.wait(_POLL_S)
                    if self._stopping:
                        break
                    if len(self._items) >= self.capacity:
                        self._items.popleft()
                        self.dropped += 1
                    self._items.append(item)
                    self._cond.notify_all()
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._error = exc
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()  # runs the source's cleanup (releases the capture)
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def take(self, count: int) -> List[Frame]:
        """Up to ``count`` frames (files: as many as the buffer holds, until the end); [] when finished."""
        wanted = 1 if self.source.live else min(count, self.capacity)
        with self._cond:
            while len(self._items) < wanted and not self._done:
                self._cond.wait(_POLL_S)
            if not self._items and self._error is not None:
                raise self._error
            batch = [self._items.popleft() for _ in range(min(count, len(self._items)))]
            self._cond.notify_all()
            return batch

    def stop(self, timeout_s: float = 2.0) -> None:
        """Ask the reader to finish and wait a little for it (a blocked camera read may linger)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)


class DetectionStream:
    """Iterate ``(source_id, frame, result)`` over a source; ``stop()`` ends it cleanly."""

    def __init__(
        self,
        detector: Detector,
        source: FrameSource,
        batch: int = 1,
        threshold: Optional[float] = None,
        map_size: str = "model",
        capacity: Optional[int] = None,
    ) -> None:
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        check_map_size(map_size)
        self.detector = detector
        self.source = source
        self.batch = batch
        self.threshold = threshold
        self.map_size = map_size
        default_capacity = batch if source.live else 4 * batch
        self._reader = FrameReader(source, capacity or default_capacity)
        self._stop = threading.Event()
        self.frames = 0
        self.started_at = 0.0

    @property
    def dropped(self) -> int:
        """Live frames discarded because newer ones arrived before inference was ready."""
        return self._reader.dropped

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started_at if self.started_at else 0.0

    def __iter__(self) -> Iterator[Tuple[SourceId, np.ndarray, Result]]:
        self.started_at = time.perf_counter()
        self._reader.start()
        try:
            while not self._stop.is_set():
                items = self._reader.take(self.batch)
                if not items:
                    return
                results = self.detector.predict([frame for _, frame in items], self.threshold, self.map_size)
                for (source_id, frame), result in zip(items, results):
                    self.frames += 1
                    yield source_id, frame, result
        finally:
            self._reader.stop()

    def stop(self) -> None:
        """End the iteration after the current batch (callable from any thread or a signal handler)."""
        self._stop.set()
