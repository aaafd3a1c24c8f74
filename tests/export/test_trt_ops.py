"""Static TensorRT compatibility check of ONNX graphs built with onnx.helper."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mmad_edge.export.trt_ops import Issue, check_tensorrt_compat, format_issues

S = 32


def _model(nodes, inputs, outputs, initializers=(), opset=18, functions=()):
    graph = helper.make_graph(list(nodes), "g", list(inputs), list(outputs), initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("local", 1)],
                             functions=list(functions))


def _image():
    return helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", S, S, 3])


def _const(name, values, dtype=np.int64):
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


def _float_out(name, shape=None):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _supported_model():
    """Cast -> NCHW -> Conv -> Relu -> ReduceMean -> TopK -> Q/DQ -> Resize: all TensorRT-friendly."""
    nodes = [
        helper.make_node("Cast", ["image"], ["x"], to=TensorProto.FLOAT, name="cast"),
        helper.make_node("Transpose", ["x"], ["nchw"], perm=[0, 3, 1, 2], name="to_nchw"),
        helper.make_node("Conv", ["nchw", "w"], ["conv"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
        helper.make_node("QuantizeLinear", ["relu", "scale", "zp"], ["q"], name="q"),
        helper.make_node("DequantizeLinear", ["q", "scale", "zp"], ["dq"], name="dq"),
        helper.make_node("Resize", ["dq", "", "scales"], ["up"], mode="linear",
                         coordinate_transformation_mode="align_corners", name="resize"),
        helper.make_node("ReduceMean", ["up", "axes"], ["map"], keepdims=0, name="mean"),
        helper.make_node("Reshape", ["map", "flat_shape"], ["flat"], name="flatten"),
        helper.make_node("Constant", [], ["k"], value=_const("k_value", [10]), name="k_const"),
        helper.make_node("TopK", ["flat", "k"], ["top", "top_idx"], name="topk"),
        helper.make_node("ReduceMean", ["top", "score_axes"], ["score"], keepdims=0, name="score"),
    ]
    initializers = [
        _const("w", np.ones((4, 3, 3, 3)), np.float32),
        _const("scale", 0.05, np.float32),
        _const("zp", 0, np.int8),
        _const("scales", [1, 1, 2, 2], np.float32),
        _const("axes", [1]),
        _const("flat_shape", [0, -1]),
        _const("score_axes", [1]),
    ]
    outputs = [_float_out("map", ["batch", 2 * S, 2 * S]), _float_out("score", ["batch"])]
    return _model(nodes, [_image()], outputs, initializers)


def test_supported_graph_has_no_issues():
    model = _supported_model()
    onnx.checker.check_model(model)
    issues = check_tensorrt_compat(model, min_version="10.3")
    assert issues == []
    assert format_issues(issues) == "no TensorRT compatibility issues found"


def _single_node_model(node, initializers=(), extra_inputs=(), opset=18):
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16]), *extra_inputs]
    outputs = [_float_out(name) for name in node.output if name]
    return _model([node], inputs, outputs, initializers, opset=opset)


def test_unsupported_op_is_reported_with_name_and_type():
    model = _single_node_model(helper.make_node("Unique", ["x"], ["y"], name="uniq"))
    issues = check_tensorrt_compat(model)
    assert [(i.node, i.op_type) for i in issues] == [("uniq", "Unique")]
    assert "not supported by TensorRT's ONNX parser" in issues[0].message


def test_topk_with_k_over_3840_is_reported():
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"], name="topk_big")
    issues = check_tensorrt_compat(_single_node_model(node, [_const("k", [5000])]))
    assert [(i.node, i.op_type) for i in issues] == [("topk_big", "TopK")]
    assert "k=5000 exceeds TensorRT's TopK limit of 3840" in issues[0].message


def test_topk_at_the_limit_passes_and_computed_k_is_reported():
    at_limit = helper.make_node("TopK", ["x", "k"], ["v", "i"], name="topk")
    assert check_tensorrt_compat(_single_node_model(at_limit, [_const("k", [3840])])) == []
    computed = _model(
        [helper.make_node("Shape", ["x"], ["k"], start=1, name="shape"),
         helper.make_node("TopK", ["x", "k"], ["v", "i"], name="topk_dyn")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])], [_float_out("v")])
    issues = check_tensorrt_compat(computed)
    assert [(i.node, i.op_type) for i in issues] == [("topk_dyn", "TopK")]
    assert "K ('k') must be a constant initializer" in issues[0].message


def test_nonzero_zero_point_is_reported():
    node = helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], name="quant")
    issues = check_tensorrt_compat(_single_node_model(node, [_const("s", 0.1, np.float32),
                                                              _const("zp", [3], np.int8)]))
    assert [(i.node, i.op_type) for i in issues] == [("quant", "QuantizeLinear")]
    assert "zero point 'zp' is not all 0 (max |zp| = 3)" in issues[0].message


def test_uint8_zero_point_is_reported_as_wrong_type():
    node = helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"], name="dequant")
    q = helper.make_tensor_value_info("q", TensorProto.UINT8, ["batch", 16])
    issues = check_tensorrt_compat(_single_node_model(node, [_const("s", 0.1, np.float32),
                                                              _const("zp", [0], np.uint8)], [q]))
    assert len(issues) == 1 and issues[0].op_type == "DequantizeLinear"
    assert "zero point 'zp' is UINT8; TensorRT needs signed INT8" in issues[0].message


def test_reduce_with_runtime_axes_is_reported():
    axes = helper.make_tensor_value_info("axes", TensorProto.INT64, [1])
    node = helper.make_node("ReduceMean", ["x", "axes"], ["y"], name="mean_dyn")
    issues = check_tensorrt_compat(_single_node_model(node, extra_inputs=[axes]))
    assert [(i.node, i.op_type) for i in issues] == [("mean_dyn", "ReduceMean")]
    assert "axes ('axes') must be a constant initializer" in issues[0].message


def test_reduce_with_attribute_axes_passes_at_opset_17():
    node = helper.make_node("ReduceMean", ["x"], ["y"], axes=[1], name="mean")
    assert check_tensorrt_compat(_single_node_model(node, opset=17)) == []


def test_ops_inside_if_branches_are_checked():
    then_graph = helper.make_graph([helper.make_node("Unique", ["x"], ["t"], name="inner_unique")], "then", [],
                                   [_float_out("t")])
    else_graph = helper.make_graph([helper.make_node("Relu", ["x"], ["e"], name="inner_relu")], "else", [],
                                   [_float_out("e")])
    cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])
    node = helper.make_node("If", ["cond"], ["y"], then_branch=then_graph, else_branch=else_graph, name="branch")
    issues = check_tensorrt_compat(_single_node_model(node, extra_inputs=[cond]))
    assert [(i.node, i.op_type) for i in issues] == [("branch.then_branch/inner_unique", "Unique")]


def test_local_functions_are_expanded_not_flagged_as_custom_ops():
    relu_fn = helper.make_function("local", "MyRelu", ["a"], ["b"], [helper.make_node("Relu", ["a"], ["b"])],
                                   [helper.make_opsetid("", 18)])
    bad_fn = helper.make_function("local", "MyUnique", ["a"], ["b"],
                                  [helper.make_node("Unique", ["a"], ["b"], name="u")], [helper.make_opsetid("", 18)])
    nodes = [helper.make_node("MyRelu", ["x"], ["y"], domain="local", name="call_relu"),
             helper.make_node("MyUnique", ["y"], ["z"], domain="local", name="call_unique")]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])], [_float_out("z")],
                   functions=[relu_fn, bad_fn])
    issues = check_tensorrt_compat(model)
    assert [(i.node, i.op_type) for i in issues] == [("call_unique/u", "Unique")]


def test_custom_domain_op_needs_a_plugin():
    node = helper.make_node("FusedGelu", ["x"], ["y"], domain="com.microsoft", name="fused")
    issues = check_tensorrt_compat(_single_node_model(node))
    assert len(issues) == 1 and "needs a TensorRT plugin" in issues[0].message


def test_unsupported_resize_mode_is_reported():
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="cubic", name="resize")
    issues = check_tensorrt_compat(_single_node_model(node, [_const("scales", [1, 2], np.float32)]))
    assert [(i.node, i.op_type) for i in issues] == [("resize", "Resize")]
    assert "mode 'cubic' is not supported" in issues[0].message


def test_ops_newer_than_the_target_version_are_reported():
    node = helper.make_node("HannWindow", ["n"], ["y"], name="window")
    n = helper.make_tensor_value_info("n", TensorProto.INT64, [])
    issues = check_tensorrt_compat(_single_node_model(node, extra_inputs=[n]), min_version="10.3")
    assert len(issues) == 1 and "needs TensorRT 10.4 or newer; the target is 10.3" in issues[0].message
    assert check_tensorrt_compat(_single_node_model(node, extra_inputs=[n]), min_version="10.4") == []


def test_opset_double_tensors_and_dynamic_spatial_dims_are_reported():
    image = helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", "height", S, 3])
    node = helper.make_node("Cast", ["image"], ["y"], to=TensorProto.DOUBLE, name="to_double")
    model = _model([node], [image], [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)], opset=23)
    messages = format_issues(check_tensorrt_compat(model, min_version="10.3"))
    assert "opset 23 is newer than TensorRT 10.3 supports (up to 20)" in messages
    assert "image: dim 1 is dynamic ('height'); only the batch dim may be dynamic" in messages
    assert "to_double (Cast): casts to float64" in messages
    assert "y: tensor is float64 (DOUBLE)" in messages


def test_format_issues_lists_every_issue():
    text = format_issues([Issue("a", "TopK", "too big"), Issue("graph", "", "old opset")])
    assert text.splitlines() == ["2 TensorRT compatibility issue(s):", "  - a (TopK): too big", "  - graph: old opset"]


def test_format_issues_limit_counts_the_rest():
    issues = [Issue(f"n{i}", "Conv", "bad") for i in range(5)]
    lines = format_issues(issues, limit=2).splitlines()
    assert lines[:3] == ["5 TensorRT compatibility issue(s):", "  - n0 (Conv): bad", "  - n1 (Conv): bad"]
    assert lines[3] == "  ... and 3 more (all of them under tensorrt_compat in report.json)" and len(lines) == 4
    assert format_issues(issues, limit=5) == format_issues(issues)


@pytest.mark.parametrize("version", ["8.6", "ten"])
def test_bad_min_version_is_rejected(version):
    with pytest.raises(ValueError, match="min_version"):
        check_tensorrt_compat(_supported_model(), min_version=version)
