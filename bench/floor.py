"""The hardware floor: how fast a graph could possibly run on this machine (a roofline).

Work is counted from the ONNX graph with these conventions:

- Conv, ConvTranspose, MatMul and Gemm: one multiply-accumulate (MAC) is 2 FLOPs; a bias adds
  1 FLOP per output element (Gemm's C likewise, ``alpha``/``beta`` scaling is not counted).
  Grouped and depthwise convolutions count ``C_in / group`` inputs per output; dilation does not
  change the count (the taps are spread out, not added).
- Elementwise ops (activations, arithmetic, normalisation, (de)quantisation, resize): 1 FLOP
  per output element, whatever the op really costs.
- Reductions and pooling: 1 FLOP per element read (a pooling output reads its whole window).
- Pure data movement (reshape, transpose, concat, slice, pad, cast, ...) is free; any other op
  is free too and listed in ``GraphCost.uncounted`` so an incomplete count is visible.

Compulsory memory traffic is what any execution must move at least once: every weight, every
graph input and every graph output. The floor is ``max(FLOPs / peak FLOP/s, bytes / peak
bandwidth)``. Peaks are measured, not looked up: the best any installed library reaches.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper, shape_inference

ELEMENTWISE = frozenset(
    {
        "Abs", "Add", "And", "BatchNormalization", "BiasGelu", "Ceil", "Clip", "Cos", "Div",
        "DequantizeLinear", "Elu", "Equal", "Erf", "Exp", "FastGelu", "Floor", "Gelu",
        "Greater", "GreaterOrEqual", "HardSigmoid", "HardSwish", "InstanceNormalization",
        "LayerNormalization", "LeakyRelu", "Less", "LessOrEqual", "Log", "LogSoftmax", "Max",
        "Mean", "Min", "Mish", "Mod", "Mul", "Neg", "Not", "Or", "PRelu", "Pow",
        "QuantizeLinear", "Reciprocal", "Relu", "Resize", "Round", "Selu", "Sigmoid", "Sign",
        "Sin", "Softmax", "Softplus", "Softsign", "Sqrt", "Sub", "Sum", "Tanh", "Upsample",
        "Where", "Xor",
    }
)
REDUCTIONS = frozenset(
    {
        "ArgMax", "ArgMin", "GlobalAveragePool", "GlobalMaxPool", "LpNormalization",
        "ReduceL1", "ReduceL2", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin",
        "ReduceProd", "ReduceSum", "ReduceSumSquare", "TopK",
    }
)
POOLS = frozenset({"AveragePool", "MaxPool", "LpPool"})
DATA_MOVEMENT = frozenset(
    {
        "Cast", "CastLike", "Concat", "Constant", "ConstantOfShape", "DepthToSpace", "Expand",
        "Flatten", "Gather", "GatherElements", "GatherND", "Identity", "Pad", "Range",
        "Reshape", "Shape", "Size", "Slice", "SpaceToDepth", "Split", "Squeeze", "Tile",
        "Transpose", "Unsqueeze",
    }
)


class FloorError(ValueError):
    """A graph whose work cannot be counted, or a peak that cannot be measured."""


class _UnknownShape(FloorError):
    """A counted node whose shapes shape inference could not resolve."""


@dataclass(frozen=True)
class GraphCost:
    """Work and compulsory traffic of one graph run at a given batch."""

    gflop: float
    bytes: int
    batch: int = 1
    by_op: dict[str, float] = field(default_factory=dict)
    uncounted: tuple[str, ...] = ()


@dataclass(frozen=True)
class Peak:
    """Best measured compute (GFLOP/s) and bandwidth (GB/s) and how each was measured."""

    gflops: float
    gb_per_s: float
    source: str
    measurements: dict[str, float] = field(default_factory=dict)


def count_graph_cost(model: onnx.ModelProto, batch: int | None = None,
                     key: Callable[[onnx.NodeProto], str] | None = None) -> GraphCost:
    """FLOPs and compulsory bytes of ``model`` at ``batch`` (see the module docstring).

    The leading dimension of the graph inputs is the batch: a symbolic one is set to ``batch``
    (1 when None); a fixed one must equal ``batch`` unless ``batch`` is None. ``by_op`` is keyed
    by ``key(node)`` (default: the op type), e.g. to tell grouped convolutions from dense ones.
    """
    if batch is not None and batch < 1:
        raise FloorError(f"batch must be >= 1, got {batch}")
    model, batch = _with_batch(model, batch)
    try:
        return _count(_inferred(model), batch, key)
    except _UnknownShape as exc:
        simplified = _simplified(model)
        if simplified is None:
            raise FloorError(f"{exc}; install onnxsim (or simplify the graph) so every shape is static") from None
        try:
            return _count(_inferred(simplified), batch, key)
        except _UnknownShape as again:
            raise FloorError(f"{again} even after onnxsim; give the graph static sizes") from None


def _inferred(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        return shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as exc:  # onnx raises several unrelated types here
        raise FloorError(f"ONNX shape inference failed ({exc}); simplify the graph with onnxsim first") from exc


def _simplified(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """onnxsim's constant-folded copy (resolves computed Resize/Pad sizes), or None without it."""
    try:
        import onnxsim
    except ImportError:
        return None
    try:
        simplified, ok = onnxsim.simplify(model)
    except Exception:  # onnxsim fails on graphs it cannot fold; the caller reports the shape
        return None
    return simplified if ok else None


