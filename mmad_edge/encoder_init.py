"""A data-driven encoder for when no ImageNet weights are at hand (demo, tests, air-gapped lines).

MiniMaxAD expects a frozen ImageNet-pretrained UniRepLKNet. Without one, random filters give
noise-like features that the decoder can neither reconstruct nor use to tell defects apart.
This sets each strided conv of the encoder's forward path (stem and downsample layers) to the
whitened principal components of its input patches, measured on normal training images
(PCANet-style): a deterministic, label-free encoder that keeps the most varied local structure
of the product. It is a fallback, not a replacement: pass --pretrained whenever possible.
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from mmad_edge.model.minimaxad import MiniMaxAD

WHITEN = 1.0


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
    conv: nn.Conv2d, patches: torch.Tensor, generator: torch.Generator, whiten: float = WHITEN, eps: float = 1e-3
) -> None:
    """Top principal components as filters, scaled by variance^(-whiten/2) (1: full whitening,
    0: plain projection, the dominant structure stays dominant); the bias centres the patches."""
    mean = patches.mean(0)
    centred = patches - mean
    cov = centred.T @ centred / max(centred.shape[0] - 1, 1)
    values, vectors = torch.linalg.eigh(cov)
    order = values.argsort(descending=True)
    values, vectors = values[order], vectors[:, order]
    out = conv.out_channels
    k = min(out, vectors.shape[1])
    scale = (values[:k].clamp_min(0) + eps * values[0].clamp_min(1e-12)) ** (-whiten / 2)
    filters = vectors[:, :k].T * (scale / scale[0])[:, None] / values[0].clamp_min(1e-12).sqrt()
    if k < out:  # more filters than patch dimensions: random mixtures of the whitened components
        mix = torch.randn(out - k, k, generator=generator, dtype=filters.dtype) / k**0.5
        filters = torch.cat([filters, mix @ filters])
    weight = filters.to(conv.weight.dtype).view_as(conv.weight)
    conv.weight.copy_(weight)
    if conv.bias is not None:
        conv.bias.copy_(-(filters @ mean).to(conv.bias.dtype))


@torch.no_grad()
def pca_initialize_encoder(
    model: MiniMaxAD, frames: Iterable[torch.Tensor], max_patches: int = 20000, seed: int = 0
) -> int:
    """Fit the encoder's strided convs, first to last, on uint8 frame batches; returns convs fitted."""
    generator = torch.Generator().manual_seed(seed)
    batches = [model.preprocess(f) for f in frames]
    if not batches:
        raise ValueError("no images to initialise the encoder from")
    convs = _strided_convs(model)
    for conv in convs:
        captured: list[torch.Tensor] = []
        hook = conv.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
        try:
            for x in batches:
                model.encoder(x)
        finally:
            hook.remove()
        patches = torch.cat([_patches(x, conv, max_patches // len(captured) + 1, generator) for x in captured])
        _fit_conv(conv, patches, generator)
    return len(convs)
