"""WideResNet-50-2, the backbone RD4AD and PatchCore are benchmarked with (random weights).

Built from the architecture description (He et al. bottleneck ResNet-50 with the 3x3 width
doubled, stride on the 3x3 conv as in "ResNet v1.5"), because torchvision is not a dependency.
Output channels of layers 1..4: 256, 512, 1024, 2048 at strides 4, 8, 16, 32.
"""

from __future__ import annotations

import torch
from torch import nn

EXPANSION = 4
WIDTH_FACTOR = 2  # "wide": the bottleneck's inner width is 2x ResNet-50's
BLOCKS = (3, 4, 6, 3)
PLANES = (64, 128, 256, 512)


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    """Bias-free conv followed by BatchNorm (the pair every ResNet layer is made of)."""
    return [nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout)]


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (strided) -> 1x1 expand, plus an identity or projected shortcut."""

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        width = planes * WIDTH_FACTOR
        cout = planes * EXPANSION
        self.body = nn.Sequential(
            *conv_bn(cin, width, 1), nn.ReLU(inplace=True),
            *conv_bn(width, width, 3, stride), nn.ReLU(inplace=True),
            *conv_bn(width, cout, 1),
        )
        self.shortcut = nn.Sequential(*conv_bn(cin, cout, 1, stride)) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def make_layer(cin: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [Bottleneck(cin, planes, stride)]
    layers += [Bottleneck(planes * EXPANSION, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class WideResNet50(nn.Module):
    """The first ``depth`` residual layers of WideResNet-50-2; ``forward`` returns each layer's map.

    ``classifier=True`` (only with all four layers) adds the 1000-way ImageNet head, unused by
    ``forward``, so the parameter count can be checked against the published 68.9 M.
    """

    def __init__(self, depth: int = 3, classifier: bool = False) -> None:
        super().__init__()
        if not 1 <= depth <= 4:
            raise ValueError(f"depth must be 1..4 residual layers, got {depth}")
        if classifier and depth != 4:
            raise ValueError("the classifier head needs all 4 layers (depth=4)")
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
        )
        layers = []
        cin = 64
        for index in range(depth):
            layers.append(make_layer(cin, PLANES[index], BLOCKS[index], 1 if index == 0 else 2))
            cin = PLANES[index] * EXPANSION
        self.layers = nn.ModuleList(layers)
        self.head = nn.Linear(cin, 1000) if classifier else None

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        return features
