"""What `mmad-edge export`, `build-engine`, `verify` and `calibrate-threshold` were asked to do, each as
one value: built once by the CLI, passed whole.

Pure Python (no torch, no onnx), so the CLI reads the defaults here for its typer options.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

from mmad_edge.calib.options import Int8Options

DEFAULT_OPSET = 20  # native Gelu (one fused kernel in ONNX Runtime); TensorRT 10.3+ parses 9..20


@dataclass(frozen=True)
class ExportOptions:
    """How ``export_checkpoint`` exports, verifies and places the artifacts.

    ``precisions``: "fp32,fp16" or a sequence. ``batch``: N or MIN:OPT:MAX. ``image_size`` /
    ``variant``: None takes the checkpoint's (a given variant must match it). ``data`` (in
    ``layout``, ``categories``: None for all, at most ``max_images``): the verification frames,
    generated ones without it. ``calib_data``: normal images for INT8, calibrated as ``int8``
    says (its evaluation set is ``data`` when given). ``engine``: also build TensorRT engines.
    """

    precisions: str | Sequence[str] = "fp32,fp16"
    batch: str | int | tuple[int, int, int] = "1"
    opset: int = DEFAULT_OPSET
    image_size: int | None = None
    variant: str | None = None
    input_format: str = "uint8_bgr_nhwc"
    engine: bool = False
    data: str | os.PathLike[str] | None = None
    layout: str = "mvtec"
    categories: str | Sequence[str] | None = None
    max_images: int | None = None
    calib_data: str | os.PathLike[str] | None = None
    int8: Int8Options = field(default_factory=Int8Options)
    progress: bool = True


@dataclass(frozen=True)
class EngineOptions:
    """How ``build_engine`` builds a TensorRT engine: the batch profile (N or MIN:OPT:MAX), the
    builder's workspace (GiB) and optimisation level (0-5), a timing cache file read and updated,
    a version-compatible plan (newer TensorRT / lean runtime), a Jetson DLA core (GPU fallback on)."""

    batch: str | int | tuple[int, int, int] = "1"
    workspace_gib: float = 4.0
    timing_cache: str | os.PathLike[str] | None = None
    optimization_level: int = 3
    version_compatible: bool = False
    dla_core: int | None = None
    verbose: bool = False


@dataclass(frozen=True)
class VerifyOptions:
    """What ``verify_artifact`` checks: the labelled test split of ``data`` (``layout``, ``categories``,
    at most ``max_images``) through ``backend``; ``against`` the reference (None: the folder's
    model.fp32.onnx when the artifact is another file); ``precision`` picks from an export folder."""

    data: str | os.PathLike[str]
    layout: str = "mvtec"
    categories: Sequence[str] | None = None
    against: str | os.PathLike[str] | None = None
    backend: str = "auto"
    precision: str | None = None
    max_images: int | None = None
    batch_size: int = 8
    progress: bool = True


@dataclass(frozen=True)
class CalibrateOptions:
    """``good`` (and ``bad``) image folders; the threshold from ``fpr`` (target false-positive rate
    on good images) or ``rule`` (default mean+3std), for ``category`` (None: the pooled numbers)."""

    good: str | os.PathLike[str]
    bad: str | os.PathLike[str] | None = None
    category: str | None = None
    fpr: float | None = None
    rule: str | None = None
    backend: str = "auto"
    precision: str | None = None
    batch_size: int = 8
