"""Hold out a few training normals to measure score statistics (threshold, normalisation), and
thin a sorted list evenly without losing any part of it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _count(n: int, fraction: float) -> int:
    """round(n * fraction), but at least one when fraction > 0 and never the last one."""
    return 0 if fraction == 0.0 or n < 2 else min(n - 1, max(1, int(round(n * fraction))))


def hold_out_split(
    n: int, fraction: float = 0.1, seed: int = 0, groups: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train_idx, holdout_idx) of ``range(n)``; the hold-out gets round(n * fraction) items.

    At least one item is held out when ``fraction`` > 0, and at least one stays for training:
    with n < 2 nothing is held out (statistics are then unavailable, not wrong). ``groups`` (one
    category name per item) applies the rule within each category, so every category of a
    unified run gets its own held-out normals (its own threshold); one group splits exactly
    as no groups.
    """
    if n < 0 or not 0.0 <= fraction < 1.0:
        raise ValueError(f"hold_out_split needs n >= 0 and 0 <= fraction < 1, got n={n}, fraction={fraction}")
    labels = np.zeros(n, dtype=int) if groups is None else np.asarray(list(groups))
    if labels.shape != (n,):
        raise ValueError(f"hold_out_split got {labels.size} group labels for {n} items")
    rng = np.random.default_rng(seed)
    train, held = [], []
    for name in sorted(set(labels.tolist())):
        members = rng.permutation(np.flatnonzero(labels == name))
        count = _count(members.size, fraction)
        held.append(members[:count])
        train.append(members[count:])
    empty = np.zeros(0, dtype=int)
    return np.sort(np.concatenate(train or [empty])), np.sort(np.concatenate(held or [empty]))


def evenly_spaced(indices: np.ndarray, count: int) -> np.ndarray:
    """``count`` items evenly spaced over ``indices``, first and last included (all when fewer).
    Records are sorted, category by category: a prefix would see only the first categories."""
    if len(indices) <= count:
        return indices
    return indices[np.linspace(0, len(indices) - 1, count).round().astype(int)]
