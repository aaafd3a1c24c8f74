"""The options of ``mmad-edge train`` as one value (defaults: the reference recipe).

Torch-free, so the CLI reads the defaults here for its typer options; ``mmad_edge.train`` runs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence


@dataclass
class TrainOptions:
    """Command-line options of ``mmad-edge train`` (defaults: the reference recipe)."""

    data: Path
    out: Path
    layout: str = "mvtec"
    categories: Sequence[str] | None = None
    variant: str = "a"
    image_size: int = 256
    epochs: int = 10
    max_steps: int | None = None
    batch_size: int = 16
    loss: str = "adc"
    pretrained: str | Path | None = None  # a weights name (mmad_edge.weights) or a file
    device: str = "cpu"
    seed: int = 111
    resume: bool = False
    force: bool = False
    lr: float = 5e-3
    weight_decay: float = 1e-5
    lr_gamma: float = 0.995
    holdout: float = 0.1
    threshold_rule: str = "mean+3std"
    augment: bool = False
    workers: int = 0
    amp: bool = True
    encoder_init: str = "imagenet"  # without pretrained: the variant's official ImageNet weights
    progress: bool = True
    model_options: dict = field(default_factory=dict)
