"""What `mmad-edge run` was asked to do, as one value: built once by the CLI, passed whole.

The defaults here are the only ones: the CLI reads them for its typer options.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

from ..monitor.drift import DEFAULT_TOLERANCE, DEFAULT_WINDOW

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class RunOptions:
    """Options of ``run_stream`` (see its docstring for what each one does)."""

    show: bool = False
    save_dir: Optional[PathLike] = None
    jsonl: bool = False
    threshold: Optional[float] = None
    backend: str = "auto"
    batch: int = 1
    max_frames: Optional[int] = None
    providers: Optional[Sequence[Any]] = None
    precision: Optional[str] = None
    category: Optional[str] = None
    retry_s: Optional[float] = None
    map_size: str = "model"
    progress_every_s: float = 10.0
    drift_window: int = DEFAULT_WINDOW
    drift_tolerance: float = DEFAULT_TOLERANCE
    metrics_port: Optional[int] = None
    inference_precision: Optional[str] = None  # OpenVINO: f32 (default), bf16 or f16 where the CPU has the units
    performance_hint: Optional[str] = None  # OpenVINO: latency / throughput (default: latency at batch 1, else throughput)
