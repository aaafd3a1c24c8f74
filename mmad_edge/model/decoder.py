"""Decoder mirroring the encoder: transposed-conv upsampling + LayerNorm + UniRepLKNet stages."""

from __future__ import annotations

import torch
from torch import nn

from mmad_edge.config import VariantSpec
from mmad_edge.model.layers import LayerNorm2d, make_stage


class MirroredDecoder(nn.Module):
    """Returns [d1 (1/4), d2 (1/8), d3 (1/16)], fine to coarse, matching the encoder's shapes."""

    def __init__(self, spec: VariantSpec) -> None:
        super().__init__()
        d = spec.dims
        self.upsample_layers = nn.ModuleList(
            nn.Sequential(nn.ConvTranspose2d(d[3 - i], d[2 - i], 2, stride=2, bias=False), LayerNorm2d(d[2 - i]))
            for i in range(3)
        )
        self.stages = nn.ModuleList(make_stage(d[i], spec.kernels[i]) for i in range(3))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i in range(3):
            x = self.stages[2 - i](self.upsample_layers[i](x))
            outs.append(x)
        return outs[::-1]
