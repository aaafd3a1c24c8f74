"""Draw a result for people: heat map blended on the frame, score text, red border if anomalous."""

from __future__ import annotations

import cv2
import numpy as np

from ..imageio import to_bgr_uint8
from ..result import Result
from ..scoring import normalize_score

RED = (0, 0, 255)
GREEN = (0, 200, 0)


def normalized_map(anomaly_map: np.ndarray, normalization: tuple[float, float] | None) -> np.ndarray:
    """Map values in [0, 1]: on the score scale (threshold = 0.5) when the export had
    statistics, so colours mean the same in every frame; else stretched per frame."""
    if normalization is not None:
        return np.asarray(normalize_score(anomaly_map, *normalization), dtype=np.float32)
    low, high = float(anomaly_map.min()), float(anomaly_map.max())
    return ((anomaly_map - low) / max(high - low, 1e-12)).astype(np.float32)


def map_image(anomaly_map: np.ndarray, normalization: tuple[float, float] | None) -> np.ndarray:
    """The normalised map as an 8-bit grayscale image (for PNG files)."""
    return np.round(normalized_map(anomaly_map, normalization) * 255.0).astype(np.uint8)


def render_overlay(
    frame: np.ndarray,
    result: Result,
    normalization: tuple[float, float] | None,
    alpha: float = 0.45,
) -> np.ndarray:
    """A BGR uint8 copy of ``frame`` with the coloured map, the score and a verdict border."""
    frame = to_bgr_uint8(frame)
    height, width = frame.shape[:2]
    heat = cv2.applyColorMap(map_image(result.anomaly_map, normalization), cv2.COLORMAP_JET)
    if heat.shape[:2] != (height, width):
        heat = cv2.resize(heat, (width, height), interpolation=cv2.INTER_LINEAR)
    canvas = cv2.addWeighted(frame, 1.0 - alpha, heat, alpha, 0.0)
    text = f"score {result.score:.4f}"
    if result.score_normalized is not None:
        text += f"  ({result.score_normalized:.2f})"
    color = RED if result.is_anomaly else GREEN
    scale = max(0.4, width / 900.0)
    origin = (8, int(24 * scale) + 6)
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, color, max(1, int(2 * scale)), cv2.LINE_AA)
    if result.is_anomaly:
        border = max(3, width // 100)
        cv2.rectangle(canvas, (0, 0), (width - 1, height - 1), RED, border)
    return canvas
