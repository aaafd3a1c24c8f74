"""Mixed-precision FP16 graph: convolutions and the elementwise work between them in FP16,
the overflow-prone statistics in FP32.

FP16 overflows past 65504 and loses small differences, so these stay FP32, found by graph
structure (not node names, which simplification may change):

- GRN: ``sum_HW(y * y)`` easily exceeds 65504; its square, sum, sqrt, channel mean and division;
- channels-first LayerNorm statistics: mean, centring, square, variance, sqrt, division;
- the head: the cosine maps (products and channel sums) and everything after them
  (upsampling, Gaussian, top-k, score), so map and score are computed as in FP32;
- the input cast and mean subtraction before the stem conv (pixel values up to 255).

Graph inputs and outputs keep their types (uint8 image in, float32 map and score out).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np
import onnx
from onnx import numpy_helper

from mmad_edge.calib.graph import GraphIndex, head_nodes

CONV_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})


def _is_square(node: onnx.NodeProto | None, index: GraphIndex) -> bool:
    """Mul(x, x), or Pow(x, 2)."""
    if node is None:
        return False
    if node.op_type == "Mul":
        return node.input[0] == node.input[1]
    if node.op_type == "Pow" and node.input[1] in index.constants:
        return float(np.asarray(index.constants[node.input[1]]).reshape(-1)[0]) == 2.0
    return False


def _square_of(tensor: str, index: GraphIndex) -> onnx.NodeProto | None:
    for node in index.consumers.get(tensor, []):
        if _is_square(node, index):
            return node
    return None


def _follow(index: GraphIndex, start: onnx.NodeProto | None, ops: tuple[str, ...]) -> list[onnx.NodeProto] | None:
    """[start, then one consumer per op in ``ops``, each fed by the previous], or None if the chain breaks."""
    if start is None:
        return None
    chain = [start]
    for op in ops:
        nxt = index.consumer(chain[-1].output[0], op)
        if nxt is None:
            return None
        chain.append(nxt)
    return chain


def layernorm_statistics(index: GraphIndex) -> list[list[onnx.NodeProto]]:
    """Per channels-first LayerNorm: [ReduceMean, Sub, square, ReduceMean, Add, Sqrt, Div]."""
    found = []
    for mean in index.graph.node:
        if mean.op_type != "ReduceMean" or index.reduce_axes(mean) != (1,) or not index.keepdims(mean):
            continue
        centre = index.consumer(mean.output[0], "Sub", (mean.input[0], mean.output[0]))
        if centre is None:
            continue
        chain = _follow(index, _square_of(centre.output[0], index), ("ReduceMean", "Add", "Sqrt"))
        if chain is None:
            continue
        divide = index.consumer(chain[-1].output[0], "Div", (centre.output[0], chain[-1].output[0]))
        if divide is not None:
            found.append([mean, centre, *chain, divide])
    return found


def grn_statistics(index: GraphIndex) -> list[list[onnx.NodeProto]]:
    """Per GRN: the L2 norm over H,W (ReduceL2, or square + ReduceSum + Sqrt), ReduceMean over C,
    Add eps, Div."""
    found = []
    for total in index.graph.node:
        if total.op_type not in ("ReduceSum", "ReduceL2") or index.reduce_axes(total) != (2, 3):
            continue
        if total.op_type == "ReduceL2":
            head, chain = [], _follow(index, total, ("ReduceMean", "Add"))
        else:
            square = index.producer.get(total.input[0])
            if not _is_square(square, index):
                continue
            head, chain = [square], _follow(index, total, ("Sqrt", "ReduceMean", "Add"))
        if chain is None:
            continue
        root, add = chain[-3], chain[-1]
        divide = index.consumer(add.output[0], "Div", (root.output[0], add.output[0]))
        if divide is not None:
            found.append([*head, *chain, divide])
    return found


def input_nodes(index: GraphIndex) -> list[onnx.NodeProto]:
    """Nodes between the graph input and the first convolution (cast, layout, mean subtraction)."""
    reached = {value.name for value in index.graph.input}
    before = []
    for node in index.graph.node:  # ONNX graphs are topologically sorted
        if node.op_type in CONV_OPS or not any(name in reached for name in node.input):
            continue
        before.append(node)
        reached.update(node.output)
    return before


def fp32_regions(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Names of the nodes kept in FP32, by region: "grn", "layernorm", "head", "input"."""
    index = GraphIndex(model.graph)
    return {
        "grn": [n.name for group in grn_statistics(index) for n in group],
        "layernorm": [n.name for group in layernorm_statistics(index) for n in group],
        "head": [n.name for n in index.graph.node if n.name in head_nodes(index)],
        "input": [n.name for n in input_nodes(index)],
    }


def convert_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """The mixed-precision graph described in the module docstring (``model`` is not modified).

    Written here rather than with onnxconverter-common, whose converter rounds every blocked
    node's output through FP16 on its way to the next blocked node (and turns the graph outputs
    into FP16), which would defeat keeping the head in FP32.
    """
    _require_names(model.graph.node)
    regions = fp32_regions(model)
    if not regions["head"]:
        raise ValueError("FP16 conversion found no cosine-map head (ReduceSum over channels); "
                         "export the graph with export_onnx first")
    keep = {name for names in regions.values() for name in names}
    return _MixedPrecision(model, keep).convert()


