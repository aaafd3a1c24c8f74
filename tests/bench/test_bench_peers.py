"""Peer detectors: output shapes, WideResNet-50-2 parameter counts, and the pieces' arithmetic."""

from __future__ import annotations

import pytest
import torch

from mmad_edge.bench.efficientad import feature_size
from mmad_edge.bench.maps import GaussianBlur
from mmad_edge.bench.patchcore import PatchCore
from mmad_edge.bench.peers import PEERS, build_peer
from mmad_edge.bench.wideresnet import WideResNet50


def params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def conv_bn(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + 2 * cout  # bias-free conv + BN weight and bias


def bottleneck(cin: int, planes: int, projected: bool) -> int:
    width, cout = 2 * planes, 4 * planes
    body = conv_bn(cin, width, 1) + conv_bn(width, width, 3) + conv_bn(width, cout, 1)
    return body + (conv_bn(cin, cout, 1) if projected else 0)


def layer(cin: int, planes: int, blocks: int) -> int:
    return bottleneck(cin, planes, True) + (blocks - 1) * bottleneck(4 * planes, planes, False)


def test_peer_names() -> None:
    assert PEERS == ("efficientad-s", "efficientad-m", "rd4ad-wrn50", "patchcore-wrn50")


def test_wideresnet_parameter_counts() -> None:
    net = WideResNet50(depth=4, classifier=True)
    stem = conv_bn(3, 64, 7)
    expected_layers = [layer(64, 64, 3), layer(256, 128, 4), layer(512, 256, 6), layer(1024, 512, 3)]
    assert expected_layers[0] == 634_368  # e.g. block 1: 8192+147456+32768+16384 conv, 1536 BN
    assert params(net.stem) == stem == 9_536
    assert [params(m) for m in net.layers] == expected_layers
    assert params(net) == stem + sum(expected_layers) + 2048 * 1000 + 1000 == 68_883_240  # published 68.9 M


def test_wideresnet_feature_shapes() -> None:
    with torch.inference_mode():
        features = WideResNet50(depth=3).eval()(torch.randn(1, 3, 64, 64))
    assert [tuple(f.shape) for f in features] == [(1, 256, 16, 16), (1, 512, 8, 8), (1, 1024, 4, 4)]


def test_wideresnet_depth_checks() -> None:
    with pytest.raises(ValueError, match="depth must be 1..4"):
        WideResNet50(depth=5)
    with pytest.raises(ValueError, match="needs all 4 layers"):
        WideResNet50(depth=3, classifier=True)


@pytest.mark.parametrize("name", PEERS)
def test_peer_outputs_at_256(name: str) -> None:
    torch.manual_seed(0)
    options = {"bank_size": 64} if name == "patchcore-wrn50" else {}
    peer = build_peer(name, 256, **options)
    assert not peer.training
    with torch.inference_mode():
        anomaly_map, score = peer(torch.randn(2, 3, 256, 256))
    assert anomaly_map.shape == (2, 256, 256)
    assert score.shape == (2,)
    assert torch.isfinite(anomaly_map).all() and torch.isfinite(score).all()


def test_efficientad_grid_and_size_limit() -> None:
    assert feature_size(256) == 56  # the paper's 56 x 56 teacher output
    with pytest.raises(ValueError, match="at least 256 px"):
        build_peer("efficientad-s", 128)


def test_build_peer_errors() -> None:
    with pytest.raises(ValueError, match="unknown peer 'padim'"):
        build_peer("padim")
    with pytest.raises(ValueError, match="takes no options"):
        build_peer("rd4ad-wrn50", 64, bank_size=10)


def test_patchcore_nearest_distance_in_chunks() -> None:
    core = PatchCore(64, bank_size=2, embed_dim=2, chunk=1, use_faiss=False)
    core.bank.copy_(torch.tensor([[0.0, 0.0], [3.0, 4.0]]))
    queries = torch.tensor([[0.0, 1.0], [3.0, 5.0], [6.0, 8.0]])
    assert core.nearest_distance(queries).tolist() == pytest.approx([1.0, 1.0, 5.0])


def test_patchcore_embedding_grid() -> None:
    core = PatchCore(64, bank_size=4, embed_dim=32, use_faiss=False).eval()
    with torch.inference_mode():
        assert core.embed(torch.randn(1, 3, 64, 64)).shape == (1, 8, 8, 32)  # stride 8


def test_gaussian_blur_keeps_constants_and_mass() -> None:
    blur = GaussianBlur(sigma=4.0)
    assert blur.kernel.numel() == 33  # truncated at 4 sigma
    flat = torch.full((1, 1, 40, 40), 2.0)
    assert torch.allclose(blur(flat), flat)
    spike = torch.zeros(1, 1, 64, 64)
    spike[0, 0, 32, 32] = 1.0
    assert blur(spike).sum().item() == pytest.approx(1.0, abs=1e-5)


def test_peer_graph_reproduces_the_eager_peer_and_is_cached(tmp_path, monkeypatch) -> None:
    import numpy as np
    import onnxruntime as ort

    from mmad_edge.bench import peer_export

    graphs = peer_export.peer_graphs(["efficientad-s"], 256, tmp_path, progress=False)
    assert graphs == {"efficientad-s": tmp_path / "peers-256px-mmad-edge-0.1.0" / "peer.efficientad-s.onnx"}
    torch.manual_seed(0)
    eager = build_peer("efficientad-s", 256)
    x = torch.randn(3, 3, 256, 256)  # batch 3: the exported batch dimension is dynamic
    with torch.inference_mode():
        want_map, want_score = eager(x)
    session = ort.InferenceSession(str(graphs["efficientad-s"]), providers=["CPUExecutionProvider"])
    got_map, got_score = session.run(None, {"image": x.numpy()})
    scale = float(want_map.abs().max())
    np.testing.assert_allclose(got_map, want_map.numpy(), rtol=0, atol=1e-4 * scale)
    np.testing.assert_allclose(got_score, want_score.numpy(), rtol=0, atol=1e-4 * scale)

    monkeypatch.setattr(peer_export, "export_peer", lambda *a: pytest.fail("re-exported a cached peer"))
    assert peer_export.peer_graphs(["efficientad-s"], 256, tmp_path, progress=False) == graphs


def test_a_peer_that_cannot_export_is_a_reason_not_a_crash(tmp_path) -> None:
    from mmad_edge.bench.peer_export import peer_graphs

    graphs = peer_graphs(["efficientad-s"], 128, tmp_path, progress=False)  # EfficientAD needs >= 256 px
    assert isinstance(graphs["efficientad-s"], str) and graphs["efficientad-s"].startswith("ONNX export failed: ")
    assert "\n" not in graphs["efficientad-s"]


def test_a_failed_export_prints_no_native_ir_dump_and_is_one_short_line(tmp_path, monkeypatch, capfd) -> None:
    """TorchScript prints the IR graph from C++ (file descriptor 1) when an operator fails: the bench
    shows one line instead; the dump stands in as a C-level write of many lines."""
    import ctypes

    from mmad_edge.bench import peer_export

    def failing_export(peer, image_size, path):
        libc = ctypes.CDLL(None)
        for index in range(400):
            libc.printf(b"  %%%d : Float(1, 32) = aten::reshape(...)\n", index)
        raise RuntimeError("Unsupported: ONNX export of operator adaptive_avg_pool1d, input size not accessible. "
                           "Please feel free to request support or submit a pull request on PyTorch GitHub: "
                           "https://github.com/pytorch/pytorch/issues  [Caused by the value '459 defined in (%459 : "
                           "Float(*, *, *)\n  graph(...)")

    monkeypatch.setattr(peer_export, "export_peer", failing_export)
    graphs = peer_export.peer_graphs(["patchcore-wrn50"], 256, tmp_path, progress=False)
    print("after", flush=True)
    assert graphs == {"patchcore-wrn50": "ONNX export failed: Unsupported: ONNX export of operator "
                                         "adaptive_avg_pool1d, input size not accessible."}
    out = capfd.readouterr().out
    assert out == "after\n", out[:200]
