"""``mmad-edge run``: detect on live or recorded sources until they end, stop or are interrupted."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import IO, TYPE_CHECKING

from ..artifact.deployment import deployed_folder, is_deployment
from ..artifact.metadata import describe_encoder_weights
from ..backends.base import BackendOptions, precision_label
from ..detector import Detector
from ..errors import SourceError
from ..log import notice
from ..monitor.drift import check_drift_options, event_line, event_record
from ..scoring import check_threshold
from .follow import CHECK_EVERY_S, DeploymentFollower, check_compatible
from .options import PathLike, RunOptions
from .outputs import AnomalySaver, JsonlWriter, Viewer, frame_record
from .overlay import render_overlay
from .shadow import DisagreementLog, Shadow, ShadowFrame, check_candidate
from .sources import SourceLike, SourceSpec, check_retry_s, open_sources, source_specs
from .stream import DetectionStream, Scored
from .tally import SourceTally, drift_monitors, nothing_scored

if TYPE_CHECKING:
    from ..monitor.prometheus import DetectorMetrics
    from ..sinks.fanout import SinkSet
    from ..ui.page import LivePage, ThresholdsFor

def run_stream(
    artifact: PathLike | Detector,
    source: SourceLike | Sequence[SourceLike],
    options: RunOptions = RunOptions(),
    *,
    stdout: IO[str] | None = None,
    stop_event: threading.Event | None = None,
    thresholds: ThresholdsFor | None = None,
    on_summary: Callable[[dict], None] | None = None,
) -> dict:
    """Run the detector over one source or a list of them and return a summary dict.

    A source: camera index, URL, video file, image folder, a FrameSource, or ``"NAME=SOURCE"`` /
    ``SourceSpec(target, category)`` to score it with training category NAME's threshold and
    normalisation (others use ``options.category``, else the pooled numbers). One reader thread per
    source; frames of all sources share each inference batch (up to ``options.batch``); files give
    every frame once, live sources drop stale frames when inference falls behind. ``options.jsonl``:
    stdout gets one strict-JSON object per frame (``stream`` names its source) and one per drift
    event; otherwise anomalies are printed as text. Progress and messages go to stderr, ending with
    one summary line (and one per source when there are several). ``save_dir``: anomalous frames
    only, with overlay and map PNGs and DIR/results.jsonl. ``map_size``: "model" or "frame".
    ``show``: an OpenCV window (q / Esc quits). ``max_frames``: stop after that many frames (>= 1,
    all sources together). ``retry_s``: how long a camera, stream or video that gives no frames is
    reopened (0: at once; None: ``sources.DEFAULT_RETRY_S``). ``drift_window`` /
    ``drift_tolerance``: the drift watch (``drift``). ``metrics_port``: serve Prometheus metrics
    there during the run. ``sinks``: each frame's record, as a verdict message, to every result
    sink (``sinks.fanout.SinkSet``; per-sink counts under ``"sinks"`` in the summary). ``shadow``: a
    candidate export scored on the same frames off the loop's path and compared (``shadow.Shadow``;
    summary ``"shadow"``), its disagreements written to ``shadow_log`` (at most ``shadow_log_max``).
    ``page.ui``: serve the live page and review queue there (``runtime.ui``; the shadow's
    disagreements go to its review queue too; summary ``"review"``); after the sources end it stays up
    until Ctrl-C, SIGTERM or ``stop_event``; ``thresholds`` makes what the page's Apply uses from the
    detector (``mmad_edge.export.threshold_apply.MetadataThresholds`` writes the metadata; the default
    refuses Apply). Ctrl-C or ``stop_event`` end the run cleanly (summary ``"interrupted"`` /
    ``"stopped"``). ``on_summary``: called with the summary once the sources end (before the page is
    held), and again at the stop when marks or an Apply changed it meanwhile (`run --json` writes it).
    Summary ``"error"``: why a finished run still failed (verdicts that reached no sink and no
    spool), else None.

    ``artifact`` a deployment folder (``mmad-edge promote``): each record names the ``version`` that
    scored it, and with ``options.follow`` a change of its ``current`` is swapped in between two
    batches (``follow``; summary ``"swaps"``). The new version is loaded with the same options: a
    ``threshold`` given keeps applying, otherwise its own calibrated (per-category) thresholds judge;
    an Apply from the page went into the old version's metadata and stays there; the drift watch
    restarts on its normal scores; the shadow candidate is compared with whichever version scores.
    """
    options = _checked(options)
    specs = source_specs(source)
    out = stdout if stdout is not None else sys.stdout
    if isinstance(artifact, Detector):
        return _run(artifact, specs, options, out, stop_event, thresholds, on_summary)
    folder = deployed_folder(artifact)  # the version current names now (any other path as it is)
    detector = _load(folder, options)
    try:
        deployment = (Path(artifact), folder.name) if is_deployment(artifact) else None
        return _run(detector, specs, options, out, stop_event, thresholds, on_summary, deployment)
    finally:
        detector.close()


def _checked(options: RunOptions) -> RunOptions:
    """The options with threshold, retry time and drift settings validated (one-line ValueErrors)."""
    max_frames = options.max_frames
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1):
        raise ValueError(f"max frames must be at least 1, got {max_frames!r}; pass --max-frames N with N >= 1, "
                         "or leave it out to run until the source ends")
    check_drift_options(options.drift_window, options.drift_tolerance)
    if options.shadow_log is not None and options.shadow is None:
        raise ValueError("--shadow-log keeps the shadow candidate's disagreements; pass the candidate with --shadow "
                         "EXPORT, or drop --shadow-log")
    return replace(options, threshold=check_threshold(options.threshold), retry_s=check_retry_s(options.retry_s))


def _load(artifact: PathLike, options: RunOptions) -> Detector:
    """The detector; OpenVINO's hint defaults to latency for single frames, throughput for batches."""
    hint = options.performance_hint or ("latency" if options.batch == 1 else "throughput")
    settings = BackendOptions(providers=options.providers, inference_precision=options.inference_precision,
                              performance_hint=hint)
    return Detector.load(artifact, options.backend, settings, threshold=options.threshold,
                         precision=options.precision, category=options.category)


