"""Turn raw anomaly scores into decisions: normalisation and thresholding."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def check_threshold(value: Any) -> float | None:
    """None or a finite float: a NaN threshold would call every frame normal (``score > nan`` is False)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value):
        raise ValueError(f"threshold must be a finite number, got {value!r}; pass one such as 0.5, "
                         "or none to use the export's")
    return float(value)


def normalize_score(score: float | np.ndarray, low: float, high: float) -> float | np.ndarray:
    """Map a raw score so the normal median (``low``) is 0 and the threshold (``high``) is 0.5.

    ``clip(0.5 + 0.5 * (score - high) / (high - low), 0, 1)``: values above 0.5 are anomalous.
    The result is clipped to [0, 1]: every score at or below the normal median reads 0, and every
    score at or beyond twice the threshold's distance from the median reads 1.0 (compare raw
    ``score`` values to rank strong anomalies).
    """
    span = max(float(high) - float(low), 1e-12)
    value = np.clip(0.5 + 0.5 * (np.asarray(score, dtype=np.float64) - high) / span, 0.0, 1.0)
    return float(value) if np.ndim(value) == 0 else value
