"""Score statistics: threshold rules, the small-sample guard, the metadata schema."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmad_edge.runtime.scoring import normalize_score
from mmad_edge.stats import score_statistics


def test_mean_plus_three_std_on_known_numbers() -> None:
    scores = np.arange(1.0, 31.0)  # 30 normals: mean 15.5, sample std sqrt(77.5)
    stats = score_statistics(scores)
    assert stats["threshold"] == pytest.approx(15.5 + 3 * np.sqrt(77.5))
    assert stats["normalization"] == {"low": 15.5, "high": stats["threshold"]}
    summary = stats["normal_scores"]
    assert summary["count"] == 30
    assert summary["mean"] == pytest.approx(15.5)
    assert summary["std"] == pytest.approx(np.sqrt(77.5))
    assert summary["quantiles"] == pytest.approx({"0.5": 15.5, "0.9": 27.1, "0.95": 28.55, "0.99": 29.71, "1.0": 30.0})
    assert stats["threshold_rule"].startswith("mean+3std of 30 held-out normal scores")
    assert stats["map_values"] is None


def test_quantile_rule() -> None:
    stats = score_statistics(np.arange(0.0, 101.0), rule="quantile:0.99")
    assert stats["threshold"] == pytest.approx(99.0)
    assert score_statistics(np.arange(0.0, 101.0), rule="mean+2std")["threshold"] == pytest.approx(
        50 + 2 * np.arange(0.0, 101.0).std(ddof=1)
    )


def test_few_normals_never_flag_a_held_out_normal() -> None:
    scores = [1.0, 2.0, 3.0, 4.0, 10.0]  # quantile 0.9 = 7.6 is below the max
    stats = score_statistics(scores, rule="quantile:0.9")
    assert stats["threshold"] == pytest.approx(10.0 + 0.1 * (10.0 - 3.0))
    assert "fewer than 20 normals" in stats["threshold_rule"]
    # mean + 3 std of a few scores pooled from two categories would sit far above the maximum.
    pooled = score_statistics([0.05, 0.06, 0.5, 0.6])
    assert pooled["threshold"] == pytest.approx(0.6 + 0.1 * (0.6 - 0.28))
    # With 20 or more normals the rule stands even below the maximum.
    many = np.r_[np.linspace(0.0, 1.0, 24), 5.0]
    assert score_statistics(many, rule="quantile:0.9")["threshold"] == pytest.approx(np.quantile(many, 0.9))


def test_equal_scores_keep_threshold_above_median() -> None:
    stats = score_statistics([0.2] * 6)
    assert stats["threshold"] == pytest.approx(0.2 + 2e-7, rel=1e-9)
    assert stats["normalization"]["low"] == 0.2
    assert normalize_score(0.2, **stats["normalization"]) == 0.0


def test_normalization_maps_threshold_to_half() -> None:
    rng = np.random.default_rng(1)
    stats = score_statistics(rng.normal(0.1, 0.01, 200))
    low, high = stats["normalization"]["low"], stats["normalization"]["high"]
    assert normalize_score(high, low, high) == pytest.approx(0.5)
    assert normalize_score(low, low, high) == pytest.approx(0.0)


def test_map_quantiles_are_subsampled_and_seeded() -> None:
    rng = np.random.default_rng(0)
    maps = rng.random((40, 256, 256), dtype=np.float32)  # 2.6 M values, uniform on [0, 1)
    first = score_statistics(rng.random(30), maps, seed=3)
    again = score_statistics(rng.random(30), maps, seed=3)
    assert first["map_values"] == again["map_values"]
    quantiles = first["map_values"]["quantiles"]
    assert set(quantiles) == {"0.5", "0.9", "0.95", "0.99", "0.999", "1.0"}
    assert quantiles["0.5"] == pytest.approx(0.5, abs=0.005)
    assert quantiles["0.99"] == pytest.approx(0.99, abs=0.002)
    json.dumps(first)  # plain Python numbers only


def test_bad_input_errors() -> None:
    with pytest.raises(ValueError, match="no held-out normal scores"):
        score_statistics([])
    with pytest.raises(ValueError, match="unknown threshold rule 'p99'"):
        score_statistics([1.0, 2.0], rule="p99")
    with pytest.raises(ValueError, match="unknown threshold rule"):
        score_statistics([1.0, 2.0], rule="quantile:1.5")
    with pytest.raises(ValueError, match="NaN or inf"):
        score_statistics([1.0, float("nan")])


def test_statistics_by_category_match_each_category_alone() -> None:
    from mmad_edge.stats import statistics_by_category

    rng = np.random.default_rng(0)
    gravel, brick = rng.normal(0.06, 0.005, 30), rng.normal(0.6, 0.05, 25)
    maps = rng.random((55, 4, 4)).astype(np.float32)
    names = ["gravel"] * 30 + ["brick"] * 25
    stats = statistics_by_category(np.r_[gravel, brick], maps, names)
    assert stats["threshold"] == pytest.approx(score_statistics(np.r_[gravel, brick])["threshold"])
    assert list(stats["categories"]) == ["brick", "gravel"]
    assert stats["categories"]["gravel"] == score_statistics(gravel, maps[:30])
    assert stats["categories"]["brick"]["threshold"] == pytest.approx(brick.mean() + 3 * brick.std(ddof=1))
    assert stats["categories"]["gravel"]["threshold"] < 0.1 < stats["threshold"]  # the pooled one misses gravel
    json.dumps(stats)  # plain JSON, as checkpoint and metadata need
    with pytest.raises(ValueError, match="2 categories for 3 held-out scores"):
        statistics_by_category([1.0, 2.0, 3.0], None, ["a", "b"])