@dataclass
class _Sinks:
    """Where each result goes: text or JSON lines on ``out``, the anomaly folder, the window, metrics,
    the result sinks (MQTT, webhooks, PLCs), the shadow candidate, the live page."""

    out: IO[str]
    writer: JsonlWriter | None
    saver: AnomalySaver | None = None
    viewer: Viewer | None = None
    metrics: DetectorMetrics | None = None
    line: SinkSet | None = None
    shadow: Shadow | None = None
    page: LivePage | None = None


def _open_sinks(options: RunOptions, out: IO[str], detector: Detector, categories: list[str | None],
                thresholds: ThresholdsFor | None) -> _Sinks:
    """The outputs, the save folder last (a port, window or candidate that fails leaves no folder
    behind); those opened are closed again when a later one fails."""
    sinks = _Sinks(out, JsonlWriter(out) if options.jsonl else None)
    try:
        if options.metrics_port is not None:
            from ..monitor.prometheus import DetectorMetrics

            sinks.metrics = DetectorMetrics()
            sinks.metrics.serve(options.metrics_port)
            notice(f"metrics at http://127.0.0.1:{sinks.metrics.port}/metrics")
        if options.sinks.urls:
            from ..sinks.fanout import SinkSet

            sinks.line = SinkSet.open(list(options.sinks.urls), options.sinks.settings(), _identity(detector))
            if sinks.metrics is not None:
                sinks.metrics.watch_sinks(sinks.line.reports)
        if options.page.ui is not None:
            from ..ui.page import LivePage

            title = Path(str(getattr(detector.backend, "path", "mmad-edge run"))).name
            sinks.page = LivePage.open(options.page, [detector], title, thresholds, options.drift_tolerance)
        sinks.viewer = Viewer() if options.show else None
        sinks.shadow = _open_shadow(options, categories, sinks.metrics, sinks.page) if options.shadow is not None else None
        sinks.saver = AnomalySaver(Path(options.save_dir)) if options.save_dir is not None else None
    except BaseException:
        _close_sinks(sinks)
        raise
    return sinks


