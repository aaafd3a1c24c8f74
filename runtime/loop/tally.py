"""Per-source bookkeeping of a run: counts, the drift monitor, Prometheus metrics and the summary."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..log import notice
from ..monitor.drift import NO_STATISTICS, DriftEvent, DriftMonitor, NormalScores
from ..result import Result
from .sources import FrameSource

if TYPE_CHECKING:  # prometheus_client is imported only when metrics are served
    from ..monitor.prometheus import DetectorMetrics


class SourceTally:
    """What one source has given so far; ``observe`` returns the drift events its frame caused."""

    def __init__(self, source: FrameSource, category: str | None, normalization: tuple[float, float] | None,
                 monitor: DriftMonitor | None, metrics: DetectorMetrics | None = None) -> None:
        """``category`` / ``normalization``: what scores the source (for records and overlays)."""
        self.source = source
        self.name = source.name
        self.category = category
        self.normalization = normalization
        self.monitor = monitor
        self.metrics = metrics
        self.frames = 0
        self.anomalies = 0

    def observe(self, result: Result, latency_s: float, dropped: int) -> list[DriftEvent]:
        self.frames += 1
        self.anomalies += bool(result.is_anomaly)
        events = self.monitor.update([result.score]) if self.monitor is not None else []
        if self.metrics is not None:
            self.metrics.observe(self.name, result.is_anomaly, latency_s)
            self.metrics.dropped_total(self.name, dropped)
            if self.monitor is not None:
                self.metrics.drift_state(self.name, self.monitor.statistic, self.monitor.drifting)
        return events

    def rejudge(self, normalization: tuple[float, float] | None, monitor: DriftMonitor | None) -> None:
        """Judge from now on by another model version's normalisation and normal scores (a swap: the
        drift watch starts again on the new score scale, its events counted on)."""
        if monitor is not None and self.monitor is not None:
            monitor.events = self.monitor.events
        self.normalization, self.monitor = normalization, monitor

    def summary(self, elapsed_s: float, dropped: int) -> dict:
        monitor = self.monitor
        drift = None if monitor is None else {
            "events": monitor.events, "drifting": monitor.drifting, "statistic": monitor.statistic}
        return {
            "source": self.name, "category": self.category, "frames": self.frames, "anomalies": self.anomalies,
            "dropped": dropped, **self.source.counters,
            "fps": round(self.frames / elapsed_s, 2) if elapsed_s > 0 else 0.0, "drift": drift,
        }


def nothing_scored(tallies: list[SourceTally]) -> str:
    """The one line a run stops with when its sources ended without one scored frame (a folder where
    nothing decodes must not pass for a clean run of zero images)."""
    names = ", ".join(tally.name for tally in tallies)
    skipped = sum(tally.source.counters.get("skipped", 0) for tally in tallies)
    if skipped:
        return (f"{names}: nothing was scored, all {skipped} image files failed to decode (named above); "
                "replace or remove them")
    return f"{names}: the source ended before giving a frame, nothing was scored; check it plays or holds images"


def drift_monitors(statistics: Mapping[str, Any] | None, categories: list[str | None], window: int,
                   tolerance: float) -> list[DriftMonitor | None]:
    """One monitor per source (its category's normal scores); all None, said once, without statistics."""
    normals = [NormalScores.from_statistics(statistics, category) for category in categories]
    if any(normal is None for normal in normals):
        notice(f"drift watch off: {NO_STATISTICS}")
        return [None] * len(categories)
    return [DriftMonitor(normal, window, tolerance) for normal in normals]
