"""Check an ONNX graph against what TensorRT's ONNX parser accepts, before anyone ships it to a device.

The op list and limits are written from onnx-tensorrt's docs/operators.md (10.x) and its changelog;
the check is static (no TensorRT needed), so it runs at export time on any machine.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from mmad_edge.runtime.artifact.contract import tensorrt_version

# Ops the parser imports in TensorRT 10.0 and later.
_OPS_SINCE_10_0 = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast CastLike
Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace
DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements
GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample
GroupNormalization GRU HardSigmoid HardSwish Hardmax Identity If ImageScaler InstanceNormalization IsInf
IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool
MatMul Max MaxPool Mean MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not
OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform
RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean
ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round
ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice
Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK
Transpose Trilu Unsqueeze Upsample Where Xor
""".split())

# Ops added to the parser after 10.0, with the release that added them (onnx-tensorrt changelog).
_OPS_ADDED_LATER: dict[str, tuple[int, int]] = {
    "DeformConv": (10, 1),
    "BlackmanWindow": (10, 4),
    "HammingWindow": (10, 4),
    "HannWindow": (10, 4),
    "STFT": (10, 5),
    "Attention": (10, 14),
    "RMSNormalization": (10, 15),
    "RotaryEmbedding": (10, 15),
    "TensorScatter": (10, 15),
    "DFT": (11, 2),
}

OPSET_MIN = 9
# Highest default-domain opset the parser documents, by the first release that documents it.
_OPSET_MAX: tuple[tuple[tuple[int, int], int], ...] = (((10, 0), 20), ((10, 15), 24), ((11, 5), 25))

TOPK_MAX_K = 3840
_REDUCE_OPS = frozenset(op for op in _OPS_SINCE_10_0 if op.startswith("Reduce"))
_QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
_ZERO_POINT_TYPES = {  # INT4 exists from onnx 1.16; older onnx cannot hold it anyway
    op: {getattr(onnx.TensorProto, name) for name in names if hasattr(onnx.TensorProto, name)}
    for op, names in (("QuantizeLinear", ("INT8", "FLOAT8E4M3FN")),
                      ("DequantizeLinear", ("INT8", "FLOAT8E4M3FN", "INT4")))
}
_RESIZE_MODES = ("nearest", "linear")
_RESIZE_COORDINATE_MODES = ("half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric",
                            "align_corners")
_RESIZE_NEAREST_MODES = ("floor", "ceil", "round_prefer_floor", "round_prefer_ceil")
_DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class Issue:
    """One thing TensorRT would reject or mis-handle; `node` is a node name or a tensor/graph name."""

    node: str
    op_type: str
    message: str


def check_tensorrt_compat(model: onnx.ModelProto, min_version: str = "10.3") -> list[Issue]:
    """Every issue that keeps `model` from building on TensorRT `min_version` or newer."""
    target = _parse_version(min_version)
    issues = _check_opset(model, target, min_version)
    issues += _check_graph_inputs(model.graph)
    functions = {(fn.domain, fn.name): fn for fn in model.functions}
    checker = _GraphChecker(target, min_version, functions, issues)
    checker.walk(model.graph, scope="", outer_constants={})
    return issues


def format_issues(issues: Iterable[Issue], limit: int | None = None) -> str:
    """A readable report: one line per issue (the first ``limit``, then how many more), or a
    line saying there are none."""
    issues = list(issues)
    if not issues:
        return "no TensorRT compatibility issues found"
    lines = [f"{len(issues)} TensorRT compatibility issue(s):"]
    shown = issues if limit is None else issues[:limit]
    for issue in shown:
        where = f"{issue.node} ({issue.op_type})" if issue.op_type else issue.node
        lines.append(f"  - {where}: {issue.message}")
    if len(shown) < len(issues):
        lines.append(f"  ... and {len(issues) - len(shown)} more (all of them under tensorrt_compat in report.json)")
    return "\n".join(lines)


def _parse_version(text: str) -> tuple[int, int]:
    """major.minor of a ``min_version`` such as "10.3" (parsed as the runtime parses TensorRT versions)."""
    if not all(part.isdigit() for part in str(text).strip().split(".")[:2]):
        raise ValueError(f"min_version {text!r} must look like '10.3'")
    version = tensorrt_version(text, 2)
    if version < (10, 0):
        raise ValueError(f"the TensorRT check covers TensorRT 10.0 and later, got min_version {text!r}")
    return version


def _max_opset(target: tuple[int, int]) -> int:
    return max(opset for since, opset in _OPSET_MAX if since <= target)


