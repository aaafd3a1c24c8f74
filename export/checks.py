"""The tolerances an exported artifact is held to, one definition for every place that checks one:
the export (ONNX Runtime against PyTorch on the build machine) and ``mmad-edge verify`` (the
deployed backend against its reference on the device). Pure Python: a device without torch or
onnx imports it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from mmad_edge.calib.sensitivity import AccuracyTarget
from mmad_edge.runtime.tuning.selection import Rule

FP32_RELATIVE = 1e-4
FP16_SPEARMAN = 0.999
FP16_AUROC_DELTA = 0.002
BF16_SPEARMAN = 0.99
BF16_AUROC_DELTA = 0.01
INT8_SPEARMAN = 0.99
INT8_AUROC_DELTA = 0.01
# Ranking bounds by the precision that computes: BF16 keeps 8 mantissa bits to FP16's 11, so it is
# held to INT8's ranking bounds (enforced, unlike INT8's, which the calibrator's target judges).
RANKING_BOUNDS = {"fp16": (FP16_SPEARMAN, FP16_AUROC_DELTA), "bf16": (BF16_SPEARMAN, BF16_AUROC_DELTA),
                  "int8": (INT8_SPEARMAN, INT8_AUROC_DELTA)}


@dataclass
class Check:
    """One pass/fail test; ``enforced`` False means it is reported but does not fail the export."""

    name: str
    value: float | None
    limit: float
    at_most: bool
    enforced: bool = True

    @property
    def passed(self) -> bool | None:
        if self.value is None:
            return None
        return self.value <= self.limit if self.at_most else self.value >= self.limit

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def default_checks(precision: str, metrics: dict[str, float | None], strict: bool = True) -> list[Check]:
    """The checks of the precision that computes. FP32: map and score within 1e-4 relative. FP16:
    Spearman >= 0.999 and AUROC within 0.002 of the reference; BF16: 0.99 and 0.01; both enforced
    only when ``strict`` (trained weights). INT8 (0.99, 0.01) is reported here, never enforced: its
    accuracy target and the search that meets it belong to the calibrator, whose verdict the export
    report carries."""
    if precision == "fp32":
        return [Check("map_relative", metrics["map_relative"], FP32_RELATIVE, True),
                Check("score_relative", metrics["score_relative"], FP32_RELATIVE, True)]
    if precision not in RANKING_BOUNDS:
        raise ValueError(f"no accuracy bounds for precision {precision!r}; one of fp32, {', '.join(RANKING_BOUNDS)}")
    rho, delta = RANKING_BOUNDS[precision]
    auroc_gap = None if metrics["auroc_drop"] is None else abs(metrics["auroc_drop"])
    enforced = strict and precision != "int8"
    return [Check("spearman", metrics["spearman"], rho, False, enforced),
            Check("auroc_delta", auroc_gap, delta, True, enforced)]


def int8_target_checks(target: AccuracyTarget, metrics: dict[str, float | None]) -> list[Check]:
    """INT8 against its FP32 graph, held to the calibrator's own target (what the export's INT8
    search met): Spearman, AUROC drop and the RMS score shift in units of the FP32 spread."""
    return [Check("spearman", metrics.get("spearman"), target.spearman_min, False),
            Check("auroc_drop", metrics.get("auroc_drop"), target.auroc_drop_max, True),
            Check("score_error", metrics.get("score_error"), target.score_error_max, True)]


def agreement_check(metrics: dict[str, float | None], rule: Rule) -> Check | None:
    """The verdicts at the threshold against the reference's, held to ``rule.min_agreement`` as
    ``tune`` holds a candidate (enforced whatever the precision); None, not judged, where either side
    had no threshold and so no verdicts."""
    agreement = metrics.get("verdict_agreement")
    return None if agreement is None else Check("verdict_agreement", agreement, rule.min_agreement, False)


def failed(checks: list[Check]) -> list[str]:
    """Each enforced check that failed, as ``name value vs limit`` (what the CLI names)."""
    return [f"{c.name} {c.value:.4g} {'>' if c.at_most else '<'} {c.limit:g}" for c in checks
            if c.enforced and c.passed is False]
