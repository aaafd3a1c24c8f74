"""`mmad-edge tune`: time and verify every candidate of an export folder on this machine, deploy the
fastest faithful one.

Each candidate (``runtime.tuning.candidates``: backend x graph x the backend's settings x threads) is
loaded once, scores the images (``verify``'s ``score_frames``), is compared with the folder's FP32
graph on the reference backend (``verify``'s ``compare_to_reference``: scores, AUROC and the
verdicts each graph gives at its own threshold, as the line would), judged by the rule
(``runtime.tuning.selection``) and timed end to end at the deployment batch (the bench's budgeted
loop). The fastest that passes (the reference, ONNX Runtime FP32 at its default threads, is always
timed, so nothing slower than it) is written to ``tuned.json`` atomically with the evidence: every
candidate's timing and metrics, the machine, its library versions and its load while tuning
(timings on a busy machine are slower, not reordered, unless the load changed during the run).
Torch-free: it runs on the device it tunes.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import typer

from mmad_edge.app.exits import fail
from mmad_edge.app.json_output import write_json
from mmad_edge.app.tune_options import TuneOptions
from mmad_edge.bench.console import aligned
from mmad_edge.bench.machine import machine_info
from mmad_edge.bench.runner import e2e_detector_case
from mmad_edge.bench.suite import run_budgeted
from mmad_edge.bench.tables import format_value
from mmad_edge.data.catalog import labelled_split
from mmad_edge.data.split import evenly_spaced
from mmad_edge.export.device_verification import Scored, compare_to_reference, finite, score_frames, verdict_category
from mmad_edge.export.options import GOOD
from mmad_edge.export.threshold_calibration import folder_images
from mmad_edge.fileio import write_json_atomic
from mmad_edge.progress import progress_bar
from mmad_edge.runtime import Detector
from mmad_edge.runtime.artifact.contract import artifact_name
from mmad_edge.runtime.artifact.metadata import load_contract
from mmad_edge.runtime.backends import backend_class, reference
from mmad_edge.runtime.backends.base import BackendOptions
from mmad_edge.runtime.errors import ArtifactError, one_line
from mmad_edge.runtime.imageio import read_image
from mmad_edge.runtime.preprocess import resize_frame
from mmad_edge.runtime.tuning.candidates import Candidate, candidates
from mmad_edge.runtime.tuning.choice import choice_document, tuned_path
from mmad_edge.runtime.tuning.selection import Trial, choose, judge

SCORING_BATCH = 8  # images per run while verifying (timing uses the deployment batch)
WARMUP, ITERS = 5, 50  # timing calls per candidate, cut to the case budget
NOT_JUDGED = ("auroc_drop only: verdicts not judged, FP32 has no threshold in its metadata "
              "(run mmad-edge calibrate-threshold to judge them)")


def _images(options: TuneOptions, size: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(frames at the model size, 0/1 labels, what they are) from ``--data`` or ``--good``."""
    if (options.data is None) == (options.good is None):
        raise ValueError("tune verifies on --data ROOT (a labelled test split) or --good DIR (normal images only); "
                         "pass one of them")
    if options.data is not None:
        split = labelled_split(options.data, options.layout, options.categories, size, options.max_images)
        return split.frames, split.labels, f"{options.layout}:{options.data}"
    paths = folder_images(options.good, GOOD.name)
    if options.max_images is not None:  # evenly spread, as --data's split is (--max-images says so)
        paths = [paths[i] for i in evenly_spaced(np.arange(len(paths)), options.max_images)]
    frames = np.stack([resize_frame(read_image(path), (size, size)) for path in paths])
    return frames, np.zeros(len(frames), dtype=np.int64), f"good:{options.good}"


def _reference(fp32: Path, frames: np.ndarray, category: str | None) -> tuple[Scored, dict[str, Any]]:
    """The FP32 graph's outputs on the reference backend kept to the CPU, and what it ran on."""
    name = reference().name
    with Detector.load(fp32, name, backend_class(name).on_cpu(BackendOptions())) as detector:
        scored = score_frames(detector, frames, SCORING_BATCH, detector.scoring(category)[0], str(fp32))
        return scored, detector.backend.describe()


def _timed(detector: Detector, candidate: Candidate, frames: np.ndarray, options: TuneOptions) -> dict[str, Any]:
    """The bench's e2e row of the loaded detector at the deployment batch (closes the detector)."""
    case = e2e_detector_case(candidate.artifact, options.batch_size, list(frames), name=candidate.name,
                             loader=lambda _path: detector)
    row = run_budgeted(case, WARMUP, ITERS, options.case_budget_s)
    return {key: row[key] for key in ("batch", "p50_ms", "p90_ms", "mean_ms", "images_per_s", "warmup", "iters")}


def _trial(candidate: Candidate, frames: np.ndarray, labels: np.ndarray, ref: Scored, category: str | None,
           options: TuneOptions) -> Trial:
    """Load, score, judge and time one candidate; a broken one is a failed trial with the reason."""
    if candidate.problem is not None:
        return Trial(candidate, reason=candidate.problem)
    try:
        detector = Detector.load(candidate.artifact, candidate.backend, candidate.options)
    except Exception as exc:  # noqa: BLE001 -- one candidate that cannot load must not lose the others
        return Trial(candidate, passed=False, reason=f"load failed: {one_line(exc)}")
    try:
        ran_on = detector.backend.describe()
        scored = score_frames(detector, frames, SCORING_BATCH, detector.scoring(category)[0], candidate.name)
        metrics = compare_to_reference(labels, scored, ref) if finite(scored) else None
        failures = judge(metrics, options.rule)
        timing = _timed(detector, candidate, frames, options)
    except Exception as exc:  # noqa: BLE001 -- a backend error mid-run fails this candidate only
        detector.close()
        return Trial(candidate, passed=False, reason=f"run failed: {one_line(exc)}")
    return Trial(candidate, timing, metrics, not failures, "; ".join(failures) or None, ran_on)


