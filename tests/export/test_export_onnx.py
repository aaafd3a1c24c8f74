"""export_onnx: one graph for the whole detector, matching the PyTorch model; verification maths."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from model_utils import randomize

from mmad_edge.config import ModelConfig
from mmad_edge.export.onnx_export import ExportError, export_onnx
from mmad_edge.export.parity import generated_frames, torch_outputs, verify_onnx
from mmad_edge.model.minimaxad import build_model
from mmad_edge.runtime.monitor.compare import spearman

SIZE = 64


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(1)
    return randomize(build_model(ModelConfig(variant="a", image_size=SIZE)), seed=1).eval()


@pytest.fixture(scope="module")
def frames_and_reference(model):
    frames = generated_frames(6, SIZE, seed=2)
    return frames, torch_outputs(model, frames)


def _io(path):
    graph = onnx.load(str(path)).graph
    def dims(value):
        return [d.dim_value or d.dim_param for d in value.type.tensor_type.shape.dim]
    return ({v.name: (v.type.tensor_type.elem_type, dims(v)) for v in graph.input},
            {v.name: (v.type.tensor_type.elem_type, dims(v)) for v in graph.output})


def test_fixed_batch_uint8_graph_matches_torch(model, frames_and_reference, tmp_path):
    frames, reference = frames_and_reference
    path = export_onnx(model, tmp_path / "m.onnx", batch=(4, 4, 4)).path
    inputs, outputs = _io(path)
    assert inputs == {"image": (onnx.TensorProto.UINT8, [4, SIZE, SIZE, 3])}
    assert outputs == {"anomaly_map": (onnx.TensorProto.FLOAT, [4, SIZE, SIZE]), "score": (onnx.TensorProto.FLOAT, [4])}
    result = verify_onnx(path, model, frames, reference=reference)  # 6 frames: padded second batch
    assert result.passed, result.to_dict()
    assert result.metrics["map_relative"] <= 1e-4 and result.metrics["score_relative"] <= 1e-4
    assert all(node.name for node in onnx.load(str(path)).graph.node)


def test_float_rgb_nchw_graph_matches_torch(model, frames_and_reference, tmp_path):
    frames, reference = frames_and_reference
    exported = export_onnx(model, tmp_path / "f.onnx", batch=(1, 2, 4), input_format="float_rgb_nchw")
    inputs, outputs = _io(exported.path)
    assert inputs == {"image": (onnx.TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])}
    assert outputs["anomaly_map"] == (onnx.TensorProto.FLOAT, ["batch", SIZE, SIZE])
    assert exported.simplification.startswith("simplified")
    result = verify_onnx(exported.path, model, frames, reference=reference)
    assert result.passed, result.to_dict()


def test_simplification_failure_keeps_the_raw_graph(model, monkeypatch):
    from mmad_edge.export import simplify

    def broken(graph):
        raise RuntimeError("simulated onnxsim crash")

    monkeypatch.setattr(simplify.onnxsim, "simplify", broken)
    graph = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])]))
    kept, status = simplify.simplify_checked(graph, {"x": np.ones(1, np.float32)})
    assert kept is graph and status == "kept unsimplified: onnxsim failed (simulated onnxsim crash)"


def test_top_k_beyond_tensorrt_limit_is_refused():
    big = build_model(ModelConfig(variant="a", image_size=640))
    with pytest.raises(ExportError, match=r"top 4096 pixels .* at most 3840; export with --image-size 608 or smaller"):
        export_onnx(big, "unused.onnx")


def test_bad_requests_are_refused(model):
    with pytest.raises(ExportError, match="unknown input format"):
        export_onnx(model, "unused.onnx", input_format="rgb")
    with pytest.raises(ExportError, match="MIN <= OPT <= MAX"):
        export_onnx(model, "unused.onnx", batch=(4, 2, 8))
    with pytest.raises(ExportError, match="opset 11 is too old"):
        export_onnx(model, "unused.onnx", opset=11)


def test_spearman_with_ties_and_constants():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks (1, 2.5, 2.5, 4) vs (1, 2, 3, 4): rho = 4.5 / sqrt(4.5 * 5)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / np.sqrt(4.5 * 5.0))
    assert spearman([1, 1, 1], [1, 2, 3]) is None


def test_generated_frames_are_seeded_smooth_textures():
    a, b = generated_frames(3, 64, seed=5), generated_frames(3, 64, seed=5)
    assert a.dtype == np.uint8 and a.shape == (3, 64, 64, 3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, generated_frames(3, 64, seed=6))
    step = np.abs(np.diff(a.astype(int), axis=1)).mean()
    assert step < 0.25 * a.astype(int).std()  # neighbours differ ~10x less than random pixels


def test_reflect_padded_encoder_exports_its_padding(model, frames_and_reference, tmp_path):
    reflect = randomize(build_model(ModelConfig(variant="a", image_size=SIZE, encoder_padding="reflect")), seed=1).eval()
    reflect.load_state_dict(model.state_dict())  # same weights: only the stride-2 convs' padding differs
    frames, zero_padded = frames_and_reference
    reference = torch_outputs(reflect, frames)
    path = export_onnx(reflect, tmp_path / "r.onnx", batch=(1, 2, 4)).path
    modes = [a.s for n in onnx.load(str(path)).graph.node if n.op_type == "Pad" for a in n.attribute if a.name == "mode"]
    assert modes.count(b"reflect") == 4  # stem (2) and the two downsample convs, in the graph as in torch
    result = verify_onnx(path, reflect, frames, reference=reference)
    assert result.passed, result.to_dict()
    assert result.metrics["map_relative"] <= 1e-4 and result.metrics["score_relative"] <= 1e-4
    assert np.abs(reference[0] - zero_padded[0]).max() > 1e-3  # the padding is in effect
