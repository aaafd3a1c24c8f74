"""Hand-set weights that make UniRepLKNet layers compute chosen functions, without training.

The label-free fallback encoder (``mmad_edge.texture_encoder``) is written into the frozen
encoder through these, so it reparameterises, exports and deploys exactly like ImageNet weights.
Identities used:

- GELU(y) - GELU(-y) = y: an exact linear path through a block's FFN;
- y + 2 GELU(-g y) / g = y erf(g y / sqrt 2): a smooth |y| (a rectifier) in one hidden unit;
- sigmoid(30) = 1 in float32: the SE gate stays open; BN with unit statistics is the identity;
- a channels-first LayerNorm whose input sums to zero at every position and carries a large
  constant pair (+K, -K) only rescales by a near-constant: with matching affine weights it passes
  its targets through (``behind_constant`` + ``transparent_layernorm``). Targets keep their
  natural size (no offsets), so FP16 and INT8 graphs lose little.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from mmad_edge.model.layers import DilatedReparamBlock, LayerNorm2d, UniRepLKNetBlock

SE_OPEN = 30.0  # sigmoid(30) rounds to 1.0 in float32


def delta_kernel(size: int) -> torch.Tensor:
    """The identity as a (size, size) depthwise kernel (float64)."""
    kernel = torch.zeros(size, size, dtype=torch.float64)
    kernel[size // 2, size // 2] = 1.0
    return kernel


@torch.no_grad()
def identity_batchnorm(bn: nn.BatchNorm2d, bias: torch.Tensor | None = None) -> None:
    """BN (eval mode) that returns its input (plus ``bias``)."""
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0)
    bn.weight.fill_(math.sqrt(1.0 + bn.eps))
    bn.bias.copy_(torch.zeros_like(bn.bias) if bias is None else bias.to(bn.bias.dtype))


@torch.no_grad()
def program_block(
    block: UniRepLKNetBlock, depthwise: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor
) -> None:
    """out = x + w2 @ GELU(w1 @ dw(x) + b1) with dw the depthwise (C, k, k) kernels; w1 has at most
    4C rows (the FFN's width), the rest of the hidden units stay off."""
    used = w1.shape[0]
    hidden = block.pwconv1[1].out_features
    if used > hidden:
        raise ValueError(f"block program needs {used} hidden units, the block has {hidden}")
    conv = block.dwconv
    if isinstance(conv, DilatedReparamBlock):
        conv.lk_origin.weight.copy_(depthwise[:, None].to(conv.lk_origin.weight.dtype))
        identity_batchnorm(conv.origin_bn)
        for k, r in conv.branches:
            getattr(conv, f"dil_conv_k{k}_{r}").weight.zero_()
            identity_batchnorm(getattr(conv, f"dil_bn_k{k}_{r}"))
    else:
        conv.weight.copy_(depthwise[:, None].to(conv.weight.dtype))
    identity_batchnorm(block.norm)
    block.se.down.weight.zero_()
    block.se.down.bias.zero_()
    block.se.up.weight.zero_()
    block.se.up.bias.fill_(SE_OPEN)
    first, second = block.pwconv1[1], block.pwconv2[0]
    first.weight.zero_()
    first.bias.zero_()
    second.weight.zero_()
    first.weight[:used] = w1.to(first.weight.dtype)
    first.bias[:used] = b1.to(first.bias.dtype)
    second.weight[:, :used] = w2.to(second.weight.dtype)
    block.act[1].gamma.zero_()
    block.act[1].beta.zero_()
    identity_batchnorm(block.pwconv2[2])
    block.gamma.fill_(1.0)


@torch.no_grad()
def silence_block(block: UniRepLKNetBlock) -> None:
    """The block returns its input: no hidden unit on, layer scale 0 (every weight set, so a
    silenced block is the same whatever it held before)."""
    channels = block.gamma.numel()
    program_block(block, torch.zeros(channels, block.kernel, block.kernel, dtype=torch.float64),
                  torch.zeros(0, channels), torch.zeros(0), torch.zeros(channels, 0))
    block.gamma.zero_()


def affine_block(block: UniRepLKNetBlock, matrix: torch.Tensor, shift: torch.Tensor) -> None:
    """out = matrix @ x + shift, pointwise and exact (a pair of hidden units per channel)."""
    channels = matrix.shape[0]
    eye = torch.eye(channels, dtype=torch.float64)
    change = matrix.double() - eye
    w1 = torch.cat([change, -change])
    b1 = torch.cat([shift.double(), -shift.double()])
    w2 = torch.cat([eye, -eye], dim=1)
    program_block(block, torch.stack([delta_kernel(block.kernel)] * channels), w1, b1, w2)


def pool_rectify_block(
    block: UniRepLKNetBlock, pools: Mapping[int, torch.Tensor], rectify: Sequence[int], gain: float
) -> None:
    """Channels in ``pools`` become their depthwise filtering by the given (k, k) kernel; channels
    in ``rectify`` become y erf(gain y / sqrt 2), a smooth |y|; the others pass unchanged."""
    size, channels = block.kernel, block.gamma.numel()
    eye = torch.eye(channels, dtype=torch.float64)
    depthwise = torch.stack([delta_kernel(size)] * channels)
    rows, cols = [], []
    for channel, kernel in pools.items():
        depthwise[channel] = kernel.double() - delta_kernel(size)  # out = x + (kernel * x - x)
        rows += [eye[channel], -eye[channel]]
        cols += [eye[channel], -eye[channel]]
    for channel in rectify:
        rows.append(-gain * eye[channel])
        cols.append(2.0 / gain * eye[channel])
    if not rows:
        silence_block(block)
        return
    w1 = torch.stack(rows)
    program_block(block, depthwise, w1, torch.zeros(len(rows), dtype=torch.float64), torch.stack(cols, dim=1))


def behind_constant(
    kernels: torch.Tensor, bias: torch.Tensor, channels: int, constant: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lay n target filters out for a conv that feeds a LayerNorm: channels 0 and 1 hold +constant
    and -constant, channels 2..n+1 the targets, then (unless the targets come in +/- pairs) one
    balancing channel with minus their sum. Every position then sums to exactly zero, so the
    LayerNorm's centring changes nothing and its spread is nearly the constant's."""
    count = kernels.shape[0]
    scale = 1e-9 * max(float(kernels.abs().max()), float(bias.abs().max()), 1e-30)
    balance = bool(kernels.sum(0).abs().max() > scale or bias.sum().abs() > scale)  # pairs cancel to rounding
    if count + 2 + balance > channels:
        raise ValueError(f"{count} signals do not fit a layer of {channels} channels (two are constants"
                         f"{', one balances them' if balance else ''})")
    full_kernels = kernels.new_zeros(channels, *kernels.shape[1:])
    full_bias = bias.new_zeros(channels)
    full_kernels[2:count + 2] = kernels
    full_bias[2:count + 2] = bias
    if balance:
        full_kernels[count + 2] = -kernels.sum(0)
        full_bias[count + 2] = -bias.sum()
    full_bias[0], full_bias[1] = constant, -constant
    return full_kernels, full_bias


@torch.no_grad()
def transparent_layernorm(ln: LayerNorm2d, inputs: torch.Tensor, gains: torch.Tensor, offsets: torch.Tensor) -> None:
    """Affine weights after which ``ln`` maps a ``behind_constant`` layout of targets t to
    gains * t + offsets in channels 2..n+1 and 0 elsewhere. The LayerNorm's spread, which varies a
    little with the targets, is taken at its mean over ``inputs`` (the conv's output on fit images)."""
    channels, count = inputs.shape[1], gains.numel()
    spread = torch.sqrt(inputs.double().var(1, unbiased=False) + ln.eps).mean()
    weight = torch.zeros(channels, dtype=torch.float64)
    bias = torch.zeros(channels, dtype=torch.float64)
    weight[2:count + 2] = spread * gains.double()
    bias[2:count + 2] = offsets.double()
    ln.weight.copy_(weight.to(ln.weight.dtype))
    ln.bias.copy_(bias.to(ln.bias.dtype))
