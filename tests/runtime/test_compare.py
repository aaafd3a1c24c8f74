"""The shared comparison module against scikit-learn and scipy, ties included."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import rankdata, spearmanr
from sklearn.metrics import roc_auc_score

from mmad_edge.runtime.monitor.compare import auroc, error_metrics, ranks, spearman


def test_auroc_equals_scikit_learn_with_ties():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    scores = np.round(rng.normal(size=400) + labels, 1)  # rounding makes many ties
    assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert auroc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.5)
    assert auroc([1, 1], [0.1, 0.2]) is None


def test_ranks_and_spearman_equal_scipy():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 6, 50).astype(float)
    b = a + rng.integers(0, 3, 50)
    np.testing.assert_allclose(ranks(a), rankdata(a, method="average"))
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)
    assert spearman([1, 1, 1], [1, 2, 3]) is None


def test_error_metrics_numbers():
    maps = np.zeros((4, 2, 2))
    maps[:, 0, 0] = 2.0
    scores = np.array([1.0, 2.0, 3.0, 4.0])
    candidate = (maps + 0.5, scores * 1.1)
    metrics = error_metrics((maps, scores), candidate, np.array([0, 0, 1, 1]))
    assert metrics["map_max_abs"] == pytest.approx(0.5) and metrics["map_relative"] == pytest.approx(0.25)
    assert metrics["score_relative"] == pytest.approx(0.1) and metrics["spearman"] == pytest.approx(1.0)
    assert metrics["auroc"] == metrics["auroc_reference"] == 1.0 and metrics["auroc_drop"] == 0.0
    with pytest.raises(ValueError, match="output shapes differ"):
        error_metrics((maps, scores), (maps[:, :1], scores))
