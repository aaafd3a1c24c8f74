"""``mmad-edge run``: detect on a live or recorded source until it ends, stops or is interrupted."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Optional, Union

from .backends.base import BackendOptions
from .detector import Detector
from .log import report
from .metadata import describe_encoder_weights
from .options import PathLike, RunOptions
from .outputs import AnomalySaver, JsonlWriter, Viewer, frame_record
from .overlay import render_overlay
from .scoring import check_threshold
from .sources import FrameSource, check_retry_s, open_source
from .stream import DetectionStream


def run_stream(
    artifact: Union[PathLike, Detector],
    source: Union[int, PathLike, FrameSource],
    options: RunOptions = RunOptions(),
    *,
    stdout: Optional[IO[str]] = None,
    stop_event: Optional[threading.Event] = None,
) -> dict:
    """Run the detector over ``source`` and return a summary dict.

    ``source``: camera index, URL, video file, image folder (or a FrameSource). ``options.jsonl``:
    stdout gets exactly one strict-JSON object per frame; otherwise anomalies are printed as
    text. Progress and messages go to stderr, ending with one summary line (processed /
    anomalous / skipped / dropped). ``save_dir``: anomalous frames only, with overlay and map
    PNGs and DIR/results.jsonl. ``map_size``: "model" or "frame" (maps resized to each frame,
    also in the saved PNGs). ``show``: an OpenCV window (q / Esc quits). ``max_frames``: stop
    after that many frames (>= 1). ``retry_s``: how long a camera, stream or video that gives no
    frames is reopened before giving up (0: at once; None: ``sources.DEFAULT_RETRY_S``). Ctrl-C
    or ``stop_event`` end the run cleanly (summary ``"interrupted"`` / ``"stopped"`` is true).
    ``category``: use that training category's threshold and normalisation (unified models).
    """
    options = _checked(options)
    owns_detector = not isinstance(artifact, Detector)
    detector = _load(artifact, options) if owns_detector else artifact
    try:
        return _run(detector, source, options, stdout if stdout is not None else sys.stdout, stop_event)
    finally:
        if owns_detector:
            detector.close()


def _checked(options: RunOptions) -> RunOptions:
    """The options with threshold and retry time validated (one-line ValueErrors)."""
    max_frames = options.max_frames
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1):
        raise ValueError(f"max frames must be at least 1, got {max_frames!r}; pass --max-frames N with N >= 1, "
                         "or leave it out to run until the source ends")
    return replace(options, threshold=check_threshold(options.threshold), retry_s=check_retry_s(options.retry_s))


def _load(artifact: PathLike, options: RunOptions) -> Detector:
    """The detector; OpenVINO's hint defaults to latency for single frames, throughput for batches."""
    hint = options.performance_hint or ("latency" if options.batch == 1 else "throughput")
    settings = BackendOptions(providers=options.providers, inference_precision=options.inference_precision,
                              performance_hint=hint)
    return Detector.load(artifact, options.backend, settings, threshold=options.threshold,
                         precision=options.precision, category=options.category)


def _run(detector: Detector, source: Union[int, PathLike, FrameSource], options: RunOptions, out: IO[str],
         stop_event: Optional[threading.Event]) -> dict:
    """Open the source and the outputs, loop, and summarise; the outputs are closed whatever happens."""
    viewer: Optional[Viewer] = None
    saver: Optional[AnomalySaver] = None
    try:
        frames_source = open_source(source, retry_s=options.retry_s)
        threshold = options.threshold if options.threshold is not None else detector.threshold
        if options.save_dir is not None and threshold is None:
            report("--save keeps anomalous frames only, but no threshold is known (no export statistics); pass --threshold")
        stream = DetectionStream(detector, frames_source, batch=options.batch, threshold=options.threshold,
                                 map_size=options.map_size)
        viewer = Viewer() if options.show else None
        saver = AnomalySaver(Path(options.save_dir), detector.normalization) if options.save_dir is not None else None
        sinks = _Sinks(out, JsonlWriter(out) if options.jsonl else None, saver, viewer)
        anomalies, interrupted, quit_by_user = _loop(detector, frames_source, stream, sinks, options, stop_event)
        summary = {
            "artifact": str(getattr(detector.backend, "path", "")),
            "backend": detector.backend.name,
            "backend_details": detector.backend.describe(),
            "source": frames_source.name,
            "frames": stream.frames,
            "anomalies": anomalies,
            "dropped": stream.dropped,
            "skipped": 0,
            **frames_source.counters,
            "elapsed_s": round(stream.elapsed_s(), 3),
            "fps": round(stream.frames / stream.elapsed_s(), 2) if stream.elapsed_s() > 0 else 0.0,
            "threshold": threshold,
            "category": detector.category,
            "encoder_weights": detector.info.raw.get("encoder_weights"),
            "interrupted": interrupted,
            "stopped": quit_by_user or (stop_event is not None and stop_event.is_set()),
        }
        report(f"done: {stream.frames} processed, {anomalies} anomalous, {summary['skipped']} skipped, "
               f"{_progress(stream)} ({detector.backend.name}); encoder weights: "
               f"{describe_encoder_weights(summary['encoder_weights'])}")
        return summary
    finally:
        if saver is not None:
            saver.close()
        if viewer is not None:
            viewer.close()


@dataclass
class _Sinks:
    """Where each result goes: text or JSON lines on ``out``, the anomaly folder, the window."""

    out: IO[str]
    writer: Optional[JsonlWriter]
    saver: Optional[AnomalySaver]
    viewer: Optional[Viewer]


def _loop(detector: Detector, frames_source: FrameSource, stream: DetectionStream, sinks: _Sinks,
          options: RunOptions, stop_event: Optional[threading.Event]) -> tuple[int, bool, bool]:
    """Score frames until the source ends or a stop; returns (anomalies, interrupted, quit by the user)."""
    anomalies, interrupted, quit_by_user = 0, False, False
    next_progress = time.perf_counter() + options.progress_every_s
    results = iter(stream)
    try:
        for source_id, frame, result in results:
            record = frame_record(frames_source.name, source_id, stream.frames - 1, result)
            if sinks.writer is not None:
                sinks.writer.write(record)
            if result.is_anomaly:
                anomalies += 1
                if sinks.writer is None:
                    sinks.out.write(f"anomaly: {source_id} score {result.score:.5f}\n")
                    sinks.out.flush()
                if sinks.saver is not None:
                    sinks.saver.save(source_id, frame, result, record)
            if sinks.viewer is not None and not sinks.viewer.show(render_overlay(frame, result, detector.normalization)):
                quit_by_user = True
                break
            if time.perf_counter() >= next_progress:
                next_progress += options.progress_every_s
                report(f"{stream.frames} processed, {_progress(stream)}")
            if (options.max_frames is not None and stream.frames >= options.max_frames) or (
                    stop_event is not None and stop_event.is_set()):
                break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        results.close()
    return anomalies, interrupted, quit_by_user


def _progress(stream: DetectionStream) -> str:
    elapsed = stream.elapsed_s()
    fps = stream.frames / elapsed if elapsed > 0 else 0.0
    return f"{stream.dropped} dropped, {elapsed:.1f} s at {fps:.1f} fps"
