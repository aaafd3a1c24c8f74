"""The block search on its own, with a made-up detector whose error each block adds to."""

from __future__ import annotations

import pytest

from mmad_edge.calib.sensitivity import AccuracyTarget, search

BLOCKS = {f"block{i}": [f"/b{i}/Conv", f"/b{i}/pw/Conv"] for i in range(10)}
# Each block's share of the INT8 score error; block3 and block7 dominate.
SHARE = {f"block{i}": 0.01 for i in range(10)} | {"block3": 0.5, "block7": 0.3}


class FakeDetector:
    """Spearman falls with the score error of the blocks still in INT8; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, float_nodes: frozenset[str]) -> dict:
        self.calls += 1
        error = sum(share for name, share in SHARE.items() if BLOCKS[name][0] not in float_nodes)
        return {"score_error": error, "spearman": 1.0 - error / 10, "auroc_drop": None, "map_relative": error}


def test_target_met_without_search_builds_one_graph() -> None:
    detector = FakeDetector()
    result = search(detector, BLOCKS, AccuracyTarget(spearman_min=0.9, score_error_max=1.0), max_attempts=8)
    assert result.met and result.float_blocks == [] and detector.calls == 1
    assert (result.attempts, result.graphs) == (0, 1)
    assert "every convolution in INT8" in result.message


def test_most_sensitive_blocks_kept_in_float_until_target_met() -> None:
    # Error 0.88 all-INT8 (Spearman 0.912); without block3 0.38; without 3 and 7 0.08.
    detector = FakeDetector()
    result = search(detector, BLOCKS, AccuracyTarget(spearman_min=0.99), max_attempts=8)
    assert result.met
    assert result.attempts == 2 and result.graphs == detector.calls == 1 + len(BLOCKS) + 2  # k = 1, then 2
    assert [b["block"] for b in result.float_blocks] == ["block3", "block7"]
    assert result.float_nodes == frozenset(BLOCKS["block3"] + BLOCKS["block7"])
    first = result.float_blocks[0]
    assert first["error_alone"] == pytest.approx(0.5)  # block3 alone in INT8
    assert first["alone"]["spearman"] == pytest.approx(0.95)
    assert "accuracy target" in first["reason"]
    assert result.metrics["spearman"] >= 0.99


def test_budget_exhausted_says_so_and_keeps_the_best_graph() -> None:
    detector = FakeDetector()
    result = search(detector, BLOCKS, AccuracyTarget(spearman_min=0.9999), max_attempts=2)
    assert not result.met
    assert "not met within 2 attempts" in result.message and "Spearman" in result.message
    assert result.attempts == 2  # the count the limit and the message speak of
    assert result.graphs == detector.calls == 1 + len(BLOCKS) + 2
    assert [b["block"] for b in result.float_blocks] == ["block3", "block7"]


class MaskingDetector(FakeDetector):
    """An input stage (block0) that wrecks every score when in INT8, whatever else is: left out
    of an all-INT8 graph one at a time, no other block shows any effect."""

    def __call__(self, float_nodes: frozenset[str]) -> dict:
        result = super().__call__(float_nodes)
        if BLOCKS["block0"][0] not in float_nodes:
            result = {**result, "score_error": 5.0, "spearman": 0.2}
        return result


def test_ranking_by_each_block_alone_sees_past_a_block_that_masks_the_rest() -> None:
    result = search(MaskingDetector(), BLOCKS, AccuracyTarget(spearman_min=0.99), max_attempts=8)
    assert result.met
    assert [b["block"] for b in result.float_blocks] == ["block0", "block3", "block7"]
    assert [r["block"] for r in result.ranking[:3]] == ["block0", "block3", "block7"]


def test_auroc_drop_counts_when_labels_exist() -> None:
    target = AccuracyTarget(spearman_min=0.9, auroc_drop_max=0.005)
    assert target.shortfalls({"spearman": 0.95, "auroc_drop": 0.01}) == ["AUROC drop 0.0100 > 0.005"]
    assert target.shortfalls({"spearman": None, "auroc_drop": None}) == []


def test_score_shift_counts_even_when_the_ranking_holds() -> None:
    # Spearman is met all-INT8 (0.912 >= 0.9), but scores moved by 0.88 of their spread: the FP32
    # threshold would no longer mean the same, so the search keeps block3 and block7 in float.
    target = AccuracyTarget(spearman_min=0.9, score_error_max=0.1)
    assert target.shortfalls({"spearman": 0.95, "score_error": 0.25}) == [
        "score error 0.2500 > 0.1 of the FP32 score spread"]
    result = search(FakeDetector(), BLOCKS, target, max_attempts=8)
    assert result.met and [b["block"] for b in result.float_blocks] == ["block3", "block7"]
    assert result.metrics["score_error"] == pytest.approx(0.08)
