"""What of the exported graph may be INT8, and how its convolutions group into blocks.

Only convolutions are quantised. GRN, LayerNorm, SE gates, GELU and the residual adds run in
float, and so does the head (the per-scale ``1 - cosine`` maps, their upsampling, the Gaussian
smoothing convolutions and the top-k score): ``head_nodes`` finds it by graph structure, the one
rule FP16 conversion (export.fp16) uses too.
"""

from __future__ import annotations

import re
from collections import defaultdict

import numpy as np
import onnx
from onnx import numpy_helper

from mmad_edge.calib.reader import CalibrationDataError
from mmad_edge.runtime.artifact.contract import INPUT_NAME

QUANTIZED_OPS = ("Conv", "ConvTranspose")
_STAGE = re.compile(r"^stages\.(\d+)$")
_STAGE_BLOCK = re.compile(r"^stages\.(\d+)\.(\d+)$")


def input_shape(model: onnx.ModelProto) -> tuple[int | None, int]:
    """The fixed batch (None when dynamic) and square frame size of the ``image`` input (uint8
    B x S x S x 3): a fixed-batch graph accepts nothing but that batch."""
    for value in model.graph.input:
        if value.name == INPUT_NAME:
            dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
            if len(dims) == 4 and dims[1] > 0 and dims[1] == dims[2] and dims[3] == 3:
                return dims[0] or None, dims[1]
            raise CalibrationDataError(
                f"input {INPUT_NAME!r} has shape {dims}; expected a static (B, S, S, 3) frame "
                "(export with a fixed image size)"
            )
    raise CalibrationDataError(
        f"the ONNX model has no input named {INPUT_NAME!r}; pass an FP32 model from mmad-edge export"
    )


def consumers(graph: onnx.ModelProto | onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """The nodes reading each tensor."""
    found: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in (graph.graph if isinstance(graph, onnx.ModelProto) else graph).node:
        for name in node.input:
            found[name].append(node)
    return found


class GraphIndex:
    """Producer / consumer lookups and constant values of one graph."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.graph = graph
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers = consumers(graph)
        for node in graph.node:
            for name in node.output:
                self.producer[name] = node
        self.constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                self.constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)

    def consumer(self, tensor: str, op_type: str, inputs: tuple[str, ...] | None = None) -> onnx.NodeProto | None:
        """The first consumer of ``tensor`` with this op (and exactly these inputs, when given)."""
        for node in self.consumers.get(tensor, []):
            if node.op_type == op_type and (inputs is None or tuple(node.input) == inputs):
                return node
        return None

    def reduce_axes(self, node: onnx.NodeProto) -> tuple[int, ...] | None:
        """Axes of a Reduce* node (attribute before opset 18, constant input after); None if unknown."""
        for attribute in node.attribute:
            if attribute.name == "axes":
                return tuple(attribute.ints)
        if len(node.input) > 1 and node.input[1] in self.constants:
            return tuple(int(a) for a in np.asarray(self.constants[node.input[1]]).reshape(-1))
        return None

    def keepdims(self, node: onnx.NodeProto) -> int:
        return next((a.i for a in node.attribute if a.name == "keepdims"), 1)


def head_nodes(graph: onnx.ModelProto | GraphIndex) -> set[str]:
    """The cosine maps and everything downstream: from the channel sums (ReduceSum over axis 1,
    keepdims 0), their product inputs, and all their descendants. Found by structure, not by
    node names (simplification may rename nodes); FP16 keeps these in FP32 and INT8 in float."""
    index = graph if isinstance(graph, GraphIndex) else GraphIndex(graph.graph)
    seeds = [n for n in index.graph.node
             if n.op_type == "ReduceSum" and index.reduce_axes(n) == (1,) and not index.keepdims(n)]
    chosen = {n.name for n in seeds}
    for node in seeds:
        product = index.producer.get(node.input[0])
        if product is not None and product.op_type == "Mul":
            chosen.add(product.name)
    stack = list(seeds)
    while stack:
        for name in stack.pop().output:
            for child in index.consumers.get(name, []):
                if child.name not in chosen:
                    chosen.add(child.name)
                    stack.append(child)
    return chosen


def block_of(node_name: str) -> str:
    """The block a node belongs to, from its torch scope: ``encoder.stages.2.3`` (stage 2,
    block 3), ``decoder.upsample_layers.0``, ``bottleneck.conv4``...; unscoped nodes stand alone."""
    parts = [p for p in node_name.split("/") if p][:-1]
    if len(parts) >= 3 and _STAGE.match(parts[1]) and _STAGE_BLOCK.match(parts[2]):
        return f"{parts[0]}.{parts[2]}"
    if len(parts) >= 2:
        return f"{parts[0]}.{parts[1]}"
    return parts[0] if parts else node_name


def quantizable_convs(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Conv / ConvTranspose nodes with constant weights outside the head, in graph order."""
    weights = {init.name for init in model.graph.initializer}
    head = head_nodes(model)
    unnamed = [n for n in model.graph.node if n.op_type in QUANTIZED_OPS and not n.name]
    if unnamed:
        raise CalibrationDataError(
            f"{len(unnamed)} convolution(s) have no node name; re-export the FP32 model with mmad-edge "
            "(node names select what stays in float)"
        )
    return [
        n for n in model.graph.node
        if n.op_type in QUANTIZED_OPS and n.name not in head and len(n.input) > 1 and n.input[1] in weights
    ]


def conv_blocks(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Quantisable convolutions grouped by block, blocks in graph order."""
    blocks: dict[str, list[str]] = {}
    for node in quantizable_convs(model):
        blocks.setdefault(block_of(node.name), []).append(node.name)
    return blocks
