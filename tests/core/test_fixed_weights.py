"""Hand-set UniRepLKNet layers compute exactly the functions they are programmed with."""

import math

import pytest
import torch
import torch.nn.functional as F
from model_utils import randomize

from mmad_edge.model.fixed_weights import (
    affine_block,
    behind_constant,
    pool_rectify_block,
    program_block,
    transparent_layernorm,
)
from mmad_edge.model.layers import LayerNorm2d, UniRepLKNetBlock


def block(channels: int, kernel: int) -> UniRepLKNetBlock:
    return randomize(UniRepLKNetBlock(channels, kernel)).eval()  # every part starts non-trivial


@pytest.mark.parametrize("kernel", [3, 13])
def test_affine_block_is_the_affine_map(kernel):
    g = torch.Generator().manual_seed(0)
    b = block(8, kernel)
    matrix, shift = torch.randn(8, 8, generator=g, dtype=torch.float64), torch.randn(8, generator=g, dtype=torch.float64)
    affine_block(b, matrix, shift)
    x = torch.randn(2, 8, 9, 7, generator=g) * 3
    expected = torch.einsum("dc,bchw->bdhw", matrix.float(), x) + shift.float()[None, :, None, None]
    with torch.no_grad():
        out = b(x)
    assert torch.allclose(out, expected, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("kernel", [3, 13])
def test_pool_rectify_block_pools_rectifies_and_passes(kernel):
    g = torch.Generator().manual_seed(1)
    b = block(6, kernel)
    pool = torch.rand(kernel, kernel, generator=g, dtype=torch.float64)
    pool /= pool.sum()
    pool_rectify_block(b, {1: pool, 4: pool}, [2, 3], gain=3.0)
    x = torch.randn(2, 6, 15, 15, generator=g)
    with torch.no_grad():
        out = b(x)
    pooled = F.conv2d(x[:, [1, 4]], pool.float().expand(2, 1, kernel, kernel), padding=kernel // 2, groups=2)
    assert torch.allclose(out[:, [1, 4]], pooled, atol=1e-5)
    soft_abs = x[:, [2, 3]] * torch.erf(3.0 * x[:, [2, 3]] / math.sqrt(2.0))
    assert torch.allclose(out[:, [2, 3]], soft_abs, atol=1e-5)
    assert torch.equal(out[:, [0, 5]], x[:, [0, 5]])
    far = x[:, [2, 3]].abs() > 2  # a true |x| away from zero
    assert (soft_abs >= 0).all() and torch.allclose(soft_abs[far], x[:, [2, 3]].abs()[far], atol=1e-6)


def test_block_program_wider_than_the_ffn_is_refused():
    b = block(4, 3)
    with pytest.raises(ValueError, match="needs 17 hidden units, the block has 16"):
        program_block(b, torch.zeros(4, 3, 3), torch.zeros(17, 4), torch.zeros(17), torch.zeros(4, 17))


def test_layernorm_behind_a_constant_passes_its_targets_through():
    g = torch.Generator().manual_seed(2)
    channels, count, constant = 12, 7, 1000.0
    mixing = torch.randn(count, 5, generator=g, dtype=torch.float64)
    full, bias = behind_constant(mixing, torch.zeros(count, dtype=torch.float64), channels, constant)
    assert full.shape == (channels, 5) and bias[0] == constant and bias[1] == -constant
    signals = torch.randn(3, 5, 4, 4, generator=g, dtype=torch.float64)
    inputs = torch.einsum("cj,bjhw->bchw", full, signals) + bias[None, :, None, None]
    targets = torch.einsum("cj,bjhw->bchw", mixing, signals)
    ln = LayerNorm2d(channels)
    gains, offsets = torch.linspace(0.5, 2.0, count, dtype=torch.float64), torch.full((count,), 0.25, dtype=torch.float64)
    assert inputs.sum(1).abs().max() < 1e-9  # every position sums to zero: centring is a no-op
    transparent_layernorm(ln, inputs.float(), gains, offsets)
    with torch.no_grad():
        out = ln(inputs.float()).double()
    expected = gains[None, :, None, None] * targets + offsets[None, :, None, None]
    assert (out[:, 2:count + 2] - expected).abs().max() < 2e-3 * targets.abs().max()  # only the spread varies
    assert out[:, :2].abs().max() == 0 and out[:, count + 2:].abs().max() == 0


def test_behind_constant_balances_unless_the_targets_are_pairs():
    pairs = torch.tensor([[1.0, 2.0], [-1.0, -2.0]])
    full, bias = behind_constant(pairs, torch.zeros(2), 4, 10.0)  # no balancing channel needed
    assert torch.equal(full[2:], pairs)
    with pytest.raises(ValueError, match="3 signals do not fit a layer of 5 channels \\(two are constants, one balances"):
        behind_constant(torch.ones(3, 2), torch.zeros(3), 5, 100.0)