def _judged_by(labelled: bool, threshold: bool) -> str:
    """What the rule held the candidates to, saying so when verdicts could not be judged."""
    if not labelled:
        return "score_shift and verdict_agreement"
    return "auroc_drop and verdict_agreement" if threshold else NOT_JUDGED


def tune_folder(folder: str | os.PathLike[str], options: TuneOptions) -> dict[str, Any]:
    """Measure every candidate of ``folder`` here; write and return ``tuned.json``'s document
    (``choice`` None, nothing written, when no candidate passed)."""
    folder = Path(folder)
    fp32 = folder / artifact_name("fp32")
    if not fp32.is_file():
        raise ArtifactError(f"{folder}: no {fp32.name}; tune verifies every candidate against the FP32 graph: "
                            "pass an mmad-edge export folder that has one (export --precision fp32,...)")
    rule = options.rule  # refuses a bad rule before anything runs
    if options.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {options.batch_size}")
    found = candidates(folder, options.batch_size, tuple(options.threads or (None,)))
    load_before = os.getloadavg()
    info = load_contract(fp32)
    frames, labels, source = _images(options, info.image_size[0])
    category = verdict_category(info.categories, options.categories)
    ref, ref_ran_on = _reference(fp32, frames, category)
    trials = []
    bar = progress_bar(found, "tune", options.progress)
    for candidate in bar:
        bar.set_postfix_str(candidate.name, refresh=False)  # drawn with the count, at the bar's interval
        trials.append(_trial(candidate, frames, labels, ref, category, options))
    evidence = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "folder": str(folder), "batch": options.batch_size, "images": source, "image_count": len(frames),
                "defective": int(labels.sum()), "verdict_category": category, "rule": asdict(rule),
                "judged_by": _judged_by(len(np.unique(labels)) == 2, ref.threshold is not None),
                "reference": {"artifact": fp32.name, "ran_on": ref_ran_on}, "machine": machine_info(),
                "load_average": {"before": list(load_before), "after": list(os.getloadavg())}}
    chosen = choose(trials)
    if chosen is None:
        return {"choice": None, "evidence": {**evidence, "candidates": [t.to_dict() for t in trials]}}
    document = choice_document(chosen, trials, evidence)
    write_json_atomic(tuned_path(folder), document)
    return document


def summary_text(document: dict[str, Any]) -> str:
    """One table of every candidate (the chosen one marked), then the choice in one line."""
    evidence, choice = document["evidence"], document["choice"]
    labelled = 0 < evidence["defective"] < evidence["image_count"]  # both classes: AUROC columns
    header = ["candidate", "p50 ms", "images/s", *(["image AUROC", "AUROC drop"] if labelled else ["score shift"]),
              "agreement", "result"]
    lines = [header]
    for trial in evidence["candidates"]:
        timing, metrics = trial["timing"] or {}, trial["comparison"] or {}
        accuracy = [format_value(value, 4) for value in ([metrics.get("auroc"), metrics.get("auroc_drop")] if labelled
                                                         else [metrics.get("score_shift")])]
        unjudged = trial["judged"] is not None and "verdict_agreement" not in trial["judged"]
        agreement = "not judged" if unjudged else format_value(metrics.get("verdict_agreement"), 4)
        verdict = {True: "pass", False: "FAIL", None: "skipped"}[trial["passed"]]
        mark = " <- deployed" if choice is not None and trial["name"] == choice["name"] else ""
        lines.append([trial["name"] + (" (reference)" if trial.get("reference") else ""), format_value(timing.get("p50_ms"), 2), format_value(timing.get("images_per_s"), 1),
                      *accuracy, agreement,
                      verdict + (f" ({trial['reason']})" if trial["reason"] else "") + mark])
    load = evidence["load_average"]
    tail = (f"{len(evidence['candidates'])} candidates at batch {evidence['batch']} on {evidence['machine']['cpu_model']} "
            f"(load average {load['before'][0]:.1f} -> {load['after'][0]:.1f}), verified on {evidence['image_count']} "
            f"images of {evidence['images']} against {evidence['reference']['artifact']}, judged by "
            f"{evidence['judged_by']}")
    if choice is None:
        return "\n".join([aligned(lines), tail, "no candidate passed: nothing written"])
    return "\n".join([aligned(lines), tail, f"deployed: {choice['name']} ({choice['timing']['p50_ms']:.2f} ms p50"
                                            f"{_against_reference(evidence['candidates'])}); auto loads it from "
                                            f"{evidence['folder']} on this machine"])


def _against_reference(trials: list[dict[str, Any]]) -> str:
    """", reference NAME X ms": the baseline the choice is never slower than, where it was timed."""
    timed = next((t for t in trials if t.get("reference") and t["timing"]), None)
    return "" if timed is None else f", reference {timed['name']} {timed['timing']['p50_ms']:.2f} ms"


def tune_and_report(folder: Path, options: TuneOptions, json_path: Path | None) -> None:
    """Run ``tune_folder``, print its table, exit 1 when no candidate passed."""
    document = tune_folder(folder, options)
    typer.echo(summary_text(document))
    if document["choice"] is not None:
        typer.echo(f"wrote {tuned_path(folder)}", err=True)
    write_json(json_path, document)
    if document["choice"] is None:
        fail("no candidate passed the rule against FP32; see the table (calibrate-threshold, loosen the rule, "
             "or re-export)", 1)
