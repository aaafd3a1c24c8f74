"""`mmad-edge verify`: the deployed artifact, on the backend it runs on here, over labelled images.

Torch-free unless the reference is a checkpoint, so it runs on a runtime-only device: the artifact
runs through the runtime's ``Detector`` (TensorRT, ONNX Runtime, ...), the images come from
``data.catalog`` (numpy and OpenCV), the metrics from ``runtime.compare`` and the tolerances from
``export.checks`` (the export's own numbers, and the verdict agreement at the threshold that ``tune``
holds a candidate to, judged where both sides have a threshold). The result is written atomically to
``<artifact>.verify.json`` beside the artifact (the latest verification replaces an earlier one;
report.json stays the build machine's record), with what it ran on.
"""

from __future__ import annotations

import datetime
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import mmad_edge
from mmad_edge.calib.sensitivity import AccuracyTarget
from mmad_edge.data.catalog import LabelledSplit, labelled_split
from mmad_edge.export.checks import Check, agreement_check, default_checks, failed, int8_target_checks
from mmad_edge.export.options import VerifyOptions
from mmad_edge.fileio import write_json_atomic
from mmad_edge.runtime import Detector
from mmad_edge.runtime.artifact.contract import artifact_name
from mmad_edge.runtime.artifact.selection import export_report
from mmad_edge.runtime.backends.base import BackendOptions, precision_label
from mmad_edge.runtime.errors import install_hint
from mmad_edge.runtime.log import say
from mmad_edge.runtime.monitor.compare import auroc, error_metrics
from mmad_edge.runtime.tuning.selection import Rule

VERIFY_SUFFIX = ".verify.json"
CHECKPOINT_SUFFIXES = (".pt", ".pth")


class ReferenceUnavailable(ValueError):
    """The reference asked for cannot be run here (a checkpoint without torch installed)."""


@dataclass(frozen=True)
class Scored:
    """Maps (N, S, S) and scores (N,) of one model over the split, the threshold its verdicts use
    and what produced them."""

    maps: np.ndarray
    scores: np.ndarray
    threshold: float | None
    source: str


def verify_path(artifact: str | os.PathLike[str]) -> Path:
    """Where the verification of ``artifact`` is written: ``<artifact>.verify.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + VERIFY_SUFFIX)


def verify_artifact(artifact: str | os.PathLike[str], options: VerifyOptions) -> dict[str, Any]:
    """Score the test split with the artifact and its reference; the result (also written to
    ``verify_path``) has ``passed`` (None without a reference) and the ``failed`` checks by name."""
    rule = Rule(min_agreement=options.min_agreement)  # refuses a bad --min-agreement before loading
    settings = BackendOptions(inference_precision=options.inference_precision)
    with Detector.load(artifact, options.backend, settings, precision=options.precision) as detector:
        path, info = detector.backend.path, detector.info
        split = labelled_split(options.data, options.layout, options.categories, info.image_size[0], options.max_images)
        say(f"verify: {path.name} on {detector.backend.name}, {len(split.labels)} test images", options.progress)
        category = verdict_category(info.categories, options.categories)
        threshold = detector.scoring(category)[0]
        candidate = score_frames(detector, split.frames, options.batch_size, threshold, str(path))
        ran_on = _ran_on(detector.backend.describe())
    computed = ran_on.get("compute_precision") or info.precision
    reference = _reference(path, options, split.frames, category)
    result = {"artifact": str(path), "precision": info.precision, "compute_precision": computed,
              "data": f"{options.layout}:{options.data}",
              "categories": list(options.categories or []), "images": int(split.labels.size),
              "accuracy": _accuracy(split, candidate), "ran_on": ran_on}
    result.update(_comparison(path, (info.precision, computed), split.labels, candidate, reference, rule))
    write_json_atomic(verify_path(path), result)
    return result


def score_frames(detector: Detector, frames: np.ndarray, batch: int, threshold: float | None, source: str) -> Scored:
    """The detector's maps and scores over model-size frames, ``batch`` at a time."""
    maps, scores = [], []
    for start in range(0, len(frames), max(1, batch)):
        for result in detector.predict(list(frames[start:start + batch])):
            maps.append(result.anomaly_map)
            scores.append(result.score)
    return Scored(np.stack(maps), np.asarray(scores, dtype=np.float64), threshold, source)


