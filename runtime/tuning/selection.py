"""Which measured candidate is deployed: the fastest whose outputs stay faithful to FP32.

``judge`` holds one candidate's comparison with the FP32 reference to the rule: with labelled images
(both classes) the image-AUROC drop; with normal images only, the median score shift and the
agreement of the verdicts at the threshold. ``choose`` takes the fastest p50 among the passing
ones; a candidate that failed, was skipped or was not timed is never chosen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .candidates import Candidate

DEFAULT_MAX_AUROC_DROP = 0.005
DEFAULT_MAX_SCORE_SHIFT = 0.01
DEFAULT_MIN_AGREEMENT = 0.99


@dataclass(frozen=True)
class Rule:
    """How far a candidate may move from FP32: AUROC drop (labelled images), else median relative
    score shift and verdict agreement at the threshold (normal images only)."""

    max_auroc_drop: float = DEFAULT_MAX_AUROC_DROP
    max_score_shift: float = DEFAULT_MAX_SCORE_SHIFT
    min_agreement: float = DEFAULT_MIN_AGREEMENT

    def __post_init__(self) -> None:
        if self.max_auroc_drop < 0 or self.max_score_shift < 0 or not 0 <= self.min_agreement <= 1:
            raise ValueError(f"need --max-auroc-drop >= 0, --max-score-shift >= 0 and --min-agreement in [0, 1]; got "
                             f"{self.max_auroc_drop}, {self.max_score_shift}, {self.min_agreement}")


def judge(metrics: Mapping[str, Any] | None, rule: Rule) -> list[str]:
    """The rule's failures for one comparison with FP32 (empty: it passes); None metrics: the
    outputs were not finite."""
    if metrics is None:
        return ["outputs not finite"]
    if metrics.get("auroc_drop") is not None:
        drop = metrics["auroc_drop"]
        return [] if drop <= rule.max_auroc_drop else [f"auroc_drop {drop:.4g} > {rule.max_auroc_drop:g}"]
    failures = []
    shift = metrics.get("score_shift")
    if shift is None or abs(shift) > rule.max_score_shift:
        failures.append(f"score_shift {shift if shift is None else f'{shift:.4g}'} beyond {rule.max_score_shift:g}")
    agreement = metrics.get("verdict_agreement")
    if agreement is None:
        failures.append("no threshold in the metadata to compare verdicts at; run mmad-edge calibrate-threshold first")
    elif agreement < rule.min_agreement:
        failures.append(f"verdict_agreement {agreement:.4g} < {rule.min_agreement:g}")
    return failures


@dataclass(frozen=True)
class Trial:
    """One candidate as measured: its timing row (None: not timed), its comparison with FP32
    (None: not compared), whether it passed (None: skipped or broken) and why not."""

    candidate: Candidate
    timing: Mapping[str, Any] | None = None
    metrics: Mapping[str, Any] | None = None
    passed: bool | None = None
    reason: str | None = None
    ran_on: Mapping[str, Any] | None = None  # the loaded backend's describe()

    @property
    def p50_ms(self) -> float | None:
        return None if self.timing is None else float(self.timing["p50_ms"])

    def to_dict(self) -> dict[str, Any]:
        """The evidence ``tuned.json`` keeps of this candidate."""
        c = self.candidate
        return {"name": c.name, "backend": c.backend, "artifact": c.artifact.name, "precision": c.precision,
                "options": c.options.given(), "timing": None if self.timing is None else dict(self.timing),
                "comparison": None if self.metrics is None else dict(self.metrics), "passed": self.passed,
                "reason": self.reason, "ran_on": None if self.ran_on is None else dict(self.ran_on)}


def choose(trials: Sequence[Trial]) -> Trial | None:
    """The fastest (p50) trial that passed and was timed; None when none did."""
    return min((t for t in trials if t.passed is True and t.p50_ms is not None), key=lambda t: t.p50_ms, default=None)
