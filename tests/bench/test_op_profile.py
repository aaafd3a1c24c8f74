"""The per-op profiler: trace parsing, medians and shares, the conv work split, a real run of both engines."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mmad_edge.bench import op_profile
from mmad_edge.bench.floor import count_graph_cost


def conv_pair(path: Path) -> Path:
    """A dense 1x1 conv (8 -> 8) then a depthwise 3x3 conv, on a 1x8x16x16 float input."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["h"], name="dense"),
             helper.make_node("Conv", ["h", "w2"], ["y"], name="depthwise", group=8, pads=[1, 1, 1, 1])]
    weights = [numpy_helper.from_array(rng.standard_normal((8, 8, 1, 1)).astype(np.float32), "w1"),
               numpy_helper.from_array(rng.standard_normal((8, 1, 3, 3)).astype(np.float32), "w2")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])], weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def test_conv_class_splits_grouped_from_dense_work(tmp_path: Path) -> None:
    cost = count_graph_cost(onnx.load(str(conv_pair(tmp_path / "g.onnx"))), key=op_profile.conv_class)
    assert cost.by_op["Conv"] * 1e9 == pytest.approx(2 * 8 * 256 * 8)  # 8 inputs per output
    assert cost.by_op["GroupConv"] * 1e9 == pytest.approx(2 * 8 * 256 * 9)  # 9 taps, 1 input channel


def test_ort_trace_sums_kernel_times_per_op_per_call() -> None:
    trace = [{"cat": "Node", "name": "a_kernel_time", "dur": 3000, "args": {"op_name": "Conv"}},
             {"cat": "Node", "name": "b_kernel_time", "dur": 1000, "args": {"op_name": "Conv"}},
             {"cat": "Node", "name": "a_kernel_time", "dur": 2000, "args": {"op_name": "Conv"}},
             {"cat": "Node", "name": "c_fence_before", "dur": 9000, "args": {"op_name": "Gelu"}},
             {"cat": "Session", "name": "model_run", "dur": 99000}]
    assert op_profile._ort_ops(trace, calls=2) == {"Conv": (3.0, 2)}


def test_openvino_info_skips_layers_that_did_not_run() -> None:
    info = [SimpleNamespace(node_type="Convolution", status="Status.EXECUTED", real_time=timedelta(milliseconds=2)),
            SimpleNamespace(node_type="Convolution", status="Status.EXECUTED", real_time=timedelta(milliseconds=3)),
            SimpleNamespace(node_type="Reshape", status="Status.NOT_RUN", real_time=timedelta(0))]
    assert op_profile._ov_ops(info) == {"Convolution": (5.0, 2)}


def test_median_profile_keeps_medians_and_shares() -> None:
    profiles = [(10.0, {"Conv": (6.0, 2), "Gelu": (2.0, 1)}), (30.0, {"Conv": (9.0, 2)}),
                (20.0, {"Conv": (8.0, 2), "Gelu": (4.0, 1)})]
    result = op_profile.median_profile(profiles)
    assert result["wall_ms"] == 20.0
    assert [row["op"] for row in result["ops"]] == ["Conv", "Gelu"]
    assert result["ops"][0]["ms"] == 8.0 and result["ops"][1]["ms"] == 2.0  # a missing op counts as 0 ms
    assert result["ops"][0]["share_pct"] == pytest.approx(80.0)


def test_real_profile_of_both_engines(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    pytest.importorskip("onnxruntime")
    path = conv_pair(tmp_path / "g.onnx")
    result = op_profile.profile_model(path, op_profile.ENGINES, runs=3, repeats=2, threads=1)
    ort_ops = {row["op"]: row for row in result["onnxruntime"]["ops"]}
    assert ort_ops["Conv"]["nodes"] == 2 and ort_ops["Conv"]["ms"] > 0
    ov_ops = {row["op"] for row in result["openvino"]["ops"]}
    assert {"Convolution", "GroupConvolution"} <= ov_ops
    for engine in op_profile.ENGINES:
        assert len(result[engine]["wall_ms_repeats"]) == 2
        assert sum(row["share_pct"] for row in result[engine]["ops"]) == pytest.approx(100.0)
    table = op_profile.conv_efficiency(path, result, peak_gflops=100.0)
    dense = table["openvino"]["Convolution"]
    assert dense["gflop"] * 1e9 == pytest.approx(2 * 8 * 256 * 8)
    assert dense["x_peak_time"] == pytest.approx(dense["ms"] / (1000 * dense["gflop"] / 100.0))


def test_labels_must_match_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = conv_pair(tmp_path / "g.onnx")
    with pytest.raises(SystemExit):
        op_profile.parse_args([str(path), str(path), "--label", "only-one"])
    assert "one distinct --label per model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        op_profile.parse_args([str(tmp_path / "missing.onnx")])
    assert "no such ONNX file" in capsys.readouterr().err
