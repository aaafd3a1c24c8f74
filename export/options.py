"""What `mmad-edge export`, `build-engine`, `verify` and `calibrate-threshold` were asked to do, each as
one value: built once by the CLI, passed whole.

Pure Python (no torch, no onnx): each field carries its flag and help, from which the CLI builds
the commands.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from mmad_edge.calib.options import Int8Options
from mmad_edge.flags import DATA, IMAGE_SIZE, LAYOUT, VARIANT
from mmad_edge.runtime.flags import (
    BACKEND,
    BATCH_SIZE,
    CATEGORY,
    INFERENCE_PRECISION,
    MIN_AGREEMENT,
    PRECISION,
    SOURCE,
    Flag,
    nested,
)
from mmad_edge.runtime.tuning.selection import DEFAULT_MIN_AGREEMENT

DEFAULT_OPSET = 20  # native Gelu (one fused kernel in ONNX Runtime); TensorRT 10.3+ parses 9..20
PROFILE = Flag("--batch", "Batch profile of the graph or engine: N (fixed) or MIN:OPT:MAX (dynamic).")
TEST_CATEGORY = "Test category of {}; repeat for several (default: all)."
MAX_IMAGES = Flag("--max-images", "Test images at most (evenly spread).")
GOOD = Flag("--good", "Folder of normal images of the line.")


@dataclass(frozen=True)
class ExportOptions:
    """How ``export_checkpoint`` exports, verifies and places the artifacts.

    ``precisions``: "fp32,fp16" or a sequence. ``batch``: N or MIN:OPT:MAX. ``image_size`` /
    ``variant``: None takes the checkpoint's (a given variant must match it). ``data`` (in
    ``layout``, ``categories``: None for all, at most ``max_images``): the verification frames,
    generated ones without it. ``calib_data``: normal images for INT8, calibrated as ``int8``
    says (its evaluation set is ``data`` when given). ``engine``: also build TensorRT engines.
    """

    precisions: str | Sequence[str] = PRECISION.field("fp32,fp16", help="Comma list of fp32, fp16, int8.")
    batch: str | int | tuple[int, int, int] = PROFILE.field("1")
    opset: int = Flag("--opset", "ONNX opset (20: native Gelu; TensorRT 10.3+ parses up to 20).").field(DEFAULT_OPSET)
    image_size: int | None = IMAGE_SIZE.field(None, detail=" (default: the checkpoint's)")
    variant: str | None = VARIANT.field(None, detail=" (default: the checkpoint's; given, the checkpoint must match)")
    input_format: str = Flag("--input-format", "uint8_bgr_nhwc or float_rgb_nchw.").field("uint8_bgr_nhwc")
    engine: bool = Flag("--engine/--no-engine", "Also build TensorRT engines (needs TensorRT + GPU).").field(False)
    data: str | os.PathLike[str] | None = DATA.field(None)
    layout: str = LAYOUT.field("mvtec")
    categories: str | Sequence[str] | None = CATEGORY.field(
        None, help=TEST_CATEGORY.format(f"{DATA.name} for the verification report"))
    max_images: int | None = None
    calib_data: str | os.PathLike[str] | None = Flag("--calib-data", "Folder of normal images for INT8.").field(None)
    int8: Int8Options = nested(Int8Options)
    progress: bool = True


@dataclass(frozen=True)
class EngineOptions:
    """How ``build_engine`` builds a TensorRT engine: the batch profile (N or MIN:OPT:MAX), the
    builder's workspace (GiB) and optimisation level (0-5), a timing cache file read and updated,
    a version-compatible plan (newer TensorRT / lean runtime), a Jetson DLA core (GPU fallback on)."""

    batch: str | int | tuple[int, int, int] = PROFILE.field("1")
    workspace_gib: float = Flag("--workspace-gib", "Builder workspace limit (GiB).").field(4.0)
    timing_cache: str | os.PathLike[str] | None = Flag(
        "--timing-cache", "Timing cache file, read and updated (default DIR/tensorrt.timing.cache).").field(None)
    optimization_level: int = Flag("--optimization-level", "Builder optimisation level, 0-5.").field(3)
    version_compatible: bool = Flag("--version-compatible/--no-version-compatible",
                                    "Plan runnable by newer TensorRT / the lean runtime.").field(False)
    dla_core: int | None = Flag("--dla-core", "Jetson DLA core (GPU fallback on).").field(None)
    verbose: bool = False


@dataclass(frozen=True)
class VerifyOptions:
    """What ``verify_artifact`` checks: the labelled test split of ``data`` (``layout``, ``categories``,
    at most ``max_images``) through ``backend``; ``against`` the reference (None: the folder's
    model.fp32.onnx when the artifact is another file); ``precision`` picks from an export folder;
    ``inference_precision`` the compute type of a backend that has one (OpenVINO); ``min_agreement``
    the verdict agreement with the reference held, as ``tune`` holds it (``runtime.tuning.selection``)."""

    data: str | os.PathLike[str] = DATA.field()
    layout: str = LAYOUT.field("mvtec")
    categories: Sequence[str] | None = CATEGORY.field(None, help=TEST_CATEGORY.format(DATA.name))
    against: str | os.PathLike[str] | None = Flag(
        "--against", "Reference: a model.fp32.onnx or a checkpoint.pt (needs torch); default: the folder's "
                     "model.fp32.onnx.").field(None)
    backend: str = BACKEND.field("auto")
    precision: str | None = PRECISION.field(None)
    inference_precision: str | None = INFERENCE_PRECISION.field(
        None, detail=" (default f32); checked with the bounds of the precision that computes")
    max_images: int | None = MAX_IMAGES.field(None)
    batch_size: int = BATCH_SIZE.field(8)
    min_agreement: float = MIN_AGREEMENT.field(DEFAULT_MIN_AGREEMENT, detail=", as tune judges it; not judged (and "
                                                                          "said so) when either has no threshold")
    progress: bool = True


DEFAULT_FRAMES = 100  # calibrate-threshold --source: frames scored unless --frames says


@dataclass(frozen=True)
class CalibrateOptions:
    """Good images from the ``good`` folder or ``frames`` frames of a live ``source``, (and a ``bad``
    folder); the threshold from ``fpr`` (target false-positive rate on good images) or ``rule``
    (default mean+3std), for ``category`` (None: the pooled numbers)."""

    good: str | os.PathLike[str] | None = GOOD.field(None)
    source: str | None = SOURCE.field(None, detail=": instead of --good, known-good parts straight from the line")
    frames: int | None = Flag("--frames", f"How many frames of --source to score (default {DEFAULT_FRAMES}; "
                                          "with --good every image is).").field(None)
    bad: str | os.PathLike[str] | None = Flag(
        "--bad", "Folder of defective images: recall and F1 are reported.").field(None)
    category: str | None = CATEGORY.field(None, help="Set this training category's threshold (unified models).")
    fpr: float | None = Flag("--fpr", "Target false-positive rate F on good images: threshold = the (1 - F) "
                                      "quantile of their scores.").field(None)
    rule: str | None = Flag("--rule", "mean+Kstd or quantile:Q (default mean+3std).").field(None)
    backend: str = BACKEND.field("auto")
    precision: str | None = PRECISION.field(None)
    batch_size: int = BATCH_SIZE.field(8)
