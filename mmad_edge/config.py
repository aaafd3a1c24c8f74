"""One config object for the model, saved with every checkpoint and carried into exports.

Pure Python (no torch): the CLI, the export metadata and tests read it without building a
network.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Dilated reparam branches (kernel, dilation) for each large kernel size (UniRepLKNet).
DILATED_BRANCHES: dict[int, tuple[tuple[int, int], ...]] = {
    17: ((5, 1), (9, 2), (3, 4), (3, 5), (3, 7)),
    15: ((5, 1), (7, 2), (3, 3), (3, 5), (3, 7)),
    13: ((5, 1), (7, 2), (3, 3), (3, 4), (3, 5)),
    11: ((5, 1), (5, 2), (3, 3), (3, 4), (3, 5)),
    9: ((5, 1), (5, 2), (3, 3), (3, 4)),
    7: ((5, 1), (3, 2), (3, 3)),
    5: ((3, 1), (3, 2)),
}


@dataclass(frozen=True)
class VariantSpec:
    """Widths, depths and per-block kernel sizes of one UniRepLKNet variant (4 stages)."""

    dims: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    kernels: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]


def _small_kernels(depths: tuple[int, int, int, int], stage2: tuple[int, ...]) -> tuple:
    return ((3,) * depths[0], (13,) * depths[1], stage2, (13,) * depths[3])


_D_SMALL = (2, 2, 6, 2)
VARIANTS: dict[str, VariantSpec] = {
    "a": VariantSpec((40, 80, 160, 320), _D_SMALL, _small_kernels(_D_SMALL, (13,) * 6)),
    "f": VariantSpec((48, 96, 192, 384), _D_SMALL, _small_kernels(_D_SMALL, (13,) * 6)),
    "p": VariantSpec((64, 128, 256, 512), _D_SMALL, _small_kernels(_D_SMALL, (13,) * 6)),
    "n": VariantSpec((80, 160, 320, 640), (2, 2, 8, 2), _small_kernels((2, 2, 8, 2), (13,) * 8)),
    "t": VariantSpec((80, 160, 320, 640), (3, 3, 18, 3), _small_kernels((3, 3, 18, 3), (13, 3) * 9)),
    "s": VariantSpec((96, 192, 384, 768), (3, 3, 27, 3), _small_kernels((3, 3, 27, 3), (13, 3, 3) * 9)),
}

SCORE_MODES = ("top_percent", "max")
MAP_COMBINES = ("mean", "sum")
# How the encoder's stride-2 convs pad: "zeros" as UniRepLKNet (ImageNet weights, the reference);
# "reflect" for an encoder fitted here (texture), where zeros make a hot top-left corner (docs/maps.md).
ENCODER_PADDINGS = ("zeros", "reflect")


class ConfigError(ValueError):
    """A config value that no model can be built from."""


@dataclass
class ModelConfig:
    """Everything that defines the detector: network variant, input size, map and score.

    The map is the mean (or sum) of the three per-scale ``1 - cosine`` maps, bilinearly
    upsampled (align_corners) to ``image_size``, then Gaussian-smoothed. The image score is the
    mean of the top ``top_percent`` % map pixels, or the map maximum. ``encoder_padding``: how
    the encoder's stride-2 convs pad (``ENCODER_PADDINGS``).
    """

    variant: str = "n"
    image_size: int = 256
    score_mode: str = "top_percent"
    top_percent: float = 1.0
    map_combine: str = "mean"
    smoothing_sigma: float = 4.0
    smoothing_kernel: int = 5
    bottleneck_depth: int = 2
    encoder_padding: str = "zeros"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.variant not in VARIANTS:
            raise ConfigError(f"unknown variant {self.variant!r}; choose one of {', '.join(VARIANTS)}")
        if self.image_size <= 0 or self.image_size % 32:
            raise ConfigError(
                f"image size {self.image_size} is not a positive multiple of 32 "
                "(the network downsamples 32x); use e.g. 224 or 256"
            )
        if self.score_mode not in SCORE_MODES:
            raise ConfigError(f"score_mode {self.score_mode!r} not in {SCORE_MODES}")
        if not 0.0 < self.top_percent <= 100.0:
            raise ConfigError(f"top_percent must be in (0, 100], got {self.top_percent}")
        if self.map_combine not in MAP_COMBINES:
            raise ConfigError(f"map_combine {self.map_combine!r} not in {MAP_COMBINES}")
        if self.encoder_padding not in ENCODER_PADDINGS:
            raise ConfigError(f"encoder_padding {self.encoder_padding!r} not in {ENCODER_PADDINGS}")
        if self.smoothing_kernel < 0 or (self.smoothing_kernel and self.smoothing_kernel % 2 == 0):
            raise ConfigError("smoothing_kernel must be 0 (off) or an odd size")

    @property
    def spec(self) -> VariantSpec:
        return VARIANTS[self.variant]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; this checkpoint may be from a newer mmad-edge")
        return cls(**data)
