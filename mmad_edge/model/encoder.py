"""Frozen UniRepLKNet encoder: stem + stages 0..2, each output through its own LayerNorm."""

from __future__ import annotations

import torch
from torch import nn

from mmad_edge.config import VariantSpec
from mmad_edge.model.layers import LayerNorm2d, make_stage

# Keys of ImageNet / MiniMaxAD encoder checkpoints that the 3-stage forward never uses: the
# last downsample layer, stage 3, its norm and the classifier. They are ignored on import.
UNUSED_ENCODER_PREFIXES = ("downsample_layers.3.", "stages.3.", "norm3.", "norm.", "head.")
# The per-stage output LayerNorms MiniMaxAD adds: the ImageNet classifier has none, and the
# reference keeps them at their initial affine (weight 1, bias 0) when it loads such a file.
STAGE_NORM_PREFIXES = ("norm0.", "norm1.", "norm2.")


def conv3x3_s2(cin: int, cout: int, bias: bool = True, padding: str = "zeros") -> nn.Conv2d:
    """3x3 stride-2 conv, padded by 1. On an even-sized input only the top row and left column
    read the padding (output i covers inputs 2i-1..2i+1), so the padding decides what the
    top-left corner looks like; ``padding`` is torch's padding mode ("zeros" or "reflect")."""
    return nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=bias, padding_mode=padding)


class UniRepLKNetEncoder(nn.Module):
    """Returns [e1 (1/4), e2 (1/8), e3 (1/16)], each after its stage's LayerNorm. ``padding``:
    the stride-2 convs' padding mode (``ModelConfig.encoder_padding``)."""

    def __init__(self, spec: VariantSpec, padding: str = "zeros") -> None:
        super().__init__()
        d = spec.dims
        stem = nn.Sequential(
            conv3x3_s2(3, d[0] // 2, padding=padding), LayerNorm2d(d[0] // 2), nn.GELU(),
            conv3x3_s2(d[0] // 2, d[0], padding=padding), LayerNorm2d(d[0]),
        )
        downs = [nn.Sequential(conv3x3_s2(d[i - 1], d[i], padding=padding), LayerNorm2d(d[i])) for i in (1, 2)]
        self.downsample_layers = nn.ModuleList([stem, *downs])
        self.stages = nn.ModuleList(make_stage(d[i], spec.kernels[i]) for i in range(3))
        for i in range(3):
            self.add_module(f"norm{i}", LayerNorm2d(d[i]))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i in range(3):
            x = self.stages[i](self.downsample_layers[i](x))
            feats.append(getattr(self, f"norm{i}")(x))
        return feats
