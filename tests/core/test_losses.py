import math

import pytest
import torch

from mmad_edge.losses import adc_loss, global_cosine_loss, quantile


def pair_with_distances(distances: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder/decoder features (1, 2, 2, 2) whose per-pixel 1 - cos equal ``distances``."""
    angles = torch.tensor([math.acos(1.0 - d) for d in distances], dtype=torch.float64)
    enc = torch.stack([torch.ones(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)]).view(1, 2, 2, 2)
    dec = torch.stack([torch.cos(angles), torch.sin(angles)]).view(1, 2, 2, 2)
    return enc, dec


def test_quantile_matches_torch():
    x = torch.randn(1000, dtype=torch.float64)
    for q in (0.0, 0.5, 0.9999, 1.0):
        assert quantile(x, q).item() == pytest.approx(torch.quantile(x, q).item(), abs=1e-12)


def test_adc_loss_keeps_only_hard_pixels():
    # M = [0, 0, 0, 1]: std^2 (unbiased) = 0.25; quantile(M, 0.9999) = 0.9997; d = 0.7497.
    # Only M^2 = 1 passes (1 pixel >= num_lim = 4 * 0.0005), so the loss is 1.0, not mean(M^2) = 0.25.
    enc, dec = pair_with_distances([0.0, 0.0, 0.0, 1.0])
    assert adc_loss([enc], [dec], (2, 2)).item() == pytest.approx(1.0, abs=1e-9)


def test_adc_loss_fallback_when_no_pixel_passes():
    # M = [.2, .4, .6, .8]: s^2 = 0.2/3; d = quantile(M, .9999) - s^2 = 0.79994 - 0.066667 = 0.73327;
    # M^2 = [.04, .16, .36, .64] -> none passes -> d = quantile(M^2, .9995) - s^2
    # = (0.36 + 0.9985 * 0.28) - 0.066667 = 0.57291 -> only 0.64 passes.
    enc, dec = pair_with_distances([0.2, 0.4, 0.6, 0.8])
    assert adc_loss([enc], [dec], (2, 2)).item() == pytest.approx(0.64, abs=1e-9)


def test_adc_loss_sums_upsampled_scales():
    enc, dec = pair_with_distances([0.0, 0.0, 0.0, 1.0])
    coarse_e, coarse_d = enc[:, :, :1, :1], dec[:, :, 1:, 1:]  # 1x1 map with distance 1 everywhere
    # M = [1, 1, 1, 2]; s^2 = 0.25; d = 1.9997 - 0.25 -> only M^2 = 4 passes.
    assert adc_loss([enc, coarse_e], [dec, coarse_d], (2, 2)).item() == pytest.approx(4.0, abs=1e-9)


def test_global_cosine_loss_by_hand():
    e = torch.tensor([[1.0, 0.0], [1.0, 1.0]]).view(2, 2, 1, 1)
    d = torch.tensor([[0.0, 1.0], [1.0, 1.0]]).view(2, 2, 1, 1)
    # sample 1: orthogonal -> 1; sample 2: parallel -> 0; batch mean 0.5; two equal scales -> 1.0
    assert global_cosine_loss([e, e], [d, d]).item() == pytest.approx(1.0, abs=1e-6)


def test_adc_loss_has_gradient():
    enc = torch.randn(2, 8, 4, 4)
    dec = torch.randn(2, 8, 4, 4, requires_grad=True)
    adc_loss([enc], [dec], (8, 8)).backward()
    assert dec.grad is not None and dec.grad.abs().sum() > 0
