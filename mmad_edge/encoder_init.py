"""A data-driven encoder for when no ImageNet weights are at hand (demo, tests, air-gapped lines).

MiniMaxAD expects a frozen ImageNet-pretrained UniRepLKNet. Without one, random filters give
noise-like features that the decoder can neither reconstruct nor use to tell defects apart.
This sets each strided conv of the encoder's forward path (stem and downsample layers) to the
whitened principal components of its input patches, measured on normal training images
(PCANet-style): a deterministic, label-free encoder that keeps the most varied local structure
of the product.

Linear filter responses of a random texture (grass, gravel) change sign from pixel to pixel, so
the decoder cannot predict them from its 1/32 bottleneck and the error map is high everywhere.
So each stage's output carries two halves: the leading components as they are (what regular
structure such as brick needs) and their local energy, rectified and then Gaussian-pooled
(filter-rectify-filter, the classic texture model), which is smooth on normal texture and
changes where a defect is. The first two blocks of each stage compute the energy half; the
others are identities. It is a fallback, not a replacement: pass --pretrained whenever possible.
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from mmad_edge.model.anomaly_map import gaussian_kernel1d
from mmad_edge.model.layers import DilatedReparamBlock, UniRepLKNetBlock
from mmad_edge.model.minimaxad import MiniMaxAD

WHITEN = 1.0
ENERGY_SIGMA = 1.0  # pooling of the energy half, in pixels of the stage's own resolution


def _strided_convs(model: MiniMaxAD) -> list[nn.Conv2d]:
    stem = model.encoder.downsample_layers[0]
    return [stem[0], stem[3], model.encoder.downsample_layers[1][0], model.encoder.downsample_layers[2][0]]


def _patches(x: torch.Tensor, conv: nn.Conv2d, limit: int, generator: torch.Generator) -> torch.Tensor:
    cols = F.unfold(x, conv.kernel_size, conv.dilation, conv.padding, conv.stride)  # (B, C*k*k, L)
    cols = cols.transpose(1, 2).reshape(-1, cols.shape[1])
    if cols.shape[0] > limit:
        cols = cols[torch.randperm(cols.shape[0], generator=generator)[:limit]]
    return cols.double()


@torch.no_grad()
def _fit_conv(
    conv: nn.Conv2d, patches: torch.Tensor, generator: torch.Generator, whiten: float = WHITEN, eps: float = 1e-3,
    halves: bool = False, inputs: int | None = None,
) -> None:
    """Top principal components as filters, scaled by variance^(-whiten/2) (1: full whitening,
    0: plain projection, the dominant structure stays dominant); the bias centres the patches.
    ``halves``: the top out/2 components twice (the stage turns the second copy into energies).
    ``inputs``: the patches cover only the first ``inputs`` input channels; the rest get zeros."""
    mean = patches.mean(0)
    centred = patches - mean
    cov = centred.T @ centred / max(centred.shape[0] - 1, 1)
    values, vectors = torch.linalg.eigh(cov)
    order = values.argsort(descending=True)
    values, vectors = values[order], vectors[:, order]
    out = conv.out_channels // 2 if halves else conv.out_channels
    k = min(out, vectors.shape[1])
    scale = (values[:k].clamp_min(0) + eps * values[0].clamp_min(1e-12)) ** (-whiten / 2)
    filters = vectors[:, :k].T * (scale / scale[0])[:, None] / values[0].clamp_min(1e-12).sqrt()
    if k < out:  # more filters than patch dimensions: random mixtures of the whitened components
        mix = torch.randn(out - k, k, generator=generator, dtype=filters.dtype) / k**0.5
        filters = torch.cat([filters, mix @ filters])
    if halves:
        filters = torch.cat([filters, filters])
    conv.weight.zero_()
    used = conv.in_channels if inputs is None else inputs
    conv.weight[:, :used] = filters.to(conv.weight.dtype).view(conv.out_channels, used, *conv.kernel_size)
    if conv.bias is not None:
        conv.bias.copy_(-(filters @ mean).to(conv.bias.dtype))


def _identity_bn(bn: nn.BatchNorm2d) -> None:
    bn.weight.fill_(1.0)
    bn.bias.zero_()
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0 - bn.eps)  # (x - 0) / sqrt(var + eps) = x exactly


def _set_spatial(block: UniRepLKNetBlock, kernel: torch.Tensor) -> None:
    """The block's depthwise stage (every channel) becomes one plain ``kernel`` (odd, <= K)."""
    dw = block.dwconv
    if isinstance(dw, DilatedReparamBlock):
        for k, r in dw.branches:
            getattr(dw, f"dil_conv_k{k}_{r}").weight.zero_()
            _identity_bn(getattr(dw, f"dil_bn_k{k}_{r}"))
        _identity_bn(dw.origin_bn)
        dw = dw.lk_origin
    size, k = dw.kernel_size[0], kernel.shape[0]
    start = (size - k) // 2
    dw.weight.zero_()
    dw.weight[:, 0, start : start + k, start : start + k] = kernel
    _identity_bn(block.norm)