def _identity(detector: Detector) -> dict:
    """Which model judges, as the result sinks' messages name it."""
    from ..sinks.message import model_identity

    artifact = getattr(detector.backend, "path", None)
    return model_identity(detector.info.raw, None if artifact is None else Path(artifact))


def _open_shadow(options: RunOptions, categories: list[str | None], metrics: DetectorMetrics | None,
                 page: LivePage | None) -> Shadow:
    """The --shadow candidate, loaded like the deployed detector but judged by its own thresholds; its
    disagreements to --shadow-log and the page's review queue, its agreement shown on the page."""
    candidate = _load(options.shadow, replace(options, threshold=None))
    try:
        check_candidate(candidate, categories)
        log = None if options.shadow_log is None else DisagreementLog(options.shadow_log, options.shadow_log_max)
    except BaseException:
        candidate.close()
        raise
    shadow = Shadow(candidate, log if page is None else page.disagreements(log), metrics, batch=options.batch)
    if page is not None:
        page.state.agreement = shadow.agreement
    return shadow


def _close_sinks(sinks: _Sinks | None) -> None:
    for sink in (sinks.line, sinks.shadow, sinks.saver, sinks.viewer, sinks.metrics, sinks.page) if sinks is not None else ():
        if sink is not None:
            sink.close()


def _run(detector: Detector, specs: list[SourceSpec], options: RunOptions, out: IO[str],
         stop_event: threading.Event | None, thresholds: ThresholdsFor | None,
         on_summary: Callable[[dict], None] | None, deployment: tuple[Path, str] | None = None) -> dict:
    """Open the sources and the outputs, loop, and summarise (the page, if any, then held until a
    stop); the outputs are closed whatever happens. ``deployment``: (folder, version) it came from."""
    sinks: _Sinks | None = None
    follower: DeploymentFollower | None = None
    try:
        sources = open_sources(specs, retry_s=options.retry_s)
        categories = [source.category or detector.category for source in sources]
        scorings = [detector.scoring(category) for category in categories]  # an unknown category fails here
        if options.save_dir is not None and any(threshold is None for threshold, _ in scorings):
            notice("--save keeps anomalous frames only, but no threshold is known (no export statistics); pass --threshold")
        stream = DetectionStream(detector, sources, batch=options.batch, threshold=options.threshold,
                                 map_size=options.map_size)
        sinks = _open_sinks(options, out, detector, categories, thresholds)
        if deployment is not None:
            judged = all(threshold is not None for threshold, _ in scorings)
            follower = DeploymentFollower(*deployment, partial(_load, options=options),
                                          partial(check_compatible, categories=categories, judged=judged),
                                          CHECK_EVERY_S if options.follow else None)
        monitors = drift_monitors(detector.info.raw.get("statistics"), categories, options.drift_window,
                                  options.drift_tolerance)
        tallies = [SourceTally(source, category, scoring[1], monitor, sinks.metrics)
                   for source, category, scoring, monitor in zip(sources, categories, scorings, monitors)]
        for tally in tallies if sinks.page is not None else ():
            sinks.page.slot(id(tally.source), tally.name, tally.category)
        interrupted, quit_by_user = _loop(stream, tallies, sinks, options, stop_event, follower)
        stopped = quit_by_user or (stop_event is not None and stop_event.is_set())
        if stream.frames == 0 and not (interrupted or stopped):
            raise SourceError(nothing_scored(tallies))
        summary = _summary(stream.detector, stream, tallies, options)
        if follower is not None:
            summary.update(follower.report())
        if sinks.line is not None:
            summary["sinks"] = _finish_line(sinks, options.sinks.drain_s)
            summary["error"] = sinks.line.undelivered()
        summary.update(interrupted=interrupted, stopped=stopped)
        if sinks.shadow is not None:  # after the summary: the deployed fps never includes the candidate's catching up
            summary["shadow"] = sinks.shadow.finish(drain=not interrupted)
        if sinks.page is not None:
            summary.update(_page_report(stream.detector, sinks.page, options))
        if on_summary is not None:
            on_summary(summary)
        if sinks.page is not None and options.page.hold and not (summary["interrupted"] or summary["stopped"]):
            sinks.page.hold(stop_event)
            held = {**summary, **_page_report(stream.detector, sinks.page, options)}
            if held != summary and on_summary is not None:
                on_summary(held)
            summary = held
        return summary
    finally:
        _close_sinks(sinks)
        if follower is not None:
            follower.close()


