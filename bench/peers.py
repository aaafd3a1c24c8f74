"""Peer detectors to time MiniMaxAD against, by name, with random weights.

Every peer takes a float (B, 3, S, S) ImageNet-normalised tensor and returns ``(map, score)``
with map (B, S, S) and score (B,), including its own map post-processing, so the comparison is
detector against detector. Weights are random: only speed is measured with these.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from .efficientad import EfficientAD
from .patchcore import PatchCore
from .rd4ad import RD4AD

_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "efficientad-s": lambda image_size: EfficientAD("s", image_size),
    "efficientad-m": lambda image_size: EfficientAD("m", image_size),
    "rd4ad-wrn50": RD4AD,
    "patchcore-wrn50": PatchCore,
}
PEERS: tuple[str, ...] = tuple(_BUILDERS)


def build_peer(name: str, image_size: int = 256, **options: Any) -> nn.Module:
    """The peer ``name`` in eval mode; ``options`` go to PatchCore (bank_size, embed_dim, ...)."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown peer {name!r}; choose one of {', '.join(PEERS)}")
    if options and name != "patchcore-wrn50":
        raise ValueError(f"peer {name!r} takes no options (got {', '.join(options)}); only patchcore-wrn50 does")
    return _BUILDERS[name](image_size, **options).eval()
