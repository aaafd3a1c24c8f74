"""The frames an INT8 candidate is judged on and its outputs on them (ORT CPU); the metrics
comparing it to the FP32 reference are ``mmad_edge.runtime.monitor.compare.error_metrics``, shared
with export verification.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from mmad_edge.calib.reader import CalibrationDataError, CalibrationWarning, load_frames, seeded_pick
from mmad_edge.data.dataset import build_dataset
from mmad_edge.runtime.backends.onnxruntime import cpu_session, run_batched
from mmad_edge.runtime.monitor.compare import Outputs


@dataclass(frozen=True)
class EvalSet:
    """Frames the INT8 graph is judged on, their labels (None: normal images only) and where
    they came from (for the report)."""

    frames: np.ndarray
    labels: np.ndarray | None
    source: str


def labelled_set(
    root: Path, layout: str, categories: str | Sequence[str] | None, count: int, seed: int, size: int
) -> EvalSet:
    """Up to ``count`` normal and ``count`` anomalous images of a dataset's test split, in any
    layout ``build_dataset`` reads (mvtec, aebad, realiad, folder)."""

    records = build_dataset(root, layout, categories, "test", size).records
    normal = [r.image for r in records if r.label == 0]
    anomalous = [r.image for r in records if r.label == 1]
    if not normal or not anomalous:
        raise CalibrationDataError(
            f"{root}: the {layout} test split has {len(normal)} normal and {len(anomalous)} defective images; "
            "INT8 accuracy needs both: pass --data/--layout/--category of a labelled test split"
        )
    chosen = seeded_pick(normal, count, seed) + seeded_pick(anomalous, count, seed + 1)
    bad = set(anomalous)
    used, frames = load_frames(chosen, size, Path(root))
    labels = np.array([int(p in bad) for p in used])
    counts = f"{int((labels == 0).sum())} good, {int(labels.sum())} defective"
    return EvalSet(frames, labels, f"{layout}:{root} (test split: {counts})")


def held_out_set(
    all_images: Sequence[Path], calibration: Sequence[Path], folder: Path, count: int, seed: int, size: int
) -> EvalSet:
    """Normal images of the calibration folder not used for calibration; the calibration images
    themselves (with a warning) when none are left."""
    used = set(calibration)
    rest = [p for p in all_images if p not in used]
    if rest:
        kept, frames = load_frames(seeded_pick(rest, count, seed + 1), size, folder)
        return EvalSet(frames, None, f"{folder} ({len(kept)} held-out normal images)")
    warnings.warn(
        f"{folder}: every image was used for calibration, so INT8 is judged on calibration images; "
        "add more images or pass a labelled test split (eval_data; export: --data)",
        CalibrationWarning,
        stacklevel=2,
    )
    kept, frames = load_frames(seeded_pick(list(calibration), count, seed + 1), size, folder)
    return EvalSet(frames, None, f"{folder} ({len(kept)} calibration images reused: no held-out images)")


def run_outputs(
    model: onnx.ModelProto | str | os.PathLike[str], frames: np.ndarray, emulate_qdq: bool = False
) -> Outputs:
    """Map and score of every frame on the ORT CPU (in the graph's fixed batch, if it has one)."""
    return run_batched(cpu_session(model, emulate_qdq), frames)
