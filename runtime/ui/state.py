"""What the page shows, handed over by the loop at the cost of a lock and a few appends per frame.

The loop calls ``LiveState.offer`` with each result; only the newest frame of each source is
kept (older ones are dropped, never copied or encoded), with bounded histories of scores and the
drift statistic. Frames for the review queue wait in a small drop-oldest queue, at most
``review_per_s`` per source per second, for the UI's worker (``take_review``): the loop never
encodes or writes an image. Everything that costs (overlays, JPEGs, histograms) happens on the
UI's threads when the page asks.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..artifact.contract import IS_ANOMALY, OUTPUT_NAMES, SCORE_NORMALIZED
from ..result import Result

SCORE = OUTPUT_NAMES[1]

SCORE_HISTORY = 1000  # scores per source in the histogram
DRIFT_HISTORY = 300  # drift points per source in the chart
FPS_WINDOW = 60  # frame times per source for the fps
REVIEW_QUEUE = 16  # review candidates waiting for the worker (oldest dropped)
NEAR_BAND = 0.1  # "near threshold": score_normalized within this of 0.5 (a fifth of the median-threshold gap)
REVIEW_PER_S = 1.0  # review candidates kept per source per second


@dataclass
class Latest:
    """A source's newest frame as the loop handed it (the map copied: backends may reuse theirs)."""

    seq: int
    frame: np.ndarray
    result: Result


@dataclass
class Candidate:
    """A frame for the review queue, with why it was picked."""

    source: int
    frame: np.ndarray
    result: Result
    reason: str


@dataclass
class SourceState:
    """One source's counts and histories (all guarded by ``LiveState``'s lock)."""

    name: str
    category: str | None
    drift_tolerance: float | None
    frames: int = 0
    anomalies: int = 0
    latest: Latest | None = None
    scores: deque = field(default_factory=lambda: deque(maxlen=SCORE_HISTORY))
    drift: deque = field(default_factory=lambda: deque(maxlen=DRIFT_HISTORY))
    times: deque = field(default_factory=lambda: deque(maxlen=FPS_WINDOW))
    next_review: float = 0.0


class LiveState:
    """The bounded buffer between the loop (``offer``) and the page (``snapshot``, ``latest``)."""

    def __init__(self, near_band: float = NEAR_BAND, review_per_s: float = REVIEW_PER_S) -> None:
        self.near_band = near_band
        self.review_interval_s = 1.0 / review_per_s if review_per_s > 0 else float("inf")
        self.sources: list[SourceState] = []
        self.version = 0
        self.ended = False
        self.agreement: Callable[[], dict] | None = None  # a shadow candidate's agreement per source name
        self._reviews: deque[Candidate] = deque(maxlen=REVIEW_QUEUE)
        self._lock = threading.Lock()
        self._review_ready = threading.Condition(self._lock)

    def add_source(self, name: str, category: str | None, drift_tolerance: float | None = None) -> int:
        """Register a source before its first frame; its index for ``offer``."""
        with self._lock:
            self.sources.append(SourceState(name, category, drift_tolerance))
            return len(self.sources) - 1

    def offer(self, source: int, frame: np.ndarray, result: Result, drift_statistic: float | None = None) -> None:
        """The loop's hand-over of one result (never blocks on the page)."""
        now = time.monotonic()
        kept = result.detached()
        reason = self._review_reason(result)
        with self._lock:
            state = self.sources[source]
            state.frames += 1
            state.anomalies += bool(result.is_anomaly)
            state.latest = Latest(state.frames, frame, kept)
            state.scores.append(result.score)
            state.times.append(now)
            if drift_statistic is not None:
                state.drift.append((state.frames, drift_statistic))
            if reason is not None and now >= state.next_review:
                state.next_review = now + self.review_interval_s
                self._reviews.append(Candidate(source, frame, kept, reason))
                self._review_ready.notify()
            self.version += 1

    def propose(self, source: int, frame: np.ndarray, result: Result, reason: str) -> None:
        """A frame for the review queue from elsewhere (a shadow candidate's disagreement), not
        rate-limited; ``reason`` says why."""
        kept = result.detached()
        with self._lock:
            self._reviews.append(Candidate(source, frame, kept, reason))
            self._review_ready.notify()

    def _review_reason(self, result: Result) -> str | None:
        if result.is_anomaly:
            return "flagged"
        near = result.score_normalized is not None and result.score_normalized >= 0.5 - self.near_band
        return "near threshold" if near and result.threshold is not None else None

    def end(self) -> None:
        """The sources have ended (the page says so and stays up)."""
        with self._lock:
            self.ended = True
            self.version += 1

    def take_review(self, timeout_s: float) -> Candidate | None:
        """The oldest waiting review candidate, waiting up to ``timeout_s`` for one."""
        with self._review_ready:
            if not self._reviews:
                self._review_ready.wait(timeout_s)
            return self._reviews.popleft() if self._reviews else None

    def latest(self, source: int) -> tuple[SourceState, Latest | None]:
        """A source's state and newest frame (IndexError for an unknown source)."""
        with self._lock:
            state = self.sources[source]
            return state, state.latest

    def snapshot(self) -> dict:
        """Everything the page draws, as JSON-ready values (histograms binned here, off the loop)."""
        with self._lock:
            copied = [(state, state.latest, list(state.scores), list(state.drift), list(state.times),
                       state.frames, state.anomalies) for state in self.sources]
            version, ended = self.version, self.ended
        return {"version": version, "ended": ended, "shadow": None if self.agreement is None else self.agreement(),
                "sources": [_source_json(index, *entry) for index, entry in enumerate(copied)]}


def _source_json(index: int, state: SourceState, latest: Latest | None, scores: list[float],
                 drift: list[tuple[int, float]], times: list[float], frames: int, anomalies: int) -> dict:
    result = None if latest is None else latest.result
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    return {
        "index": index, "name": state.name, "category": state.category, "frames": frames,
        "anomalies": anomalies, "normal": frames - anomalies,
        "fps": round((len(times) - 1) / span, 2) if span > 0 else 0.0,
        "seq": None if latest is None else latest.seq,
        SCORE: None if result is None else result.score,
        SCORE_NORMALIZED: None if result is None else result.score_normalized,
        "threshold": None if result is None else result.threshold,
        IS_ANOMALY: None if result is None else result.is_anomaly,
        "histogram": histogram(scores, None if result is None else result.threshold),
        "drift": {"points": drift, "tolerance": state.drift_tolerance},
    }


def histogram(scores: list[float], threshold: float | None, bins: int = 30) -> dict:
    """Counts of the finite ``scores`` in ``bins`` equal bins spanning them and the threshold."""
    values = np.asarray([score for score in scores if np.isfinite(score)], dtype=np.float64)
    if values.size == 0:
        return {"edges": [], "counts": []}
    low, high = float(values.min()), float(values.max())
    if threshold is not None:
        low, high = min(low, threshold), max(high, threshold)
    if high <= low:
        high = low + max(abs(low) * 1e-3, 1e-6)
    counts, edges = np.histogram(values, bins=bins, range=(low, high))
    return {"edges": [float(edge) for edge in edges], "counts": [int(count) for count in counts]}
