"""What of the exported graph may be INT8, and how its convolutions group into blocks.

Only convolutions are quantised. GRN, LayerNorm, SE gates, GELU and the residual adds run in
float, and so does the head (the per-scale ``1 - cosine`` maps, their upsampling, the Gaussian
smoothing convolutions and the top-k score): the head is found by the ``/head/`` scope of the
torch export and, independently of names, as everything downstream of a ``Resize``.
"""

from __future__ import annotations

import re
from collections import defaultdict

import onnx

from mmad_edge.calib.reader import CalibrationDataError
from mmad_edge.runtime.contract import INPUT_NAME

QUANTIZED_OPS = ("Conv", "ConvTranspose")
HEAD_SCOPE = "/head/"
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


def consumers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    found: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in model.graph.node:
        for name in node.input:
            found[name].append(node)
    return found


def head_nodes(model: onnx.ModelProto) -> set[str]:
    """Names of the head's nodes: the ``/head/`` scope, anything after a Resize, and everything
    downstream of either."""
    users = consumers(model)
    pending = [n for n in model.graph.node if n.name.startswith(HEAD_SCOPE) or n.op_type == "Resize"]
    seen: set[str] = set()
    while pending:
        node = pending.pop()
        if node.name in seen:
            continue
        seen.add(node.name)
        for output in node.output:
            pending.extend(users.get(output, ()))
    return seen


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
