"""A candidate graph against its reference on the detector's own outputs (map and score), not on
tensors: INT8 against FP32 here, every exported precision against PyTorch in export.verify.

Metrics: ``map_max_abs``, ``map_relative`` (max abs error / max |reference map|),
``score_relative`` (max over images of |Δscore| / |score|), ``spearman``, ``auroc_reference``,
``auroc`` and ``auroc_drop`` (with labels of both classes), and ``score_error`` (RMS score error
in units of the reference scores' spread, the continuous measure the sensitivity search ranks
layers by).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx

from mmad_edge.calib.reader import CalibrationDataError, CalibrationWarning, load_frames, seeded_pick
from mmad_edge.calib.session import cpu_session, run_batched
from mmad_edge.data.dataset import build_dataset
from mmad_edge.metrics import auroc, spearman

Outputs = tuple[np.ndarray, np.ndarray]  # maps (N, S, S), scores (N,)


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


def error_metrics(reference: Outputs, candidate: Outputs, labels: np.ndarray | None = None) -> dict[str, float | None]:
    """Map / score errors, rank correlation and, when ``labels`` hold both classes, both AUROCs
    and their difference (None otherwise: AUROC needs normal and defective images)."""
    ref_map, ref_score = (np.asarray(x, dtype=np.float64) for x in reference)
    cand_map, cand_score = (np.asarray(x, dtype=np.float64) for x in candidate)
    if cand_map.shape != ref_map.shape or cand_score.shape != ref_score.shape:
        raise ValueError(f"output shapes differ: map {cand_map.shape} vs {ref_map.shape}, score {cand_score.shape} "
                         f"vs {ref_score.shape}; the ONNX was exported for another image size")
    tiny = np.finfo(np.float32).tiny
    map_abs = float(np.max(np.abs(cand_map - ref_map)))
    score_diff = cand_score - ref_score
    spread = max(float(np.std(ref_score)), 1e-6 * float(np.mean(np.abs(ref_score))), tiny)
    metrics: dict[str, float | None] = {
        "map_max_abs": map_abs,
        "map_relative": map_abs / max(float(np.max(np.abs(ref_map))), tiny),
        "score_relative": float(np.max(np.abs(score_diff) / np.maximum(np.abs(ref_score), tiny))),
        "score_error": float(np.sqrt(np.mean(score_diff**2)) / spread),
        "spearman": spearman(cand_score, ref_score),
        "auroc_reference": None,
        "auroc": None,
        "auroc_drop": None,
    }
    if labels is not None and len(np.unique(labels)) == 2:
        reference_auroc, candidate_auroc = auroc(labels, ref_score), auroc(labels, cand_score)
        metrics.update(auroc_reference=reference_auroc, auroc=candidate_auroc,
                       auroc_drop=reference_auroc - candidate_auroc)
    return metrics
