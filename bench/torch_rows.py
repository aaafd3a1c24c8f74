"""The bench rows that need torch: the MiniMaxAD training form, its reparameterised form, the peers.

Imported only where torch is installed (``bench.optional``); a runtime-only install lists these
rows as skipped instead.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mmad_edge.checkpoint import model_from_checkpoint, read_checkpoint
from mmad_edge.config import ModelConfig
from mmad_edge.model.minimaxad import MiniMaxAD
from mmad_edge.model.reparam import reparameterize
from mmad_edge.threads import pinned_threads as torch_threads  # noqa: F401 (suite's steady thread count; torch-only)

from .models import random_model
from .peers import PEERS
from .runner import BenchCase, peer_case, torch_module_case
from .tables import BASELINE

REPARAM = "torch-reparam"


def checkpoint_config(checkpoint: Path) -> ModelConfig:
    """The model settings a project checkpoint holds."""
    return ModelConfig.from_dict(dict(read_checkpoint(checkpoint)["config"]))


def torch_model(config: ModelConfig, checkpoint: Path | None) -> Callable[[], MiniMaxAD]:
    """Zero-argument factory of the training-form model (checkpoint weights, else random), built once.

    A checkpoint's own settings are kept, at ``config``'s image size (what the artifacts take).
    """

    @functools.cache
    def build() -> MiniMaxAD:
        if checkpoint is None:
            return random_model(config)
        raw = read_checkpoint(checkpoint)
        settings = ModelConfig.from_dict({**dict(raw["config"]), "image_size": config.image_size})
        return model_from_checkpoint(raw, str(checkpoint), settings)

    return build


def _features(net: MiniMaxAD, x: torch.Tensor) -> Callable[[], Any]:
    """The paper's timed forward: encoder + bottleneck + decoder (no map, no score)."""
    return lambda: net.features(x)


def minimaxad_cases(model: Callable[[], MiniMaxAD], batch: int, size: int) -> list[BenchCase]:
    """The training-form baseline and the reparameterised network, paper protocol."""
    trainform = torch_module_case(BASELINE, model, batch, size, wrap=_features)
    deployed = torch_module_case(REPARAM, lambda: reparameterize(model()), batch, size, wrap=_features)
    return [trainform, deployed]


def peer_cases(batch: int, size: int) -> list[BenchCase]:
    """Every peer detector, random weights, paper protocol."""
    return [peer_case(peer, batch, size) for peer in PEERS]


def row_outputs(model: Callable[[], MiniMaxAD], frames: Any) -> dict[str, Any]:
    """Scores of the two MiniMaxAD torch rows on uint8 BGR frames, each with its own network
    (training form, reparameterised) and the model's own post-processing (``bench --data``)."""
    from mmad_edge.export.parity import torch_outputs

    return {BASELINE: torch_outputs(model(), frames)[1], REPARAM: torch_outputs(reparameterize(model()), frames)[1]}
