"""Prometheus metrics of a detector at work, labelled by source (``run --metrics-port``) or by
category (``serve --app-metrics-port``). Each ``DetectorMetrics`` has its own registry, so two in
one process (tests, a reload) never clash over names in the global one."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ..errors import MetricsPortError

# Seconds: from a CPU batch of one (a few ms) to a large batch on a slow device (seconds).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class DetectorMetrics:
    """Frames, anomalies, drops, latency, drift and a shadow candidate's agreement per source (or per
    ``label``: what the first argument of each method names); ``serve(port)`` exposes /metrics."""

    def __init__(self, label: str = "source", port_flag: str = "--metrics-port") -> None:
        """``port_flag``: the option a port error tells the user to change."""
        self.registry = CollectorRegistry()
        self.port_flag = port_flag
        labels = [label]
        self.frames = Counter("mmad_edge_frames", "Frames scored.", labels, registry=self.registry)
        self.anomalies = Counter("mmad_edge_anomalies", "Frames judged anomalous.", labels, registry=self.registry)
        self.dropped = Counter("mmad_edge_dropped_frames", "Live frames dropped while inference was busy.", labels,
                               registry=self.registry)
        self.latency = Histogram("mmad_edge_latency_seconds", "Seconds from a batch's start to its results, per frame.",
                                 labels, buckets=LATENCY_BUCKETS, registry=self.registry)
        self.drift = Gauge("mmad_edge_drift_statistic", "Rolling score median minus the normal median, in normal "
                           "standard deviations.", labels, registry=self.registry)
        self.drifting = Gauge("mmad_edge_drifting", "1 while the source's scores have drifted, else 0.", labels,
                              registry=self.registry)
        self._totals_seen: dict[tuple[str, str], int] = {}
        self.shadow_frames = Counter("mmad_edge_shadow_frames", "Frames a shadow candidate scored, by whether its "
                                     "verdict agreed with the deployed detector's.", [label, "verdict"],
                                     registry=self.registry)
        self.shadow_dropped_frames = Counter("mmad_edge_shadow_dropped_frames", "Frames the shadow candidate "
                                             "skipped because it fell behind.", labels, registry=self.registry)
        self.shadow_agreement = Gauge("mmad_edge_shadow_agreement", "Share of compared frames whose verdicts agree "
                                      "(deployed and shadow candidate).", labels, registry=self.registry)
        self._server = None
        self._thread = None

    def observe(self, source: str, is_anomaly: bool | None, latency_s: float) -> None:
        """One scored frame."""
        self.frames.labels(source).inc()
        self.latency.labels(source).observe(latency_s)
        self.anomalies.labels(source).inc(1 if is_anomaly else 0)

    def dropped_total(self, source: str, total: int) -> None:
        """The source's drop count so far (readers count totals; the counter takes the increase)."""
        self._advance(self.dropped, source, total)

    def watch_sinks(self, reports: Callable[[], Sequence[dict[str, Any]]]) -> None:
        """Serve the result sinks' counts (``sinks.base.Sink.report``) as ``reports`` gives them at
        each scrape: fresh whether frames arrive or not, and nothing to do per frame."""
        self.registry.register(_SinkCollector(reports))

    def _advance(self, counter: Counter, label: str, total: int) -> None:
        """Raise ``counter`` for ``label`` to ``total`` (created at 0 on first sight)."""
        key = (id(counter), label)
        increase = total - self._totals_seen.get(key, 0)
        if increase > 0 or key not in self._totals_seen:
            counter.labels(label).inc(max(increase, 0))
            self._totals_seen[key] = total

    def drift_state(self, source: str, statistic: float | None, drifting: bool) -> None:
        """The source's current drift statistic (left unset until the window has enough scores)."""
        if statistic is not None:
            self.drift.labels(source).set(statistic)
        self.drifting.labels(source).set(1 if drifting else 0)

    def shadow_compared(self, source: str, agreed: bool, agreement: float | None) -> None:
        """One frame compared with the shadow candidate, and the source's agreement so far."""
        self.shadow_frames.labels(source, "agree" if agreed else "disagree").inc()
        if agreement is not None:
            self.shadow_agreement.labels(source).set(agreement)

    def shadow_dropped(self, source: str) -> None:
        """One frame the shadow candidate skipped."""
        self.shadow_dropped_frames.labels(source).inc()

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        """Serve http://ADDR:PORT/metrics on a daemon thread until ``close``; localhost unless ``addr`` says otherwise
        (the endpoint has no authentication: scrape it through a local agent or a proxy)."""
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise MetricsPortError(f"metrics port must be 0-65535, got {port!r}; pass e.g. {self.port_flag} 9100")
        try:
            self._server, self._thread = start_http_server(port, addr=addr, registry=self.registry)
        except OSError as exc:
            raise MetricsPortError(f"cannot serve metrics on port {port} ({exc.strerror}); pick a free one with "
                                   f"{self.port_flag}") from None

    @property
    def port(self) -> int | None:
        """The port served (the one the system chose for port 0); None when not serving."""
        return None if self._server is None else self._server.server_port

    def close(self) -> None:
        """Stop serving (idempotent)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = self._thread = None


class _SinkCollector:
    """Prometheus families of the sinks' reports, read when scraped."""

    def __init__(self, reports: Callable[[], Sequence[dict[str, Any]]]) -> None:
        self.reports = reports

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        sent = CounterMetricFamily("mmad_edge_sink_sent", "Verdict messages a result sink delivered.", labels=["sink"])
        dropped = CounterMetricFamily("mmad_edge_sink_dropped", "Verdict messages a result sink dropped (queue full "
                                      "or refused).", labels=["sink"])
        queued = GaugeMetricFamily("mmad_edge_sink_queued", "Verdict messages waiting in a result sink.",
                                   labels=["sink"])
        for report in self.reports():
            sent.add_metric([report["sink"]], report["sent"])
            dropped.add_metric([report["sink"]], report["dropped"])
            queued.add_metric([report["sink"]], report["queued"])
        yield from (sent, dropped, queued)
