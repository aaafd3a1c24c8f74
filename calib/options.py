"""The INT8 calibrator's options as one value: built once (CLI or caller), passed whole.

Pure Python (no onnx), so the CLI reads the defaults here for its typer options.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

from mmad_edge.calib.sensitivity import AccuracyTarget


@dataclass(frozen=True)
class Int8Options:
    """How ``export_int8`` calibrates, measures and searches.

    ``target``: ``tensorrt`` (symmetric INT8 Q/DQ) or ``cpu`` (ONNX Runtime, u8/s8).
    ``method``: ``minmax``, ``entropy`` or ``percentile`` (``percentile``). ``count`` images
    drawn with ``seed``. ``exclude``: conv node names always kept in float. ``eval_data``: a
    dataset root whose test split (``eval_layout``; ``eval_categories``: None for all) gives
    normal and defective images for AUROC; otherwise ``eval_count`` held-out calibration images.
    ``sensitivity``: search for blocks to keep in float when ``accuracy`` is missed, within
    ``max_attempts`` graphs after the block ranking. ``cpu_format``: ``auto`` (time Q/DQ and
    QOperator, keep the faster), ``qdq`` or ``qoperator``.
    """

    target: str = "tensorrt"
    method: str = "minmax"
    count: int = 200
    seed: int = 0
    exclude: Sequence[str] = ()
    percentile: float = 99.999
    eval_data: str | os.PathLike[str] | None = None
    eval_layout: str = "mvtec"
    eval_categories: str | Sequence[str] | None = None
    eval_count: int = 24
    sensitivity: bool = True
    accuracy: AccuracyTarget = field(default_factory=AccuracyTarget)
    max_attempts: int = 8
    cpu_format: str = "auto"
    cache_dir: str | os.PathLike[str] | None = None
    timing_runs: int = 5