def _loop(stream: DetectionStream, tallies: list[SourceTally], sinks: _Sinks, options: RunOptions,
          stop_event: threading.Event | None, follower: DeploymentFollower | None) -> tuple[bool, bool]:
    """Score frames until the sources end or a stop, swapping in a newly deployed version between two
    batches; returns (interrupted, quit by the user)."""
    interrupted, quit_by_user = False, False
    next_progress = time.perf_counter() + options.progress_every_s
    by_source = {id(tally.source): tally for tally in tallies}
    results = iter(stream)
    try:
        for item in results:
            tally = by_source[id(item.source)]
            if not _handle(item, tally, stream, sinks, options, None if follower is None else follower.version):
                quit_by_user = True
                break
            ready = follower.ready() if follower is not None and stream.frames == stream.scored else None
            if ready is not None:
                _swap(*ready, follower, stream, tallies, sinks, options)
            if time.perf_counter() >= next_progress:
                next_progress += options.progress_every_s
                notice(f"{stream.frames} processed, {_progress(stream)}")
            if (options.max_frames is not None and stream.frames >= options.max_frames) or (
                    stop_event is not None and stop_event.is_set()):
                break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        results.close()
    return interrupted, quit_by_user


def _handle(item: Scored, tally: SourceTally, stream: DetectionStream, sinks: _Sinks, options: RunOptions,
            version: str | None) -> bool:
    """Send one result to every sink and the drift watch; False once the user quit the window.
    ``version``: the deployed version that scored it (None: not from a deployment folder)."""
    index, result = stream.frames - 1, item.result
    record = {**frame_record(tally.name, item.source_id, index, result), "stream": tally.name}
    if tally.category is not None:
        record["category"] = tally.category
    if version is not None:
        record["version"] = version
    if sinks.writer is not None:
        sinks.writer.write(record)
    if sinks.line is not None:
        sinks.line.send(record)
    normalization = tally.normalization
    if result.is_anomaly:
        if sinks.writer is None:
            where = item.source_id if isinstance(item.source_id, str) else f"{tally.name} {item.source_id}"
            sinks.out.write(f"anomaly: {where} score {result.score:.5f}\n")
            sinks.out.flush()
        if sinks.saver is not None:
            sinks.saver.save(item.source_id, item.frame, result, record, normalization)
    if sinks.shadow is not None:
        sinks.shadow.offer(ShadowFrame(item.frame, tally.name, tally.category, item.source_id, index, normalization),
                           result)
    for event in tally.observe(result, item.latency_s, stream.dropped_by(item.source)):
        notice(event_line(tally.name, event, options.drift_window))
        if sinks.writer is not None:
            sinks.writer.write(event_record(event, source=tally.name, frame=index))
    if sinks.page is not None:
        sinks.page.offer(id(item.source), item.frame, result, tally.monitor.statistic if tally.monitor else None)
    return sinks.viewer is None or sinks.viewer.show(render_overlay(item.frame, result, normalization))


