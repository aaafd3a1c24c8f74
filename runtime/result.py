"""What the detector returns for one frame."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .artifact.contract import IS_ANOMALY, OUTPUT_NAMES, SCORE_NORMALIZED


@dataclass
class Result:
    """One frame's verdict.

    ``score`` is the raw model score; ``score_normalized`` puts the normal median at 0 and the
    threshold at 0.5, clipped to [0, 1] (scores at or below the median read 0, scores at twice the
    threshold's distance from the median or more read 1; None without export statistics);
    ``is_anomaly`` is ``score > threshold``, and True for a NaN or infinite score (a broken output
    rejects the part instead of passing it; None when no threshold is known). ``anomaly_map`` is float32 at the model size, or at the
    frame size when asked for with ``map_size="frame"``. ``timings`` are per-frame milliseconds
    (batch stages are shared equally among the batch's frames).
    """

    score: float
    score_normalized: float | None
    is_anomaly: bool | None
    threshold: float | None
    anomaly_map: np.ndarray = field(repr=False)
    timings: dict[str, float] = field(default_factory=dict)

    def detached(self) -> Result:
        """This result with its own copy of the map, to keep past the next batch (a backend may
        reuse its output buffer)."""
        return replace(self, anomaly_map=self.anomaly_map.copy())

    def to_json(self) -> dict:
        """A JSON-ready dict of everything but the map; timings in milliseconds, named ``<stage>_ms``."""
        return {
            OUTPUT_NAMES[1]: self.score,
            SCORE_NORMALIZED: self.score_normalized,
            IS_ANOMALY: self.is_anomaly,
            "threshold": self.threshold,
            "timings": {f"{stage}_ms": round(ms, 3) for stage, ms in self.timings.items()},
        }
