"""State dicts of random tensors for given key shapes: stand-ins for the reference's checkpoints,
which cannot be downloaded in tests (key names and shapes come from tests/fixtures/)."""

from __future__ import annotations

import torch


def state_from_shapes(shapes: dict, seed: int = 0) -> dict:
    """Normal noise per key (positive running variances, so BN stays defined)."""
    g = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(*s, generator=g) for k, s in shapes.items()}
    return {k: v.abs() if k.endswith("running_var") else v for k, v in state.items()}


def trained_like_state(shapes: dict, seed: int) -> dict:
    """Random tensors at trained-network scales (fan-in scaled convs, norm weights near 1, positive
    variances), so 12 blocks of features stay finite and the comparison means something."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        noise = torch.randn(*shape, generator=g)
        if key.endswith("running_var"):
            state[key] = 0.5 + noise.abs()
        elif len(shape) == 1:
            state[key] = 1 + 0.1 * noise if key.endswith("weight") and "dwconv" not in key else 0.1 * noise
        else:
            state[key] = noise / torch.tensor(shape[1:]).prod().sqrt()
    return state
