"""Randomise a MiniMaxAD so that BN statistics, GRN and layer scale all matter; save one as a checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mmad_edge.checkpoint import save_checkpoint
from mmad_edge.config import ModelConfig
from mmad_edge.model.layers import GRN, UniRepLKNetBlock
from mmad_edge.model.minimaxad import build_model

STATISTICS = {"threshold": 0.3, "normalization": {"low": 0.1, "high": 0.3}}


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


def random_checkpoint(path: Path, variant: str = "a", size: int = 64, statistics: dict | None = STATISTICS) -> Path:
    """A project checkpoint of a randomised model (seeded), carrying ``statistics``."""
    torch.manual_seed(0)
    model = randomize(build_model(ModelConfig(variant=variant, image_size=size))).eval()
    return save_checkpoint(path, model, statistics=statistics)