def _check_opset(model: onnx.ModelProto, target: tuple[int, int], min_version: str) -> list[Issue]:
    issues = []
    highest = _max_opset(target)
    for entry in model.opset_import:
        if entry.domain not in _DEFAULT_DOMAINS:
            continue
        if entry.version < OPSET_MIN:
            issues.append(Issue("graph", "", f"opset {entry.version} is below TensorRT's minimum {OPSET_MIN}; "
                                             f"re-export with opset {OPSET_MIN}..{highest}"))
        elif entry.version > highest:
            issues.append(Issue("graph", "", f"opset {entry.version} is newer than TensorRT {min_version} supports "
                                             f"(up to {highest}); re-export with opset <= {highest}"))
    return issues


def _check_graph_inputs(graph: onnx.GraphProto) -> list[Issue]:
    """Only the batch dim (dim 0) of a real input may be dynamic."""
    issues = []
    initializers = {tensor.name for tensor in graph.initializer}
    for value in graph.input:
        if value.name in initializers or not value.type.HasField("tensor_type"):
            continue
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if axis > 0 and not (dim.HasField("dim_value") and dim.dim_value > 0):
                label = repr(dim.dim_param) if dim.dim_param else "unknown"
                issues.append(Issue(value.name, "", f"dim {axis} is dynamic ({label}); only the batch dim may be "
                                                    "dynamic: export with a fixed image size"))
    return issues