def _count(inferred: onnx.ModelProto, batch: int, key: Callable[[onnx.NodeProto], str] | None) -> GraphCost:
    graph = inferred.graph
    shapes = _known_shapes(graph)
    by_op: dict[str, float] = {}
    uncounted: set[str] = set()
    for node in graph.node:
        if node.op_type in DATA_MOVEMENT:
            continue
        counter = _COUNTERS.get(node.op_type)
        if counter is None:
            uncounted.add(node.op_type)
            continue
        name = node.op_type if key is None else key(node)
        by_op[name] = by_op.get(name, 0.0) + counter(node, shapes)
    total = sum(by_op.values())
    return GraphCost(
        gflop=total / 1e9,
        bytes=_compulsory_bytes(graph),
        batch=batch,
        by_op={op: flops / 1e9 for op, flops in sorted(by_op.items())},
        uncounted=tuple(sorted(uncounted)),
    )


def graph_floor(graph: str | os.PathLike[str], peak: Peak) -> dict[str, Any]:
    """The bench report's floor section: per-image work of the ONNX file ``graph`` against ``peak``."""
    cost = count_graph_cost(onnx.load(os.fspath(graph)))
    return {**floor_summary(cost, peak), "graph": os.fspath(graph), "uncounted_ops": list(cost.uncounted),
            "peak_measurements": dict(peak.measurements)}


def count_module_cost(module: Any, example: Any) -> GraphCost:
    """FLOPs and compulsory bytes of one ``module(example)`` call, counted by torch.

    For models with no ONNX export at hand (e.g. on the GPU machine). torch's FlopCounterMode
    counts matrix products and convolutions only (2 FLOPs per MAC, no bias or elementwise
    work), so this is a little below ``count_graph_cost`` of the same network. Works on the
    ``meta`` device, so nothing needs computing. Bytes: parameters + buffers + input + outputs.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        output = module(example)
    state = [*module.parameters(), *module.buffers(), example, *_tensors(output)]
    by_op = {str(op): flops / 1e9 for op, flops in counter.get_flop_counts().get("Global", {}).items()}
    return GraphCost(
        gflop=counter.get_total_flops() / 1e9,
        bytes=int(sum(t.numel() * t.element_size() for t in state)),
        batch=int(example.shape[0]),
        by_op=by_op,
    )


def _tensors(value: Any) -> list[Any]:
    """The tensors in a module's output (a tensor, or nested tuples / lists / dicts of them)."""
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in _tensors(item)]
    if isinstance(value, dict):
        return [t for item in value.values() for t in _tensors(item)]
    return [value] if hasattr(value, "element_size") else []


def floor_ms(cost: GraphCost, peak: Peak) -> float:
    """Roofline floor in milliseconds for one run of ``cost`` (its whole batch)."""
    if peak.gflops <= 0 or peak.gb_per_s <= 0:
        raise FloorError(f"peak must be positive, got {peak.gflops} GFLOP/s and {peak.gb_per_s} GB/s")
    compute_s = cost.gflop / peak.gflops
    memory_s = cost.bytes / (peak.gb_per_s * 1e9)
    return max(compute_s, memory_s) * 1000.0


def floor_summary(cost: GraphCost, peak: Peak) -> dict[str, float | str]:
    """The report's ``floor`` section, per image (cost divided by its batch)."""
    return {
        "gflop_per_image": cost.gflop / cost.batch,
        "bytes_per_image": cost.bytes / cost.batch,
        "peak_gflops": peak.gflops,
        "peak_gb_per_s": peak.gb_per_s,
        "peak_source": peak.source,
        "floor_ms_per_image": floor_ms(cost, peak) / cost.batch,
    }


def measure_peak(device: str = "cpu", precision: str = "fp32", size: int | None = None, copy_mb: int = 256) -> Peak:
    """Measure peak GEMM throughput and copy bandwidth on ``device`` ("cpu" or "cuda").

    CPU: the best FP32 GEMM of ONNX Runtime (all threads), OpenVINO (when installed), torch
    (oneDNN / MKL) and numpy (``size`` defaults to 2048), and a ``copy_mb`` numpy copy. CUDA: a torch GEMM in ``precision`` (fp32 without TF32,
    tf32, fp16 or bf16; ``size`` defaults to 8192) and a device-to-device copy. Bandwidth counts
    read plus write.
    """
    if device == "cpu":
        if precision != "fp32":
            raise FloorError(f"CPU peak is measured in fp32 only, got {precision!r}")
        return _cpu_peak(size or 2048, copy_mb)
    if device.startswith("cuda"):
        return _cuda_peak(device, precision, size or 8192, copy_mb)
    raise FloorError(f"unknown device {device!r}; use 'cpu' or 'cuda'")


