"""Overlap capture with inference: one reader thread per source fills a bounded buffer, the caller
detects on batches gathered from all of them.

For live sources the buffer keeps only the newest frames (the camera is never made to wait; the
stale frames are counted as drops). For files the reader waits for room, so every frame is
processed in order.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..detector import Detector, check_map_size
from ..result import Result
from .sources import Frame, FrameSource, SourceId, SourceLike, open_sources, source_specs

_POLL_S = 0.1


class FrameReader:
    """Reads ``source`` on a daemon thread into a bounded buffer guarded by ``cond`` (shared by the
    readers of one stream, so the consumer waits for any of them)."""

    def __init__(self, source: FrameSource, capacity: int, cond: threading.Condition | None = None) -> None:
        self.source = source
        self.capacity = max(1, int(capacity))
        self.dropped = 0
        self.items: deque[Frame] = deque()
        self.cond = cond or threading.Condition()
        self.done = False
        self.error: BaseException | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._read, name=f"mmad-edge-reader {source.name}", daemon=True)

    def start(self) -> FrameReader:
        self._thread.start()
        return self

    def _read(self) -> None:
        frames = iter(self.source.frames())
        try:
            for item in frames:
                with self.cond:
                    while not self.source.live and len(self.items) >= self.capacity and not self._stopping:
                        self.cond.wait(_POLL_S)
                    if self._stopping:
                        break
                    if len(self.items) >= self.capacity:
                        self.items.popleft()
                        self.dropped += 1
                    self.items.append(item)
                    self.cond.notify_all()
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self.error = exc
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()  # runs the source's cleanup (releases the capture)
            with self.cond:
                self.done = True
                self.cond.notify_all()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Ask the reader to finish and wait a little for it (a blocked camera read may linger)."""
        with self.cond:
            self._stopping = True
            self.cond.notify_all()
        self.source.stop()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)


class ReaderGroup:
    """The readers of a stream; ``take`` gathers one batch from all of them, round robin."""

    def __init__(self, sources: Sequence[FrameSource], capacity: int) -> None:
        cond = threading.Condition()
        self.readers = [FrameReader(source, capacity, cond) for source in sources]
        self._cond = cond
        self._next = 0

    def start(self) -> ReaderGroup:
        for reader in self.readers:
            reader.start()
        return self

    def _ready(self, count: int) -> bool:
        """Go now: a batch is full, a live frame waits (never made to wait for files), or no reader
        can add more (each finished or full)."""
        held = sum(len(reader.items) for reader in self.readers)
        if held >= count or any(reader.source.live and reader.items for reader in self.readers):
            return True
        return all(reader.done or len(reader.items) >= reader.capacity for reader in self.readers)

    def take(self, count: int) -> list[tuple]:
        """Up to ``count`` ``(reader index, (source_id, frame))``, one from each reader in turn (each
        source's frames stay in order); [] when every source has ended. A reader's error is raised
        once its buffered frames are taken."""
        with self._cond:
            while not self._ready(count):
                self._cond.wait(_POLL_S)
            for reader in self.readers:
                if reader.error is not None and not reader.items:
                    raise reader.error
            batch: list[tuple] = []
            order = [(self._next + step) % len(self.readers) for step in range(len(self.readers))]
            while len(batch) < count and any(self.readers[index].items for index in order):
                for index in order:
                    if self.readers[index].items and len(batch) < count:
                        batch.append((index, self.readers[index].items.popleft()))
            self._next = (self._next + 1) % len(self.readers)
            self._cond.notify_all()
            return batch

    def stop(self) -> None:
        for reader in self.readers:
            reader.stop()


@dataclass
class Scored:
    """One result of a stream: its source, where in the source, the frame, the verdict and the
    batch latency (seconds from the batch's start to its results; each frame waits for its batch)."""

    source: FrameSource
    source_id: SourceId
    frame: np.ndarray
    result: Result
    latency_s: float


class DetectionStream:
    """Iterate ``Scored`` items over one source or several (one batch may hold frames of several,
    each judged by its source's category); ``stop()`` ends it cleanly. ``detector`` is read once per
    batch: the caller may replace it when ``frames == scored`` (every scored frame handed out), and
    the next batch is the new one's."""

    def __init__(
        self,
        detector: Detector,
        sources: SourceLike | Sequence[SourceLike],
        batch: int = 1,
        threshold: float | None = None,
        map_size: str = "model",
        capacity: int | None = None,
        retry_s: float | None = None,
    ) -> None:
        """``sources``: what ``run_stream`` takes (camera indexes, URLs, paths, ``"NAME=SOURCE"``,
        SourceSpecs, FrameSources), opened here; ``retry_s`` as in ``RunOptions``."""
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        check_map_size(map_size)
        self.detector = detector
        self.sources = open_sources(source_specs(sources), retry_s=retry_s)
        self.batch = batch
        self.threshold = threshold
        self.map_size = map_size
        live = any(source.live for source in self.sources)
        self._readers = ReaderGroup(self.sources, capacity or (batch if live else 4 * batch))
        self._stop = threading.Event()
        self.frames = 0  # handed out
        self.scored = 0  # scored by the detector (ahead of ``frames`` within a batch)
        self.started_at = 0.0

    @property
    def dropped(self) -> int:
        """Live frames discarded because newer ones arrived before inference was ready."""
        return sum(reader.dropped for reader in self._readers.readers)

    def dropped_by(self, source: FrameSource) -> int:
        """Drops of one source."""
        return next(reader.dropped for reader in self._readers.readers if reader.source is source)

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started_at if self.started_at else 0.0

    def __iter__(self) -> Iterator[Scored]:
        self.started_at = time.perf_counter()
        self._readers.start()
        try:
            while not self._stop.is_set():
                items = self._readers.take(self.batch)
                if not items:
                    return
                sources = [self.sources[index] for index, _ in items]
                started = time.perf_counter()
                results = self.detector.predict([frame for _, (_, frame) in items], self.threshold, self.map_size,
                                                [source.category for source in sources])
                latency_s = time.perf_counter() - started
                self.scored += len(results)
                for source, (_, (source_id, frame)), result in zip(sources, items, results):
                    self.frames += 1
                    yield Scored(source, source_id, frame, result, latency_s)
        finally:
            self._readers.stop()

    def stop(self) -> None:
        """End the iteration after the current batch (callable from any thread or a signal handler)."""
        self._stop.set()
