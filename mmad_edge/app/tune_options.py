"""What `mmad-edge tune` was asked to do, as one value (torch-free; the CLI builds the command from
its fields' flags, mmad_edge.app.tuning runs it)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from mmad_edge.export.options import GOOD, MAX_IMAGES, TEST_CATEGORY
from mmad_edge.flags import DATA, LAYOUT
from mmad_edge.runtime.flags import BATCH_SIZE, CATEGORY, MIN_AGREEMENT, Flag
from mmad_edge.runtime.tuning.selection import (
    DEFAULT_MAX_AUROC_DROP,
    DEFAULT_MAX_SCORE_SHIFT,
    DEFAULT_MIN_AGREEMENT,
    Rule,
)

DEFAULT_CASE_BUDGET_S = 4.0  # seconds of timing per candidate (the bench's budgeted loop)


def _thread_counts(values: Sequence[str]) -> tuple[int, ...]:
    counts = tuple(int(value) for value in values)
    if min(counts) < 1:
        raise ValueError(f"--try-threads takes positive thread counts, got {', '.join(values)}")
    return counts


@dataclass(frozen=True)
class TuneOptions:
    """The images every candidate is verified on (``data`` labelled, or ``good`` normal-only),
    the rule that judges it against FP32, the deployment ``batch_size`` it is timed at, and the CPU
    thread counts to try (None: the library's choice)."""

    data: str | os.PathLike[str] | None = DATA.field(
        None, help="Labelled dataset root: judge each candidate's image AUROC on its test split and its verdicts "
                   "at the threshold against FP32's.")
    layout: str = LAYOUT.field("mvtec")
    categories: Sequence[str] | None = CATEGORY.field(None, help=TEST_CATEGORY.format(DATA.name))
    good: str | os.PathLike[str] | None = GOOD.field(
        None, help="Folder of normal images only (instead of --data): judge by score shift and verdict agreement "
                   "at the threshold.")
    max_auroc_drop: float = Flag("--max-auroc-drop", "Largest image-AUROC drop against FP32 a candidate may "
                                                     "have (--data).").field(DEFAULT_MAX_AUROC_DROP)
    max_score_shift: float = Flag("--max-score-shift", "Largest median relative score shift against FP32 "
                                                       "(--good).").field(DEFAULT_MAX_SCORE_SHIFT)
    min_agreement: float = MIN_AGREEMENT.field(DEFAULT_MIN_AGREEMENT, detail=" (FP32's); without a threshold in the "
                                               "metadata --data does not judge it and --good fails every candidate")
    batch_size: int = BATCH_SIZE.field(1, detail=": the deployment batch each candidate is timed at")
    threads: Sequence[int] | None = Flag("--try-threads", "CPU thread count to try; repeat for several (default: "
                                                          "the library's choice). ONNX Runtime FP32 at the library's "
                                                          "choice is timed as the reference whatever is asked.").field(
        None, parse=_thread_counts)
    max_images: int | None = MAX_IMAGES.field(None)
    case_budget_s: float = DEFAULT_CASE_BUDGET_S
    progress: bool = True

    @property
    def rule(self) -> Rule:
        return Rule(self.max_auroc_drop, self.max_score_shift, self.min_agreement)
