"""What `mmad-edge bench` was asked to do, as one value: built once by the CLI, passed whole.

Pure Python: each field carries its flag and help, from which the CLI builds the command.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from operator import not_

from mmad_edge.export.options import TEST_CATEGORY
from mmad_edge.flags import DATA, IMAGE_SIZE, LAYOUT
from mmad_edge.runtime.flags import BACKEND, BATCH_SIZE, CATEGORY, INFERENCE_PRECISION, PERFORMANCE_HINT, Flag

DEFAULT_CASE_BUDGET_S = 6.0


@dataclass(frozen=True)
class BenchOptions:
    """How ``run_bench`` plans and times its rows.

    ``batches`` / ``protocols``: comma lists or sequences. ``warmup`` / ``iters``: calls per
    row, cut so a row's timed calls fit ``case_budget_s``. ``peers``: time EfficientAD, RD4AD and
    PatchCore too. ``checkpoint``: weights of the torch rows (random without). ``image_size``:
    the checkpoint's, else 256 (artifacts fix their own). ``cache_dir``: where the default
    export is kept (default ~/.cache/mmad-edge/bench). ``micro_batch``: images per ONNX Runtime
    CPU run (None: the runtime's automatic choice, 0: whole batches). ``data`` (``layout``,
    ``categories``): a labelled test split whose image AUROC each MiniMaxAD row gets (None: none).
    ``inference_precision``:
    the OpenVINO compute precision of the FP32 artifact's rows (None: f32 plus each of bf16 / f16
    the CPU has units for; the others are listed as skipped). ``performance_hint``: OpenVINO's
    hint (None: latency at batch 1, throughput for larger batches).
    """

    backend: str = BACKEND.field("auto", detail=" or torch", parse=None)  # bench checks its own (torch too)
    batches: str | Sequence[int] = BATCH_SIZE.field("1,16", detail="; a comma list times each")
    protocols: str | Sequence[str] = Flag("--protocol", "Comma list of paper and/or e2e.").field("paper,e2e")
    warmup: int = Flag("--warmup", "Untimed calls per row (cut to the case budget).").field(10)
    iters: int = Flag("--iters", "Timed calls per row (cut to the case budget).").field(50)
    peers: bool = Flag("--peers/--no-peers", "Time EfficientAD, RD4AD and PatchCore too (eager and exported to "
                                             "ONNX).").field(True)
    checkpoint: str | os.PathLike[str] | None = Flag("--checkpoint", "Weights for the PyTorch rows.").field(None)
    cache_dir: str | os.PathLike[str] | None = Flag("--cache-dir", "Where the default export is kept.").field(None)
    image_size: int | None = IMAGE_SIZE.field(None, detail=" (default: the checkpoint's, else 256; artifacts fix it)")
    progress: bool = Flag("--quiet/--no-quiet", "No progress lines on stderr.").field(True, cli_default=False,
                                                                                    parse=not_)
    case_budget_s: float = Flag("--case-budget", "Seconds of timing per row before iterations are cut.").field(
        DEFAULT_CASE_BUDGET_S)
    micro_batch: int | None = Flag(
        "--micro-batch", "Images per ONNX Runtime CPU run of a batch (default: the runtime's cache-sized choice; 0: "
                         "one run per batch).").field(None)
    data: str | os.PathLike[str] | None = DATA.field(
        None, help="Labelled dataset root: each MiniMaxAD row's image AUROC on its test split, beside the latency.")
    layout: str = LAYOUT.field("mvtec")
    categories: Sequence[str] | None = CATEGORY.field(None, help=TEST_CATEGORY.format(DATA.name))
    inference_precision: str | None = INFERENCE_PRECISION.field(
        None, detail=" (default: a row each for f32 and every lower precision the CPU has units for)")
    performance_hint: str | None = PERFORMANCE_HINT.field(None, detail=" (default: latency at batch 1, else "
                                                                       "throughput)")
