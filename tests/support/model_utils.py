"""Randomise a MiniMaxAD so that BN statistics, GRN and layer scale all matter."""

from __future__ import annotations

import torch
from torch import nn

from mmad_edge.model.layers import GRN, UniRepLKNetBlock


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.normal_(0, 0.5, generator=g)
                mod.running_var.uniform_(0.5, 2.0, generator=g)
                mod.weight.uniform_(0.5, 1.5, generator=g)
                mod.bias.normal_(0, 0.2, generator=g)
            elif isinstance(mod, GRN):
                mod.gamma.normal_(0, 0.5, generator=g)
                mod.beta.normal_(0, 0.2, generator=g)
            elif isinstance(mod, UniRepLKNetBlock):
                mod.gamma.uniform_(0.2, 0.8, generator=g)
    return model
