"""Multi-scale bottleneck: fuses e1, e2, e3 into one 1/32 feature for the decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmad_edge.config import VariantSpec
from mmad_edge.model.encoder import conv3x3_s2
from mmad_edge.model.layers import make_stage


class MultiScaleBottleneck(nn.Module):
    """e1 -> 2 strided convs, e2 -> 1 strided conv, e3 as is; concat; strided conv; blocks."""

    def __init__(self, spec: VariantSpec, depth: int = 2) -> None:
        super().__init__()
        d = spec.dims
        self.conv1, self.bn1 = conv3x3_s2(d[0], d[1], bias=False), nn.BatchNorm2d(d[1])
        self.conv2, self.bn2 = conv3x3_s2(d[1], d[2], bias=False), nn.BatchNorm2d(d[2])
        self.conv3, self.bn3 = conv3x3_s2(d[1], d[2], bias=False), nn.BatchNorm2d(d[2])
        self.conv4 = conv3x3_s2(3 * d[2], d[3], bias=False)
        self.stages = nn.ModuleList([make_stage(d[3], (3,) * depth)])

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        e1, e2, e3 = feats
        a = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(e1))))))
        b = F.relu(self.bn3(self.conv3(e2)))
        return self.stages[0](self.conv4(torch.cat([a, b, e3], dim=1)))
