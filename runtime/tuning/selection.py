"""Which measured candidate is deployed: the fastest whose outputs stay faithful to FP32.

``judge`` holds one candidate's comparison with the FP32 reference to the rule: with labelled images
(both classes) the image-AUROC drop and the agreement of the verdicts at the threshold (a candidate
that ranks images like FP32 can still decide differently on the line); with normal images only, the
median score shift and the verdict agreement. The verdicts compared are the ones the line would give:
the candidate's scores at the candidate's own threshold (its calibrated entry when
``calibrate-threshold`` gave it one, else the folder's) against FP32's scores at FP32's threshold.
So an INT8 graph whose scores shift is judged by the threshold it would be deployed with, and one
recalibrated for its own scale passes. Without a threshold on either side there are no verdicts:
labelled images then judge the AUROC alone and say so (``criteria``); normal images only fail.
``choose`` takes the fastest p50 among the passing ones; a candidate that failed, was skipped or was
not timed is never chosen. The reference candidate (ONNX Runtime FP32 at its default threads,
compared with itself) is among them, so nothing slower than it is ever chosen.
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
    """How far a candidate may move from FP32: AUROC drop (labelled images) or median relative score
    shift (normal images only), and verdict agreement at the threshold (both; ``verify`` holds an
    artifact's agreement with its reference to the same ``min_agreement``)."""

    max_auroc_drop: float = DEFAULT_MAX_AUROC_DROP
    max_score_shift: float = DEFAULT_MAX_SCORE_SHIFT
    min_agreement: float = DEFAULT_MIN_AGREEMENT

    def __post_init__(self) -> None:
        wrong = [f"{flag} {bound}, got {value}" for flag, bound, value, holds in (
            ("--max-auroc-drop", ">= 0", self.max_auroc_drop, self.max_auroc_drop >= 0),
            ("--max-score-shift", ">= 0", self.max_score_shift, self.max_score_shift >= 0),
            ("--min-agreement", "in [0, 1]", self.min_agreement, 0 <= self.min_agreement <= 1)) if not holds]
        if wrong:
            raise ValueError(f"need {'; '.join(wrong)}")


def criteria(metrics: Mapping[str, Any]) -> tuple[str, ...]:
    """The metrics ``judge`` holds a comparison to: labelled images (an AUROC drop) the drop, plus the
    verdict agreement when both sides had a threshold; normal images only, the score shift and the
    agreement, which a missing threshold then fails."""
    if metrics.get("auroc_drop") is None:
        return ("score_shift", "verdict_agreement")
    return ("auroc_drop", "verdict_agreement") if metrics.get("verdict_agreement") is not None else ("auroc_drop",)


def judge(metrics: Mapping[str, Any] | None, rule: Rule) -> list[str]:
    """The rule's failures for one comparison with FP32 (empty: it passes), each naming its numbers;
    None metrics: the outputs were not finite."""
    if metrics is None:
        return ["outputs not finite"]
    judged, failures = criteria(metrics), []
    drop, shift = metrics.get("auroc_drop"), metrics.get("score_shift")
    if "auroc_drop" in judged and drop > rule.max_auroc_drop:
        failures.append(f"auroc_drop {drop:.4g} > {rule.max_auroc_drop:g}")
    if "score_shift" in judged and (shift is None or abs(shift) > rule.max_score_shift):
        failures.append(f"score_shift {shift if shift is None else f'{shift:.4g}'} beyond {rule.max_score_shift:g}")
    agreement = metrics.get("verdict_agreement")
    if agreement is None and "verdict_agreement" in judged:
        failures.append("no threshold in the metadata to compare verdicts at; run mmad-edge calibrate-threshold first")
    elif agreement is not None and agreement < rule.min_agreement:
        failures.append(f"verdict_agreement {agreement:.4g} < {rule.min_agreement:g}{_flipped(metrics)}")
    return failures


def _flipped(metrics: Mapping[str, Any]) -> str:
    """" (N of M flipped)" where the comparison counted them."""
    differing, compared = metrics.get("verdicts_differing"), metrics.get("verdicts_compared")
    return "" if differing is None or compared is None else f" ({differing} of {compared} flipped)"


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
        return {"name": c.name, "reference": c.reference, "backend": c.backend, "artifact": c.artifact.name, "precision": c.precision,
                "options": c.options.given(), "timing": None if self.timing is None else dict(self.timing),
                "comparison": None if self.metrics is None else dict(self.metrics),
                "judged": None if self.metrics is None else list(criteria(self.metrics)), "passed": self.passed,
                "reason": self.reason, "ran_on": None if self.ran_on is None else dict(self.ran_on)}


def choose(trials: Sequence[Trial]) -> Trial | None:
    """The fastest (p50) trial that passed and was timed (the reference when every other is slower);
    None when none did."""
    return min((t for t in trials if t.passed is True and t.p50_ms is not None), key=lambda t: t.p50_ms, default=None)
