"""UniRepLKNet building blocks in their training form.

Attribute names follow the reference checkpoints (``dwconv.lk_origin``, ``dil_conv_k7_2``,
``pwconv1.1``, ``act.1.gamma``, ``pwconv2.2``...) so official state dicts load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmad_edge.config import DILATED_BRANCHES


class LayerNorm2d(nn.Module):
    """Channels-first LayerNorm over C of an NCHW tensor (eps 1e-6, as UniRepLKNet)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        centered = x - mean
        var = (centered * centered).mean(1, keepdim=True)
        x = centered / torch.sqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


class GRN(nn.Module):
    """Global Response Normalisation (ConvNeXt V2) on NHWC tensors.

    G = L2 norm over H, W per channel; N = G / (mean_C G + 1e-6); out = (gamma N + 1) x + beta.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, channels))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = torch.linalg.vector_norm(x, ord=2, dim=(1, 2), keepdim=True)  # subgradient 0 at 0, not NaN
        n = g / (g.mean(dim=-1, keepdim=True) + 1e-6)
        return (self.gamma * n + 1.0) * x + self.beta


class SEBlock(nn.Module):
    """Squeeze-and-excitation: global average, C -> C/4 -> C, sigmoid gate."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.down = nn.Conv2d(channels, hidden, 1, bias=True)
        self.up = nn.Conv2d(hidden, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.mean(dim=(2, 3), keepdim=True)
        w = torch.sigmoid(self.up(F.relu(self.down(w))))
        return x * w


class NCHWtoNHWC(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1)


class NHWCtoNCHW(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2)


def depthwise(channels: int, kernel: int, dilation: int = 1) -> nn.Conv2d:
    """Bias-free depthwise conv with 'same' padding for a (dilated) kernel."""
    span = dilation * (kernel - 1) + 1
    return nn.Conv2d(channels, channels, kernel, padding=span // 2, dilation=dilation, groups=channels, bias=False)


class DilatedReparamBlock(nn.Module):
    """Large depthwise kernel + BN, plus parallel dilated depthwise convs each + BN, summed."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        if kernel not in DILATED_BRANCHES:
            raise ValueError(f"no dilated-reparam branch table for kernel {kernel}")
        self.kernel = kernel
        self.branches = DILATED_BRANCHES[kernel]
        self.lk_origin = depthwise(channels, kernel)
        self.origin_bn = nn.BatchNorm2d(channels)
        for k, r in self.branches:
            setattr(self, f"dil_conv_k{k}_{r}", depthwise(channels, k, r))
            setattr(self, f"dil_bn_k{k}_{r}", nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.origin_bn(self.lk_origin(x))
        for k, r in self.branches:
            out = out + getattr(self, f"dil_bn_k{k}_{r}")(getattr(self, f"dil_conv_k{k}_{r}")(x))
        return out


class UniRepLKNetBlock(nn.Module):
    """x + layer_scale * FFN(SE(BN(dwconv(x)))), FFN = Linear, GELU, GRN, Linear, BN."""

    def __init__(self, channels: int, kernel: int, layer_scale_init: float = 1e-6) -> None:
        super().__init__()
        self.kernel = kernel
        self.dwconv = DilatedReparamBlock(channels, kernel) if kernel >= 7 else depthwise(channels, kernel)
        self.norm = nn.BatchNorm2d(channels)
        self.se = SEBlock(channels, channels // 4)
        hidden = 4 * channels
        self.pwconv1 = nn.Sequential(NCHWtoNHWC(), nn.Linear(channels, hidden))
        self.act = nn.Sequential(nn.GELU(), GRN(hidden))
        self.pwconv2 = nn.Sequential(nn.Linear(hidden, channels, bias=False), NHWCtoNCHW(), nn.BatchNorm2d(channels))
        self.gamma = nn.Parameter(torch.full((channels,), layer_scale_init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.se(self.norm(self.dwconv(x)))
        y = self.pwconv2(self.act(self.pwconv1(y)))
        return x + self.gamma[None, :, None, None] * y


def make_stage(channels: int, kernels: tuple[int, ...]) -> nn.Sequential:
    return nn.Sequential(*(UniRepLKNetBlock(channels, k) for k in kernels))
