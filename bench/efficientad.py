"""EfficientAD-S / -M (Batzner et al., 2023) at inference, random weights, for timing only.

Teacher and student are patch description networks (PDNs); the student predicts the teacher
(first 384 channels) and the autoencoder (last 384). The PDNs run without padding, as in the
authors' release, so a 256 px image gives 56 x 56 features. Dropout, a no-op at inference, is
left out of the autoencoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FEATURES = 384
# The autoencoder decoder's bilinear resize targets, fixed by the paper for 256 px inputs.
DECODER_SIZES = (3, 8, 15, 32, 63, 127)


def pdn_small(out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 128, 4), nn.ReLU(inplace=True), nn.AvgPool2d(2, 2),
        nn.Conv2d(128, 256, 4), nn.ReLU(inplace=True), nn.AvgPool2d(2, 2),
        nn.Conv2d(256, 256, 3), nn.ReLU(inplace=True),
        nn.Conv2d(256, out_channels, 4),
    )


def pdn_medium(out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 256, 4), nn.ReLU(inplace=True), nn.AvgPool2d(2, 2),
        nn.Conv2d(256, 512, 4), nn.ReLU(inplace=True), nn.AvgPool2d(2, 2),
        nn.Conv2d(512, 512, 1), nn.ReLU(inplace=True),
        nn.Conv2d(512, 512, 3), nn.ReLU(inplace=True),
        nn.Conv2d(512, out_channels, 4), nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 1),
    )


def feature_size(image_size: int) -> int:
    """Side of the PDN output: conv4 -> pool2 -> conv4 -> pool2 -> conv3 -> conv4, no padding."""
    side = (image_size - 3) // 2
    side = (side - 3) // 2
    return side - 2 - 3


class Autoencoder(nn.Module):
    """Six strided convs down to a 1 x 1 code, then resize + conv up to the feature grid."""

    def __init__(self, out_size: int) -> None:
        super().__init__()
        widths = (32, 32, 64, 64, 64)
        layers: list[nn.Module] = []
        cin = 3
        for width in widths:
            layers += [nn.Conv2d(cin, width, 4, 2, 1), nn.ReLU(inplace=True)]
            cin = width
        layers.append(nn.Conv2d(64, 64, 8))
        self.encoder = nn.Sequential(*layers)
        self.sizes = (*DECODER_SIZES, out_size)
        self.up_convs = nn.ModuleList(nn.Conv2d(64, 64, 4, 1, 2) for _ in DECODER_SIZES)
        self.head = nn.Sequential(
            nn.Conv2d(64, 64, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(64, FEATURES, 3, 1, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.encoder(x)
        for size, conv in zip(self.sizes, self.up_convs):
            x = torch.relu(conv(F.interpolate(x, size=size, mode="bilinear")))
        x = F.interpolate(x, size=self.sizes[-1], mode="bilinear")
        return self.head(x)


class EfficientAD(nn.Module):
    """Image (B, 3, S, S) normalised -> (map (B, S, S), score (B,)); map = mean of ST and AE maps.

    Teacher normalisation statistics and the map quantiles are buffers (identity values here;
    a trained model would carry its own), so the inference arithmetic is complete.
    """

    def __init__(self, size: str, image_size: int) -> None:
        super().__init__()
        if image_size < 256:
            raise ValueError(f"EfficientAD needs images of at least 256 px (its autoencoder codes 256 -> 1x1), got {image_size}")
        pdn = {"s": pdn_small, "m": pdn_medium}[size]
        self.image_size = image_size
        self.teacher = pdn(FEATURES)
        self.student = pdn(2 * FEATURES)
        self.autoencoder = Autoencoder(feature_size(image_size))
        self.register_buffer("teacher_mean", torch.zeros(1, FEATURES, 1, 1))
        self.register_buffer("teacher_std", torch.ones(1, FEATURES, 1, 1))
        # (start, end) quantiles of the student-teacher and autoencoder maps on validation images.
        self.register_buffer("quantiles", torch.tensor([0.0, 1.0, 0.0, 1.0]))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        teacher = (self.teacher(x) - self.teacher_mean) / self.teacher_std
        student = self.student(x)
        reconstruction = self.autoencoder(x)
        map_st = (teacher - student[:, :FEATURES]).pow(2).mean(dim=1, keepdim=True)
        map_ae = (reconstruction - student[:, FEATURES:]).pow(2).mean(dim=1, keepdim=True)
        q = self.quantiles
        map_st = 0.1 * (map_st - q[0]) / (q[1] - q[0])
        map_ae = 0.1 * (map_ae - q[2]) / (q[3] - q[2])
        combined = F.pad(0.5 * map_st + 0.5 * map_ae, (4, 4, 4, 4))
        combined = F.interpolate(combined, size=(self.image_size, self.image_size), mode="bilinear")[:, 0]
        return combined, combined.amax(dim=(1, 2))
