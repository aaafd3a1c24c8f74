"""The PCA fallback encoder: whitened, centred, deterministic filters fitted on normal images,
each stage carrying its leading components and their pooled energy."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmad_edge.config import ModelConfig
from mmad_edge.data.demo import normal_crop, texture
from mmad_edge.encoder_init import ENERGY_SIGMA, _strided_convs, make_energy_stage, pca_initialize_encoder
from mmad_edge.model.anomaly_map import gaussian_kernel1d
from mmad_edge.model.minimaxad import build_model
from mmad_edge.train import spread


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    rng = np.random.default_rng(0)
    source = texture("gravel")
    return torch.from_numpy(np.stack([normal_crop(source, 64, rng) for _ in range(8)]))


def fitted(frames: torch.Tensor, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(ModelConfig(variant="a", image_size=64)).eval()
    assert pca_initialize_encoder(model, [frames], seed=seed) == 4
    return model


def conv_inputs(model, frames) -> list[torch.Tensor]:
    """What each strided conv sees on ``frames``."""
    captured = []
    hooks = [c.register_forward_pre_hook(lambda _m, args: captured.append(args[0])) for c in _strided_convs(model)]
    with torch.no_grad():
        model.encoder(model.preprocess(frames))
    for hook in hooks:
        hook.remove()
    return captured


def test_first_conv_whitens_its_patches(frames):
    # 8 images of 64 px give 8192 stem patches, fewer than the sampling limit: the fit sees all.
    model = fitted(frames)
    conv = _strided_convs(model)[0]
    x = conv_inputs(model, frames)[0]
    cols = F.unfold(x, conv.kernel_size, conv.dilation, conv.padding, conv.stride).transpose(1, 2)
    cols = cols.reshape(-1, cols.shape[-1]).double()
    out = cols @ conv.weight.reshape(conv.out_channels, -1).double().T + conv.bias.double()
    cov = torch.cov(out.T)
    assert out.mean(0).abs().max() < 1e-4  # the bias centres the patches
    assert abs(float(cov[0, 0]) - 1.0) < 1e-2  # first component at unit variance
    off = cov - torch.diag(torch.diag(cov))
    assert off.abs().max() < 1e-3  # components decorrelated
    # Strong components come out at unit variance; the eps floor only damps the weakest ones.
    values = torch.linalg.eigvalsh(torch.cov(cols.T)).flip(0)[: conv.out_channels]
    strong = values > 0.05 * values[0]
    assert strong.sum() >= 3
    assert torch.allclose(torch.diag(cov)[strong], torch.ones(int(strong.sum()), dtype=cov.dtype), atol=0.05)
    assert (torch.diag(cov) <= 1.0 + 2e-3).all()


def test_every_strided_conv_is_fitted_and_centred(frames):
    model = fitted(frames)
    fresh = build_model(ModelConfig(variant="a", image_size=64))
    for conv, before, x in zip(_strided_convs(model), _strided_convs(fresh), conv_inputs(model, frames)):
        assert not torch.allclose(conv.weight, before.weight)
        with torch.no_grad():
            mean = conv(x).mean(dim=(0, 2, 3))
        assert mean.abs().max() < 0.1  # centred on the images it was fitted to (zero padding aside)


def test_same_seed_same_encoder_and_no_images_refused(frames):
    a, b = fitted(frames, seed=3), fitted(frames, seed=3)
    for x, y in zip(a.encoder.state_dict().values(), b.encoder.state_dict().values()):
        assert torch.equal(x, y)
    with pytest.raises(ValueError, match="no images"):
        pca_initialize_encoder(build_model(ModelConfig(variant="a", image_size=64)), [])


def test_convs_feeding_a_stage_repeat_their_components(frames):
    convs = _strided_convs(fitted(frames))
    assert not torch.equal(convs[0].weight[:10], convs[0].weight[10:])  # the stem's first conv: all components
    for conv in convs[1:]:
        half = conv.out_channels // 2
        assert torch.equal(conv.weight[:half], conv.weight[half:]) and torch.equal(conv.bias[:half], conv.bias[half:])
    for conv in convs[2:]:  # after an energy stage only its components feed on
        assert conv.weight[:, conv.in_channels // 2 :].abs().max() == 0
        assert conv.weight[:, : conv.in_channels // 2].abs().max() > 0


def _pooled_energy(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """Reference: x erf(x / sqrt 2), then the Gaussian of ENERGY_SIGMA cut to ``kernel`` taps, zero padding."""
    size = min(kernel, 2 * round(2 * ENERGY_SIGMA) + 1)
    g = gaussian_kernel1d(size, ENERGY_SIGMA).double()
    k = torch.outer(g, g)
    k = (k / k.sum()).float().expand(x.shape[1], 1, size, size).contiguous()
    return F.conv2d(x * torch.erf(x / 2**0.5), k, padding=size // 2, groups=x.shape[1])


@pytest.mark.parametrize("variant", ["a", "t"])  # t: a kernel-3 block pools in stage 2
def test_energy_stage_keeps_components_and_pools_their_energy(variant):
    torch.manual_seed(0)
    model = build_model(ModelConfig(variant=variant, image_size=64)).eval()
    for stage in model.encoder.stages:
        make_energy_stage(stage)
        channels = stage[0].gamma.numel()
        half = channels // 2
        x = torch.randn(2, channels, 12, 12)
        with torch.no_grad():
            y = stage(x)
        assert torch.equal(y[:, :half], x[:, :half])  # components pass unchanged
        expected = _pooled_energy(x[:, half:], stage[1].kernel)
        assert (y[:, half:] - expected).abs().max() < 1e-5
        # Smooth: the energy half varies far less from pixel to pixel than the components.
        assert y[:, half:].diff(dim=-1).std() < 0.5 * x[:, :half].diff(dim=-1).std()


def test_energy_stage_needs_two_blocks():
    with pytest.raises(ValueError, match="two blocks"):
        make_energy_stage(build_model(ModelConfig(variant="a", image_size=64)).encoder.stages[0][:1])


def test_encoder_images_spread_over_every_category():
    # Training indices are sorted, category by category: a prefix would see the first ones only.
    train_idx = np.arange(162)  # three categories of 54
    chosen = spread(train_idx, 64)
    assert len(chosen) == 64 and len(set(chosen.tolist())) == 64
    counts = [int(((chosen >= lo) & (chosen < lo + 54)).sum()) for lo in (0, 54, 108)]
    assert sorted(counts) == [21, 21, 22]  # the old prefix took 54 / 10 / 0
    assert np.array_equal(spread(np.arange(10), 64), np.arange(10))
