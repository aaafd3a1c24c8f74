"""A texture-statistics encoder fitted on normal images, for when no ImageNet weights are at hand
(the demo, the tests, air-gapped lines). Pass --pretrained whenever you can.

MiniMaxAD scores 1 - cosine between frozen encoder features and their reconstruction. Linear
features of a busy texture (e.g. PCA filters) change with every shift of the texture, so the
decoder cannot reconstruct them and the error is high everywhere. This encoder computes what
stays put in a normal texture and moves at a defect, in the manner of a scattering transform:

- per stage, the local colour and the energies (smooth |.|) of oriented first and second
  derivative filters of the luminance at every scale so far (four orientations; each 3x3 filter
  applied at 1, 1/2, 1/4 and 1/8 resolution), and from 1/4 on the energies of opponent-colour
  edges, each pooled by the stride-2 convs and the stage's first block;
- whitened by their covariance within each category of the normal images (the spread between
  categories is left to the decoder) and set behind a constant channel, so that 1 - cosine of
  the stage's LayerNorm output grows with the squared Mahalanobis distance from normal.

All of it is written into the UniRepLKNet weights (``fixed_weights``): the stem and downsample
convs filter and pool, their LayerNorms are made transparent, each stage's first block rectifies
and pools, its last block whitens, the other blocks are off. Filter gains and whitening come from
the images; nothing is random. On the demo textures this reaches image AUROC ~0.99 (the README).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mmad_edge.model.fixed_weights import (
    affine_block,
    behind_constant,
    pool_rectify_block,
    silence_block,
    transparent_layernorm,
)
from mmad_edge.model.minimaxad import MiniMaxAD

ORIENTATIONS = 4
OPPONENTS = ((1.0, -1.0, 0.0), (0.5, 0.5, -1.0))  # red-green, yellow-blue (orthogonal to grey)


@dataclass(frozen=True)
class TextureDesign:
    """Settings of the fitted encoder (defaults chosen on the demo textures; README)."""

    gain: float = 3.0  # rectifier y erf(gain y / sqrt 2) on unit-spread band responses
    ln_constant: float = 100.0  # constant pair that keeps the inner LayerNorms linear
    output_constant: float = 20.0  # constant channel before each stage's output LayerNorm
    pool_sigma: tuple[float, float, float] = (0.0, 0.5, 0.5)  # first block's Gaussian, stage pixels
    ridge: float = 1e-3  # whitening floor, relative to the mean variance


class FitError(ValueError):
    """Images the encoder cannot be fitted on."""


def band_filters(sigma: float = 0.8) -> torch.Tensor:
    """(8, 3, 3) float64, zero-mean, unit L2 norm: first Gaussian derivatives at 0, 45, 90 and 135
    degrees (edges), then second derivatives at 0, 90, 45 and 135 (lines): a prefix keeps the most
    useful ones."""
    t = torch.arange(-1, 2, dtype=torch.float64)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    g = torch.exp(-(xx * xx + yy * yy) / (2 * sigma * sigma))
    filters = []
    for order, turns in ((1, (0, 1, 2, 3)), (2, (0, 2, 1, 3))):
        for k in turns:
            u = xx * math.cos(math.pi * k / ORIENTATIONS) + yy * math.sin(math.pi * k / ORIENTATIONS)
            f = -u * g if order == 1 else (u * u / sigma**2 - 1.0) * g
            f = f - f.mean()
            filters.append(f / f.norm())
    return torch.stack(filters)


def binomial3() -> torch.Tensor:
    row = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)
    return torch.outer(row, row) / 16.0


def gaussian_kernel(size: int, sigma: float) -> torch.Tensor:
    """(size, size) normalised Gaussian; the identity when sigma is 0."""
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-t * t / (2 * sigma * sigma)) if sigma > 0 else (t == 0).double()
    kernel = torch.outer(g, g)
    return kernel / kernel.sum()


@dataclass
class Signals:
    """Named signals read pointwise from a tensor's channels: s = R @ channels + r. ``kinds``:
    "colour" (r, g, b first), "energy" (rectified, pooled) or "band" (linear, to be rectified)."""

    R: torch.Tensor
    r: torch.Tensor
    kinds: list[str]

    def read(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("sc,bchw->bshw", self.R.to(x.dtype), x) + self.r.to(x.dtype)[None, :, None, None]

    @classmethod
    def picked(cls, kinds: list[str], channels: int, first: int = 2) -> Signals:
        """Signal j is channel first + j."""
        R = torch.zeros(len(kinds), channels, dtype=torch.float64)
        R[torch.arange(len(kinds)), first + torch.arange(len(kinds))] = 1.0
        return cls(R, torch.zeros(len(kinds), dtype=torch.float64), kinds)


def _unit_spread(values: torch.Tensor, what: str) -> torch.Tensor:
    """Per-channel standard deviation of (N, C, H, W) responses (computed without padding, so the
    image border is not an edge); refuses flat images."""
    spread = values.double().std(dim=(0, 2, 3))
    if bool((spread < 1e-6).any()):
        raise FitError(f"cannot fit the texture encoder: the images show no {what} (flat images?); "
                       "train on real product images or pass --pretrained")
    return spread


def _target_means(kernels: torch.Tensor, signals: Signals, h: torch.Tensor) -> torch.Tensor:
    """Mean of each target sum_j kernels[o, j] * s_j over the fit images (borders aside)."""
    return torch.einsum("ojyx,j->o", kernels, signals.read(h).double().mean(dim=(0, 2, 3)))


@torch.no_grad()
def _set_conv(conv: nn.Conv2d, kernels: torch.Tensor, means: torch.Tensor, signals: Signals, constant: float) -> None:
    """conv computes the centred targets sum_j kernels[o, j] * s_j - means[o] behind the constants."""
    full, bias = behind_constant(kernels, -means, conv.out_channels, constant)
    conv.weight.copy_(torch.einsum("ojyx,jc->ocyx", full, signals.R).to(conv.weight.dtype))
    conv.bias.copy_((bias + torch.einsum("ojyx,j->o", full, signals.r)).to(conv.bias.dtype))


def _fit_stem_conv(stem: nn.Sequential, x: torch.Tensor, design: TextureDesign) -> tuple[Signals, torch.Tensor]:
    """conv 3x3/2 -> LN -> GELU: colours (binomial low-pass) and rectified luminance bands, each as
    a +/- pair: GELU(y) - GELU(-y) = y passes a colour, GELU(g y) + GELU(-g y) rectifies a band.
    As many bands as the stem is wide enough for (6 of 8 for variant a)."""
    conv, ln, act = stem[0], stem[1], stem[2]
    count = min(2 * ORIENTATIONS, (conv.out_channels - 2 - 6) // 2)
    bands = band_filters()[:count]
    spread = _unit_spread(F.conv2d(x.double().mean(1, keepdim=True), bands[:, None], stride=2), "edges")
    kernels = []
    for c in range(3):
        k = torch.zeros(3, 3, 3, dtype=torch.float64)
        k[c] = binomial3()
        kernels += [k, -k]
    for band, sd in zip(bands, spread):
        k = (band / sd / 3.0).expand(3, 3, 3)
        kernels += [k, -k]
    kernels = torch.stack(kernels)
    rgb = Signals.picked(["colour"] * 3, 3, first=0)
    means = _target_means(kernels, rgb, x)
    _set_conv(conv, kernels, means, rgb, design.ln_constant)
    v = conv(x)
    gains = torch.tensor([1.0] * 6 + [design.gain] * (2 * count), dtype=torch.float64)
    transparent_layernorm(ln, v, gains, torch.zeros_like(gains))
    R = torch.zeros(3 + count, conv.out_channels, dtype=torch.float64)
    for c in range(3):
        R[c, 2 + 2 * c], R[c, 3 + 2 * c] = 1.0, -1.0  # GELU(c - m) - GELU(m - c) = c - m
    for i in range(count):
        R[3 + i, 8 + 2 * i: 10 + 2 * i] = 1.0 / design.gain  # (GELU(g y) + GELU(-g y)) / g = y erf(g y / sqrt 2)
    r = torch.cat([means[0:6:2], torch.zeros(count, dtype=torch.float64)])
    return Signals(R, r, ["colour"] * 3 + ["energy"] * count), act(ln(v))


def _fit_downsample(
    conv: nn.Conv2d, ln: nn.Module, signals: Signals, h: torch.Tensor, design: TextureDesign, chroma: bool
) -> tuple[Signals, torch.Tensor]:
    """conv 3x3/2 -> LN: binomial-pooled copies of every signal, the luminance bands at this
    resolution and, with ``chroma``, the opponent-colour edges; the LayerNorm made transparent."""
    s = signals.read(h)
    n = s.shape[1]
    bands = band_filters()
    colour = s[:, :3].double()
    planes = [(torch.full((3,), 1.0 / 3.0, dtype=torch.float64), bands)]
    if chroma:
        planes += [(torch.tensor(o, dtype=torch.float64), bands[:ORIENTATIONS]) for o in OPPONENTS]
    kernels = []
    for j in range(n):
        k = torch.zeros(n, 3, 3, dtype=torch.float64)
        k[j] = binomial3()
        kernels.append(k)
    for mix, filters in planes:
        plane = torch.einsum("c,bchw->bhw", mix, colour)[:, None]
        spread = _unit_spread(F.conv2d(plane, filters[:, None], stride=2), "edges")
        for f, sd in zip(filters, spread):
            k = torch.zeros(n, 3, 3, dtype=torch.float64)
            k[:3] = mix[:, None, None] * (f / sd)
            kernels.append(k)
    kernels = torch.stack(kernels)
    kinds = signals.kinds + ["band"] * (len(kernels) - n)
    means = _target_means(kernels, signals, h)
    _set_conv(conv, kernels, means, signals, design.ln_constant)
    v = conv(h)
    transparent_layernorm(ln, v, torch.ones(len(kinds), dtype=torch.float64), means)
    return Signals.picked(kinds, conv.out_channels), ln(v)


def within_group_whitening(
    samples: torch.Tensor, groups: Sequence[str], ridge: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(W, W^-1, mean) of (N, n, H, W) samples: ZCA of the mean within-group covariance (every
    group weighs the same), floored at ``ridge`` times the mean variance; mean of the group means."""
    n = samples.shape[1]
    names = sorted(set(groups))
    label = torch.tensor([names.index(g) for g in groups])
    values = samples.double().permute(0, 2, 3, 1)
    covariances, means = [], []
    for index in range(len(names)):
        flat = values[label == index].reshape(-1, n)
        means.append(flat.mean(0))
        covariances.append(torch.cov(flat.T).reshape(n, n))
    covariance = torch.stack(covariances).mean(0)
    covariance = covariance + ridge * covariance.diagonal().mean() * torch.eye(n, dtype=torch.float64)
    eigenvalues, vectors = torch.linalg.eigh(covariance)
    return ((vectors * eigenvalues.rsqrt()) @ vectors.T, (vectors * eigenvalues.sqrt()) @ vectors.T,
            torch.stack(means).mean(0))