def _set_ffn(block: UniRepLKNetBlock, w1: torch.Tensor, w2: torch.Tensor, scale: torch.Tensor) -> None:
    """SE gate fully open, GRN and BNs identities: the branch is ``scale * w2 @ gelu(w1 @ y)``."""
    block.se.down.weight.zero_()
    block.se.down.bias.zero_()
    block.se.up.weight.zero_()
    block.se.up.bias.fill_(30.0)  # sigmoid(30) == 1 in float32
    block.pwconv1[1].weight.copy_(w1)
    block.pwconv1[1].bias.zero_()
    block.act[1].gamma.zero_()
    block.act[1].beta.zero_()
    block.pwconv2[0].weight.copy_(w2)
    _identity_bn(block.pwconv2[2])
    block.gamma.copy_(scale)


@torch.no_grad()
def make_energy_stage(stage: nn.Sequential, sigma: float = ENERGY_SIGMA) -> None:
    """Stage output = [x1, gauss_sigma * (x2 erf(x2 / sqrt 2))] for input [x1, x2] (halves).

    Block 0 rectifies the second half (x + 2 gelu(-x) = x erf(x / sqrt 2), a smooth |x|); block 1
    pools it (x + (gauss - identity) * x); later blocks are identities (layer scale 0).
    """
    blocks = list(stage)
    if len(blocks) < 2:
        raise ValueError("an energy stage needs at least two blocks")
    channels = blocks[0].gamma.numel()
    half = channels // 2
    second = torch.arange(half, channels)
    ones = torch.zeros(channels)
    ones[second] = 1.0
    for block in blocks[2:]:
        block.gamma.zero_()
    rectify, pool = blocks[0], blocks[1]
    delta = torch.ones(1, 1)
    _set_spatial(rectify, delta)
    hidden = rectify.pwconv1[1].out_features
    w1, w2 = torch.zeros(hidden, channels), torch.zeros(channels, hidden)
    w1[second, second] = -1.0
    w2[second, second] = 2.0
    _set_ffn(rectify, w1, w2, ones)
    # Pooling: depthwise (gauss - identity), then gelu(y) - gelu(-y) = y passes it through.
    size = min(pool.kernel, 2 * round(2 * sigma) + 1)
    g = gaussian_kernel1d(size, sigma).double()
    kernel = torch.outer(g, g)
    kernel = kernel / kernel.sum()
    kernel[size // 2, size // 2] -= 1.0
    _set_spatial(pool, kernel.float())
    w1, w2 = torch.zeros(hidden, channels), torch.zeros(channels, hidden)
    w1[second, second] = 1.0
    w1[channels + second, second] = -1.0
    w2[second, second] = 1.0
    w2[second, channels + second] = -1.0
    _set_ffn(pool, w1, w2, ones)


@torch.no_grad()
def pca_initialize_encoder(
    model: MiniMaxAD, frames: Iterable[torch.Tensor], max_patches: int = 20000, seed: int = 0
) -> int:
    """Fit the encoder's strided convs, first to last, on uint8 frame batches, each stage turned
    into [components, pooled energies] before the next conv is fitted; returns convs fitted."""
    generator = torch.Generator().manual_seed(seed)
    batches = [model.preprocess(f) for f in frames]
    if not batches:
        raise ValueError("no images to initialise the encoder from")
    convs = _strided_convs(model)
    stages = {1: model.encoder.stages[0], 2: model.encoder.stages[1], 3: model.encoder.stages[2]}
    for index, conv in enumerate(convs):
        captured: list[torch.Tensor] = []
        hook = conv.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
        try:
            for x in batches:
                model.encoder(x)
        finally:
            hook.remove()
        # After an energy stage only its components feed the next conv (the demo, 20 epochs: image
        # AUROC 0.77; 0.75 when energies feed on too, a difference within seed noise).
        inputs = conv.in_channels // 2 if index - 1 in stages else conv.in_channels
        patches = torch.cat([_patches(x[:, :inputs], conv, max_patches // len(captured) + 1, generator)
                             for x in captured])
        _fit_conv(conv, patches, generator, halves=index in stages, inputs=inputs)
        if index in stages:
            make_energy_stage(stages[index])
    return len(convs)
