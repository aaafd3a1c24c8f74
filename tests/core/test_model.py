import pytest
import torch

from mmad_edge.config import ConfigError, ModelConfig
from mmad_edge.model.anomaly_map import AnomalyHead, cosine_distance
from mmad_edge.model.minimaxad import build_model


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_variant_n_parameter_counts_match_reference():
    model = build_model(ModelConfig(variant="n"))
    assert count(model.bottleneck) == 13_566_080
    assert count(model.decoder) == 9_452_600
    assert count(model.encoder) == 8_985_080  # forward path; the unused last stage is ignored


def test_feature_shapes_and_frozen_encoder():
    model = build_model(ModelConfig(variant="a", image_size=64)).train()
    assert not model.encoder.training and model.bottleneck.training
    assert not any(p.requires_grad for p in model.encoder.parameters())
    enc, dec = model.features(torch.randn(2, 3, 64, 96))
    assert [tuple(e.shape) for e in enc] == [(2, 40, 16, 24), (2, 80, 8, 12), (2, 160, 4, 6)]
    assert [tuple(d.shape) for d in dec] == [tuple(e.shape) for e in enc]


def test_head_map_and_scores_follow_protocol():
    cfg = ModelConfig(variant="a", image_size=32, smoothing_kernel=0)
    head = AnomalyHead(cfg)
    enc = [torch.randn(1, 4, 8, 8)]
    dec = [enc[0].clone()]
    dec[0][:, :, 2, 3] = -enc[0][:, :, 2, 3]  # opposite vector: distance 2 at one cell
    m, s = head(enc, dec, (8, 8))
    assert m[0, 2, 3].item() == pytest.approx(2.0, abs=1e-6)
    assert s.item() == pytest.approx(2.0, abs=1e-6)  # top 1% of 64 px = 1 pixel
    assert torch.allclose(cosine_distance(enc[0], enc[0]), torch.zeros(1, 8, 8), atol=1e-6)
    head_max = AnomalyHead(ModelConfig(variant="a", image_size=32, score_mode="max"))
    m2, s2 = head_max(enc, dec, (8, 8))
    assert s2.item() == pytest.approx(m2.max().item())


@pytest.mark.parametrize(
    "kwargs,message",
    [({"variant": "z"}, "unknown variant"), ({"image_size": 250}, "multiple of 32"), ({"smoothing_kernel": 4}, "odd"),
     ({"encoder_padding": "replicate"}, "encoder_padding 'replicate' not in")],
)
def test_bad_config_is_rejected(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ModelConfig(**kwargs)
