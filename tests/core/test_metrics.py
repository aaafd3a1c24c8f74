"""Metrics against scikit-learn and against a brute-force AUPRO written here."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from mmad_edge.metrics import METRIC_KEYS, aupro, evaluate_category, summarize
from mmad_edge.runtime.monitor.compare import binary_metrics, spearman


def sklearn_f1_max(labels: np.ndarray, scores: np.ndarray) -> float:
    precision, recall, _ = precision_recall_curve(labels, scores)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    return float(f1.max())


@pytest.mark.parametrize("seed", range(6))
def test_image_metrics_match_sklearn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 2000))
    labels = rng.integers(0, 2, n)
    # Rounding makes many ties, across and within classes.
    scores = np.round(rng.normal(size=n) + labels * rng.uniform(0, 2), int(rng.integers(0, 3)))
    got = binary_metrics(labels, scores)
    assert got["auroc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-6)
    assert got["ap"] == pytest.approx(average_precision_score(labels, scores), abs=1e-6)
    assert got["f1_max"] == pytest.approx(sklearn_f1_max(labels, scores), abs=1e-6)


def test_pixel_metrics_match_sklearn_on_float32_maps() -> None:
    rng = np.random.default_rng(7)
    masks = rng.random((4, 32, 32)) < 0.1
    maps = (rng.random((4, 32, 32)) + masks * 0.3).astype(np.float32)
    maps[:, :4] = 0.5  # a block of exact ties
    got = binary_metrics(masks, maps)
    flat_y, flat_s = masks.ravel(), maps.ravel()
    assert got["auroc"] == pytest.approx(roc_auc_score(flat_y, flat_s), abs=1e-6)
    assert got["ap"] == pytest.approx(average_precision_score(flat_y, flat_s), abs=1e-6)
    assert got["f1_max"] == pytest.approx(sklearn_f1_max(flat_y, flat_s), abs=1e-6)


def test_perfect_and_constant_scores() -> None:
    assert binary_metrics([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == {"auroc": 1.0, "ap": 1.0, "f1_max": 1.0}
    constant = binary_metrics([0, 1, 0, 1], [0.5] * 4)
    assert constant["auroc"] == 0.5 and constant["ap"] == 0.5
    assert constant["f1_max"] == pytest.approx(2 / 3)


def test_one_class_gives_none() -> None:
    assert binary_metrics([1, 1, 1], [0.1, 0.2, 0.3]) == {"auroc": None, "ap": None, "f1_max": None}
    assert binary_metrics([0, 0], [0.1, 0.2])["auroc"] is None


def test_nan_scores_are_rejected() -> None:
    with pytest.raises(ValueError, match="NaN"):
        binary_metrics([0, 1], [0.1, float("nan")])


def reference_aupro(maps: np.ndarray, masks: np.ndarray, max_fpr: float = 0.3) -> float:
    """Loop over every distinct threshold; per-region overlap; trapezoid to max_fpr."""
    regions = []
    for index, mask in enumerate(masks):
        labelled, count = ndimage.label(mask, structure=np.ones((3, 3)))
        regions += [(index, labelled == k) for k in range(1, count + 1)]
    normal_values = maps[~masks]
    points = [(0.0, 0.0)]
    for threshold in np.unique(maps)[::-1]:
        fpr = float(np.mean(normal_values >= threshold))
        pro = float(np.mean([np.mean(maps[i][region] >= threshold) for i, region in regions]))
        points.append((fpr, pro))
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:]):
        if x0 >= max_fpr:
            break
        if x1 > max_fpr:
            y1 = y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0)
            x1 = max_fpr
        area += (x1 - x0) * (y0 + y1) / 2
    return area / max_fpr


@pytest.mark.parametrize("seed", range(4))
def test_aupro_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    masks = ndimage.binary_opening(rng.random((5, 20, 20)) < 0.35, structure=np.ones((1, 2, 2)))
    masks[0] = False  # a good image: only false positives
    maps = rng.random((5, 20, 20)) * 0.8 + masks * rng.uniform(0.1, 0.5)
    if seed % 2:
        maps = np.round(maps, 1)  # heavy ties
    maps = maps.astype(np.float32)
    assert aupro(maps, masks) == pytest.approx(reference_aupro(maps, masks), abs=1e-6)


def test_aupro_extremes() -> None:
    masks = np.zeros((2, 8, 8), dtype=bool)
    masks[1, 2:5, 2:5] = True
    assert aupro(masks.astype(np.float32), masks) == pytest.approx(1.0)
    # One threshold: the curve jumps from (0, 0) to (1, 1); up to FPR 0.3 the area is 0.045.
    assert aupro(np.zeros((2, 8, 8), np.float32), masks) == pytest.approx(0.15)
    assert aupro(np.ones((1, 4, 4)), np.zeros((1, 4, 4), bool)) is None


def test_pixel_metrics_on_five_million_pixels() -> None:
    rng = np.random.default_rng(0)
    masks = np.zeros((76, 256, 256), dtype=bool)
    masks[::2, 100:160, 90:150] = True
    maps = rng.random(masks.shape, dtype=np.float32) + masks * np.float32(0.5)
    result = evaluate_category(rng.random(76), np.arange(76) % 2 == 0, maps, masks, np.ones(76, bool))
    assert 0.8 < result["pixel_auroc"] <= 1.0
    assert 0.0 < result["pixel_aupro"] <= 1.0


def test_evaluate_category_skips_defects_without_masks() -> None:
    rng = np.random.default_rng(3)
    labels = np.array([0, 0, 1, 1, 1])
    masks = np.zeros((5, 16, 16), dtype=bool)
    masks[2, 4:9, 4:9] = masks[3, 8:12, 1:6] = True
    has_mask = np.array([True, True, True, True, False])
    maps = rng.random((5, 16, 16)).astype(np.float32) + masks * 0.4
    scores = maps.reshape(5, -1).max(axis=1)
    result = evaluate_category(scores, labels, maps, masks, has_mask)
    assert list(result) == list(METRIC_KEYS)
    keep = [0, 1, 2, 3]
    assert result["pixel_auroc"] == pytest.approx(roc_auc_score(masks[keep].ravel(), maps[keep].ravel()))
    assert result["pixel_aupro"] == pytest.approx(reference_aupro(maps[keep], masks[keep]), abs=1e-6)
    assert result["image_auroc"] == pytest.approx(roc_auc_score(labels, scores))


def test_evaluate_category_without_pixel_data() -> None:
    no_maps = evaluate_category([0.1, 0.9], [0, 1])
    assert no_maps["image_auroc"] == 1.0 and no_maps["pixel_auroc"] is None and no_maps["pixel_aupro"] is None
    maps = np.zeros((2, 4, 4), np.float32)
    masks = np.zeros((2, 4, 4), bool)
    unmasked = evaluate_category([0.1, 0.9], [0, 1], maps, masks, [True, False])
    assert all(unmasked[k] is None for k in METRIC_KEYS if k.startswith("pixel"))
    only_good = evaluate_category([0.1, 0.2], [0, 0], maps, masks, [True, True])
    assert all(value is None for value in only_good.values())


def test_summarize_means_over_categories_that_have_the_metric() -> None:
    per_category = {
        "a": dict.fromkeys(METRIC_KEYS, 0.8),
        "b": {**dict.fromkeys(METRIC_KEYS, 0.6), "pixel_aupro": None},
        "c": dict.fromkeys(METRIC_KEYS, None),
    }
    summary = summarize(per_category)
    assert summary["categories"]["b"]["pixel_aupro"] is None
    assert summary["mean"]["image_auroc"] == pytest.approx(0.7)
    assert summary["mean"]["pixel_aupro"] == pytest.approx(0.8)
    assert summarize({})["mean"]["image_auroc"] is None


@pytest.mark.parametrize("seed", range(3))
def test_spearman_matches_scipy_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = np.round(rng.normal(size=50), 1)  # ties in both sides
    b = np.round(a + rng.normal(scale=0.5, size=50), 1)
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)


def test_spearman_is_none_without_a_ranking() -> None:
    assert spearman([1.0], [2.0]) is None
    assert spearman([1, 1, 1], [1, 2, 3]) is None
    assert spearman([1, 2, 3], [5, 5, 5]) is None
