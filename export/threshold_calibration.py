"""`mmad-edge calibrate-threshold`: the threshold recomputed from the deployed backend's own scores.

FP16, INT8 or an engine built on the device shift the score scale a little; a threshold computed
from FP32 scores at training time then flags too much or too little. This scores normal images of
the line with the artifact itself (``Detector``, any backend) and recomputes the ``statistics``
section with ``mmad_edge.stats.score_statistics`` (the good images: a folder, ``--good``, or the
first N frames of a live source, ``--source URL --frames N``): a rule (``mean+3std``) or a target false-positive
rate F (threshold = the (1 - F) quantile of the good scores, numpy's linear interpolation; scores
equal to the threshold pass, so at most F + (1 - F) / n of the good images score above it). Fewer
than 20 good images take ``score_statistics``' small-sample threshold (max + 10 % of max - median)
for either. The metadata the runtime reads is updated in place (``metadata_files``), each file's
previous metadata kept beside it as ``<file>.previous.json``; statistics equal to those already
there are not written again, so a second run with the same images changes nothing. A deployment
folder's versions are refused (rollback could not undo an edit in place): the export is calibrated
and promoted as a new version.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from mmad_edge.data.records import DatasetError, list_images
from mmad_edge.export.device_verification import Scored, score_frames
from mmad_edge.export.live_frames import take_frames
from mmad_edge.export.metadata import read_metadata_json, read_onnx_metadata
from mmad_edge.export.options import DEFAULT_FRAMES, CalibrateOptions
from mmad_edge.fileio import write_bytes_atomic, write_json_atomic
from mmad_edge.runtime import Detector
from mmad_edge.runtime.artifact.contract import ENGINE_SUFFIX, METADATA_FILE, METADATA_KEY, sidecar_path
from mmad_edge.runtime.artifact.deployment import deployment_holding
from mmad_edge.runtime.artifact.metadata import ARTIFACT_STATISTICS, statistics_beside, validate_metadata
from mmad_edge.runtime.artifact.onnx_props import read_metadata_props, with_metadata_prop
from mmad_edge.runtime.errors import ArtifactError
from mmad_edge.runtime.imageio import read_image
from mmad_edge.runtime.monitor.compare import tie_cumsums
from mmad_edge.runtime.preprocess import resize_frame
from mmad_edge.stats import score_statistics

BACKUP_SUFFIX = ".previous.json"
DEFAULT_RULE = "mean+3std"


def threshold_rule(options: CalibrateOptions) -> str:
    """The ``score_statistics`` rule: ``quantile:1-F`` for a false-positive rate F, else the rule."""
    if options.fpr is None:
        return options.rule or DEFAULT_RULE
    if options.rule is not None:
        raise ValueError("pass either --fpr or --rule, not both")
    if not 0.0 <= options.fpr < 1.0:
        raise ValueError(f"--fpr must be in [0, 1), got {options.fpr}; e.g. --fpr 0.01 for 1 % of good parts flagged")
    return f"quantile:{np.format_float_positional(1.0 - options.fpr)}"


def calibrate_threshold(artifact: str | os.PathLike[str], options: CalibrateOptions) -> dict[str, Any]:
    """Score the good images (a folder, or frames of a live source: ``live_frames``), recompute the
    statistics, update the metadata files; returns the summary."""
    refuse_deployment(artifact)
    rule = threshold_rule(options)
    good_frames, good_name = good_images(options)
    bad_images = folder_images(options.bad, "--bad") if options.bad is not None else []
    with Detector.load(artifact, backend=options.backend, precision=options.precision) as detector:
        path, info = detector.backend.path, detector.info
        check_category(info.categories, options.category)
        good = _scores(detector, good_frames, options.batch_size)
        bad = _scores(detector, (read_image(p) for p in bad_images), options.batch_size).scores if bad_images else None
        backend = detector.backend.describe()
    computed = score_statistics(good.scores, good.maps, rule)
    computed["calibration"] = {"good": good_name, "images": len(good.scores), "backend": backend["backend"],
                               "precision": info.precision}
    previous = info.raw.get("statistics")
    statistics = merged_statistics(previous, computed, options.category)
    written = [str(p) for p in write_statistics(path, statistics)]
    old = statistics_section(previous, options.category)
    return {
        "artifact": str(path), "precision": info.precision, "category": options.category, "backend": backend,
        "moved": moved_threshold(previous, options.category),
        "rule": computed["threshold_rule"], "threshold": computed["threshold"],
        "previous_threshold": None if old is None else old.get("threshold"),
        "normalization": computed["normalization"], "normal_scores": computed["normal_scores"],
        "good_above_threshold": float(np.mean(good.scores > computed["threshold"])),
        "bad": None if bad is None else detection_metrics(good.scores, bad, computed["threshold"]),
        "written": written, "backups": [str(_backup_path(Path(p))) for p in written], "unchanged": not written,
    }


def refuse_deployment(artifact: str | os.PathLike[str]) -> None:
    """A deployed version is never rewritten in place (rollback could not undo it): the export is
    calibrated and promoted as a new version."""
    deployment = deployment_holding(artifact)
    if deployment is not None:
        where = "a deployment folder" if deployment == Path(artifact) else f"in deployment folder {deployment}"
        raise ArtifactError(f"{artifact}: {where}, whose versions are not changed in place (rollback could not undo "
                            f"it); calibrate the export folder, then mmad-edge promote EXPORT --to {deployment}")


def good_images(options: CalibrateOptions) -> tuple[Iterable[np.ndarray], str]:
    """The good frames, read as they are scored, and where they come from: ``--good`` or ``--source``."""
    if (options.good is None) == (options.source is None):
        raise ValueError("pass either --good FOLDER or --source URL (with --frames N) for the good images, not "
                         f"{'both' if options.source is not None else 'neither'}")
    if options.source is not None:
        return take_frames(options.source, DEFAULT_FRAMES if options.frames is None else options.frames), options.source
    if options.frames is not None:
        raise ValueError(f"--frames {options.frames} counts frames of --source; with --good every image of the folder "
                         "is scored: drop --frames, or thin the folder")
    return (read_image(p) for p in folder_images(options.good, "--good")), str(options.good)


def folder_images(folder: str | os.PathLike[str], option: str) -> list[Path]:
    """The images of a folder (sorted); a missing or image-less folder fails naming the option."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{option} {folder}: folder not found; pass a folder of images")
    images = list_images(folder)
    if not images:
        raise DatasetError(f"{option} {folder}: no images in this folder (png, jpg, bmp, tif, webp); "
                           "pass a folder of images of the line")
    return images


