"""FP16 graph: convs in FP16, GRN / LayerNorm statistics, head and input handling in FP32."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from model_utils import randomize

from mmad_edge.config import ModelConfig
from mmad_edge.export.checks import FP16_AUROC_DELTA, FP16_SPEARMAN
from mmad_edge.export.fp16 import convert_fp16, fp32_regions, tensor_types
from mmad_edge.export.onnx_export import export_onnx
from mmad_edge.export.parity import generated_frames, torch_outputs, verify_onnx
from mmad_edge.model.layers import LayerNorm2d
from mmad_edge.model.minimaxad import build_model
from mmad_edge.model.reparam import FusedBlock, reparameterize

FLOAT, FLOAT16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    torch.manual_seed(2)
    model = randomize(build_model(ModelConfig(variant="a", image_size=64)), seed=2).eval()
    path = export_onnx(model, tmp_path_factory.mktemp("fp16") / "m.onnx", batch=(1, 2, 4)).path
    fp32 = onnx.load(str(path))
    return model, fp32, convert_fp16(fp32)


def _float_types(node, types):
    return {types[name] for name in [*node.input, *node.output] if types.get(name) in (FLOAT, FLOAT16)}


def test_regions_are_found_by_structure(graphs):
    model, fp32, _ = graphs
    regions = fp32_regions(fp32)
    deployed = reparameterize(model)
    layernorms = sum(isinstance(m, LayerNorm2d) for m in model.modules())
    grns = sum(isinstance(m, FusedBlock) and m.grn_gamma is not None for m in deployed.modules())
    assert len(regions["layernorm"]) == 7 * layernorms
    assert len(regions["grn"]) == 4 * grns  # ReduceL2, ReduceMean, Add eps, Div
    assert {fp32_node.op_type for fp32_node in fp32.graph.node if fp32_node.name in regions["head"]} >= {
        "ReduceSum", "Sqrt", "Div", "Resize", "Conv", "TopK", "ReduceMean"}
    assert [n.op_type for n in fp32.graph.node if n.name in regions["input"]] == ["Transpose", "Cast", "Sub"]


def test_statistics_head_and_input_stay_fp32_and_convs_are_fp16(graphs):
    _, fp32, fp16 = graphs
    types = tensor_types(fp16)
    nodes = {node.name: node for node in fp16.graph.node}
    regions = fp32_regions(fp32)
    for region in ("grn", "layernorm", "head", "input"):
        for name in regions[region]:
            assert _float_types(nodes[name], types) <= {FLOAT}, (region, name)
    head = set(regions["head"])
    convs = [n for n in fp16.graph.node if n.op_type in ("Conv", "ConvTranspose") and n.name not in head]
    assert len(convs) > 100
    for conv in convs:
        assert _float_types(conv, types) == {FLOAT16}, conv.name
    assert {types[v.name] for v in fp16.graph.output} == {FLOAT}
    assert [types[v.name] for v in fp16.graph.input] == [onnx.TensorProto.UINT8]
    assert not any(n.op_type == "Cast" and n.input[0] in ("anomaly_map", "score") for n in fp16.graph.node)


def test_fp16_graph_runs_on_cpu_and_tracks_fp32(graphs):
    model, fp32, fp16 = graphs
    frames = generated_frames(4, 64, seed=4)
    reference = torch_outputs(model, frames)
    result = verify_onnx(fp16, model, frames, "fp16", labels=np.array([0, 0, 1, 1]), strict=False, reference=reference)
    assert not any(c.enforced for c in result.checks)  # random weights: reported, so assert the promise here
    assert result.metrics["spearman"] >= FP16_SPEARMAN
    assert abs(result.metrics["auroc"] - result.metrics["auroc_reference"]) <= FP16_AUROC_DELTA
    assert result.metrics["map_relative"] < 1e-2
    assert result.metrics["score_relative"] < 1e-2
