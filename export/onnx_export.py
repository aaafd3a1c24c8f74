"""The whole detector (preprocessing, network, anomaly map, score) as one ONNX graph.

The network is reparameterised first (BN, dilated branches, layer scale folded), so the graph
is the deployment form; for uint8 input the BGR swap and 1/(255 std) also live in the stem
conv. Every export is simplified with onnxsim only when the simplified graph passes the
checker and reproduces the unsimplified graph's outputs; otherwise the raw export is kept and
the reason recorded.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from mmad_edge.config import IMAGENET_MEAN, IMAGENET_STD
from mmad_edge.export.options import DEFAULT_OPSET
from mmad_edge.export.simplify import simplify_checked
from mmad_edge.export.trt_ops import TOPK_MAX_K
from mmad_edge.model.anomaly_map import top_k_count
from mmad_edge.model.minimaxad import MiniMaxAD
from mmad_edge.model.reparam import reparameterize
from mmad_edge.runtime.artifact.contract import INPUT_NAME, OUTPUT_NAMES

BATCH_DIM = "batch"
INPUT_FORMATS = ("uint8_bgr_nhwc", "float_rgb_nchw")
MIN_OPSET = 13

BatchRange = tuple[int, int, int]


class ExportError(ValueError):
    """An export request that cannot produce a valid graph (message names the fix)."""


@dataclass(frozen=True)
class ExportedOnnx:
    """Where the graph went, the graph itself (so callers need not load it back) and what
    simplification did ("simplified: ..." or "kept unsimplified: ...")."""

    path: Path
    graph: onnx.ModelProto
    simplification: str


def check_request_options(batch: BatchRange, opset: int, input_format: str) -> None:
    """The checks that need no model, so a bad option fails before a checkpoint is read."""
    if input_format not in INPUT_FORMATS:
        raise ExportError(f"unknown input format {input_format!r}; choose one of {', '.join(INPUT_FORMATS)}")
    low, opt, high = batch
    if not 1 <= low <= opt <= high:
        raise ExportError(f"batch range {low}:{opt}:{high} must satisfy 1 <= MIN <= OPT <= MAX")
    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is too old; use --opset {MIN_OPSET} or newer (20 recommended)")


def check_export_request(model: MiniMaxAD, batch: BatchRange, opset: int, input_format: str) -> None:
    """Raise ExportError (one line) for a request TensorRT or ONNX could not take."""
    check_request_options(batch, opset, input_format)
    config = model.config
    if config.score_mode == "top_percent":
        k = top_k_count(config.image_size, config.image_size, config.top_percent)
        if k > TOPK_MAX_K:
            largest = _largest_size_for_topk(config.top_percent)
            raise ExportError(
                f"the score averages the top {k} pixels at image size {config.image_size}, but TensorRT's TopK "
                f"allows at most {TOPK_MAX_K}; export with --image-size {largest} or smaller"
            )


def _largest_size_for_topk(top_percent: float) -> int:
    """Largest multiple of 32 whose top-percent pixel count fits TensorRT's TopK."""
    size = 32
    while top_k_count(size + 32, size + 32, top_percent) <= TOPK_MAX_K:
        size += 32
    return size


def deployment_module(model: MiniMaxAD, input_format: str) -> nn.Module:
    """The reparameterised network with the input handling ``input_format`` asks for."""
    if input_format == "uint8_bgr_nhwc":
        return reparameterize(model, fold_input=True)
    deployed = reparameterize(model, fold_input=False)  # a copy: swapping its preprocessing is safe
    deployed.preprocess = nn.Identity()  # fed ImageNet-normalised float RGB NCHW directly
    return deployed


def example_input(size: int, batch: int, input_format: str, seed: int = 0) -> torch.Tensor:
    """A tracing input of the right dtype and layout."""
    generator = torch.Generator().manual_seed(seed)
    if input_format == "uint8_bgr_nhwc":
        return torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, generator=generator)
    return torch.randn(batch, 3, size, size, generator=generator)


