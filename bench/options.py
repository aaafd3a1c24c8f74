"""What `mmad-edge bench` was asked to do, as one value: built once by the CLI, passed whole.

Pure Python, so the CLI reads the defaults here for its typer options.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

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

    backend: str = "auto"
    batches: str | Sequence[int] = "1,16"
    protocols: str | Sequence[str] = "paper,e2e"
    warmup: int = 10
    iters: int = 50
    peers: bool = True
    checkpoint: str | os.PathLike[str] | None = None
    cache_dir: str | os.PathLike[str] | None = None
    image_size: int | None = None
    progress: bool = True
    case_budget_s: float = DEFAULT_CASE_BUDGET_S
    micro_batch: int | None = None
    data: str | os.PathLike[str] | None = None
    layout: str = "mvtec"
    categories: Sequence[str] | None = None
    inference_precision: str | None = None
    performance_hint: str | None = None