def verdict_category(known: dict, categories: Sequence[str] | None) -> str | None:
    """The category whose threshold the verdicts use: the one asked for when the artifact has its
    statistics; otherwise (none or several asked) the pooled threshold."""
    names = list(categories or [])
    return names[0] if len(names) == 1 and names[0] in known else None


def _ran_on(backend: dict[str, Any]) -> dict[str, Any]:
    """Backend, device and library versions of this run, and when (UTC)."""
    return {**backend, "numpy": np.__version__, "mmad_edge": mmad_edge.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "processor": platform.processor() or None,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def _accuracy(split: LabelledSplit, scored: Scored) -> dict[str, float | None]:
    """Image AUROC; pixel AUROC over the images whose masks are known, when a defect has one
    (None for a broken artifact whose outputs are not finite: the ``finite_outputs`` check fails)."""
    if not finite(scored):
        return {"image_auroc": None, "pixel_auroc": None}
    pixel = None
    if bool((split.has_mask & (split.labels == 1)).any()):
        pixel = auroc(split.masks[split.has_mask], scored.maps[split.has_mask])
    return {"image_auroc": auroc(split.labels, scored.scores), "pixel_auroc": pixel}


def _reference(artifact: Path, options: VerifyOptions, frames: np.ndarray, category: str | None) -> Scored | None:
    """The reference's outputs: ``--against``, else the folder's FP32 graph (None: nothing to compare)."""
    against = Path(options.against) if options.against is not None else _default_reference(artifact)
    if against is None:
        return None
    if against.suffix in CHECKPOINT_SUFFIXES:
        return _checkpoint_reference(against, frames, category)
    with Detector.load(against) as reference:
        info = reference.info
        threshold = info.threshold if category not in info.categories else info.categories[category][0]
        return score_frames(reference, frames, options.batch_size, threshold, str(reference.backend.path))


def _default_reference(artifact: Path) -> Path | None:
    fp32 = artifact.parent / artifact_name("fp32")
    return fp32 if fp32.is_file() and fp32.resolve() != artifact.resolve() else None


def _checkpoint_reference(path: Path, frames: np.ndarray, category: str | None) -> Scored:
    """The training-form PyTorch model (needs the export extra: torch and onnx)."""
    try:
        from mmad_edge.checkpoint import load_checkpoint
        from mmad_edge.export.parity import torch_outputs
    except ModuleNotFoundError as exc:
        raise ReferenceUnavailable(f"--against {path} runs the PyTorch model, which needs {exc.name}: "
                                   f"{install_hint('export')}, or pass --against DIR/model.fp32.onnx") from None
    model, ckpt = load_checkpoint(path)
    maps, scores = torch_outputs(model, frames)
    stats = ckpt.get("statistics") or {}
    stats = (stats.get("categories") or {}).get(category, stats) if category else stats
    return Scored(maps, scores.astype(np.float64), stats.get("threshold"), str(path))


def _comparison(path: Path, precisions: tuple[str, str], labels: np.ndarray, candidate: Scored,
                reference: Scored | None, rule: Rule) -> dict[str, Any]:
    """Errors, score shift, Spearman and verdict agreement against the reference, and the checks
    of ``precisions`` (the graph's, the one that computes: ``_checks``), plus the verdict agreement
    held to ``rule`` where both had a threshold."""
    if not finite(candidate):
        return _verdict(reference, None, [Check("finite_outputs", int(np.sum(~np.isfinite(candidate.scores))) or 1,
                                                0, True)])
    if reference is None:
        return {"reference": None, "comparison": None, "checks": [], "passed": None, "failed": []}
    metrics = compare_to_reference(labels, candidate, reference)
    checks = _checks(path, *precisions, metrics, reference.source.endswith(CHECKPOINT_SUFFIXES))
    agreement = agreement_check(metrics, rule)
    return _verdict(reference, metrics, checks if agreement is None else [*checks, agreement])


def compare_to_reference(labels: np.ndarray, candidate: Scored, reference: Scored) -> dict[str, Any]:
    """``error_metrics`` of finite outputs against the reference's, the median relative score
    shift and, where both have a threshold, the agreement of their verdicts, each at its own threshold,
    with how many of how many differ (``verify``, ``tune``)."""
    metrics: dict[str, Any] = error_metrics((reference.maps, reference.scores), (candidate.maps, candidate.scores),
                                            labels)
    shift = (candidate.scores - reference.scores) / np.maximum(np.abs(reference.scores), np.finfo(np.float32).tiny)
    metrics["score_shift"] = float(np.median(shift))
    if candidate.threshold is not None and reference.threshold is not None:
        agree = (candidate.scores > candidate.threshold) == (reference.scores > reference.threshold)
        metrics["verdict_agreement"] = float(agree.mean())
        metrics["verdicts_differing"] = int((~agree).sum())
        metrics["verdicts_compared"] = int(agree.size)
    return metrics


def _verdict(reference: Scored | None, metrics: dict[str, Any] | None, checks: list[Check]) -> dict[str, Any]:
    return {"reference": None if reference is None else reference.source, "comparison": metrics,
            "checks": [c.to_dict() for c in checks], "passed": not failed(checks), "failed": failed(checks)}


def finite(scored: Scored) -> bool:
    return bool(np.isfinite(scored.scores).all() and np.isfinite(scored.maps).all())


def _checks(path: Path, graph: str, computed: str, metrics: dict[str, Any], against_checkpoint: bool) -> list[Check]:
    """The export's tolerances (``export.checks``) for the precision that computes (an FP32 graph
    run in BF16 gets BF16's bounds). An INT8 graph against its FP32 graph, whatever its float ops
    compute in, is held to the calibrator's target recorded in the folder's report.json (its
    defaults without one)."""
    report = export_report(path)
    if graph == "int8" and not against_checkpoint:
        target = (report.get("int8") or {}).get("accuracy_target")
        return int8_target_checks(AccuracyTarget(**target) if target else AccuracyTarget(), metrics)
    return default_checks(computed, metrics, strict=bool(report.get("trained_weights", True)))


def summary_text(result: dict[str, Any]) -> str:
    """A few lines for the console: accuracy, agreement with the reference, the verdict."""
    acc = result["accuracy"]
    shown = precision_label(result["precision"], result.get("compute_precision"))
    lines = [f"{result['artifact']} ({shown}) on {result['ran_on'].get('backend')} "
             f"({result['ran_on'].get('device')}): {result['images']} images, image AUROC {_show(acc['image_auroc'])}, "
             f"pixel AUROC {_show(acc['pixel_auroc'])}"]
    metrics = result["comparison"]
    if metrics is None and result["passed"] is None:
        lines.append("no reference to compare with: pass --against checkpoint.pt or a model.fp32.onnx")
        return "\n".join(lines)
    if metrics is not None:
        lines.append(f"against {result['reference']}: AUROC {_show(metrics['auroc_reference'])}, median score shift "
                     f"{_show(metrics['score_shift'])}, Spearman {_show(metrics['spearman'])}, verdict agreement "
                     f"{_agreement(metrics, result['checks'])}, max map error {_show(metrics['map_relative'])} "
                     "(relative)")
    lines.append("verification: " + ("pass" if result["passed"] else "FAIL (" + "; ".join(result["failed"]) + ")"))
    return "\n".join(lines)


def _agreement(metrics: dict[str, Any], checks: list[dict[str, Any]]) -> str:
    """"0.9778 (2 of 90 flipped; min 0.99)", or why it was not judged."""
    judged = next((c for c in checks if c["name"] == "verdict_agreement"), None)
    if judged is None:
        return "not judged (no threshold)"
    return (f"{_show(judged['value'])} ({metrics['verdicts_differing']} of {metrics['verdicts_compared']} flipped; "
            f"min {judged['limit']:g})")


def _show(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
