"""Score drift: does a source still score like the normal images the export was calibrated on?

The stated test: the median of the last ``window`` scores, in units of the normal spread,

    statistic = (rolling median - normal median) / normal std

with the normal median and sample std of the held-out normal scores in the artifact's
``statistics`` (the category's, for a source given one). The std is the unit because the default
threshold is mean + 3 std of those scores: a statistic of 3 says the typical frame now scores about
at the threshold, i.e. about half the frames would be rejected. A median ignores the odd real
defect; only a shift of most frames (lighting, a moved camera, a dirty lens) moves it. Where the
std is missing or zero, a third of the threshold's distance from the median stands in for it
(what one std is under the mean + 3 std rule).

States, per monitor: once the window holds ``min_count`` scores, ``|statistic| > tolerance`` turns
"drifting" (said once); it turns back ("recovered", said once) only when ``|statistic|`` falls
below ``tolerance / 2``, so a statistic hovering at the tolerance does not flap.

What a state change says (one stderr line, one JSONL record) is written here too, so ``run`` and
``serve`` say it the same way.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from statistics import median
from typing import Any

DEFAULT_WINDOW = 200
DEFAULT_TOLERANCE = 3.0
DRIFTING, RECOVERED = "drifting", "recovered"
NO_STATISTICS = ("the artifact has no normal-score statistics (exported without held-out normals); re-export "
                 "with them to watch for drift")


def check_drift_options(window: Any, tolerance: Any) -> None:
    """A window of at least 1 score and a finite tolerance > 0 (one-line ValueErrors naming the flag)."""
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"drift window must be an integer >= 1, got {window!r}; pass e.g. --drift-window 200")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not math.isfinite(tolerance) \
            or tolerance <= 0:
        raise ValueError(f"drift tolerance must be a finite number > 0, got {tolerance!r}; pass e.g. "
                         "--drift-tolerance 3")


@dataclass(frozen=True)
class NormalScores:
    """Where normal scores sit: their median and spread (the statistic's unit)."""

    median: float
    spread: float

    @classmethod
    def from_statistics(cls, statistics: Mapping[str, Any] | None, category: str | None = None,
                        ) -> NormalScores | None:
        """From an artifact's ``statistics`` (the category's entry when given); None without them."""
        if category is not None and statistics is not None:
            statistics = (statistics.get("categories") or {}).get(category)
        if not statistics or not statistics.get("normalization"):
            return None
        low, high = (float(statistics["normalization"][key]) for key in ("low", "high"))
        std = (statistics.get("normal_scores") or {}).get("std")
        usable = isinstance(std, (int, float)) and math.isfinite(std) and std > 0
        return cls(low, float(std) if usable else max(high - low, 1e-12) / 3.0)


@dataclass(frozen=True)
class DriftEvent:
    """A change of state: ``state`` is "drifting" or "recovered"; ``count`` scores seen so far."""

    state: str
    statistic: float
    tolerance: float
    count: int


class DriftMonitor:
    """Rolling drift statistic of one score stream; ``update`` returns the state changes it causes."""

    def __init__(self, normal: NormalScores, window: int = DEFAULT_WINDOW, tolerance: float = DEFAULT_TOLERANCE,
                 min_count: int | None = None) -> None:
        """``min_count``: scores needed before any verdict (default half the window)."""
        check_drift_options(window, tolerance)
        self.normal = normal
        self.tolerance = float(tolerance)
        self.min_count = max(1, window // 2) if min_count is None else max(1, min(int(min_count), window))
        self._scores: deque[float] = deque(maxlen=window)
        self.count = 0
        self.statistic: float | None = None
        self.drifting = False
        self.events = 0

    def update(self, scores: Iterable[float]) -> list[DriftEvent]:
        """Add scores (non-finite ones, broken outputs, are left out); the events they caused, in order."""
        events: list[DriftEvent] = []
        for score in scores:
            if not math.isfinite(score):
                continue
            self._scores.append(float(score))
            self.count += 1
            if len(self._scores) < self.min_count:
                continue
            self.statistic = (median(self._scores) - self.normal.median) / self.normal.spread
            size = abs(self.statistic)
            crossed = size < self.tolerance / 2 if self.drifting else size > self.tolerance
            if crossed:
                self.drifting = not self.drifting
                self.events += 1
                events.append(DriftEvent(DRIFTING if self.drifting else RECOVERED, self.statistic, self.tolerance,
                                         self.count))
        return events


def event_record(event: DriftEvent, **where: Any) -> dict:
    """The JSONL object of a drift event; ``where`` names what drifted (``source``, ``category``, ``frame``)."""
    return {"event": "drift", "state": event.state, **where, "statistic": event.statistic,
            "tolerance": event.tolerance}


def event_line(name: str, event: DriftEvent, window: int) -> str:
    """The one stderr line of a drift event; ``name``: what drifted (a source, a category)."""
    where = (f"{name}: median of the last {min(window, event.count)} scores is {event.statistic:+.2f} "
             "normal std from the normal median")
    if event.state == DRIFTING:
        return f"drift: {where} (tolerance {event.tolerance:g}); check lighting, focus and camera position"
    return f"drift recovered: {where} (below {event.tolerance / 2:g})"
