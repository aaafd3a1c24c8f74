"""Score statistics of held-out normal images: the default threshold and normalisation.

The result is the ``statistics`` section of the checkpoint and export metadata (see
docs/contracts.md) and feeds ``mmad_edge.runtime.scoring.normalize_score``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

SCORE_QUANTILES = (0.5, 0.9, 0.95, 0.99, 1.0)
MAP_QUANTILES = (0.5, 0.9, 0.95, 0.99, 0.999, 1.0)
MAX_MAP_SAMPLES = 1_000_000
SMALL_SAMPLE = 20
SMALL_SAMPLE_MARGIN = 0.1
MIN_GAP = 1e-6
_MEAN_STD = re.compile(r"^mean\+(\d+(?:\.\d+)?)std$")
_QUANTILE = re.compile(r"^quantile:(\d*\.?\d+)$")


def rule_threshold(scores: np.ndarray, rule: str) -> float:
    """The threshold a rule gives: ``mean+Kstd`` (sample std, ddof=1) or ``quantile:Q`` (0 < Q <= 1)."""
    text = rule.replace(" ", "").lower()
    match = _MEAN_STD.match(text)
    if match:
        std = float(scores.std(ddof=1)) if scores.size > 1 else 0.0
        return float(scores.mean()) + float(match.group(1)) * std
    match = _QUANTILE.match(text)
    if match and 0.0 < float(match.group(1)) <= 1.0:
        return float(np.quantile(scores, float(match.group(1))))
    raise ValueError(f"unknown threshold rule {rule!r}; use e.g. 'mean+3std' or 'quantile:0.99'")


def _quantiles(values: np.ndarray, levels: tuple[float, ...]) -> dict[str, float]:
    return {str(q): float(v) for q, v in zip(levels, np.quantile(values, levels))}


def map_quantiles(normal_maps: Any, seed: int = 0) -> dict[str, float]:
    """Quantiles of anomaly-map values, from at most ``MAX_MAP_SAMPLES`` seeded random pixels."""
    values = np.asarray(normal_maps, dtype=np.float32).reshape(-1)
    if values.size > MAX_MAP_SAMPLES:
        values = values[np.random.default_rng(seed).integers(0, values.size, MAX_MAP_SAMPLES)]
    return _quantiles(values, MAP_QUANTILES)


def score_statistics(
    normal_scores: Any, normal_maps: Any = None, rule: str = "mean+3std", seed: int = 0
) -> dict[str, Any]:
    """Threshold and normalisation from scores of held-out normal images.

    The threshold is the rule's value (``mean+3std`` or ``quantile:Q``), with two guards:

    * fewer than 20 normals: neither 3 std nor a high quantile of so few samples says much
      about the tail (a quantile sits below the maximum; the std of a few scores pooled over
      several categories can put mean + 3 std far above every defect), so the threshold is
      ``max + 0.1 * (max - median)`` instead: no held-out normal is flagged, with a margin;
    * the threshold is always above the median (``low``), so normalisation never divides by
      zero: it is at least ``median + max(1e-6 * |median|, 1e-9)`` (all scores equal).

    ``normalization`` is ``{"low": median, "high": threshold}``. ``map_values`` holds quantiles
    of ``normal_maps`` (None when no maps are given).
    """
    scores = np.asarray(normal_scores, dtype=np.float64).reshape(-1)
    if scores.size == 0:
        raise ValueError("no held-out normal scores; hold out some normal training images (e.g. 10 %)")
    if not np.isfinite(scores).all():
        raise ValueError("held-out normal scores contain NaN or inf; check the model output")
    threshold = rule_threshold(scores, rule)
    median, highest = float(np.median(scores)), float(scores.max())
    note = f"{rule} of {scores.size} held-out normal scores"
    if scores.size < SMALL_SAMPLE:
        threshold = highest + SMALL_SAMPLE_MARGIN * (highest - median)
        note = (f"max + {SMALL_SAMPLE_MARGIN:g} * (max - median) of {scores.size} held-out normal scores "
                f"(fewer than {SMALL_SAMPLE} normals: {rule} not used)")
    gap = max(MIN_GAP * abs(median), 1e-9)
    if threshold < median + gap:
        threshold = median + gap
        note += "; raised just above the median (normal scores (nearly) all equal)"
    return {
        "threshold": float(threshold),
        "normalization": {"low": median, "high": float(threshold)},
        "threshold_rule": note,
        "normal_scores": {
            "count": int(scores.size),
            "mean": float(scores.mean()),
            "std": float(scores.std(ddof=1)) if scores.size > 1 else 0.0,
            "quantiles": _quantiles(scores, SCORE_QUANTILES),
        },
        "map_values": None if normal_maps is None else {"quantiles": map_quantiles(normal_maps, seed)},
    }


def statistics_by_category(
    normal_scores: Any, normal_maps: Any, categories: Sequence[str], rule: str = "mean+3std", seed: int = 0
) -> dict[str, Any]:
    """``score_statistics`` of all held-out normals, plus ``categories``: the same per category.

    A unified model's score scale differs by category (in one demo run, normal scores near 0.06
    on gravel against 0.6 on brick), so the pooled threshold can sit far above one category's
    defects; the runtime picks a category's own numbers when told which it sees.
    """
    scores = np.asarray(normal_scores, dtype=np.float64).reshape(-1)
    names = np.asarray(list(categories))
    if names.shape != scores.shape:
        raise ValueError(f"{names.size} categories for {scores.size} held-out scores; pass one per image")
    maps = None if normal_maps is None else np.asarray(normal_maps)
    pooled = score_statistics(scores, maps, rule, seed)
    groups = sorted(set(names.tolist()))
    if len(groups) == 1:  # one category: its numbers are the pooled ones
        pooled["categories"] = {str(groups[0]): dict(pooled)}
        return pooled
    pooled["categories"] = {
        str(name): score_statistics(scores[names == name], None if maps is None else maps[names == name], rule, seed)
        for name in groups
    }
    return pooled