def check_category(known: dict, category: str | None) -> None:
    if category is not None and category not in known:
        names = ", ".join(sorted(known)) or "none (the artifact has no per-category statistics)"
        raise ArtifactError(f"unknown category {category!r}: the artifact has statistics for {names}; pass one of "
                            "them or leave --category out for the pooled threshold")


def _scores(detector: Detector, frames: Iterable[np.ndarray], batch: int) -> Scored:
    """Scores and maps of the frames, each resized to the model's input as it arrives."""
    height, width = detector.image_size
    return score_frames(detector, np.stack([resize_frame(frame, (height, width)) for frame in frames]), batch, None, "")


def statistics_section(statistics: dict | None, category: str | None) -> dict | None:
    """The category's entry of a ``statistics`` section (None: the pooled numbers themselves)."""
    if statistics is None or category is None:
        return statistics
    return (statistics.get("categories") or {}).get(category)


def merged_statistics(previous: dict | None, computed: dict, category: str | None) -> dict:
    """The new ``statistics`` section. With ``category``: only that category's entry changes.
    Without: the pooled numbers change, per-category entries stay, except a single-category model's
    one entry (its numbers are the pooled ones, as training writes them)."""
    previous = dict(previous or {})
    categories = dict(previous.get("categories") or {})
    if category is not None:
        return {**previous, "categories": {**categories, category: computed}}
    if len(categories) == 1:
        categories = {name: computed for name in categories}
    return {**computed, "categories": categories} if categories else dict(computed)


def moved_threshold(previous: dict | None, category: str | None) -> dict[str, Any]:
    """Which threshold these images set, and the per-category ones they leave alone: a model of
    several categories given no --category moves only the pooled threshold (sources run without a
    category), which is wrong if the images are one category's, so the summary says so."""
    names = sorted((previous or {}).get("categories") or {})
    if category is not None:
        return {"threshold": f"category {category}", "kept": ["pooled", *(n for n in names if n != category)]}
    if len(names) == 1:
        return {"threshold": f"pooled (= category {names[0]}, the model's only one)", "kept": []}
    return {"threshold": "pooled", "kept": names}


