"""Turn raw anomaly scores into decisions: normalisation and thresholding."""

from __future__ import annotations

import numpy as np


def normalize_score(score: "float | np.ndarray", low: float, high: float) -> "float | np.ndarray":
    """Map a raw score so the normal median (``low``) is 0 and the threshold (``high``) is 0.5.

    ``clip(0.5 + 0.5 * (score - high) / (high - low), 0, 1)``: values above 0.5 are anomalous,
    1.0 is reached at twice the threshold's distance from the normal median.
    """
    span = max(float(high) - float(low), 1e-12)
    value = np.clip(0.5 + 0.5 * (np.asarray(score, dtype=np.float64) - high) / span, 0.0, 1.0)
    return float(value) if np.ndim(value) == 0 else value
