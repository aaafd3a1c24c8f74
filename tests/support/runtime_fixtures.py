"""A tiny stand-in for an exported MiniMaxAD ONNX (same I/O contract, no network), for tests.

The stand-in's map is the channel mean of the uint8 image / 255 and its score the mean of the
top ``k`` map pixels, so tests can compute the expected numbers with numpy (``reference``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mmad_edge.runtime.artifact.contract import METADATA_KEY


def standin_metadata(
    size: int = 64,
    batch: int | str = "dynamic",
    max_batch: int = 4,
    threshold: float | None = 0.6,
    low: float = 0.5,
    precision: str = "fp32",
    statistics: bool = True,
) -> dict:
    """Schema-1 metadata for the stand-in (``statistics=False`` gives ``"statistics": null``)."""
    batch_min, batch_max = (batch, batch) if isinstance(batch, int) else (1, max_batch)
    stats = None
    if statistics:
        stats = {
            "threshold": threshold,
            "normalization": {"low": low, "high": threshold},
            "threshold_rule": "test",
            "normal_scores": {"count": 4, "mean": low, "std": 0.01, "quantiles": {"0.5": low}},
        }
    return {
        "schema_version": 1,
        "mmad_edge_version": "0.1.0",
        "precision": precision,
        "opset": 17,
        "model": {"variant": "standin", "image_size": size, "score_mode": "top_percent"},
        "input": {"name": "image", "layout": "NHWC", "dtype": "uint8", "channel_order": "BGR", "height": size, "width": size},
        "outputs": {
            "anomaly_map": {"shape": ["B", size, size], "dtype": "float32"},
            "score": {"shape": ["B"], "dtype": "float32"},
        },
        "batch": {"min": batch_min, "opt": batch_min, "max": batch_max},
        "statistics": stats,
    }


def top_k(size: int) -> int:
    """How many pixels the stand-in's score averages: ~1 % of the map, a multiple of 8.

    A multiple of 8 keeps each batch row SIMD-aligned in ONNX Runtime's CPU ReduceMean, so the
    stand-in gives bit-identical scores at every batch size (with k = 23, row 3 of a batch can
    differ from a single-frame run by one float32 ulp).
    """
    return max(8, -(-size * size // 100) // 8 * 8)


def build_standin(size: int = 64, batch: int | str = "dynamic", metadata: dict | None = None) -> onnx.ModelProto:
    """The stand-in graph; ``batch`` is an int (fixed) or a dim name (dynamic)."""
    image = helper.make_tensor_value_info("image", TensorProto.UINT8, [batch, size, size, 3])
    amap = helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, [batch, size, size])
    score = helper.make_tensor_value_info("score", TensorProto.FLOAT, [batch])
    inits = [
        helper.make_tensor("scale", TensorProto.FLOAT, [], [1.0 / 255.0]),
        helper.make_tensor("flat_shape", TensorProto.INT64, [2], [0, -1]),
        helper.make_tensor("k", TensorProto.INT64, [1], [top_k(size)]),
    ]
    nodes = [
        helper.make_node("Cast", ["image"], ["as_float"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["as_float"], ["channel_mean"], axes=[3], keepdims=0),
        helper.make_node("Mul", ["channel_mean", "scale"], ["anomaly_map"]),
        helper.make_node("Reshape", ["anomaly_map", "flat_shape"], ["flat"]),
        helper.make_node("TopK", ["flat", "k"], ["top_values", "top_indices"], axis=1),
        helper.make_node("ReduceMean", ["top_values"], ["score"], axes=[1], keepdims=0),
    ]
    graph = helper.make_graph(nodes, "standin", [image], [amap, score], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="mmad-edge-tests")
    model.ir_version = 9
    if metadata is not None:
        helper.set_model_props(model, {METADATA_KEY: json.dumps(metadata)})
    onnx.checker.check_model(model)
    return model


def write_standin(
    path: Path, size: int = 64, batch: int | str = "dynamic", metadata: dict | None = None, embed: bool = True
) -> Path:
    """Write the stand-in ONNX (metadata embedded unless ``embed=False``); returns ``path``."""
    metadata = metadata if metadata is not None else standin_metadata(size, batch)
    onnx.save(build_standin(size, batch, metadata if embed else None), str(path))
    return path


def write_export_dir(folder: Path, size: int = 64, precisions=("fp32",), batch: int | str = "dynamic", **meta) -> Path:
    """An export folder: ``model.<p>.onnx`` for each precision plus ``metadata.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    for precision in precisions:
        metadata = standin_metadata(size, batch, precision=precision, **meta)
        write_standin(folder / f"model.{precision}.onnx", size, batch, metadata)
    (folder / "metadata.json").write_text(json.dumps(standin_metadata(size, batch, **meta)))
    return folder


def rescale_standin(path: Path, factor: float) -> Path:
    """Multiply the stand-in's map and score by ``factor`` (its ``scale``), metadata kept; returns ``path``."""
    model = onnx.load(str(path))
    scale = next(tensor for tensor in model.graph.initializer if tensor.name == "scale")
    scale.CopyFrom(numpy_helper.from_array(np.array(factor / 255.0, np.float32), "scale"))
    onnx.save(model, str(path))
    return path


def reference(image: np.ndarray) -> tuple:
    """Expected (map, score) of the stand-in for one model-size uint8 BGR image."""
    amap = image.astype(np.float32).mean(axis=2) * np.float32(1.0 / 255.0)
    flat = np.sort(amap.ravel())[::-1]
    return amap, float(flat[: top_k(image.shape[0])].mean())
