"""The threshold what-if: with the frames people marked, how many false alarms and misses each
threshold would give, per category.

A frame is flagged when ``score > threshold`` (as ``Detector`` judges). A false alarm is a frame
marked good that would be flagged; a miss is one marked defect that would pass. The candidate
thresholds are the midpoints between neighbouring distinct marked scores and one step past each
end, so every distinct outcome appears once; the suggestion is the candidate with the fewest
errors, the one nearest the current threshold among equals.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..monitor.compare import tie_cumsums
from .review_store import ReviewItem


def what_if(items: Iterable[ReviewItem], thresholds: dict[str | None, float | None]) -> list[dict]:
    """One entry per category with marked items (None: frames scored by the pooled numbers):
    the counts at the current threshold (``thresholds[category]``) and at every candidate."""
    by_category: dict[str | None, list[ReviewItem]] = {}
    for item in items:
        if item.label is not None:
            by_category.setdefault(item.category, []).append(item)
    return [_category_curve(name, marked, thresholds.get(name))
            for name, marked in sorted(by_category.items(), key=lambda pair: pair[0] or "")]


def counts_at(scores: np.ndarray, defects: np.ndarray, threshold: float) -> dict:
    """False alarms and misses of ``score > threshold``."""
    flagged = scores > threshold
    return {"threshold": float(threshold), "false_alarms": int((flagged & ~defects).sum()),
            "misses": int((~flagged & defects).sum())}


def _category_curve(category: str | None, marked: list[ReviewItem], current: float | None) -> dict:
    scores = np.array([item.score for item in marked], dtype=np.float64)
    defects = np.array([item.label == "defect" for item in marked])
    count, (flagged_defects,) = tie_cumsums(scores, [defects.astype(np.int64)])  # flag score >= cut, highest first
    cuts = np.unique(scores)[::-1]
    step = max(float(np.ptp(scores)) * 0.01 or abs(float(cuts[0])) * 0.01, 1e-6)  # 1 % of the span (or the score)
    below = np.append(cuts[1:], cuts[-1] - step)
    # Flagging every score >= cut[k] is the threshold midway between cut[k] and the next lower score.
    curve = [{"threshold": float(cuts[0] + step), "false_alarms": 0, "misses": int(defects.sum())}]
    curve += [{"threshold": float((cut + low) / 2), "false_alarms": int(total - hits),
               "misses": int(defects.sum() - hits)}
              for cut, low, total, hits in zip(cuts, below, count, flagged_defects)]
    curve.reverse()  # ascending thresholds
    nearest = current if current is not None else float(np.median(scores))
    best = min(curve, key=lambda row: (row["false_alarms"] + row["misses"], abs(row["threshold"] - nearest)))
    return {"category": category, "marked": len(marked), "good": int((~defects).sum()),
            "defect": int(defects.sum()), "current": None if current is None else counts_at(scores, defects, current),
            "suggested": best, "curve": curve}
