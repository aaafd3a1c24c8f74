"""What `mmad-edge demo` was asked to do, as one value (torch-free, so the CLI builds the command
from its fields' flags; mmad_edge.app.demo runs it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mmad_edge.flags import EPOCHS, IMAGE_SIZE, LOSS, OUT, VARIANT

CATEGORIES = ("brick", "grass", "gravel")
PRESET = " (default: the demo's preset, {})"  # the flag is absent: the field's default below


@dataclass
class DemoOptions:
    """Sized to finish in under 10 minutes on 2 CPU cores (the README's main job)."""

    out: Path = OUT.field(help="Folder for data, run, exports, overlays and the report.", cli_default=Path("demo_out"))
    variant: str = VARIANT.field("a", detail=PRESET.format("a"), cli_default=None)
    image_size: int = IMAGE_SIZE.field(128, detail=PRESET.format(128), cli_default=None)
    # with 200 training images per texture: ~1.5 minutes of training on 2 CPU cores
    epochs: int = EPOCHS.field(4, detail=PRESET.format(4), cli_default=None)
    batch_size: int = 16
    # textures are feature-poor data: the paper's choice there
    loss: str = LOSS.field("global", detail=PRESET.format("global: textures are feature-poor"), cli_default=None)
    categories: tuple[str, ...] = CATEGORIES
    n_train: int = 200  # more distinct images beat more epochs on few (README, demo results)
    n_test_good: int = 60  # 60 normal and 120 defective test images per category: a category's AUROC
    n_test_defect: int = 120  # to about +-0.03, the mean to about +-0.02
    calib_count: int = 64
    bench_iters: int = 20
    seed: int = 111
    progress: bool = True
    timings: dict[str, float] = field(default_factory=dict)