def _fit_stage(
    stage: nn.Sequential, x: torch.Tensor, signals: Signals, groups: Sequence[str], design: TextureDesign, sigma: float
) -> tuple[Signals, torch.Tensor]:
    """First block: bands rectified, the rest pooled; last block: whitening behind a constant.
    ``signals`` sit in channels 2..n+1 of ``x`` (as a downsample lays them out)."""
    if len(stage) < 2:
        raise ValueError("the texture encoder needs at least two blocks per stage")
    channels, first, last = x.shape[1], stage[0], stage[len(stage) - 1]
    pool = gaussian_kernel(first.kernel, sigma)
    pools = {2 + j: pool for j, kind in enumerate(signals.kinds) if kind != "band"} if sigma > 0 else {}
    rectify = [2 + j for j, kind in enumerate(signals.kinds) if kind == "band"]
    pool_rectify_block(first, pools, rectify, design.gain)
    for block in stage[1:]:
        silence_block(block)
    kinds = [kind if kind != "band" else "energy" for kind in signals.kinds]
    n = len(kinds)
    whiten, unwhiten, mean = within_group_whitening(first(x)[:, 2:n + 2], groups, design.ridge)
    matrix = torch.zeros(channels, channels, dtype=torch.float64)
    shift = torch.zeros(channels, dtype=torch.float64)
    matrix[1:n + 1, 2:n + 2] = whiten  # statistics move to channels 1..n, behind the constant in 0
    shift[1:n + 1] = -whiten @ mean
    shift[0] = design.output_constant
    affine_block(last, matrix, shift)
    R = torch.zeros(n, channels, dtype=torch.float64)
    R[:, 1:n + 1] = unwhiten  # what the next downsample conv reads: the statistics themselves
    return Signals(R, mean.clone(), kinds), stage(x)


