"""Hold out a few training normals to measure score statistics (threshold, normalisation)."""

from __future__ import annotations

import numpy as np


def hold_out_split(n: int, fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train_idx, holdout_idx) of ``range(n)``; the hold-out gets round(n * fraction) items.

    At least one item is held out when ``fraction`` > 0, and at least one stays for training:
    with n < 2 nothing is held out (statistics are then unavailable, not wrong).
    """
    if n < 0 or not 0.0 <= fraction < 1.0:
        raise ValueError(f"hold_out_split needs n >= 0 and 0 <= fraction < 1, got n={n}, fraction={fraction}")
    count = 0 if fraction == 0.0 or n < 2 else min(n - 1, max(1, int(round(n * fraction))))
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[count:]), np.sort(order[:count])