class _MixedPrecision:
    """Assigns each float tensor FP16 or FP32 by its producer and inserts the Casts consumers need."""

    # Inputs that ONNX requires to be float32 whatever the data type (Resize roi and scales).
    FP32_ONLY_INPUTS = {"Resize": (1, 2)}

    def __init__(self, model: onnx.ModelProto, keep_fp32: set[str]) -> None:
        self.keep = keep_fp32
        self.float_tensors = {name for name, kind in tensor_types(model).items() if kind == FLOAT}
        self.model = onnx.ModelProto()
        self.model.CopyFrom(model)
        self.graph = self.model.graph
        self.precision: dict[str, int] = {}  # float tensor -> FLOAT or FLOAT16
        self.casts: dict[tuple[str, int], str] = {}
        self.nodes: list[onnx.NodeProto] = []

    def convert(self) -> onnx.ModelProto:
        self._constants_to_initializers()
        for value in self.graph.input:
            self.precision[value.name] = value.type.tensor_type.elem_type
        self._convert_initializers()
        for node in list(self.graph.node):
            self._convert_node(node)
        self._fp32_outputs()
        del self.graph.node[:]
        self.graph.node.extend(self.nodes)
        del self.graph.value_info[:]
        onnx.checker.check_model(self.model)
        return self.model

    def _wanted(self, node: onnx.NodeProto, position: int) -> int:
        if node.name in self.keep or position in self.FP32_ONLY_INPUTS.get(node.op_type, ()):
            return FLOAT
        return FLOAT16

    def _constants_to_initializers(self) -> None:
        """Constant nodes become initializers, so their precision follows their consumers too."""
        kept = []
        for node in self.graph.node:
            value = node.attribute[0] if node.op_type == "Constant" and len(node.attribute) == 1 else None
            if value is not None and value.name == "value":
                tensor = onnx.TensorProto()
                tensor.CopyFrom(value.t)
                tensor.name = node.output[0]
                self.graph.initializer.append(tensor)
            else:
                kept.append(_copy(node))
        del self.graph.node[:]
        self.graph.node.extend(kept)

    def _convert_initializers(self) -> None:
        """Initializers used only in FP16 become FP16; ones used by both kinds stay FP32 (cast on use)."""
        wanted: dict[str, set[int]] = defaultdict(set)
        for node in self.graph.node:
            for position, name in enumerate(node.input):
                wanted[name].add(self._wanted(node, position))
        for tensor in self.graph.initializer:
            if tensor.data_type != FLOAT:
                continue
            if wanted.get(tensor.name) == {FLOAT16}:
                tensor.CopyFrom(_to_fp16(tensor))
                self.precision[tensor.name] = FLOAT16
            else:
                self.precision[tensor.name] = FLOAT

    def _convert_node(self, original: onnx.NodeProto) -> None:
        node = _copy(original)
        for position, name in enumerate(node.input):
            if name in self.precision and self.precision[name] in (FLOAT, FLOAT16):
                wanted = self._wanted(node, position)
                if self.precision[name] != wanted:
                    node.input[position] = self._cast(name, wanted)
        kind = FLOAT if node.name in self.keep else FLOAT16
        if kind == FLOAT16:
            _retype_attributes(node)
        for name in node.output:
            if name in self.float_tensors:
                self.precision[name] = kind
        self.nodes.append(node)

    def _cast(self, name: str, to: int) -> str:
        key = (name, to)
        if key not in self.casts:
            suffix = "fp16" if to == FLOAT16 else "fp32"
            target = f"{name}_{suffix}"
            self.nodes.append(onnx.helper.make_node("Cast", [name], [target], name=f"{name}/cast_{suffix}", to=to))
            self.casts[key] = target
        return self.casts[key]

    def _fp32_outputs(self) -> None:
        """FP16-produced graph outputs get a final Cast, so every output stays float32."""
        for value in self.graph.output:
            if self.precision.get(value.name) != FLOAT16:
                continue
            internal = f"{value.name}_fp16"
            for node in self.nodes:
                node.output[:] = [internal if o == value.name else o for o in node.output]
                node.input[:] = [internal if i == value.name else i for i in node.input]
            self.nodes.append(onnx.helper.make_node("Cast", [internal], [value.name], name=f"{value.name}/cast_fp32",
                                                    to=FLOAT))


FLOAT = onnx.TensorProto.FLOAT
FLOAT16 = onnx.TensorProto.FLOAT16
FP16_MAX = float(np.finfo(np.float16).max)


def _copy(node: onnx.NodeProto) -> onnx.NodeProto:
    """A detached copy (nodes are moved between graphs' node lists)."""
    fresh = onnx.NodeProto()
    fresh.CopyFrom(node)
    return fresh


def _to_fp16(tensor: onnx.TensorProto) -> onnx.TensorProto:
    """An FP16 copy, clipped to the FP16 range (never inf)."""
    values = np.clip(numpy_helper.to_array(tensor), -FP16_MAX, FP16_MAX).astype(np.float16)
    return numpy_helper.from_array(values, tensor.name)


def _retype_attributes(node: onnx.NodeProto) -> None:
    """Float32 constants and cast targets inside an FP16 node become FP16."""
    for attribute in node.attribute:
        if attribute.type == onnx.AttributeProto.TENSOR and attribute.t.data_type == FLOAT:
            attribute.t.CopyFrom(_to_fp16(attribute.t))
        elif node.op_type == "Cast" and attribute.name == "to" and attribute.i == FLOAT:
            attribute.i = FLOAT16


def _require_names(nodes: Iterable[onnx.NodeProto]) -> None:
    names = [n.name for n in nodes]
    if "" in names or len(set(names)) != len(names):
        raise ValueError("FP16 conversion needs unique node names; name the nodes (export_onnx does) first")


def tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor the shape inference can type (inputs, outputs, intermediates)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    types = {t.name: t.data_type for t in graph.initializer}
    for value in [*graph.input, *graph.output, *graph.value_info]:
        types[value.name] = value.type.tensor_type.elem_type
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            types[node.output[0]] = node.attribute[0].t.data_type
    return types
