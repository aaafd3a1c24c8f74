import pytest
import torch
from model_utils import randomize

from mmad_edge.config import VARIANTS, ModelConfig
from mmad_edge.model.layers import GRN, NCHWtoNHWC, UniRepLKNetBlock
from mmad_edge.model.minimaxad import build_model
from mmad_edge.model.reparam import FusedBlock, dilate_kernel, fuse_block, reparameterize


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_reparameterized_features_match_training_form(variant, dtype, tol):
    torch.manual_seed(0)
    model = randomize(build_model(ModelConfig(variant=variant)).eval()).to(dtype)
    x = torch.randn(2, 3, 96, 64, dtype=dtype)  # non-square on purpose
    with torch.no_grad():
        enc, dec = model.features(x)
        enc2, dec2 = reparameterize(model).features(x)
    for a, b in zip(enc2 + dec2, enc + dec):
        assert a.shape == b.shape
        assert rel_l2(a, b) <= tol


def test_reparameterize_leaves_training_model_untouched_and_removes_training_ops():
    model = randomize(build_model(ModelConfig(variant="a")).eval())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    deployed = reparameterize(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(isinstance(m, (UniRepLKNetBlock, torch.nn.BatchNorm2d, NCHWtoNHWC, GRN)) for m in deployed.modules())
    assert any(isinstance(m, UniRepLKNetBlock) for m in model.modules())
    fused = [m for m in deployed.modules() if isinstance(m, FusedBlock)]
    assert all(f.dw.kernel_size[0] in (3, 13) for f in fused)


def test_grn_removed_where_gamma_is_zero_and_beta_still_folded():
    torch.manual_seed(1)
    block = UniRepLKNetBlock(16, 13).eval()
    randomize(block)
    block.act[1].gamma.data.zero_()
    fused = fuse_block(block)
    assert fused.grn_gamma is None
    x = torch.randn(1, 16, 20, 20)
    with torch.no_grad():
        assert rel_l2(fused(x), block(x)) < 1e-6


def test_dilated_kernel_has_zeros_between_taps():
    w = torch.arange(1.0, 10.0).view(1, 1, 3, 3)
    d = dilate_kernel(w, 3)
    assert d.shape[-1] == 7
    assert torch.equal(d[0, 0, ::3, ::3], w[0, 0])
    assert d.sum() == w.sum()


def test_folded_input_matches_explicit_preprocessing():
    model = randomize(build_model(ModelConfig(variant="a")).eval())
    frames = torch.randint(0, 256, (2, 64, 96, 3), dtype=torch.uint8)
    with torch.no_grad():
        ref_map, ref_score = model(frames)
        map_, score = reparameterize(model, fold_input=True)(frames)
    assert rel_l2(map_, ref_map) < 1e-5
    assert rel_l2(score, ref_score) < 1e-5
