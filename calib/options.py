"""The INT8 calibrator's options as one value: built once (CLI or caller), passed whole.

Pure Python (no onnx): the fields `mmad-edge export` sets carry their flag and help.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from mmad_edge.calib.sensitivity import AccuracyTarget
from mmad_edge.runtime.flags import Flag, nested


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

    target: str = Flag("--target", "INT8 form: tensorrt (symmetric Q/DQ) or cpu (ONNX Runtime VNNI).").field("tensorrt")
    method: str = Flag("--calib-method", "minmax, entropy or percentile.").field("minmax")
    count: int = Flag("--calib-count", "Calibration images (random, seeded).").field(200)
    seed: int = Flag("--calib-seed", "Seed of the calibration image draw.").field(0)
    exclude: Sequence[str] = ()
    percentile: float = 99.999
    eval_data: str | os.PathLike[str] | None = None
    eval_layout: str = "mvtec"
    eval_categories: str | Sequence[str] | None = None
    eval_count: int = 24
    sensitivity: bool = True
    accuracy: AccuracyTarget = nested(
        AccuracyTarget, spearman_min=Flag("--int8-spearman", "INT8 target: score rank correlation vs FP32."),
        auroc_drop_max=Flag("--int8-auroc-drop", "INT8 target: max image-AUROC drop."),
        score_error_max=Flag("--int8-score-error",
                             "INT8 target: max RMS score shift, in units of the FP32 scores' spread."))
    max_attempts: int = 8
    cpu_format: str = "auto"
    cache_dir: str | os.PathLike[str] | None = None
    timing_runs: int = 5