@torch.no_grad()
def fit_texture_encoder(
    model: MiniMaxAD, frames: torch.Tensor, groups: Sequence[str] | None = None, design: TextureDesign = TextureDesign()
) -> tuple[int, ...]:
    """Write the texture encoder into ``model.encoder``, fitted on uint8 BGR frames (B, H, W, 3)
    of normal images; ``groups``: each frame's category (whitening is within categories).
    Returns the number of statistics behind each of the three encoder outputs."""
    if frames.shape[0] < 2:
        raise FitError("the texture encoder needs at least 2 normal images to fit on")
    groups = list(groups) if groups is not None else ["all"] * frames.shape[0]
    if len(groups) != frames.shape[0]:
        raise ValueError(f"{len(groups)} category names for {frames.shape[0]} images")
    encoder = model.encoder.eval()
    x = model.preprocess(frames)
    stem = encoder.downsample_layers[0]
    signals, h = _fit_stem_conv(stem, x, design)
    signals, h = _fit_downsample(stem[3], stem[4], signals, h, design, chroma=True)
    sizes = []
    for i in range(3):
        if i:
            down = encoder.downsample_layers[i]
            signals, h = _fit_downsample(down[0], down[1], signals, h, design, chroma=False)
        signals, h = _fit_stage(encoder.stages[i], h, signals, groups, design, design.pool_sigma[i])
        sizes.append(len(signals.kinds))
    return tuple(sizes)
