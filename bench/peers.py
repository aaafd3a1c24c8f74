"""Peer detectors to time MiniMaxAD against, by name, with random weights.

Every peer takes a float (B, 3, S, S) ImageNet-normalised tensor and returns ``(map, score)``
with map (B, S, S) and score (B,), including its own map post-processing, so the comparison is
detector against detector. Weights are random: only speed is measured with these. The names are
torch-free (a runtime-only bench lists the peers as skipped); building one imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

PEERS: tuple[str, ...] = ("efficientad-s", "efficientad-m", "rd4ad-wrn50", "patchcore-wrn50")

# What a peer's ONNX graph (bench.peer_export) leaves out, said in its row's note.
OUTSIDE_GRAPH = {
    "patchcore-wrn50": "graph = backbone + patch embedding; the nearest-neighbour search over the memory bank, "
                       "map upsampling and smoothing stay outside it (untimed here), so this row flatters PatchCore",
}


def _builders() -> dict[str, Callable[..., nn.Module]]:
    from .efficientad import EfficientAD
    from .patchcore import PatchCore
    from .rd4ad import RD4AD

    return {
        "efficientad-s": lambda image_size: EfficientAD("s", image_size),
        "efficientad-m": lambda image_size: EfficientAD("m", image_size),
        "rd4ad-wrn50": RD4AD,
        "patchcore-wrn50": PatchCore,
    }


def build_peer(name: str, image_size: int = 256, **options: Any) -> nn.Module:
    """The peer ``name`` in eval mode; ``options`` go to PatchCore (bank_size, embed_dim, ...)."""
    if name not in PEERS:
        raise ValueError(f"unknown peer {name!r}; choose one of {', '.join(PEERS)}")
    if options and name != "patchcore-wrn50":
        raise ValueError(f"peer {name!r} takes no options (got {', '.join(options)}); only patchcore-wrn50 does")
    return _builders()[name](image_size, **options).eval()
