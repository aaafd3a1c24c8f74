"""uint8 BGR NHWC frames -> ImageNet-normalised RGB NCHW floats, inside the network.

Training, evaluation and the exported graph all start from the same uint8 frame, so the
deployed detector cannot drift from what was trained.
"""

from __future__ import annotations

import torch
from torch import nn

from mmad_edge.config import IMAGENET_MEAN, IMAGENET_STD


class Preprocess(nn.Module):
    """(B, H, W, 3) uint8 BGR -> (B, 3, H, W) float32 RGB, (x / 255 - mean) / std."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.dim() != 4 or image.shape[-1] != 3:
            raise ValueError(f"expected uint8 frames of shape (B, H, W, 3), got {tuple(image.shape)}")
        x = image.permute(0, 3, 1, 2).flip(1).float() / 255.0
        return (x - self.mean) / self.std