def _swap(version: str, detector: Detector, follower: DeploymentFollower, stream: DetectionStream,
          tallies: list[SourceTally], sinks: _Sinks, options: RunOptions) -> None:
    """Score with ``detector`` (deployed ``version``) from the next batch on: the sources' normalisation
    and drift watch, the page's thresholds and the sinks' model follow; the old detector is closed."""
    old = stream.detector
    categories = [tally.category for tally in tallies]
    monitors = drift_monitors(detector.info.raw.get("statistics"), categories, options.drift_window,
                              options.drift_tolerance)
    for tally, monitor in zip(tallies, monitors):
        tally.rejudge(detector.scoring(tally.category)[1], monitor)
    stream.detector = detector
    if sinks.line is not None:
        sinks.line.model = _identity(detector)
    if sinks.page is not None:
        sinks.page.use([detector])
    follower.swapped(version, detector, stream.frames, old.threshold)
    old.close()


def _summary(detector: Detector, stream: DetectionStream, tallies: list[SourceTally], options: RunOptions) -> dict:
    """The run's summary dict (totals, then one entry per source), said on stderr as it is built."""
    elapsed = stream.elapsed_s()
    per_source = [tally.summary(elapsed, stream.dropped_by(tally.source)) for tally in tallies]
    counters: dict = {"skipped": 0}
    for tally in tallies:
        for key, value in tally.source.counters.items():
            counters[key] = counters.get(key, 0) + value
    anomalies = sum(tally.anomalies for tally in tallies)
    details = detector.backend.describe()
    computed = details.get("compute_precision") or detector.info.precision
    summary = {
        "artifact": str(getattr(detector.backend, "path", "")),
        "backend": detector.backend.name,
        "precision": detector.info.precision,
        "compute_precision": computed,
        "backend_details": details,
        "source": ", ".join(tally.name for tally in tallies),
        "frames": stream.frames, "anomalies": anomalies, "dropped": stream.dropped, **counters,
        "elapsed_s": round(elapsed, 3),
        "fps": round(stream.frames / elapsed, 2) if elapsed > 0 else 0.0,
        "threshold": _threshold(detector, options),
        "category": detector.category,
        "encoder_weights": detector.info.raw.get("encoder_weights"),
        "drift_events": sum(tally.monitor.events for tally in tallies if tally.monitor is not None),
        "sources": per_source,
        "error": None,
    }
    notice(f"done: {stream.frames} processed, {anomalies} anomalous, {counters['skipped']} skipped, "
           f"{_progress(stream)} ({detector.backend.name}, {precision_label(detector.info.precision, computed)}); "
           "encoder weights: "
           f"{describe_encoder_weights(summary['encoder_weights'])}")
    for entry in per_source if len(per_source) > 1 else ():
        notice(f"  {entry['source']}: {entry['frames']} processed, {entry['anomalies']} anomalous, "
               f"{entry['dropped']} dropped, {entry['fps']:.1f} fps, "
               f"drift events: {entry['drift']['events'] if entry['drift'] else 0}")
    return summary


def _threshold(detector: Detector, options: RunOptions) -> float | None:
    return options.threshold if options.threshold is not None else detector.threshold


def _page_report(detector: Detector, page: LivePage, options: RunOptions) -> dict:
    """What the page may change while it is held: the review queue's counts, the threshold (Apply)."""
    return {"threshold": _threshold(detector, options), "review": page.store.usage()}


def _finish_line(sinks: _Sinks, drain_s: float) -> list[dict]:
    """Drain the result sinks (up to ``drain_s``), say one line per sink and return their reports."""
    reports = sinks.line.finish(drain_s)
    for report in reports:
        kept = f"{report['queued']} spooled to {report['spool']}" if report["durable"] else f"{report['lost']} lost"
        notice(f"  sink {report['sink']}: {report['sent']} sent, {kept}, {report['dropped']} dropped")
    return reports


def _progress(stream: DetectionStream) -> str:
    elapsed = stream.elapsed_s()
    fps = stream.frames / elapsed if elapsed > 0 else 0.0
    return f"{stream.dropped} dropped, {elapsed:.1f} s at {fps:.1f} fps"
