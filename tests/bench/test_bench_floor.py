"""FLOP and byte counts against hand-computed numbers on small ONNX graphs; the roofline."""

from __future__ import annotations

import importlib.util

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mmad_edge.bench.floor import (
    FloorError,
    GraphCost,
    Peak,
    count_graph_cost,
    count_module_cost,
    floor_ms,
    floor_summary,
    measure_peak,
)


def make_model(nodes, inputs, outputs, weights=()) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        inputs,
        outputs,
        initializer=[numpy_helper.from_array(np.zeros(shape, np.float32), name) for name, shape in weights],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def value(name: str, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def conv_model() -> onnx.ModelProto:
    """3 -> 4 channels, 3x3, pad 1, bias, dynamic batch, 8x8."""
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])
    return make_model([node], [value("x", ["batch", 3, 8, 8])], [value("y", ["batch", 4, 8, 8])],
                      [("w", (4, 3, 3, 3)), ("b", (4,))])


def test_conv_with_bias_at_batch_2() -> None:
    cost = count_graph_cost(conv_model(), batch=2)
    out = 2 * 4 * 8 * 8  # 512 output elements
    assert cost.gflop * 1e9 == pytest.approx(2 * out * 27 + out)  # 2 FLOPs per MAC + bias
    weights = (4 * 27 + 4) * 4
    io = (2 * 3 * 64 + out) * 4
    assert cost.bytes == weights + io
    assert cost.batch == 2
    assert set(cost.by_op) == {"Conv"}


def test_depthwise_dilated_conv() -> None:
    node = helper.make_node("Conv", ["x", "w"], ["y"], group=8, dilations=[2, 2], pads=[2, 2, 2, 2])
    model = make_model([node], [value("x", [1, 8, 10, 10])], [value("y", [1, 8, 10, 10])], [("w", (8, 1, 3, 3))])
    assert count_graph_cost(model).gflop * 1e9 == pytest.approx(2 * 800 * 9)  # 1 input channel per group


def test_conv_transpose() -> None:
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2])
    model = make_model([node], [value("x", [1, 4, 5, 5])], [value("y", [1, 2, 10, 10])], [("w", (4, 2, 2, 2))])
    # every one of 100 inputs scatters into 2 channels x 2x2 taps: 800 MACs
    assert count_graph_cost(model).gflop * 1e9 == pytest.approx(1600)


def test_matmul_gemm_elementwise_reduction_and_uncounted() -> None:
    nodes = [
        helper.make_node("MatMul", ["a", "m"], ["p"]),  # (2,3,4) @ (4,5) -> (2,3,5)
        helper.make_node("Gemm", ["g", "h", "c"], ["q"], transB=1),  # (3,4) @ (5,4)^T + c -> (3,5)
        helper.make_node("Relu", ["q"], ["r"]),
        helper.make_node("ReduceMean", ["g"], ["s"], keepdims=1),
        helper.make_node("Transpose", ["p"], ["t"], perm=[0, 2, 1]),
        helper.make_node("Einsum", ["g", "g"], ["e"], equation="ij,ij->i"),
    ]
    model = make_model(
        nodes,
        [value("a", [2, 3, 4]), value("g", [3, 4])],
        [value("r", [3, 5]), value("s", [1, 1]), value("t", [2, 5, 3]), value("e", [3])],
        [("m", (4, 5)), ("h", (5, 4)), ("c", (5,))],
    )
    cost = count_graph_cost(model)
    assert cost.by_op["MatMul"] * 1e9 == pytest.approx(2 * 30 * 4)
    assert cost.by_op["Gemm"] * 1e9 == pytest.approx(2 * 15 * 4 + 15)
    assert cost.by_op["Relu"] * 1e9 == pytest.approx(15)
    assert cost.by_op["ReduceMean"] * 1e9 == pytest.approx(12)
    assert "Transpose" not in cost.by_op
    assert cost.uncounted == ("Einsum",)
    assert cost.gflop * 1e9 == pytest.approx(240 + 135 + 15 + 12)
    assert cost.batch == 2  # a fixed leading dim is the batch when none is asked for


def test_pool_reads_its_window() -> None:
    node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2])
    model = make_model([node], [value("x", [1, 1, 4, 4])], [value("y", [1, 1, 2, 2])])
    assert count_graph_cost(model).gflop * 1e9 == pytest.approx(16)


def test_fixed_batch_mismatch_is_an_error() -> None:
    node = helper.make_node("Relu", ["x"], ["y"])
    model = make_model([node], [value("x", [1, 3])], [value("y", [1, 3])])
    with pytest.raises(FloorError, match="fixed batch of 1, not 4"):
        count_graph_cost(model, batch=4)


def test_unknown_shape_is_an_error() -> None:
    node = helper.make_node("Relu", ["x"], ["y"])
    model = make_model([node], [value("x", ["batch", "width"])], [value("y", ["batch", "width"])])
    with pytest.raises(FloorError, match="unknown"):
        count_graph_cost(model)


def test_roofline_takes_the_slower_bound() -> None:
    peak = Peak(gflops=100.0, gb_per_s=10.0, source="test")
    assert floor_ms(GraphCost(gflop=2.0, bytes=100_000_000), peak) == pytest.approx(20.0)  # compute-bound
    assert floor_ms(GraphCost(gflop=0.1, bytes=500_000_000), peak) == pytest.approx(50.0)  # memory-bound
    with pytest.raises(FloorError, match="peak must be positive"):
        floor_ms(GraphCost(1.0, 1), Peak(0.0, 1.0, "x"))


def test_floor_summary_is_per_image() -> None:
    summary = floor_summary(GraphCost(gflop=4.0, bytes=40_000_000, batch=4), Peak(100.0, 10.0, "p"))
    assert summary == {
        "gflop_per_image": 1.0,
        "bytes_per_image": 10_000_000.0,
        "peak_gflops": 100.0,
        "peak_gb_per_s": 10.0,
        "peak_source": "p",
        "floor_ms_per_image": pytest.approx(10.0),
    }


def test_module_cost_of_a_linear_layer() -> None:
    torch = pytest.importorskip("torch")
    cost = count_module_cost(torch.nn.Linear(8, 4), torch.zeros(3, 8))
    assert cost.gflop * 1e9 == pytest.approx(2 * 3 * 8 * 4)
    assert cost.bytes == (8 * 4 + 4) * 4 + 3 * 8 * 4 + 3 * 4 * 4
    assert cost.batch == 3


def test_cpu_peak_is_measured() -> None:
    peak = measure_peak("cpu", size=128, copy_mb=4)
    assert peak.gflops > 0 and peak.gb_per_s > 0
    assert peak.gflops == max(v for k, v in peak.measurements.items() if k.endswith("_gemm_gflops"))
    assert "onnxruntime_gemm_gflops" in peak.measurements
    assert "GEMM 128^3" in peak.source
    if importlib.util.find_spec("openvino") is not None:  # the best library GEMM, OpenVINO's included
        assert "openvino_gemm_gflops" in peak.measurements


def test_openvino_gemm_computes_the_product() -> None:
    pytest.importorskip("openvino")
    from mmad_edge.bench.floor import _openvino_gemm

    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((3, 3), dtype=np.float32), rng.standard_normal((3, 3), dtype=np.float32)
    np.testing.assert_allclose(_openvino_gemm(a, b)()[0], a @ b, rtol=1e-5, atol=1e-6)


def test_peak_argument_errors() -> None:
    with pytest.raises(FloorError, match="unknown device 'tpu'"):
        measure_peak("tpu")
    with pytest.raises(FloorError, match="fp32 only"):
        measure_peak("cpu", precision="fp16")