def export_onnx(
    model: MiniMaxAD,
    path: str | os.PathLike[str],
    batch: BatchRange = (1, 1, 1),
    opset: int = DEFAULT_OPSET,
    input_format: str = "uint8_bgr_nhwc",
) -> ExportedOnnx:
    """Export ``model`` (training form) as one simplified, checked ONNX graph at ``path``; the
    result holds the path, the graph and what simplification did."""
    batch = tuple(int(b) for b in batch)  # type: ignore[assignment]
    check_export_request(model, batch, opset, input_format)
    size = model.config.image_size
    dynamic = batch[0] != batch[2]
    trace_batch = max(2, batch[0]) if dynamic else batch[0]
    module = deployment_module(model, input_format)
    example = example_input(size, trace_batch, input_format)
    raw = _trace_to_onnx(module, example, opset, dynamic)
    _set_io_shapes(raw, BATCH_DIM if dynamic else batch[0], size)
    probe = example_input(size, trace_batch, input_format, seed=1).numpy()
    graph, status = simplify_checked(raw, {INPUT_NAME: probe})
    name_unnamed_nodes(graph)
    onnx.checker.check_model(graph, full_check=True)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(graph, str(target))
    return ExportedOnnx(target, graph, status)


def _trace_to_onnx(module: nn.Module, example: torch.Tensor, opset: int, dynamic: bool) -> onnx.ModelProto:
    """TorchScript-based export (module paths survive as node-name scopes) into memory."""
    axes = {name: {0: BATCH_DIM} for name in (INPUT_NAME, *OUTPUT_NAMES)} if dynamic else None
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The top-k count becomes a constant on purpose (the image size is fixed per export).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (example,), buffer, input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
            dynamic_axes=axes, opset_version=opset, do_constant_folding=True, dynamo=False,
        )
    return onnx.load_from_string(buffer.getvalue())


def _set_io_shapes(model: onnx.ModelProto, batch: int | str, size: int) -> None:
    """Declare the contract's IO shapes (the tracer mislabels the map's dims) and drop stale value_info."""
    inputs = {value.name: value for value in model.graph.input}
    outputs = {value.name: value for value in model.graph.output}
    image = inputs[INPUT_NAME].type.tensor_type
    image_dims = [batch, size, size, 3] if image.elem_type == onnx.TensorProto.UINT8 else [batch, 3, size, size]
    _write_dims(image, image_dims)
    _write_dims(outputs[OUTPUT_NAMES[0]].type.tensor_type, [batch, size, size])
    _write_dims(outputs["score"].type.tensor_type, [batch])
    del model.graph.value_info[:]


def _write_dims(tensor_type: onnx.TypeProto.Tensor, dims: list[int | str]) -> None:
    tensor_type.shape.ClearField("dim")
    for value in dims:
        dim = tensor_type.shape.dim.add()
        if isinstance(value, str):
            dim.dim_param = value
        else:
            dim.dim_value = value


def name_unnamed_nodes(model: onnx.ModelProto) -> None:
    """Give nodes the exporter left anonymous an ``<op>_<index>`` name, unique in the graph."""
    taken = {node.name for node in model.graph.node if node.name}
    for index, node in enumerate(model.graph.node):
        if not node.name:
            candidate = f"{node.op_type}_{index}"
            while candidate in taken:
                candidate += "_"
            node.name = candidate
            taken.add(candidate)


def numpy_input(frames: np.ndarray, input_format: str) -> np.ndarray:
    """uint8 BGR NHWC frames as the graph input of ``input_format`` (ImageNet-normalised for float)."""
    if input_format == "uint8_bgr_nhwc":
        return np.ascontiguousarray(frames, dtype=np.uint8)
    rgb = frames[..., ::-1].astype(np.float32) / 255.0
    normalised = (rgb - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    return np.ascontiguousarray(normalised.transpose(0, 3, 1, 2))
