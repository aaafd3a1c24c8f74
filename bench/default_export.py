"""The built-in default export the bench times when given no artifact (needs torch and onnx).

Variant n at 256x256 is exported once, with random weights (speed does not depend on the
weights), into ``~/.cache/mmad-edge/bench/<key>`` and reused.
"""

from __future__ import annotations

from pathlib import Path

import mmad_edge
from mmad_edge.config import ModelConfig
from mmad_edge.export.fp16 import convert_fp16
from mmad_edge.export.metadata import METADATA_FILENAME, build_metadata
from mmad_edge.export.onnx_export import export_onnx
from mmad_edge.export.options import DEFAULT_OPSET
from mmad_edge.export.pipeline import onnx_filename, save_graphs
from mmad_edge.export.staging import place, staged
from mmad_edge.runtime.log import say

from .artifacts import FLOAT_NCHW_NAME
from .models import random_model

DEFAULT_BATCH_RANGE = (1, 16, 64)  # dynamic batch of the default ONNX graphs (min, opt, max)
DEFAULT_FILES = (onnx_filename("fp32"), onnx_filename("fp16"), FLOAT_NCHW_NAME, METADATA_FILENAME)


def default_cache_root() -> Path:
    return Path.home() / ".cache" / "mmad-edge" / "bench"


def cache_key(config: ModelConfig) -> str:
    """What the default graphs depend on: variant, size and the exporter's version."""
    return f"{config.variant}-{config.image_size}px-trained-like-mmad-edge-{mmad_edge.__version__}"


def default_artifacts(config: ModelConfig, cache_root: Path, progress: bool = True) -> Path:
    """The default export folder (FP32 + FP16 uint8 graphs, FP32 float NCHW graph, metadata).

    Exported once with random weights (seed 0) into ``cache_root/<cache_key>`` through the
    export's staging folder (``export.staging``), as ``export.pipeline.save_graphs`` writes an
    export; reused afterwards.
    """
    folder = cache_root / cache_key(config)
    if all((folder / name).is_file() for name in DEFAULT_FILES):
        return folder
    say(f"exporting the default model (variant {config.variant}, {config.image_size}x{config.image_size}, "
        f"random weights) into {folder}", progress)
    with staged(folder) as staging:  # an interrupted export leaves an incomplete set, never taken as done
        model = random_model(config)
        fp32 = export_onnx(model, staging / onnx_filename("fp32"), DEFAULT_BATCH_RANGE).graph
        export_onnx(model, staging / FLOAT_NCHW_NAME, DEFAULT_BATCH_RANGE, input_format="float_rgb_nchw")
        batch = dict(zip(("min", "opt", "max"), DEFAULT_BATCH_RANGE))
        metadata = build_metadata(config.to_dict(), "fp32", DEFAULT_OPSET, batch, None, None)
        save_graphs(staging, {"fp32": fp32, "fp16": convert_fp16(fp32)}, metadata)
        place(staging, folder)
    return folder
