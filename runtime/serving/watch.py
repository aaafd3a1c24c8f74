"""What `serve` watches over every model instance at once: the drift of each category's scores
(one DriftMonitor per category seen, ``None`` being the pooled numbers) and our own Prometheus
metrics (``--app-metrics-port``), behind one lock because instances score batches side by side.

A state change is said as ``run`` says it (``drift.event_line`` on stderr, ``drift.event_record``
appended to ``--events``), naming the category instead of a source.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import IO, TYPE_CHECKING, Any

from ..log import notice
from ..loop.outputs import JsonlWriter
from ..monitor.drift import NO_STATISTICS, DriftEvent, DriftMonitor, NormalScores, event_line, event_record
from ..result import Result
from .options import ServeOptions

if TYPE_CHECKING:  # prometheus_client is imported only when the app metrics are served
    from ..monitor.prometheus import DetectorMetrics

POOLED = "pooled"  # the metrics label (and line name) of frames sent without a category


def label(category: str | None) -> str:
    """The metrics label of a category (``POOLED`` for none)."""
    return POOLED if category is None else category


class ServeWatch:
    """Drift per category, app metrics and the events file, shared by all InferenceHandlers."""

    def __init__(self, statistics: Mapping[str, Any] | None, options: ServeOptions) -> None:
        """``statistics``: the artifact's (``info.raw["statistics"]``); drift is off without normal scores."""
        self.statistics = statistics
        self.window, self.tolerance = options.drift_window, options.drift_tolerance
        self.enabled = _watchable(statistics)
        self.metrics: DetectorMetrics | None = None
        self._file: IO[str] | None = None
        self._writer: JsonlWriter | None = None
        self._monitors: dict[str | None, DriftMonitor | None] = {}
        self._earlier_events = 0  # of monitors a swap left without normal scores
        self._lock = threading.Lock()

    def open(self, app_metrics_port: int | None, events_path: str | None) -> None:
        """Serve the app metrics on the port and append events to the file (each when given);
        whatever opened is closed again when the other fails."""
        try:
            if app_metrics_port is not None:
                from ..monitor.prometheus import DetectorMetrics

                self.metrics = DetectorMetrics(label="category", port_flag="--app-metrics-port")
                self.metrics.serve(app_metrics_port)
            if events_path is not None:
                self._file = open(events_path, "a", encoding="utf-8")
                self._writer = JsonlWriter(self._file)
        except BaseException:
            self.close()
            raise

    def describe(self) -> str:
        """The start line's word on the drift watch: on with its settings, or off and why."""
        if not self.enabled:
            return f"drift watch off: {NO_STATISTICS}"
        where = f"; events to {self._file.name}" if self._file is not None else ""
        return f"drift watch on (window {self.window}, tolerance {self.tolerance:g}, per category){where}"

    def observe(self, category: str | None, results: Sequence[Result], latency_s: float) -> float | None:
        """Scores of one category's frames in one execution, ``latency_s`` being that batch's time; the
        category's drift statistic after them (None while unknown or unwatched)."""
        with self._lock:
            monitor = self._monitor(category)
            name = label(category)
            for result in results:
                if monitor is not None:
                    for event in monitor.update([result.score]):
                        self._say(category, event)
                if self.metrics is not None:
                    self.metrics.observe(name, result.is_anomaly, latency_s)
            if self.metrics is not None and monitor is not None:
                self.metrics.drift_state(name, monitor.statistic, monitor.drifting)
            return None if monitor is None else monitor.statistic

    def restart(self, statistics: Mapping[str, Any] | None) -> None:
        """Watch against another version's normal scores from now on (`serve` swapped it in: the score
        scale may have moved): each category's monitor starts again, its events counted on."""
        with self._lock:
            was_enabled, earlier = self.enabled, self._monitors
            self.statistics, self.enabled, self._monitors = statistics, _watchable(statistics), {}
            if was_enabled and not self.enabled:
                notice(f"drift watch off: {NO_STATISTICS}")
            for category, monitor in earlier.items():
                fresh = self._monitor(category)
                if monitor is not None and fresh is not None:
                    fresh.events = monitor.events
                elif monitor is not None:
                    self._earlier_events += monitor.events

    def _monitor(self, category: str | None) -> DriftMonitor | None:
        """The category's monitor, made on its first frame (None, said once, without its normal scores)."""
        if category not in self._monitors:
            normal = NormalScores.from_statistics(self.statistics, category) if self.enabled else None
            if normal is None and self.enabled:
                notice(f"drift watch off for {line_name(category)}: it has no normal-score statistics")
            self._monitors[category] = None if normal is None else DriftMonitor(normal, self.window, self.tolerance)
        return self._monitors[category]

    def _say(self, category: str | None, event: DriftEvent) -> None:
        notice(event_line(line_name(category), event, self.window))
        if self._writer is not None:
            self._writer.write(event_record(event, category=category, frame=event.count - 1,
                                            time=datetime.now(timezone.utc).isoformat(timespec="milliseconds")))

    def summary(self) -> dict[str, Any]:
        """Drift events in all, and each watched category's state (by label)."""
        with self._lock:
            watched = {label(name): monitor for name, monitor in self._monitors.items() if monitor is not None}
            return {"drift_events": self._earlier_events + sum(monitor.events for monitor in watched.values()),
                    "drift": {name: {"events": monitor.events, "drifting": monitor.drifting,
                                     "statistic": monitor.statistic, "frames": monitor.count}
                              for name, monitor in watched.items()}}

    def close(self) -> None:
        """Stop serving the app metrics and close the events file (idempotent)."""
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None
        if self._file is not None:
            self._file.close()
            self._file = self._writer = None


def _watchable(statistics: Mapping[str, Any] | None) -> bool:
    """Whether ``statistics`` hold normal scores for the pooled numbers or any category."""
    names = [None, *((statistics or {}).get("categories") or {})]
    return any(NormalScores.from_statistics(statistics, name) is not None for name in names)


def line_name(category: str | None) -> str:
    """How a warning line names the scores it is about."""
    return "pooled scores (no category)" if category is None else f"category {category}"

