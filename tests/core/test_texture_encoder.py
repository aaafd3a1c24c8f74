"""The label-free texture encoder: whitened statistics behind a constant, fitted deterministically,
blind to normal texture and not to defects, and exported like any other encoder weights."""

import numpy as np
import pytest
import torch

from mmad_edge.config import ModelConfig
from mmad_edge.data.defects import add_defect
from mmad_edge.data.demo import normal_crop, texture
from mmad_edge.model.minimaxad import build_model
from mmad_edge.model.reparam import reparameterize
from mmad_edge.texture_encoder import FitError, TextureDesign, fit_texture_encoder, within_group_whitening

SIZE = 64


def crops(name: str, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    source = texture(name)
    return np.stack([normal_crop(source, SIZE, rng) for _ in range(count)])


@pytest.fixture(scope="module")
def fitted():
    frames = np.concatenate([crops("brick", 12, 0), crops("gravel", 12, 1)])
    groups = ["brick"] * 12 + ["gravel"] * 12
    model = build_model(ModelConfig(variant="a", image_size=SIZE)).eval()
    sizes = fit_texture_encoder(model, torch.from_numpy(frames), groups)
    return model, frames, groups, sizes


def stage_outputs(model, frames) -> list[torch.Tensor]:
    """Each stage's output before its LayerNorm (the whitened statistics behind the constant)."""
    encoder, x, outs = model.encoder, model.preprocess(torch.as_tensor(frames)), []
    with torch.no_grad():
        for i in range(3):
            x = encoder.stages[i](encoder.downsample_layers[i](x))
            outs.append(x)
    return outs


def test_fit_is_deterministic_and_sized_per_scale(fitted):
    model, frames, groups, sizes = fitted
    assert sizes == (25, 33, 41)  # colour, 6 + 8 (+ 8 per later scale) bands, 8 opponent-colour edges
    again = build_model(ModelConfig(variant="a", image_size=SIZE))
    fit_texture_encoder(again, torch.from_numpy(frames), groups)
    for (name, a), b in zip(model.encoder.state_dict().items(), again.encoder.state_dict().values()):
        assert torch.equal(a, b), name


def test_stage_outputs_are_whitened_within_categories_behind_the_constant(fitted):
    model, frames, groups, sizes = fitted
    design = TextureDesign()
    for out, n in zip(stage_outputs(model, frames), sizes):
        assert torch.allclose(out[:, 0], torch.full_like(out[:, 0], design.output_constant), atol=1e-3)
        assert out[:, n + 1:].abs().max() < 1e-3  # spare channels stay empty
        stats = out[:, 1:n + 1].double().permute(0, 2, 3, 1)
        label = np.array(groups)
        means = [stats[torch.from_numpy(label == g)].reshape(-1, n).mean(0) for g in ("brick", "gravel")]
        covs = [torch.cov(stats[torch.from_numpy(label == g)].reshape(-1, n).T) for g in ("brick", "gravel")]
        assert (means[0] + means[1]).abs().max() < 1e-3  # centred on the mean of the category means
        eigenvalues = torch.linalg.eigvalsh((covs[0] + covs[1]) / 2)
        # whitened: unit variance, shrunk below 1 only where the ridge floor lifted a tiny variance
        assert eigenvalues.max() < 1.0 + 1e-3 and eigenvalues.median() > 0.9


def test_whitening_is_the_inverse_square_root_of_the_within_group_covariance():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(40, 3, 2, 2, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5])[None, :, None, None]
    b = a + 10.0  # a second group: same spread, other mean
    whiten, unwhiten, mean = within_group_whitening(torch.cat([a, b]), ["a"] * 40 + ["b"] * 40, ridge=0.0)
    cov = torch.cov(a.permute(0, 2, 3, 1).reshape(-1, 3).T)
    assert torch.allclose(whiten @ cov @ whiten.T, torch.eye(3, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(whiten @ unwhiten, torch.eye(3, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(mean, a.mean(dim=(0, 2, 3)) + 5.0, atol=1e-10)


@pytest.mark.parametrize("kind", ["stain", "hole", "patch"])
def test_untrained_features_single_out_a_defect(fitted, kind):
    """Distance of each pixel's statistics from the normal mean: larger inside a defect than
    anywhere on held-out normal crops, before any training."""
    model, _, _, sizes = fitted
    rng = np.random.default_rng(7)
    normals = crops("gravel", 8, 99)
    defective, masks = zip(*(add_defect(normal_crop(texture("gravel"), SIZE, rng), kind, rng, texture("brick"))
                             for _ in range(8)))
    def distance(frames):
        out = stage_outputs(model, np.stack(frames))[0]  # 1/4 scale
        return out[:, 1:sizes[0] + 1].pow(2).sum(1)  # squared whitened distance (gravel's mean is near the pooled one)

    normal_peak = distance(list(normals)).amax(dim=(1, 2))
    defect_map = distance(list(defective))
    cells = [torch.from_numpy(m.reshape(SIZE // 4, 4, SIZE // 4, 4).any(axis=(1, 3))) for m in masks]
    inside = [defect_map[i][cell].max() for i, cell in enumerate(cells) if cell.any()]
    assert len(inside) >= 6
    assert np.median([float(v) for v in inside]) > float(normal_peak.median())


def test_flat_images_and_mismatched_categories_are_refused():
    model = build_model(ModelConfig(variant="a", image_size=SIZE))
    flat = torch.full((4, SIZE, SIZE, 3), 128, dtype=torch.uint8)
    with pytest.raises(FitError, match="no edges .*pass --pretrained"):
        fit_texture_encoder(model, flat)
    with pytest.raises(ValueError, match="3 category names for 4 images"):
        fit_texture_encoder(model, torch.from_numpy(crops("grass", 4, 0)), ["grass"] * 3)
    with pytest.raises(FitError, match="at least 2"):
        fit_texture_encoder(model, torch.from_numpy(crops("grass", 1, 0)))


@pytest.mark.parametrize("variant", ["a", "t"])
def test_fitted_encoder_reparameterises_exactly(variant):
    model = build_model(ModelConfig(variant=variant, image_size=SIZE)).eval()
    fit_texture_encoder(model, torch.from_numpy(crops("grass", 6, 3)))
    x = model.preprocess(torch.from_numpy(crops("grass", 2, 4)))
    with torch.no_grad():
        enc = model.encoder(x)
        enc2 = reparameterize(model).encoder(x)
    for a, b in zip(enc2, enc):
        assert ((a - b).norm() / b.norm()).item() < 1e-5


def top_left_excess(padding: str) -> float:
    """Squared Mahalanobis distance from normal of the 1/4-scale statistics at the top-left pixel,
    over its mean at the three other corners (fitted and measured on the same normal crops)."""
    frames = torch.from_numpy(np.concatenate([crops("brick", 12, 0), crops("gravel", 12, 1)]))
    model = build_model(ModelConfig(variant="a", image_size=SIZE, encoder_padding=padding)).eval()
    n = fit_texture_encoder(model, frames, ["brick"] * 12 + ["gravel"] * 12)[0]
    distance = (stage_outputs(model, frames)[0][:, 1:n + 1] ** 2).sum(1).mean(0)
    others = (distance[0, -1] + distance[-1, 0] + distance[-1, -1]) / 3
    return float(distance[0, 0] / others)


def test_reflect_padding_keeps_the_top_left_corner_normal():
    # The stride-2 convs read their padding only at the top row and left column of an even-sized
    # input: zeros there are an edge against the mean colour, abnormal in every image (the hot
    # corner of docs/maps.md); reflected texture is normal texture.
    assert top_left_excess("zeros") > 2.5
    assert top_left_excess("reflect") < 1.6
