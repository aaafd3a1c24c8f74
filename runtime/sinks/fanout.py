"""Every sink of a run as one: each frame's message goes to all of them, the end drains them
within one time bound, and their counts feed the summary and the Prometheus metrics."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import SinkError
from ..log import notice
from . import open_sink
from .base import Sink
from .message import verdict_message
from .target import DEFAULT_DRAIN_S, SinkSettings, check_drain_s

if TYPE_CHECKING:
    from ..monitor.prometheus import DetectorMetrics

class SinkSet:
    """The sinks of one run; ``send`` per frame, ``finish`` once."""

    def __init__(self, sinks: Sequence[Sink], model: Mapping[str, Any]) -> None:
        self.sinks = list(sinks)
        self.model = dict(model)
        self.run_id = uuid.uuid4().hex[:12]
        self._reports: list[dict] | None = None

    @classmethod
    def open(cls, urls: Sequence[str], settings: SinkSettings, model: Mapping[str, Any]) -> SinkSet:
        """Open and start a sink per URL (a duplicate URL is refused); those started are stopped
        again when a later one fails."""
        repeated = sorted({url for url in urls if list(urls).count(url) > 1})
        if repeated:
            raise SinkError(f"sink {repeated[0]} is given twice; pass each --sink once")
        sinks: list[Sink] = []
        try:
            for url in urls:
                sinks.append(open_sink(url, settings).start())
        except BaseException:
            for sink in sinks:
                sink.stop(0)
            raise
        return cls(sinks, model)

    def send(self, record: Mapping[str, Any]) -> None:
        """Queue the message for one frame's record on every sink (never blocks)."""
        message = verdict_message(record, self.model, f"{self.run_id}-{record.get('index')}")
        for sink in self.sinks:
            sink.submit(message)

    def reports(self) -> list[dict]:
        return [sink.report() for sink in self.sinks]

    def observe(self, metrics: DetectorMetrics) -> None:
        """Bring the metrics' per-sink counters up to date."""
        for report in self.reports():
            metrics.sink_totals(report["sink"], report["sent"], report["dropped"], report["queued"])

    def finish(self, drain_s: float = DEFAULT_DRAIN_S) -> list[dict]:
        """Wait up to ``drain_s`` seconds for every sink to deliver, stop them and return their
        reports; one line per sink that still holds messages (kept on disk or lost). Once only:
        later calls return the same reports."""
        if self._reports is not None:
            return self._reports
        drain_s = check_drain_s(drain_s)
        deadline = time.monotonic() + drain_s
        for sink in self.sinks:
            sink.wait(deadline)
        reports = [sink.stop() for sink in self.sinks]
        for report in reports:
            if report["queued"]:
                fate = (f"they stay in {report['spool']} and go out on the next run with this sink" if report["durable"]
                        else "they are lost")
                notice(f"sink {report['sink']}: {report['queued']} messages undelivered after {drain_s:g} s "
                       f"({report['last_error'] or 'still sending'}); {fate}")
        self._reports = reports
        return reports

    def close(self) -> None:
        """Stop the sinks without waiting (a run that failed); what MQTT holds stays on disk."""
        self.finish(0)