def metadata_files(artifact: Path) -> list[Path]:
    """The files whose metadata the runtime reads for ``artifact``: an engine's sidecar; an ONNX
    graph itself (its embedded copy) and the metadata.json beside it."""
    if artifact.suffix == ENGINE_SUFFIX:
        return [sidecar_path(artifact)]
    files = [artifact] if METADATA_KEY in read_metadata_props(artifact) else []
    beside = artifact.parent / METADATA_FILE
    return files + ([beside] if beside.is_file() else [])


def write_statistics(artifact: Path, statistics: dict) -> list[Path]:
    """Put ``statistics`` into every metadata file of ``artifact`` that differs, each one's previous
    metadata first saved to ``<file>.previous.json``; the graph before metadata.json, so a failure
    between them leaves metadata.json (which wins at load) on the old numbers. metadata.json is
    shared by the folder's graphs, so there the numbers go under ``ARTIFACT_STATISTICS`` by the
    graph's file name and the other graphs keep theirs. The files written."""
    written = []
    for path in metadata_files(artifact):
        current = read_metadata_json(path) if path.suffix == ".json" else read_onnx_metadata(path)
        if path.suffix == ".json":
            if statistics_beside(current, artifact.name) == statistics:
                continue
            calibrated = {**(current.get(ARTIFACT_STATISTICS) or {}), artifact.name: statistics}
            updated = {**current, ARTIFACT_STATISTICS: calibrated}
        else:
            if current.get("statistics") == statistics:
                continue
            updated = {**current, "statistics": statistics}
        validate_metadata(updated)
        write_json_atomic(_backup_path(path), current)
        if path.suffix == ".json":
            write_json_atomic(path, updated)
        else:
            write_bytes_atomic(path, with_metadata_prop(path.read_bytes(), METADATA_KEY, json.dumps(updated)))
        written.append(path)
    return written


def _backup_path(path: Path) -> Path:
    return path.with_name(path.name + BACKUP_SUFFIX)


def detection_metrics(good: np.ndarray, bad: np.ndarray, threshold: float) -> dict[str, float]:
    """Recall, precision and F1 of ``score > threshold`` on good (0) and bad (1) images, and the
    threshold with the best F1 (midway between the lowest flagged score and the next one below)."""
    scores = np.concatenate([good, bad]).astype(np.float64)
    labels = np.concatenate([np.zeros(len(good), bool), np.ones(len(bad), bool)])
    flagged = scores > threshold
    true_pos = int((flagged & labels).sum())
    precision = true_pos / int(flagged.sum()) if flagged.any() else 0.0
    recall = true_pos / len(bad)
    count, (tps,) = tie_cumsums(scores, [labels])  # at each distinct score, highest first: flag score >= it
    cuts = np.unique(scores)[::-1]
    f1s = 2 * tps / (count + len(bad))
    best = int(np.argmax(f1s))
    below = cuts[best + 1] if best + 1 < len(cuts) else np.nextafter(cuts[best], -np.inf)
    return {"recall": recall, "precision": precision, "f1": _f1(precision, recall), "images": len(bad),
            "best_f1": float(f1s[best]), "best_f1_threshold": float((cuts[best] + below) / 2)}


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def summary_text(result: dict[str, Any]) -> str:
    """Lines for the console: the new threshold against the old, what the good (and bad) images say."""
    moved = result["moved"]
    old = result["previous_threshold"]
    lines = [f"{result['artifact']}: {moved['threshold']} threshold {result['threshold']:.6g} (was "
             f"{'none' if old is None else f'{old:.6g}'}; {result['rule']} on {result['backend']['backend']}); "
             f"{result['good_above_threshold']:.1%} of the good images score above it"]
    if result["category"] is None and moved["kept"]:
        lines.append(f"only the pooled threshold moved (sources run without a category); the thresholds of "
                     f"{', '.join(moved['kept'])} are unchanged: if these images are one category's, pass "
                     "--category NAME instead")
    bad = result["bad"]
    if bad is not None:
        lines.append(f"{bad['images']} bad images: recall {bad['recall']:.3f}, F1 {bad['f1']:.3f}; best F1 "
                     f"{bad['best_f1']:.3f} at threshold {bad['best_f1_threshold']:.6g}")
    if result["unchanged"]:
        lines.append("metadata unchanged (it already holds these statistics)")
    else:
        lines.append("updated " + ", ".join(result["written"]) + f"; previous metadata kept as <file>{BACKUP_SUFFIX}")
    return "\n".join(lines)
