"""The MiniMaxAD networks the bench and the demo time and check.

Random weights time like trained ones only if every term a trained checkpoint has is present:
at their init (zero) GRN's gamma/beta make the export drop GRN, and a 1e-6 layer scale hides
the block branches from equivalence checks. ``random_model`` gives those terms trained-like
values, so every row times (and every check exercises) the graph a real checkpoint exports.
"""

from __future__ import annotations

from typing import Any

import torch

from mmad_edge.config import ModelConfig
from mmad_edge.model.layers import GRN, UniRepLKNetBlock
from mmad_edge.model.minimaxad import MiniMaxAD, build_model


@torch.no_grad()
def trained_like(model: MiniMaxAD) -> MiniMaxAD:
    """Give GRN gamma/beta and every layer scale non-zero, trained-like values, in place."""
    for module in model.modules():
        if isinstance(module, GRN):
            module.gamma.normal_(0, 0.5)
            module.beta.normal_(0, 0.2)
        elif isinstance(module, UniRepLKNetBlock):
            module.gamma.uniform_(0.2, 0.8)
    return model


def random_model(config: ModelConfig, seed: int = 0) -> MiniMaxAD:
    """A seeded training-form model with trained-like terms, in eval mode."""
    torch.manual_seed(seed)
    return trained_like(build_model(config)).eval()


class FeaturesOnly(torch.nn.Module):
    """The paper's timed forward (encoder + bottleneck + decoder; no map, no score): what the
    GMACs count and the GPU paper rows time."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> Any:
        return self.net.features(x)
