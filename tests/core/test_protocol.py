"""The reference evaluation protocol (MiniMaxAD utils/eval.py), written out by hand here: mean of
the bilinear (align_corners) 1 - cosine maps, a 5x5 Gaussian (sigma 4) convolution padded with
ZEROS, the mean of the top int(H * W * 0.01) pixels. Evaluation and the FP32 graph must both
give it."""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from mmad_edge.config import ModelConfig
from mmad_edge.data.dataset import build_dataset
from mmad_edge.data.demo import make_demo_dataset
from mmad_edge.export.onnx_export import check_export_request, export_onnx
from mmad_edge.inference import predict
from mmad_edge.model.anomaly_map import AnomalyHead, top_k_count
from mmad_edge.model.minimaxad import build_model


def reference_smooth(m: np.ndarray, size: int = 5, sigma: float = 4.0) -> np.ndarray:
    """A 2-D Gaussian (sum 1) applied with zeros outside the map, loop by loop."""
    r = size // 2
    kernel = np.array([[math.exp(-((i - r) ** 2 + (j - r) ** 2) / (2 * sigma ** 2)) for j in range(size)]
                       for i in range(size)])
    kernel /= kernel.sum()
    h, w = m.shape
    out = np.zeros_like(m, dtype=np.float64)
    for y in range(h):
        for x in range(w):
            for i in range(size):
                for j in range(size):
                    yy, xx = y + i - r, x + j - r
                    if 0 <= yy < h and 0 <= xx < w:
                        out[y, x] += kernel[i, j] * m[yy, xx]
    return out


def reference_score(m: np.ndarray) -> float:
    flat = np.sort(m.ravel())[::-1]
    return float(flat[: int(m.shape[0] * m.shape[1] * 0.01)].mean())


def test_smoothing_is_the_zero_padded_gaussian_of_the_reference():
    head = AnomalyHead(ModelConfig(variant="a"))
    assert head.gauss[0, 0, 2, 2].item() == pytest.approx(0.0452, abs=5e-5)
    assert head.gauss[0, 0, 0, 0].item() == pytest.approx(0.0352, abs=5e-5)
    m = torch.rand(1, 1, 20, 24, generator=torch.Generator().manual_seed(0))
    got = head.smooth(m)[0, 0].double().numpy()
    expected = reference_smooth(m[0, 0].double().numpy())
    assert np.abs(got - expected).max() / np.abs(expected).max() < 1e-6
    constant = head.smooth(torch.full((1, 1, 16, 16), 0.25))[0, 0]
    assert constant[8, 8].item() == pytest.approx(0.25, rel=1e-6)  # interior keeps its mass
    assert constant[0, 0].item() == pytest.approx(0.25 * float(head.gauss[0, 0, 2:, 2:].sum()), rel=1e-6)


def test_top_k_count_truncates_as_the_reference_at_every_size():
    sizes = [(s, s) for s in range(32, 609)] + [(224, 256), (410, 410), (608, 576)]
    assert [(h, w) for h, w in sizes if top_k_count(h, w, 1.0) != int(h * w * 0.01)] == []


def test_top_k_count_known_values_and_floor():
    assert [top_k_count(s, s, 1.0) for s in (224, 256, 384, 608)] == [501, 655, 1474, 3696]
    assert top_k_count(8, 8, 1.0) == 1
    check_export_request(build_model(ModelConfig(variant="a", image_size=608)), (1, 1, 1), 20, "uint8_bgr_nhwc")


def test_eval_and_the_fp32_graph_give_the_reference_scores(tmp_path):
    size = 64  # 40.96 pixels: the reference averages 40, rounding would take 41
    data = make_demo_dataset(tmp_path / "data", ("brick",), n_train=2, n_test_good=2, n_test_defect=3, size=size)
    dataset = build_dataset(data, "mvtec", ["brick"], "test", size)
    torch.manual_seed(0)
    model = build_model(ModelConfig(variant="a", image_size=size)).eval()
    evaluated = predict(model, dataset, batch_size=8, progress=False)
    frames = np.stack([np.asarray(dataset[i]["image"]) for i in range(len(dataset))])
    with torch.no_grad():
        x = model.preprocess(torch.as_tensor(frames))
        enc, dec = model.features(x)
    per_scale = [F.interpolate((1 - F.cosine_similarity(e, d, dim=1, eps=1e-8))[:, None], size=(size, size),
                               mode="bilinear", align_corners=True) for e, d in zip(enc, dec)]
    maps = torch.cat(per_scale, 1).mean(1).double().numpy()
    expected = np.array([reference_score(reference_smooth(m)) for m in maps])
    assert np.abs(evaluated.scores / expected - 1).max() < 1e-5
    graph = export_onnx(model, tmp_path / "model.fp32.onnx", (1, 1, 8)).path
    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    graph_map, graph_score = session.run(None, {"image": frames})
    assert np.abs(graph_score / evaluated.scores - 1).max() < 1e-5
    assert np.abs(graph_map - evaluated.maps).max() / np.abs(evaluated.maps).max() < 1e-5
