"""A candidate detector in shadow: it scores the frames the deployed one scored, off the loop's path.

The loop hands each scored frame to ``Shadow.offer``, an append to a bounded queue that never
waits; the shadow's own thread runs the candidate on what is waiting and compares its verdict and
normalised score with the deployed detector's. When the candidate falls behind, the oldest waiting
frames are dropped and counted, so the deployed detector's pace never depends on the candidate's.
Frames whose verdicts differ go to a ``DisagreementSink``: the review queue, or ``DisagreementLog``
(a capped folder, ``run --shadow-log DIR``).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import cv2
import numpy as np

from ..detector import Detector
from ..errors import ArtifactError
from ..log import notice
from ..result import Result
from .outputs import JsonlWriter, frame_place
from .sources import SourceId

if TYPE_CHECKING:
    from ..monitor.prometheus import DetectorMetrics

QUEUE_FRAMES = 8  # frames waiting for the candidate before the oldest is dropped
LOG_FILE = "disagreements.jsonl"


@dataclass(frozen=True)
class ShadowFrame:
    """A frame the deployed detector scored and where it came from: its source's name and category,
    its place in the source (``source_id``) and in the run (``index``), and the source's
    normalisation (for overlays)."""

    image: np.ndarray
    source: str
    category: str | None
    source_id: SourceId
    index: int
    normalization: tuple[float, float] | None


class DisagreementSink(Protocol):
    """Where frames go whose verdicts differ (called on the shadow's thread, one frame at a time)."""

    def on_disagreement(self, frame: ShadowFrame, deployed: Result, candidate: Result) -> None: ...

    def close(self) -> None: ...


class DisagreementLog:
    """A folder of disagreements: each frame as ``<run>_<index>.png`` and one line in
    disagreements.jsonl (where it came from, both results). Capped at ``max_items`` lines, those
    of earlier runs included: later disagreements are counted (``skipped``), not written."""

    def __init__(self, folder: str | Path, max_items: int) -> None:
        if isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 1:
            raise ValueError(f"the shadow log's cap must be at least 1 disagreement, got {max_items!r}; pass "
                             "--shadow-log-max N with N >= 1")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / LOG_FILE
        self.held = 0
        if path.is_file():
            with path.open(encoding="utf-8") as lines:
                self.held = sum(1 for _ in lines)
        self.max_items = max_items
        self.written = self.skipped = 0
        self._lines = path.open("a", encoding="utf-8")
        self._log = JsonlWriter(self._lines)
        self._run = time.strftime("%Y%m%d-%H%M%S")

    def on_disagreement(self, frame: ShadowFrame, deployed: Result, candidate: Result) -> None:
        if self.held >= self.max_items:
            if not self.skipped:
                notice(f"shadow log {self.folder} holds its cap of {self.max_items} disagreements; later ones are "
                       "counted, not written")
            self.skipped += 1
            return
        name = f"{self._run}_{frame.index:06d}.png"
        if not cv2.imwrite(str(self.folder / name), frame.image):
            notice(f"could not write {self.folder / name}; check free space and permissions")
        self._log.write({**frame_place(frame.source, frame.source_id, frame.index), "category": frame.category,
                         "deployed": deployed.to_json(), "candidate": candidate.to_json(), "files": {"frame": name}})
        self.held += 1
        self.written += 1

    def summary(self) -> dict:
        return {"folder": str(self.folder), "written": self.written, "skipped": self.skipped, "held": self.held,
                "max": self.max_items}

    def close(self) -> None:
        self._lines.close()


@dataclass
class Agreement:
    """The comparison's counts for one source (or all): frames compared, agreeing verdicts, frames
    dropped, and the absolute differences of the normalised scores."""

    compared: int = 0
    agreed: int = 0
    dropped: int = 0
    difference_sum: float = 0.0
    difference_max: float = 0.0
    differences: int = 0

    def add(self, deployed: Result, candidate: Result) -> bool:
        """Count one compared frame; True when the verdicts agree."""
        agreed = deployed.is_anomaly == candidate.is_anomaly
        self.compared += 1
        self.agreed += agreed
        if deployed.score_normalized is not None and candidate.score_normalized is not None:
            difference = abs(deployed.score_normalized - candidate.score_normalized)
            self.difference_sum += difference
            self.difference_max = max(self.difference_max, difference)
            self.differences += 1
        return agreed

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.compared if self.compared else None

    def to_json(self) -> dict:
        mean = self.difference_sum / self.differences if self.differences else None
        return {"compared": self.compared, "agreed": self.agreed, "disagreed": self.compared - self.agreed,
                "dropped": self.dropped, "agreement": self.agreement,
                "score_normalized_difference": {"mean": mean, "max": self.difference_max if self.differences else None}}


def check_candidate(candidate: Detector, categories: list[str | None]) -> None:
    """ArtifactError unless ``candidate`` has a threshold for each source's category (None: its own)
    and statistics for it (an unknown category fails in ``scoring``)."""
    for category in dict.fromkeys(categories):
        if candidate.scoring(category)[0] is None:
            raise ArtifactError(f"shadow candidate {candidate.backend.path}: no threshold for "
                                f"{category or 'its frames'} (an export without statistics), so its verdicts "
                                "cannot be compared; pass an export with statistics to --shadow")


class Shadow:
    """Runs ``candidate`` (owned: closed by ``finish``) on a thread over the frames ``offer`` hands
    it, up to ``batch`` per run; ``finish`` returns the comparison's summary."""

    def __init__(self, candidate: Detector, sink: DisagreementSink | None = None,
                 metrics: DetectorMetrics | None = None, batch: int = 1, capacity: int = QUEUE_FRAMES) -> None:
        self.candidate = candidate
        self.sink = sink
        self.metrics = metrics
        self.batch = batch
        self.capacity = capacity
        self.error: str | None = None
        self.total = Agreement()
        self.by_source: dict[str, Agreement] = {}
        self._queue: deque[tuple[ShadowFrame, Result]] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._summary: dict | None = None
        self._thread = threading.Thread(target=self._work, name="mmad-edge-shadow", daemon=True)
        self._thread.start()

    def offer(self, frame: ShadowFrame, deployed: Result) -> None:
        """Queue a scored frame for the candidate (never waits: when the queue is full, or the
        candidate has failed, a frame is dropped and counted)."""
        with self._cond:
            if self._stopping or self.error is not None:
                self._drop(frame)
                return
            if len(self._queue) >= self.capacity:
                self._drop(self._queue.popleft()[0])
            self._queue.append((frame, deployed.detached()))
            self._cond.notify()

    def finish(self, drain: bool = True) -> dict:
        """Stop the thread (``drain``: after comparing the frames still waiting, at most the queue's
        capacity; else they count as dropped), close the candidate and the sink; the summary.
        Idempotent."""
        if self._summary is not None:
            return self._summary
        with self._cond:
            if self._queue and drain and self.error is None:
                notice(f"shadow: comparing what still waits for the candidate ({len(self._queue)} frames)")
            while self._queue and not drain:
                self._drop(self._queue.popleft()[0])
            self._stopping = True
            self._cond.notify_all()
        self._thread.join()
        try:
            self.candidate.close()
        finally:
            if self.sink is not None:
                self.sink.close()
        self._summary = self._summarize()
        return self._summary

    def close(self) -> None:
        """Stop without comparing the frames still waiting (an error or an interrupt ended the run)."""
        self.finish(drain=False)

    def agreement(self) -> dict[str, dict]:
        """The comparison so far, per source name (for the live page; any thread)."""
        with self._cond:
            return {name: tally.to_json() for name, tally in self.by_source.items()}

    def _drop(self, frame: ShadowFrame) -> None:
        """Count a frame the candidate will not see (called under the lock)."""
        self.total.dropped += 1
        self._source(frame.source).dropped += 1
        if self.metrics is not None:
            self.metrics.shadow_dropped(frame.source)

    def _source(self, name: str) -> Agreement:
        return self.by_source.setdefault(name, Agreement())

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue:
                    return
                items = [self._queue.popleft() for _ in range(min(self.batch, len(self._queue)))]
            try:
                results = self.candidate.predict([frame.image for frame, _ in items],
                                                 categories=[frame.category for frame, _ in items])
                for (frame, deployed), result in zip(items, results):
                    self._compare(frame, deployed, result)
            except Exception as exc:  # the deployed detector goes on without its shadow
                self._fail(exc, [frame for frame, _ in items])
                return

    def _compare(self, frame: ShadowFrame, deployed: Result, candidate: Result) -> None:
        with self._cond:
            agreed = self.total.add(deployed, candidate)
            self._source(frame.source).add(deployed, candidate)
            agreement = self._source(frame.source).agreement
        if self.metrics is not None:
            self.metrics.shadow_compared(frame.source, agreed, agreement)
        if not agreed and self.sink is not None:
            self.sink.on_disagreement(frame, deployed, candidate)

    def _fail(self, exc: Exception, lost: list[ShadowFrame]) -> None:
        """Stop shadowing after an error: the frames in hand and those waiting count as dropped."""
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        notice(f"shadow candidate failed ({text}); the deployed detector goes on without it")
        with self._cond:
            self.error = text
            for frame in lost:
                self._drop(frame)
            while self._queue:
                self._drop(self._queue.popleft()[0])

    def _summarize(self) -> dict:
        summary = {"candidate": str(getattr(self.candidate.backend, "path", "")),
                   "backend": self.candidate.backend.name, **self.total.to_json(), "error": self.error,
                   "sources": {name: tally.to_json() for name, tally in self.by_source.items()}}
        log = self.sink if isinstance(self.sink, DisagreementLog) else getattr(self.sink, "log", None)
        if log is not None:  # the log itself, or the one the live page's review queue passes frames on to
            summary["log"] = log.summary()
        notice(summary_line(summary))
        return summary


def summary_line(summary: dict) -> str:
    """The shadow's one summary line."""
    agreement = summary["agreement"]
    share = "" if agreement is None else f" ({agreement:.1%})"
    difference = summary["score_normalized_difference"]
    scores = ("" if difference["mean"] is None else
              f"; normalized score difference mean {difference['mean']:.4g}, max {difference['max']:.4g}")
    return (f"shadow {summary['candidate']}: {summary['compared']} compared, {summary['agreed']} agree{share}, "
            f"{summary['disagreed']} disagree, {summary['dropped']} dropped{scores}")
