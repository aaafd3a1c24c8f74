"""``mmad-edge run``: detect on a live or recorded source until it ends, stops or is interrupted."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any, Optional, Sequence, Union

from .detector import Detector
from .log import report
from .metadata import describe_encoder_weights
from .outputs import AnomalySaver, JsonlWriter, Viewer, frame_record
from .overlay import render_overlay
from .scoring import check_threshold
from .sources import FrameSource, check_retry_s, open_source
from .stream import DetectionStream

PathLike = Union[str, "os.PathLike[str]"]


def run_stream(
    artifact: Union[PathLike, Detector],
    source: Union[int, PathLike, FrameSource],
    show: bool = False,
    save_dir: Optional[PathLike] = None,
    jsonl: bool = False,
    threshold: Optional[float] = None,
    backend: str = "auto",
    batch: int = 1,
    max_frames: Optional[int] = None,
    providers: Optional[Sequence[Any]] = None,
    precision: Optional[str] = None,
    category: Optional[str] = None,
    progress_every_s: float = 10.0,
    stdout: Optional[IO[str]] = None,
    stop_event: Optional[threading.Event] = None,
    retry_s: Optional[float] = None,
    map_size: str = "model",
) -> dict:
    """Run the detector over ``source`` and return a summary dict.

    ``source``: camera index, URL, video file, image folder (or a FrameSource). ``jsonl``:
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
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1):
        raise ValueError(f"max frames must be at least 1, got {max_frames!r}; pass --max-frames N with N >= 1, "
                         "or leave it out to run until the source ends")
    threshold, retry_s = check_threshold(threshold), check_retry_s(retry_s)
    out = stdout if stdout is not None else sys.stdout
    owns_detector = not isinstance(artifact, Detector)
    if owns_detector:
        detector = Detector.load(artifact, backend=backend, threshold=threshold, providers=providers, precision=precision,
                                 category=category)
    else:
        detector = artifact
    viewer: Optional[Viewer] = None
    saver: Optional[AnomalySaver] = None
    try:
        frames_source = open_source(source, retry_s=retry_s)
        effective_threshold = threshold if threshold is not None else detector.threshold
        if save_dir is not None and effective_threshold is None:
            report("--save keeps anomalous frames only, but no threshold is known (no export statistics); pass --threshold")
        stream = DetectionStream(detector, frames_source, batch=batch, threshold=threshold, map_size=map_size)
        viewer = Viewer() if show else None
        saver = AnomalySaver(Path(save_dir), detector.normalization) if save_dir is not None else None
        writer = JsonlWriter(out) if jsonl else None
        anomalies, interrupted, quit_by_user = 0, False, False
        next_progress = time.perf_counter() + progress_every_s
        results = iter(stream)
        try:
            for source_id, frame, result in results:
                record = frame_record(frames_source.name, source_id, stream.frames - 1, result)
                if writer is not None:
                    writer.write(record)
                if result.is_anomaly:
                    anomalies += 1
                    if writer is None:
                        out.write(f"anomaly: {source_id} score {result.score:.5f}\n")
                        out.flush()
                    if saver is not None:
                        saver.save(source_id, frame, result, record)
                if viewer is not None and not viewer.show(render_overlay(frame, result, detector.normalization)):
                    quit_by_user = True
                    break
                if time.perf_counter() >= next_progress:
                    next_progress += progress_every_s
                    report(f"{stream.frames} processed, {_progress(stream)}")
                if (max_frames is not None and stream.frames >= max_frames) or (stop_event is not None and stop_event.is_set()):
                    break
        except KeyboardInterrupt:
            interrupted = True
        finally:
            results.close()
        summary = {
            "artifact": str(getattr(detector.backend, "path", "")),
            "backend": detector.backend.name,
            "source": frames_source.name,
            "frames": stream.frames,
            "anomalies": anomalies,
            "dropped": stream.dropped,
            "skipped": 0,
            **frames_source.counters,
            "elapsed_s": round(stream.elapsed_s(), 3),
            "fps": round(stream.frames / stream.elapsed_s(), 2) if stream.elapsed_s() > 0 else 0.0,
            "threshold": effective_threshold,
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
        if owns_detector:
            detector.close()


def _progress(stream: DetectionStream) -> str:
    elapsed = stream.elapsed_s()
    fps = stream.frames / elapsed if elapsed > 0 else 0.0
    return f"{stream.dropped} dropped, {elapsed:.1f} s at {fps:.1f} fps"
