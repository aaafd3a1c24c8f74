"""The built-in default export the bench times when given no artifact (needs torch and onnx).

Variant n at 256x256 is exported once, with random weights (speed does not depend on the
weights), into ``~/.cache/mmad-edge/bench/<key>`` and reused.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import onnx

import mmad_edge
from mmad_edge.config import ModelConfig
from mmad_edge.export.fp16 import convert_fp16
from mmad_edge.export.metadata import METADATA_FILENAME, build_metadata, write_onnx_metadata
from mmad_edge.export.onnx_export import DEFAULT_OPSET, export_onnx
from mmad_edge.export.pipeline import onnx_filename
from mmad_edge.fileio import write_json_atomic

from .artifacts import FLOAT_NCHW_NAME
from .models import random_model
from .runner import say

DEFAULT_BATCH_RANGE = (1, 16, 64)  # dynamic batch of the default ONNX graphs (min, opt, max)
DEFAULT_FILES = (onnx_filename("fp32"), onnx_filename("fp16"), FLOAT_NCHW_NAME, METADATA_FILENAME)


def default_cache_root() -> Path:
    return Path.home() / ".cache" / "mmad-edge" / "bench"


def cache_key(config: ModelConfig) -> str:
    """What the default graphs depend on: variant, size and the exporter's version."""
    return f"{config.variant}-{config.image_size}px-trained-like-mmad-edge-{mmad_edge.__version__}"


def default_artifacts(config: ModelConfig, cache_root: Path, progress: bool = True) -> Path:
    """The default export folder (FP32 + FP16 uint8 graphs, FP32 float NCHW graph, metadata).

    Exported once with random weights (seed 0) into ``cache_root/<cache_key>`` through a staging
    folder, so an interrupted export is never mistaken for a finished one; reused afterwards.
    """
    folder = cache_root / cache_key(config)
    if all((folder / name).is_file() for name in DEFAULT_FILES):
        return folder
    say(progress, f"exporting the default model (variant {config.variant}, {config.image_size}x{config.image_size}, "
                f"random weights) into {folder}")
    cache_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=cache_root))
    try:
        model = random_model(config)
        fp32 = onnx.load(str(export_onnx(model, staging / onnx_filename("fp32"), DEFAULT_BATCH_RANGE).path))
        export_onnx(model, staging / FLOAT_NCHW_NAME, DEFAULT_BATCH_RANGE, input_format="float_rgb_nchw")
        batch = dict(zip(("min", "opt", "max"), DEFAULT_BATCH_RANGE))
        metadata = build_metadata(config.to_dict(), "fp32", DEFAULT_OPSET, batch, None, None)
        for precision, graph in (("fp16", convert_fp16(fp32)), ("fp32", fp32)):
            write_onnx_metadata(graph, dict(metadata, precision=precision))
            onnx.save(graph, str(staging / onnx_filename(precision)))
        write_json_atomic(staging / METADATA_FILENAME, metadata)
        shutil.rmtree(folder, ignore_errors=True)  # an incomplete folder left by an older version
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
