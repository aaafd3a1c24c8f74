"""INT8 against FP32 on the detector's own outputs (map and score), not on tensors.

Metric names match the export verification table: ``map_max_abs``, ``map_relative`` (max abs
error / max |FP32 map|), ``score_relative`` (max over images of |Δscore| / |score|),
``spearman``, ``auroc_reference`` (FP32), ``auroc`` (INT8); plus ``auroc_drop`` and
``score_error`` (RMS score error in units of the FP32 scores' spread, the continuous measure
the sensitivity search ranks layers by).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from mmad_edge.calib.reader import CalibrationDataError, CalibrationWarning, load_frames
from mmad_edge.calib.timing import cpu_session
from mmad_edge.data.layouts import test_records
from mmad_edge.metrics import auroc, spearman

Outputs = tuple[np.ndarray, np.ndarray]  # maps (N, S, S), scores (N,)


@dataclass(frozen=True)
class EvalSet:
    """Frames the INT8 graph is judged on, their labels (None: normal images only) and where
    they came from (for the report)."""

    frames: np.ndarray
    labels: np.ndarray | None
    source: str


def _sample(items: Sequence[Path], count: int, rng: np.random.Generator) -> list[Path]:
    if len(items) <= count:
        return list(items)
    return sorted(items[i] for i in rng.choice(len(items), size=count, replace=False))


def labelled_set(eval_dir: Path, count: int, seed: int, size: int) -> EvalSet:
    """Up to ``count`` normal and ``count`` anomalous images of an MVTec-style category folder
    (``test/good``, ``test/<defect>``)."""
    records = test_records(Path(eval_dir), Path(eval_dir).name)
    normal = [r.image for r in records if r.label == 0]
    anomalous = [r.image for r in records if r.label == 1]
    if not normal or not anomalous:
        raise CalibrationDataError(
            f"{eval_dir}: the labelled folder needs test/good and at least one test/<defect> folder with images"
        )
    rng = np.random.default_rng(seed)
    chosen = _sample(normal, count, rng) + _sample(anomalous, count, rng)
    bad = set(anomalous)
    used, frames = load_frames(chosen, size, Path(eval_dir))
    labels = np.array([int(p in bad) for p in used])
    counts = f"{int((labels == 0).sum())} good, {int(labels.sum())} defective"
    return EvalSet(frames, labels, f"{eval_dir} (test split: {counts})")


def held_out_set(
    all_images: Sequence[Path], calibration: Sequence[Path], folder: Path, count: int, seed: int, size: int
) -> EvalSet:
    """Normal images of the calibration folder not used for calibration; the calibration images
    themselves (with a warning) when none are left."""
    used = set(calibration)
    rest = [p for p in all_images if p not in used]
    rng = np.random.default_rng(seed + 1)
    if rest:
        kept, frames = load_frames(_sample(rest, count, rng), size, folder)
        return EvalSet(frames, None, f"{folder} ({len(kept)} held-out normal images)")
    warnings.warn(
        f"{folder}: every image was used for calibration, so INT8 is judged on calibration images; "
        "add more images or pass a labelled evaluation folder",
        CalibrationWarning,
        stacklevel=2,
    )
    kept, frames = load_frames(_sample(list(calibration), count, rng), size, folder)
    return EvalSet(frames, None, f"{folder} ({len(kept)} calibration images reused: no held-out images)")


def run_outputs(path: Path, frames: np.ndarray, emulate_qdq: bool = False) -> Outputs:
    """Map and score of every frame (batch 1, so any exported batch profile works)."""
    session = cpu_session(path, emulate_qdq)
    name = session.get_inputs()[0].name
    maps, scores = [], []
    for frame in frames:
        anomaly_map, score = session.run(None, {name: frame[None]})
        maps.append(anomaly_map)
        scores.append(score)
    return np.concatenate(maps), np.concatenate(scores)


def compare_outputs(reference: Outputs, candidate: Outputs, labels: np.ndarray | None) -> dict[str, float | None]:
    ref_map, ref_score = (np.asarray(x, dtype=np.float64) for x in reference)
    cand_map, cand_score = (np.asarray(x, dtype=np.float64) for x in candidate)
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
    if labels is not None:
        metrics["auroc_reference"] = auroc(labels, ref_score)
        metrics["auroc"] = auroc(labels, cand_score)
        metrics["auroc_drop"] = metrics["auroc_reference"] - metrics["auroc"]
    return metrics