def best_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Fastest of ``repeats`` calls after one warm-up call (peaks want the best case)."""
    fn()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _with_batch(model: onnx.ModelProto, batch: int | None) -> tuple[onnx.ModelProto, int]:
    """A copy whose graph inputs have the batch in their leading dimension, and that batch."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    weights = {init.name for init in out.graph.initializer}
    found = None
    for value in out.graph.input:
        dims = value.type.tensor_type.shape.dim
        if value.name in weights or not dims:
            continue
        first = dims[0]
        if first.HasField("dim_value") and first.dim_value > 0:
            if batch is not None and first.dim_value != batch:
                raise FloorError(
                    f"input {value.name!r} has a fixed batch of {first.dim_value}, not {batch}; "
                    "export with a dynamic batch or count at the fixed batch"
                )
            found = first.dim_value if found is None else found
            continue
        first.Clear()
        first.dim_value = batch or 1
    return out, batch or found or 1


def _known_shapes(graph: onnx.GraphProto) -> dict[str, tuple[int | None, ...]]:
    shapes: dict[str, tuple[int | None, ...]] = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        tensor = value.type.tensor_type
        if tensor.HasField("shape"):
            shapes[value.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
    for init in graph.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes


def _shape(shapes: dict[str, tuple[int | None, ...]], name: str, node: onnx.NodeProto) -> tuple[int, ...]:
    shape = shapes.get(name)
    if shape is None or any(d is None for d in shape):
        raise _UnknownShape(f"cannot count {node.op_type} node {node.name or '(unnamed)'}: shape of {name!r} is unknown ({shape})")
    return shape  # type: ignore[return-value]


def _numel(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64)) if shape else 1


def _has_bias(node: onnx.NodeProto, index: int) -> bool:
    return len(node.input) > index and bool(node.input[index])


def _conv(node: onnx.NodeProto, shapes: dict) -> float:
    out = _shape(shapes, node.output[0], node)
    weight = _shape(shapes, node.input[1], node)  # (C_out, C_in / group, *kernel)
    macs = _numel(out) * _numel(weight[1:])
    return 2.0 * macs + (_numel(out) if _has_bias(node, 2) else 0)


def _conv_transpose(node: onnx.NodeProto, shapes: dict) -> float:
    inp = _shape(shapes, node.input[0], node)
    out = _shape(shapes, node.output[0], node)
    weight = _shape(shapes, node.input[1], node)  # (C_in, C_out / group, *kernel)
    macs = _numel(inp) * _numel(weight[1:])  # every input element scatters into C_out/g * k taps
    return 2.0 * macs + (_numel(out) if _has_bias(node, 2) else 0)


def _matmul(node: onnx.NodeProto, shapes: dict) -> float:
    a = _shape(shapes, node.input[0], node)
    out = _shape(shapes, node.output[0], node)
    return 2.0 * _numel(out) * a[-1]


def _gemm(node: onnx.NodeProto, shapes: dict) -> float:
    a = _shape(shapes, node.input[0], node)
    out = _shape(shapes, node.output[0], node)
    trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
    k = a[0] if trans_a else a[1]
    return 2.0 * _numel(out) * k + (_numel(out) if _has_bias(node, 2) else 0)


def _elementwise(node: onnx.NodeProto, shapes: dict) -> float:
    return float(_numel(_shape(shapes, node.output[0], node)))


def _reduction(node: onnx.NodeProto, shapes: dict) -> float:
    return float(_numel(_shape(shapes, node.input[0], node)))


def _pool(node: onnx.NodeProto, shapes: dict) -> float:
    out = _shape(shapes, node.output[0], node)
    kernel = next(attr.ints for attr in node.attribute if attr.name == "kernel_shape")
    return float(_numel(out) * _numel(tuple(kernel)))


_COUNTERS: dict[str, Callable[[onnx.NodeProto, dict], float]] = {
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "MatMul": _matmul,
    "Gemm": _gemm,
    **{op: _elementwise for op in ELEMENTWISE},
    **{op: _reduction for op in REDUCTIONS},
    **{op: _pool for op in POOLS},
}


def _tensor_bytes(elem_type: int, shape: tuple[int, ...]) -> int:
    itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).itemsize
    return _numel(shape) * itemsize


