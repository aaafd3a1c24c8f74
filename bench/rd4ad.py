"""RD4AD (Deng and Li, CVPR 2022) at inference, random weights, for timing only.

Teacher: WideResNet-50-2 layers 1-3. One-class bottleneck embedding (OCBE): multi-scale
feature fusion (strided 3x3 convs bring layers 1 and 2 to layer 3's grid, concatenated to
3072 channels) and one strided WideResNet bottleneck (-> 2048 at stride 32). Student: a
mirrored decoder whose first block per layer upsamples with a 2x2 transposed conv. The map sums
``1 - cosine`` of the three scale pairs upsampled to the image, then a sigma-4 Gaussian; the
score is its maximum.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .maps import GaussianBlur, upsample
from .wideresnet import EXPANSION, WIDTH_FACTOR, Bottleneck, WideResNet50, conv_bn


def deconv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(cin, cout, 2, 2, bias=False), nn.BatchNorm2d(cout)]


class UpBottleneck(nn.Module):
    """Decoder bottleneck: 1x1 -> 2x2 transposed conv (x2 upsample) -> 1x1, projected shortcut."""

    def __init__(self, cin: int, planes: int) -> None:
        super().__init__()
        width = planes * WIDTH_FACTOR
        cout = planes * EXPANSION
        self.body = nn.Sequential(
            *conv_bn(cin, width, 1), nn.ReLU(inplace=True),
            *deconv_bn(width, width), nn.ReLU(inplace=True),
            *conv_bn(width, cout, 1),
        )
        self.shortcut = nn.Sequential(*deconv_bn(cin, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def decoder_layer(cin: int, planes: int, blocks: int) -> nn.Sequential:
    cout = planes * EXPANSION
    return nn.Sequential(UpBottleneck(cin, planes), *(Bottleneck(cout, planes) for _ in range(blocks - 1)))


class OneClassBottleneck(nn.Module):
    """Fuse the three teacher scales at stride 16, then one strided bottleneck to stride 32."""

    def __init__(self) -> None:
        super().__init__()
        self.from_layer1 = nn.Sequential(
            *conv_bn(256, 512, 3, 2), nn.ReLU(inplace=True), *conv_bn(512, 1024, 3, 2), nn.ReLU(inplace=True)
        )
        self.from_layer2 = nn.Sequential(*conv_bn(512, 1024, 3, 2), nn.ReLU(inplace=True))
        self.embed = Bottleneck(3 * 1024, 512, stride=2)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        fused = torch.cat([self.from_layer1(features[0]), self.from_layer2(features[1]), features[2]], dim=1)
        return self.embed(fused)


class RD4AD(nn.Module):
    """Image (B, 3, S, S) normalised -> (map (B, S, S), score (B,))."""

    def __init__(self, image_size: int) -> None:
        super().__init__()
        if image_size % 32:
            raise ValueError(f"RD4AD needs an image size divisible by 32 (stride-32 embedding), got {image_size}")
        self.image_size = image_size
        self.teacher = WideResNet50(depth=3)
        self.bottleneck = OneClassBottleneck()
        # coarse to fine: 2048 -> 1024 (stride 16), -> 512 (8), -> 256 (4)
        self.decoder = nn.ModuleList(
            [decoder_layer(2048, 256, 3), decoder_layer(1024, 128, 4), decoder_layer(512, 64, 6)]
        )
        self.blur = GaussianBlur(sigma=4.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        teacher = self.teacher(x)
        y = self.bottleneck(teacher)
        total = torch.zeros(x.shape[0], 1, self.image_size, self.image_size, device=x.device, dtype=x.dtype)
        for layer, target in zip(self.decoder, reversed(teacher)):
            y = layer(y)
            distance = 1.0 - F.cosine_similarity(target, y, dim=1).unsqueeze(1)
            total = total + upsample(distance, self.image_size)
        smoothed = self.blur(total)[:, 0]
        return smoothed, smoothed.amax(dim=(1, 2))
