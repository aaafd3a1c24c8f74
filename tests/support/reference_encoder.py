"""The encoder the reference builds from the official UniRepLKNet-n weights, and the check that a
model loaded by mmad-edge computes the same features."""

from __future__ import annotations

import torch

from mmad_edge.config import VARIANTS
from mmad_edge.model.encoder import UniRepLKNetEncoder


def reference_encoder_outputs(official_state: dict) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Frames and the reference encoder's features: non-strict load, norm0..2 left at 1 / 0."""
    encoder = UniRepLKNetEncoder(VARIANTS["n"]).eval()
    used = {k: v for k, v in official_state.items() if k in encoder.state_dict()}
    missing, _ = encoder.load_state_dict(used, strict=False)
    assert sorted(missing) == [f"norm{i}.{p}" for i in range(3) for p in ("bias", "weight")]
    for i in range(3):
        norm = getattr(encoder, f"norm{i}")
        assert torch.equal(norm.weight, torch.ones_like(norm.weight)) and not norm.bias.any()
    frames = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return frames, encoder(frames)


def assert_same_encoder(model, reference_outputs) -> None:
    frames, expected = reference_outputs
    with torch.no_grad():
        got = model.encoder(frames)
    for g, e in zip(got, expected):
        assert bool(torch.isfinite(e).all()) and e.abs().max() > 0.1
        assert (torch.linalg.vector_norm(g - e) / torch.linalg.vector_norm(e)).item() < 1e-6
