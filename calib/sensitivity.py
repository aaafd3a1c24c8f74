"""Accuracy-aware INT8: keep the blocks the detector is most sensitive to in float, and only
as many as the accuracy target needs.

1. Measure the all-INT8 graph. Target met: done.
2. Rank blocks: for each block, quantise that block alone (everything else float) and measure
   the score error it causes (RMS score difference over the FP32 scores' spread, a continuous
   stand-in for the rank metrics). Alone, not left out of an all-INT8 graph: there one block
   that wrecks the scores (an input stage, a whitening layer) hides every other block's share.
3. Keep the top-k ranked blocks in float, searching k by doubling then bisection, within
   ``max_attempts`` graphs; the smallest k that meets the target wins.

``trial`` (a graph with the given nodes in float -> its metrics) is passed in, so the search
is independent of how graphs are built and evaluated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Metrics = Mapping[str, Any]
Trial = Callable[[frozenset[str]], Metrics]


@dataclass(frozen=True)
class AccuracyTarget:
    """INT8 vs FP32: score ranking (Spearman), score shift (RMS score error over the FP32 scores'
    spread: the threshold carried from FP32 statistics must still mean the same) and, with
    labels, the image AUROC drop. Rank metrics alone pass a graph whose every score moved by
    half a spread as long as the few evaluation images keep their order."""

    spearman_min: float = 0.99
    auroc_drop_max: float = 0.005
    score_error_max: float = 0.1

    def shortfalls(self, metrics: Metrics) -> list[str]:
        """The unmet conditions, worded for the report; empty when the target is met. A metric
        that cannot be measured (no labels, < 3 images) is not held against the graph."""
        missed = []
        rho = metrics.get("spearman")
        if rho is not None and rho < self.spearman_min:
            missed.append(f"Spearman {rho:.4f} < {self.spearman_min}")
        drop = metrics.get("auroc_drop")
        if drop is not None and drop > self.auroc_drop_max:
            missed.append(f"AUROC drop {drop:.4f} > {self.auroc_drop_max}")
        error = metrics.get("score_error")
        if error is not None and error > self.score_error_max:
            missed.append(f"score error {error:.4f} > {self.score_error_max} of the FP32 score spread")
        return missed


@dataclass
class SearchResult:
    """Which blocks stay in float and why, and the metrics of the chosen graph. ``attempts``:
    graphs tried after the ranking (what ``max_attempts`` limits); ``graphs``: every graph
    measured (the all-INT8 one, one per block for the ranking, and the attempts)."""

    float_blocks: list[dict[str, Any]]
    metrics: Metrics
    met: bool
    attempts: int
    graphs: int
    message: str
    ranking: list[dict[str, Any]] = field(default_factory=list)

    @property
    def float_nodes(self) -> frozenset[str]:
        return frozenset(n for block in self.float_blocks for n in block["nodes"])


def _summary(metrics: Metrics) -> dict[str, Any]:
    keys = ("spearman", "score_error", "auroc_drop", "map_relative")
    return {k: metrics.get(k) for k in keys}


def search(
    trial: Trial,
    blocks: Mapping[str, Sequence[str]],
    target: AccuracyTarget,
    max_attempts: int = 8,
) -> SearchResult:
    """Smallest set of most sensitive blocks to keep in float so that ``target`` is met."""
    base = trial(frozenset())
    if not target.shortfalls(base):
        return SearchResult([], base, True, 0, 1, "target met with every convolution in INT8")
    every = frozenset(n for nodes in blocks.values() for n in nodes)
    ranking = []
    for name, nodes in blocks.items():
        alone = trial(every - frozenset(nodes))
        ranking.append({"block": name, "nodes": list(nodes), "error_alone": alone["score_error"],
                        "alone": _summary(alone)})
    ranking.sort(key=lambda r: r["error_alone"], reverse=True)
    tried: dict[int, Metrics] = {0: base}

    def run(k: int) -> bool:
        tried[k] = trial(frozenset(n for r in ranking[:k] for n in r["nodes"]))
        return not target.shortfalls(tried[k])

    failing, meeting, k = 0, None, 1
    while meeting is None and failing < len(ranking) and len(tried) <= max_attempts:
        k = min(k, len(ranking))
        if run(k):
            meeting = k
        else:
            failing, k = k, 2 * k
    while meeting is not None and meeting - failing > 1 and len(tried) <= max_attempts:
        middle = (failing + meeting) // 2
        if run(middle):
            meeting = middle
        else:
            failing = middle
    attempts = len(tried) - 1
    if meeting is not None:
        chosen, met = meeting, True
        message = f"target met with {chosen} of {len(ranking)} blocks kept in float"
    else:
        chosen = min(tried, key=lambda i: (len(target.shortfalls(tried[i])), tried[i]["score_error"]))
        met = False
        message = _not_met(target, tried, failing, len(ranking), max_attempts)
    why = "kept in float (ranked by the score error it causes alone in INT8) to meet the accuracy target"
    float_blocks = [{**r, "reason": why} for r in ranking[:chosen]]
    return SearchResult(float_blocks, tried[chosen], met, attempts, 1 + len(ranking) + attempts, message, ranking)


def _not_met(target: AccuracyTarget, tried: Mapping[int, Metrics], largest: int, blocks: int, budget: int) -> str:
    worst = "; ".join(target.shortfalls(tried[largest]))
    if largest >= blocks:
        return (f"target cannot be met: even with all {blocks} blocks in float ({worst}) the remaining "
                "difference comes from outside the convolutions or from too few evaluation images")
    return (f"target not met within {budget} attempts: with the {largest} most sensitive of {blocks} blocks "
            f"in float, {worst}; raise max_attempts, try method='entropy' or 'percentile', more "
            "calibration images, or deploy FP16")