class _GraphChecker:
    """Walks a graph, its subgraphs (If/Loop/Scan) and the local functions it calls."""

    def __init__(self, target: tuple[int, int], min_version: str,
                 functions: Mapping[tuple[str, str], onnx.FunctionProto], issues: list[Issue]) -> None:
        self.target = target
        self.min_version = min_version
        self.functions = functions
        self.issues = issues

    def walk(self, graph: onnx.GraphProto, scope: str, outer_constants: Mapping[str, onnx.TensorProto]) -> None:
        constants = dict(outer_constants)
        for tensor in graph.initializer:
            self._check_tensor_type(tensor.name, tensor.data_type, scope)
            constants[tensor.name] = tensor
        for value in (*graph.input, *graph.output, *graph.value_info):
            if value.type.HasField("tensor_type"):
                self._check_tensor_type(value.name, value.type.tensor_type.elem_type, scope)
        self._walk_nodes(graph.node, scope, constants)

    def _walk_nodes(self, nodes: Iterable[onnx.NodeProto], scope: str, constants: dict[str, onnx.TensorProto]) -> None:
        for index, node in enumerate(nodes):
            name = scope + (node.name or f"{node.op_type}#{index}")
            if node.op_type == "Constant" and node.domain in _DEFAULT_DOMAINS:
                value = _constant_tensor(node)
                if value is not None and node.output:
                    constants[node.output[0]] = value
            function = self.functions.get((node.domain, node.op_type))
            if function is not None:
                self._walk_nodes(function.node, f"{name}/", {})
                continue
            self._check_node(node, name, constants)
            for attribute in node.attribute:
                subgraphs = [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else list(attribute.graphs)
                for subgraph in subgraphs:
                    self.walk(subgraph, f"{name}.{attribute.name}/", constants)

    def _report(self, name: str, node: onnx.NodeProto, message: str) -> None:
        self.issues.append(Issue(name, node.op_type, message))

    def _check_tensor_type(self, tensor: str, elem_type: int, scope: str) -> None:
        if elem_type == onnx.TensorProto.DOUBLE:
            self.issues.append(Issue(scope + tensor, "", "tensor is float64 (DOUBLE); TensorRT only casts it down "
                                                         "to float32 with clamping: export in float32"))

    def _check_node(self, node: onnx.NodeProto, name: str, constants: Mapping[str, onnx.TensorProto]) -> None:
        op = node.op_type
        if node.domain not in _DEFAULT_DOMAINS:
            self._report(name, node, f"custom-domain op {node.domain}::{op} needs a TensorRT plugin; "
                                     "export with standard ONNX ops only")
            return
        since = _OPS_ADDED_LATER.get(op)
        if since is None and op not in _OPS_SINCE_10_0:
            self._report(name, node, f"{op} is not supported by TensorRT's ONNX parser; "
                                     "replace it with supported ops before export")
            return
        if since is not None and since > self.target:
            self._report(name, node, f"{op} needs TensorRT {since[0]}.{since[1]} or newer; the target is "
                                     f"{self.min_version}")
        if op == "TopK":
            self._check_topk(node, name, constants)
        elif op in _QDQ_OPS:
            self._check_zero_point(node, name, constants)
        elif op in _REDUCE_OPS:
            self._check_reduce_axes(node, name, constants)
        elif op in ("Resize", "Upsample"):
            self._check_resize(node, name)
        elif op in ("Cast", "CastLike") and _attribute(node, "to", None) == onnx.TensorProto.DOUBLE:
            self._report(name, node, "casts to float64 (DOUBLE), which TensorRT does not compute in; cast to float32")

    def _check_topk(self, node: onnx.NodeProto, name: str, constants: Mapping[str, onnx.TensorProto]) -> None:
        if len(node.input) > 1:
            k_tensor = constants.get(node.input[1])
            if k_tensor is None:
                self._report(name, node, f"K ({node.input[1]!r}) must be a constant initializer for TensorRT; "
                                         "export with a fixed image size so k is known at export time")
                return
            k = int(numpy_helper.to_array(k_tensor).reshape(-1)[0])
        else:
            k = int(_attribute(node, "k", 0))
        if k > TOPK_MAX_K:
            self._report(name, node, f"k={k} exceeds TensorRT's TopK limit of {TOPK_MAX_K}; lower top_percent or "
                                     "image_size, or use score_mode='max'")
        if _attribute(node, "sorted", 1) != 1:
            self._report(name, node, "sorted=0 is not supported by TensorRT; export TopK with sorted=1")

    def _check_zero_point(self, node: onnx.NodeProto, name: str, constants: Mapping[str, onnx.TensorProto]) -> None:
        if len(node.input) < 3 or not node.input[2]:
            return
        tensor_name = node.input[2]
        zero_point = constants.get(tensor_name)
        if zero_point is None:
            self._report(name, node, f"zero point {tensor_name!r} must be a constant initializer; "
                                     "re-run quantization with constant (static) zero points")
            return
        if zero_point.data_type not in _ZERO_POINT_TYPES[node.op_type]:
            type_name = onnx.TensorProto.DataType.Name(zero_point.data_type)
            self._report(name, node, f"zero point {tensor_name!r} is {type_name}; TensorRT needs signed INT8 "
                                     "(or FP8) Q/DQ: quantize with QInt8 activations and weights")
        values = numpy_helper.to_array(zero_point).astype(np.float64)
        if values.size and np.any(values != 0):
            self._report(name, node, f"zero point {tensor_name!r} is not all 0 (max |zp| = "
                                     f"{float(np.max(np.abs(values))):g}); TensorRT supports symmetric "
                                     "quantization only: quantize with symmetric activations and weights")

    def _check_reduce_axes(self, node: onnx.NodeProto, name: str, constants: Mapping[str, onnx.TensorProto]) -> None:
        if len(node.input) > 1 and node.input[1] and node.input[1] not in constants:
            self._report(name, node, f"axes ({node.input[1]!r}) must be a constant initializer for TensorRT; "
                                     "export the reduction with fixed axes")

    def _check_resize(self, node: onnx.NodeProto, name: str) -> None:
        mode = _attribute(node, "mode", "nearest")
        if mode not in _RESIZE_MODES:
            self._report(name, node, f"mode {mode!r} is not supported by TensorRT (use 'nearest' or 'linear')")
        coordinate_mode = _attribute(node, "coordinate_transformation_mode", "half_pixel")
        if node.op_type == "Resize" and coordinate_mode not in _RESIZE_COORDINATE_MODES:
            self._report(name, node, f"coordinate_transformation_mode {coordinate_mode!r} is not supported by "
                                     f"TensorRT (use one of {', '.join(_RESIZE_COORDINATE_MODES)})")
        nearest_mode = _attribute(node, "nearest_mode", "round_prefer_floor")
        if mode == "nearest" and nearest_mode not in _RESIZE_NEAREST_MODES:
            self._report(name, node, f"nearest_mode {nearest_mode!r} is not supported by TensorRT")
        if _attribute(node, "antialias", 0):
            self._report(name, node, "antialias=1 is not supported by TensorRT; resize without antialiasing")
        policy = _attribute(node, "keep_aspect_ratio_policy", "stretch")
        if policy != "stretch":
            self._report(name, node, f"keep_aspect_ratio_policy {policy!r} is not supported by TensorRT "
                                     "(only 'stretch')")


def _attribute(node: onnx.NodeProto, name: str, default: object) -> object:
    for attribute in node.attribute:
        if attribute.name == name:
            value = onnx.helper.get_attribute_value(attribute)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _constant_tensor(node: onnx.NodeProto) -> onnx.TensorProto | None:
    """The tensor a Constant node produces (tensor, int(s) or float(s) forms), or None."""
    for attribute in node.attribute:
        if attribute.name == "value":
            return attribute.t
        if attribute.name in ("value_int", "value_ints"):
            return numpy_helper.from_array(np.asarray(onnx.helper.get_attribute_value(attribute), dtype=np.int64))
        if attribute.name in ("value_float", "value_floats"):
            return numpy_helper.from_array(np.asarray(onnx.helper.get_attribute_value(attribute), dtype=np.float32))
    return None
