"""What `mmad-edge run` was asked to do, as one value: built once by the CLI, passed whole.

The defaults here are the only ones; each field carries its flag and help (plain metadata), from
which the CLI builds the command.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

from ..flags import (
    BACKEND,
    BATCH_SIZE,
    CATEGORY,
    DRIFT_TOLERANCE,
    DRIFT_WINDOW,
    FOLLOW,
    INFERENCE_PRECISION,
    METRICS_PORT,
    PERFORMANCE_HINT,
    PRECISION,
    Flag,
    nested,
)
from ..monitor.drift import DEFAULT_TOLERANCE, DEFAULT_WINDOW
from ..sinks.options import SinkOptions
from ..ui.options import PageOptions

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class RunOptions:
    """Options of ``run_stream`` (see its docstring for what each one does)."""

    show: bool = Flag("--show/--no-show", "Window with heat-map overlay and score (needs opencv-python, "
                                          "not -headless).").field(False)
    save_dir: PathLike | None = Flag(
        "--save", "Folder that keeps the anomalous frames only: each as frame, overlay and map PNGs plus a line in "
                  "results.jsonl (maps at model size; at frame size with --map-size frame).").field(None)
    jsonl: bool = Flag("--jsonl/--no-jsonl", "One strict-JSON object per frame on stdout.").field(False)
    threshold: float | None = Flag("--threshold", "Override the artifact's threshold (finite).").field(None)
    backend: str = BACKEND.field("auto")
    batch: int = BATCH_SIZE.field(1)
    max_frames: int | None = Flag("--max-frames", "Stop after N >= 1 frames (default: until the source "
                                                     "ends).").field(None)
    providers: Sequence[Any] | None = None
    precision: str | None = PRECISION.field(None)
    category: str | None = CATEGORY.field(None, help="Threshold of this training category (unified models).")
    retry_s: float | None = Flag(
        "--retry-seconds", "How long to keep reopening a camera, stream or video that gives no frames (default 15; "
                           "0: fail at once).").field(None)
    map_size: str = Flag("--map-size", "Anomaly maps at the model's size or each frame's: model or "
                                       "frame.").field("model")
    progress_every_s: float = 10.0
    drift_window: int = DRIFT_WINDOW.field(DEFAULT_WINDOW, detail="source")
    drift_tolerance: float = DRIFT_TOLERANCE.field(DEFAULT_TOLERANCE)
    metrics_port: int | None = METRICS_PORT.field(
        None, help="Serve Prometheus metrics at http://127.0.0.1:PORT/metrics during the run.")
    follow: bool = FOLLOW.field(True, detail="frames")
    shadow: PathLike | None = Flag(
        "--shadow", "Candidate export (or deployment folder) run in shadow on the same frames, on its own thread: its "
                    "verdicts and normalized scores are compared with the deployed detector's (agreement in the "
                    "summary, --json and metrics); frames it cannot keep up with are dropped and counted, never "
                    "waited for.").field(None)
    shadow_log: PathLike | None = Flag(
        "--shadow-log", "Folder for the frames where the --shadow candidate's verdict differs: each frame as PNG plus "
                        "a line in disagreements.jsonl.").field(None)
    shadow_log_max: int = Flag("--shadow-log-max", "Most disagreements --shadow-log keeps, earlier runs' "
                                                   "included.").field(500)
    inference_precision: str | None = INFERENCE_PRECISION.field(None, detail=" (default f32)")
    performance_hint: str | None = PERFORMANCE_HINT.field(
        None, detail=" (default: latency at --batch-size 1, else throughput)")
    sinks: SinkOptions = nested(SinkOptions)  # verdicts out to MQTT, webhooks, OPC UA and Modbus PLCs
    page: PageOptions = nested(PageOptions)
