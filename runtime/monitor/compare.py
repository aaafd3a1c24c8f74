"""Neutral comparison of detector outputs, numpy only: maps, scores, ranks and AUROC.

Shared by export verification, INT8 calibration, the runtime's users and the benchmarks so that
"how close is this graph to its reference" means one thing everywhere. AUROC, AP and F1-max come
from one sort: cumulative counts are read at the end of every group of tied scores, exactly how
scikit-learn builds its curves.

``error_metrics`` judges a candidate graph against its reference on the detector's own outputs:
``map_max_abs``, ``map_relative`` (max abs error / max |reference map|), ``score_relative``
(max over images of |Δscore| / |score|), ``spearman``, ``auroc_reference``, ``auroc`` and
``auroc_drop`` (with labels of both classes), and ``score_error`` (RMS score error in units of
the reference scores' spread, the continuous measure the sensitivity search ranks layers by).
"""

from __future__ import annotations

from typing import Any

import numpy as np

Outputs = tuple[np.ndarray, np.ndarray]  # maps (N, H, W), scores (N,)


def flat_scores(scores: Any) -> np.ndarray:
    """Scores as one flat float array; NaN is refused (it would sort arbitrarily)."""
    values = np.asarray(scores)
    values = values.astype(np.float64) if values.dtype.kind != "f" else values
    values = values.reshape(-1)
    if np.isnan(values).any():
        raise ValueError("scores contain NaN; check the model output (NaN weights or inputs)")
    return values


def tie_cumsums(scores: np.ndarray, columns: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Sort scores descending; return the pixel count and each column's running sum at the
    last position of every tie group (i.e. at every distinct threshold, highest first)."""
    order = np.argsort(scores)[::-1]
    ordered = scores[order]
    ends = np.flatnonzero(ordered[1:] != ordered[:-1])
    ends = np.append(ends, ordered.size - 1)
    sums = [np.cumsum(column[order], dtype=np.float64)[ends] for column in columns]
    return (ends + 1).astype(np.float64), sums


def trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) * 0.5))


def curve_metrics(count: np.ndarray, tps: np.ndarray) -> dict[str, float | None]:
    """AUROC, AP and F1-max from cumulative (count, true positive) pairs; None for one class."""
    fps = count - tps
    positives, negatives = tps[-1], fps[-1]
    if positives == 0 or negatives == 0:
        return {"auroc": None, "ap": None, "f1_max": None}
    tpr = np.concatenate(([0.0], tps / positives))
    fpr = np.concatenate(([0.0], fps / negatives))
    precision = tps / count
    recall = tps / positives
    ap = float(np.sum(np.diff(np.concatenate(([0.0], recall))) * precision))
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(denominator), where=denominator > 0)
    return {"auroc": trapezoid(tpr, fpr), "ap": ap, "f1_max": float(f1.max())}


def binary_metrics(labels: Any, scores: Any) -> dict[str, float | None]:
    """{"auroc", "ap", "f1_max"} of scores against 0/1 labels (any shape; pixels too), one sort."""
    truth = np.asarray(labels).reshape(-1).astype(bool)
    values = flat_scores(scores)
    if truth.size != values.size:
        raise ValueError(f"labels ({truth.size}) and scores ({values.size}) differ in size")
    if values.size == 0:
        return {"auroc": None, "ap": None, "f1_max": None}
    count, (tps,) = tie_cumsums(values, [truth])
    return curve_metrics(count, tps)


def auroc(labels: Any, scores: Any) -> float | None:
    """Area under the ROC curve (equal to scikit-learn's, ties included); None for one class."""
    return binary_metrics(labels, scores)["auroc"]


def ranks(values: Any) -> np.ndarray:
    """1-based ranks of a 1-D array, tied values sharing their average rank (scipy's "average")."""
    data = np.asarray(values, dtype=np.float64).reshape(-1)
    order = np.argsort(data, kind="mergesort")
    ordered = data[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    ends = np.append(starts[1:], ordered.size)
    average = (starts + ends + 1) / 2.0  # mean of the 1-based positions starts+1 .. ends
    result = np.empty(data.size, dtype=np.float64)
    result[order] = np.repeat(average, ends - starts)
    return result


def spearman(a: Any, b: Any) -> float | None:
    """Spearman's rank correlation (ties get average ranks); None for < 2 values or a constant side."""
    ra, rb = ranks(a), ranks(b)
    if ra.size < 2 or np.ptp(ra) == 0 or np.ptp(rb) == 0:
        return None
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float(np.sum(ra * rb) / np.sqrt(np.sum(ra * ra) * np.sum(rb * rb)))


def error_metrics(reference: Outputs, candidate: Outputs, labels: np.ndarray | None = None) -> dict[str, float | None]:
    """Map / score errors, rank correlation and, when ``labels`` hold both classes, both AUROCs
    and their difference (None otherwise: AUROC needs normal and defective images)."""
    ref_map, ref_score = (np.asarray(x, dtype=np.float64) for x in reference)
    cand_map, cand_score = (np.asarray(x, dtype=np.float64) for x in candidate)
    if cand_map.shape != ref_map.shape or cand_score.shape != ref_score.shape:
        raise ValueError(f"output shapes differ: map {cand_map.shape} vs {ref_map.shape}, score {cand_score.shape} "
                         f"vs {ref_score.shape}; the ONNX was exported for another image size")
    tiny = np.finfo(np.float32).tiny
    map_abs = float(np.max(np.abs(cand_map - ref_map)))
    score_diff = cand_score - ref_score
    spread = max(float(np.std(ref_score)), 1e-6 * float(np.mean(np.abs(ref_score))), tiny)
    metrics: dict[str, float | None] = {
        "map_max_abs": map_abs,
        "map_relative": map_abs / max(float(np.max(np.abs(ref_map))), tiny),
        "score_relative": float(np.max(np.abs(score_diff) / np.maximum(np.abs(ref_score), tiny))),
        "score_error": float(np.sqrt(np.mean(score_diff**2)) / spread),
        "spearman": spearman(cand_score, ref_score),
        "auroc_reference": None,
        "auroc": None,
        "auroc_drop": None,
    }
    if labels is not None and len(np.unique(labels)) == 2:
        reference_auroc, candidate_auroc = auroc(labels, ref_score), auroc(labels, cand_score)
        metrics.update(auroc_reference=reference_auroc, auroc=candidate_auroc,
                       auroc_drop=reference_auroc - candidate_auroc)
    return metrics
