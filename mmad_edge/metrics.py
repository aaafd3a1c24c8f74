"""Anomaly detection metrics in numpy (no scikit-learn at run time).

The shared image-level pieces (sorted tie groups, AUROC / AP / F1, Spearman) live in
``mmad_edge.runtime.monitor.compare``; this module adds pixel AUPRO and the per-category summaries.

Image and pixel AUROC, average precision and F1-max come from one sort of the scores:
cumulative counts are read at the end of every group of tied scores, which is exactly how
scikit-learn builds its ROC and precision-recall curves. Pixel AUPRO shares that one sort: a
per-pixel weight ``1 / (regions * region size)`` summed the same way gives the PRO curve at every
distinct threshold, with no loop over thresholds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import ndimage

from mmad_edge.runtime.monitor.compare import binary_metrics, curve_metrics, flat_scores, tie_cumsums, trapezoid

METRIC_KEYS = (
    "image_auroc",
    "image_ap",
    "image_f1_max",
    "pixel_auroc",
    "pixel_ap",
    "pixel_f1_max",
    "pixel_aupro",
)
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def _region_weights(masks: np.ndarray) -> np.ndarray | None:
    """Per-pixel weight 1 / (number of regions * size of the pixel's region); None if no region."""
    labelled = np.zeros(masks.shape, dtype=np.int32)
    regions = 0
    for index, mask in enumerate(masks):
        components, found = ndimage.label(mask, structure=EIGHT_CONNECTED)
        labelled[index] = np.where(components > 0, components + regions, 0)
        regions += found
    if regions == 0:
        return None
    sizes = np.bincount(labelled.reshape(-1), minlength=regions + 1).astype(np.float64)
    per_region = np.zeros(regions + 1)
    per_region[1:] = 1.0 / (regions * sizes[1:])
    return per_region[labelled.reshape(-1)]


def _pro_area(false_positives: np.ndarray, overlap: np.ndarray, max_fpr: float) -> float:
    """Trapezoid area under (FPR, PRO) from (0, 0) up to ``max_fpr`` (interpolated there), / max_fpr."""
    fpr = np.concatenate(([0.0], false_positives / false_positives[-1]))
    pro = np.concatenate(([0.0], overlap))
    kept = int(np.searchsorted(fpr, max_fpr, side="right"))
    x, y = fpr[:kept], pro[:kept]
    if kept < fpr.size:
        step = (max_fpr - fpr[kept - 1]) / (fpr[kept] - fpr[kept - 1])
        x = np.append(x, max_fpr)
        y = np.append(y, pro[kept - 1] + step * (pro[kept] - pro[kept - 1]))
    return trapezoid(y, x) / max_fpr


def pixel_metrics(maps: Any, masks: Any, max_fpr: float = 0.3) -> dict[str, float | None]:
    """{"auroc", "ap", "f1_max", "aupro"} of anomaly maps (N, H, W) against bool masks, one sort.

    AUPRO: regions are 8-connected components of each mask; PRO(t) is the mean over all regions
    of the fraction of the region at or above t, FPR(t) the fraction of normal pixels at or
    above t. The curve uses every distinct map value as a threshold, is linearly interpolated
    at ``max_fpr`` and its area is divided by ``max_fpr``. All None without both pixel classes.
    """
    values = flat_scores(maps)
    truth = np.asarray(masks).astype(bool)
    truth = truth[None] if truth.ndim == 2 else truth
    if truth.size != values.size:
        raise ValueError(f"maps ({values.size} values) and masks ({truth.size}) differ in size")
    weights = _region_weights(truth)
    flat_truth = truth.reshape(-1)
    if weights is None or flat_truth.all():
        return {"auroc": None, "ap": None, "f1_max": None, "aupro": None}
    count, (tps, overlap) = tie_cumsums(values, [flat_truth, weights])
    result: dict[str, float | None] = dict(curve_metrics(count, tps))
    result["aupro"] = _pro_area(count - tps, overlap, max_fpr)
    return result


def aupro(maps: Any, masks: Any, max_fpr: float = 0.3) -> float | None:
    """Normalised area under the per-region-overlap curve up to ``max_fpr`` (see ``pixel_metrics``)."""
    return pixel_metrics(maps, masks, max_fpr)["aupro"]


def evaluate_category(
    scores: Any,
    labels: Any,
    maps: Any = None,
    masks: Any = None,
    has_mask: Any = None,
) -> dict[str, float | None]:
    """All seven metrics of one category (keys in ``METRIC_KEYS``), None where undefined.

    ``scores``/``labels``: (N,); ``maps``/``masks``: (N, H, W); ``has_mask``: (N,) bool, False
    for defects without a ground-truth mask: those images are left out of pixel metrics (normal
    images always count, their mask is empty). Pixel metrics are None without maps, or when no
    evaluated image has defect pixels.
    """
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    image = binary_metrics(labels, scores)
    result: dict[str, float | None] = {f"image_{k}": v for k, v in image.items()}
    result.update({"pixel_auroc": None, "pixel_ap": None, "pixel_f1_max": None, "pixel_aupro": None})
    if maps is None or masks is None:
        return result
    known = np.ones(labels.size, dtype=bool) if has_mask is None else np.asarray(has_mask).reshape(-1).astype(bool)
    keep = known | (labels == 0)
    if not keep.any():
        return result
    pixel_maps = np.asarray(maps)[keep]
    pixel_masks = np.asarray(masks).astype(bool)[keep]
    if pixel_maps.shape != pixel_masks.shape:
        raise ValueError(f"anomaly maps {pixel_maps.shape} and masks {pixel_masks.shape} differ in shape")
    result.update({f"pixel_{k}": v for k, v in pixel_metrics(pixel_maps, pixel_masks).items()})
    return result


def summarize(per_category: Mapping[str, Mapping[str, float | None]]) -> dict[str, Any]:
    """{"categories": {...}, "mean": {...}}: each metric averaged over the categories that have it."""
    keys = list(METRIC_KEYS) + sorted({k for m in per_category.values() for k in m} - set(METRIC_KEYS))
    mean: dict[str, float | None] = {}
    for key in keys:
        values = [m[key] for m in per_category.values() if m.get(key) is not None]
        mean[key] = float(np.mean(values)) if values else None
    return {"categories": {name: dict(m) for name, m in per_category.items()}, "mean": mean}
