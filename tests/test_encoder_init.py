"""The PCA fallback encoder: whitened, centred, deterministic filters fitted on normal images."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmad_edge.config import ModelConfig
from mmad_edge.data.demo import normal_crop, texture
from mmad_edge.encoder_init import _strided_convs, pca_initialize_encoder
from mmad_edge.model.minimaxad import build_model


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

