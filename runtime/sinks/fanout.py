"""Every sink of a run as one: each frame's message goes to all of them, the end drains them
within one time bound, and their counts feed the summary and the Prometheus metrics."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import SinkError
from ..log import notice
from . import open_sink
from .base import Sink
from .message import verdict_message
from .target import DEFAULT_DRAIN_S, SinkSettings, check_drain_s


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
        """Each sink's counts now (``finish``'s once finished)."""
        return self._reports if self._reports is not None else [sink.report() for sink in self.sinks]

    def finish(self, drain_s: float = DEFAULT_DRAIN_S) -> list[dict]:
        """Wait up to ``drain_s`` seconds for every sink to deliver, stop them and return their
        reports, where what is undelivered is ``queued`` when a spool keeps it for the next run and
        ``lost`` otherwise; one line per sink that still holds messages. Once only: later calls
        return the same reports."""
        if self._reports is not None:
            return self._reports
        drain_s = check_drain_s(drain_s)
        deadline = time.monotonic() + drain_s
        for sink in self.sinks:
            sink.wait(deadline)
        reports = [_settled(sink.stop()) for sink in self.sinks]
        for report in reports:
            if report["queued"] or report["lost"]:
                fate = (f"they stay in {report['spool']} and go out on the next run with this sink" if report["durable"]
                        else "they are lost")
                notice(f"sink {report['sink']}: {report['queued'] or report['lost']} messages undelivered after "
                       f"{drain_s:g} s ({report['last_error'] or 'still sending'}); {fate}")
        self._reports = reports
        return reports

    def undelivered(self) -> str | None:
        """After ``finish``: one line naming the verdicts that reached neither their sink nor a spool
        (lost at the end, or dropped: a full queue, a refusal), which fails the run; None when none."""
        parts = []
        for report in self.finish():
            if report["lost"] or report["dropped"]:
                why = f"; last error {report['last_error']}" if report["last_error"] else ""
                parts.append(f"{report['lost'] + report['dropped']} verdicts reached neither sink {report['sink']} "
                             f"nor a spool ({report['lost']} lost at the end, {report['dropped']} dropped{why})")
        return "; ".join(parts) + "; check that the sink is up and accepts them" if parts else None

    def close(self) -> None:
        """Stop the sinks without waiting (a run that failed); what MQTT holds stays on disk."""
        self.finish(0)


def _settled(report: dict) -> dict:
    """A stopped sink's report: what it still holds stays ``queued`` in a spool, or is ``lost``."""
    if report["durable"]:
        return {**report, "lost": 0}
    return {**report, "queued": 0, "lost": report["queued"]}
