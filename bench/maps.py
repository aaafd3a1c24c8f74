"""Map post-processing the peers share: upsample to the image and Gaussian smoothing on device."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def upsample(maps: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 1, h, w) -> (B, 1, size, size), bilinear."""
    return F.interpolate(maps, size=(size, size), mode="bilinear", align_corners=False)


class GaussianBlur(nn.Module):
    """Separable Gaussian filter on (B, 1, H, W) maps, reflect-padded, truncated at 4 sigma.

    The same filter as the scipy ``gaussian_filter(sigma=4)`` step of RD4AD's and PatchCore's
    evaluation (borders aside), run on the device so the benchmark times it with the model.
    """

    def __init__(self, sigma: float = 4.0, truncate: float = 4.0) -> None:
        super().__init__()
        radius = int(math.floor(truncate * sigma + 0.5))
        offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
        self.radius = radius
        self.register_buffer("kernel", kernel / kernel.sum(), persistent=False)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        r = self.radius
        kernel = self.kernel.to(maps.dtype)
        x = F.pad(maps, (r, r, 0, 0), mode="reflect")
        x = F.conv2d(x, kernel.view(1, 1, 1, -1))
        x = F.pad(x, (0, 0, r, r), mode="reflect")
        return F.conv2d(x, kernel.view(1, 1, -1, 1))
