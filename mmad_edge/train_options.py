"""The options of ``mmad-edge train`` as one value (defaults: the reference recipe).

Torch-free: each field carries its flag and help, from which the CLI builds the command;
``mmad_edge.train`` runs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mmad_edge.flags import DATA, DEVICE, EPOCHS, IMAGE_SIZE, LAYOUT, LOSS, OUT, VARIANT
from mmad_edge.runtime.flags import BATCH_SIZE, CATEGORY, Flag


@dataclass
class TrainOptions:
    """Command-line options of ``mmad-edge train`` (defaults: the reference recipe)."""

    data: Path = DATA.field()
    out: Path = OUT.field(help="Run folder; RUN_DIR/checkpoint.pt is written each epoch.")
    layout: str = LAYOUT.field("mvtec")
    categories: Sequence[str] | None = CATEGORY.field(
        None, help="Dataset category; repeat for one unified model (default: all).")
    variant: str = VARIANT.field("a")
    image_size: int = IMAGE_SIZE.field(256)
    epochs: int = EPOCHS.field(10)
    max_steps: int | None = Flag("--max-steps", "Stop after this many optimiser steps.").field(None)
    batch_size: int = BATCH_SIZE.field(16)
    loss: str = LOSS.field("adc")
    pretrained: str | Path | None = Flag(  # a weights name (mmad_edge.weights) or a file
        "--pretrained", "UniRepLKNet ImageNet weights for the encoder: a name from `mmad-edge weights` (downloaded "
                        "once) or a .pth file. Default: the variant's ImageNet-1K weights.").field(None, cli_type=str)
    device: str = DEVICE.field("cpu")
    seed: int = Flag("--seed", "Seed of the weights, data order and hold-out split.").field(111)
    resume: bool = Flag("--resume/--no-resume", "Continue from RUN_DIR/checkpoint.pt (which must exist).").field(False)
    force: bool = Flag("--force/--no-force", "Overwrite the run already in --out.").field(False)
    lr: float = Flag("--lr", "AdamW learning rate.").field(5e-3)
    weight_decay: float = 1e-5
    lr_gamma: float = 0.995
    holdout: float = Flag("--holdout", "Fraction of good train images kept for score statistics.").field(0.1)
    threshold_rule: str = Flag("--threshold-rule", "mean+Kstd or quantile:Q.").field("mean+3std")
    augment: bool = Flag("--augment/--no-augment", "Random resized crop + flip (AeBAD-S recipe).").field(False)
    camera_augment: bool = Flag(
        "--camera-augment/--no-camera-augment", "What a compressed camera stream does to frames: JPEG 50-95 or "
        "H.264-like compression, sensor noise, small brightness and blur changes (docs/cameras.md).").field(False)
    workers: int = Flag("--workers", "Data-loading processes (0: in the main process).").field(0)
    amp: bool = True
    encoder_init: str = Flag(  # without pretrained: the variant's official ImageNet weights
        "--encoder-init", "imagenet (default: --pretrained, else the variant's official weights), texture (statistics "
                          "fitted on the training images; the offline choice) or random.").field("imagenet")
    progress: bool = True
    model_options: dict = Flag("--score", "top_percent (mean of top 1%) or max.").field(
        default_factory=dict, cli_default="top_percent", parse=lambda score: {"score_mode": score})