def _compulsory_bytes(graph: onnx.GraphProto) -> int:
    """Weights (initializers and Constant nodes) + graph inputs + graph outputs, in bytes."""
    weights = {init.name for init in graph.initializer}
    total = sum(_tensor_bytes(init.data_type, tuple(init.dims)) for init in graph.initializer)
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    total += _tensor_bytes(attr.t.data_type, tuple(attr.t.dims))
    for value in [*graph.input, *graph.output]:
        if value.name in weights:
            continue
        tensor = value.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
        if any(d is None for d in dims):
            raise FloorError(f"graph tensor {value.name!r} has an unknown dimension {dims}; give static sizes")
        total += _tensor_bytes(tensor.elem_type, dims)  # type: ignore[arg-type]
    return total


def _gemm_model(size: int) -> onnx.ModelProto:
    """A one-node FP32 MatMul graph, built in memory, for ONNX Runtime's peak."""
    a = helper.make_tensor_value_info("a", onnx.TensorProto.FLOAT, [size, size])
    b = helper.make_tensor_value_info("b", onnx.TensorProto.FLOAT, [size, size])
    c = helper.make_tensor_value_info("c", onnx.TensorProto.FLOAT, [size, size])
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "peak_gemm", [a, b], [c])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _openvino_gemm(a: np.ndarray, b: np.ndarray) -> Callable[[], object] | None:
    """One FP32 MatMul compiled by OpenVINO's CPU plugin (all threads, f32 set explicitly), or
    None without openvino."""
    try:
        import openvino
        import openvino.opset13 as ops
    except ImportError:
        return None
    left = ops.parameter(list(a.shape), np.float32, name="a")
    right = ops.parameter(list(b.shape), np.float32, name="b")
    model = openvino.Model([ops.matmul(left, right, False, False)], [left, right], "peak_gemm")
    config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
              "INFERENCE_NUM_THREADS": os.cpu_count() or 1}
    request = openvino.Core().compile_model(model, "CPU", config).create_infer_request()
    return lambda: request.infer([a, b], share_inputs=True)


def _cpu_peak(size: int, copy_mb: int) -> Peak:
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    flop = 2.0 * size**3
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    session = ort.InferenceSession(
        _gemm_model(size).SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    gemms: dict[str, Callable[[], object]] = {
        "onnxruntime": lambda: session.run(None, {"a": a, "b": b}),
        "numpy": lambda: a @ b,
    }
    try:
        import torch

        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        gemms["torch"] = lambda: torch.matmul(ta, tb)
    except ImportError:
        pass
    openvino_gemm = _openvino_gemm(a, b)
    if openvino_gemm is not None:
        gemms["openvino"] = openvino_gemm
    measurements = {f"{name}_gemm_gflops": flop / best_seconds(fn, 3) / 1e9 for name, fn in gemms.items()}
    best = max(measurements, key=measurements.__getitem__)

    src = np.ones(copy_mb * 2**20 // 4, dtype=np.float32)
    dst = np.empty_like(src)
    copy_s = best_seconds(lambda: np.copyto(dst, src), 3)
    gb_per_s = 2 * src.nbytes / copy_s / 1e9
    measurements["numpy_copy_gb_per_s"] = gb_per_s
    source = f"{best.removesuffix('_gemm_gflops')} fp32 GEMM {size}^3; numpy copy {copy_mb} MB (read+write)"
    return Peak(measurements[best], gb_per_s, source, measurements)


_CUDA_DTYPES = {"fp32": "float32", "tf32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def _cuda_peak(device: str, precision: str, size: int, copy_mb: int) -> Peak:
    import torch

    if precision not in _CUDA_DTYPES:
        raise FloorError(f"unknown precision {precision!r}; choose one of {', '.join(_CUDA_DTYPES)}")
    if not torch.cuda.is_available():
        raise FloorError("no CUDA device; measure the CPU peak with device='cpu'")
    dtype = getattr(torch, _CUDA_DTYPES[precision])
    previous_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    try:
        a = torch.randn(size, size, device=device, dtype=dtype)
        b = torch.randn(size, size, device=device, dtype=dtype)

        def gemm() -> None:
            torch.matmul(a, b)
            torch.cuda.synchronize(device)

        gflops = 2.0 * size**3 / best_seconds(gemm, 5) / 1e9
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous_tf32
    src = torch.empty(copy_mb * 2**20, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)

    def copy() -> None:
        dst.copy_(src)
        torch.cuda.synchronize(device)

    gb_per_s = 2 * src.numel() / best_seconds(copy, 5) / 1e9
    name = torch.cuda.get_device_name(device)
    source = f"torch {precision} GEMM {size}^3 and {copy_mb} MB device copy (read+write) on {name}"
    return Peak(gflops, gb_per_s, source, {f"torch_{precision}_gemm_gflops": gflops, "torch_copy_gb_per_s": gb_per_s})
