"""`mmad-edge tune`'s runtime half: the candidates a folder offers, the pick among measured ones, and
the tuned choice that `Detector.load(folder)` follows on the same machine and ignores elsewhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from runtime_fixtures import write_export_dir

from mmad_edge.runtime import Detector
from mmad_edge.runtime.artifact.contract import TUNED_FILE, artifact_name
from mmad_edge.runtime.artifact.deployment import promote
from mmad_edge.runtime.backends import REGISTRY
from mmad_edge.runtime.backends.base import BackendOptions
from mmad_edge.runtime.tuning import choice as choice_module
from mmad_edge.runtime.tuning.candidates import Candidate, candidates
from mmad_edge.runtime.tuning.choice import choice_document, read_choice
from mmad_edge.runtime.tuning.machine import cpu_model
from mmad_edge.runtime.tuning.selection import Rule, Trial, choose, criteria, judge

SIZE = 32
OPENVINO = REGISTRY["openvino"].available()


def _candidate(name: str, backend: str = "onnxruntime", precision: str = "fp32", **options) -> Candidate:
    return Candidate(name, backend, Path(artifact_name(precision)), precision, BackendOptions(**options))


def _trial(name: str, p50: float | None, passed: bool | None, **options) -> Trial:
    timing = None if p50 is None else {"p50_ms": p50, "images_per_s": 1000.0 / p50}
    return Trial(_candidate(name, **options), timing, {"auroc_drop": 0.0}, passed, None if passed else "failed")


def test_the_fastest_passing_candidate_wins_and_a_failing_one_never_does():
    trials = [_trial("slow-pass", 30.0, True), _trial("fast-fail", 5.0, False), _trial("mid-pass", 12.0, True),
              _trial("skipped", None, None), _trial("untimed-pass", None, True)]
    assert choose(trials).candidate.name == "mid-pass"
    assert choose([t for t in trials if t.candidate.name != "mid-pass"]).candidate.name == "slow-pass"
    assert choose([trials[1], trials[3]]) is None  # nothing passed: nothing is deployed


def test_judge_holds_auroc_and_agreement_with_labels_and_shift_and_agreement_without():
    rule = Rule(max_auroc_drop=0.005, max_score_shift=0.01, min_agreement=0.99)
    assert judge({"auroc_drop": 0.004}, rule) == []
    assert judge({"auroc_drop": -0.02}, rule) == []  # better than FP32 passes
    assert judge({"auroc_drop": 0.0051}, rule) == ["auroc_drop 0.0051 > 0.005"]
    normal_only = {"auroc_drop": None, "score_shift": -0.004, "verdict_agreement": 1.0}
    assert judge(normal_only, rule) == []
    assert judge({**normal_only, "score_shift": 0.02, "verdict_agreement": 0.95}, rule) == [
        "score_shift 0.02 beyond 0.01", "verdict_agreement 0.95 < 0.99"]
    assert "calibrate-threshold" in judge({**normal_only, "verdict_agreement": None}, rule)[0]
    assert criteria(normal_only) == ("score_shift", "verdict_agreement")
    assert judge(None, rule) == ["outputs not finite"]
    with pytest.raises(ValueError, match="--max-auroc-drop >= 0"):
        Rule(max_auroc_drop=-0.1)


def test_with_labels_a_candidate_that_holds_auroc_but_flips_verdicts_fails_naming_the_flips():
    rule = Rule(max_auroc_drop=0.005, min_agreement=0.99)
    flipping = {"auroc_drop": 0.0, "verdict_agreement": 47 / 60, "verdicts_differing": 13, "verdicts_compared": 60}
    assert judge(flipping, rule) == ["verdict_agreement 0.7833 < 0.99 (13 of 60 flipped)"]
    assert judge({**flipping, "auroc_drop": 0.01}, rule) == [
        "auroc_drop 0.01 > 0.005", "verdict_agreement 0.7833 < 0.99 (13 of 60 flipped)"]
    agreeing = {"auroc_drop": 0.0, "verdict_agreement": 0.99, "verdicts_differing": 1, "verdicts_compared": 100}
    assert judge(agreeing, rule) == []  # exactly at --min-agreement passes
    assert judge(agreeing, Rule(min_agreement=0.995)) == ["verdict_agreement 0.99 < 0.995 (1 of 100 flipped)"]
    assert criteria(flipping) == ("auroc_drop", "verdict_agreement")
    no_threshold = {"auroc_drop": 0.0}  # neither side had a threshold: AUROC alone, and the evidence says so
    assert judge(no_threshold, rule) == [] and criteria(no_threshold) == ("auroc_drop",)
    assert Trial(_candidate("onnx-int8"), metrics=no_threshold).to_dict()["judged"] == ["auroc_drop"]
    trials = [Trial(_candidate("fast-flipping"), {"p50_ms": 5.0}, flipping, not judge(flipping, rule)),
              Trial(_candidate("slow-agreeing"), {"p50_ms": 9.0}, agreeing, not judge(agreeing, rule))]
    assert choose(trials).candidate.name == "slow-agreeing"


def test_candidates_cover_every_backend_graph_and_variant_with_the_reason_for_each_that_cannot_run(tmp_path):
    folder = write_export_dir(tmp_path / "export", SIZE, precisions=("fp32", "int8"))
    found = {c.name: c for c in candidates(folder, batch=1)}
    assert {"onnx-fp32", "onnx-int8"} <= set(found)
    assert found["onnx-fp32"].options.given() == {} and found["onnx-int8"].precision == "int8"
    if OPENVINO:  # each compute precision x each hint; INT8 in f32 only
        assert {"ov-fp32-latency", "ov-fp32-throughput", "ov-fp32-bf16-latency", "ov-fp32-f16-throughput",
                "ov-int8-latency", "ov-int8-throughput"} <= set(found)
        assert found["ov-fp32-bf16-latency"].options.given() == {"inference_precision": "bf16",
                                                                 "performance_hint": "latency"}
        runnable = [c for c in found.values() if c.backend == "openvino" and c.problem is None]
        assert runnable and all(c.options.given()["inference_precision"] == "f32" or "units" not in str(c.problem)
                                for c in runnable)
    threaded = [c.name for c in candidates(folder, 1, threads=(1, 2)) if c.backend == "onnxruntime"]
    assert threaded == ["onnx-fp32", "onnx-fp32-t1", "onnx-fp32-t2", "onnx-int8-t1", "onnx-int8-t2"]
    with pytest.raises(ValueError, match="no model.<precision>.onnx or .engine here"):
        candidates(tmp_path, 1)


def test_the_reference_is_a_candidate_whatever_threads_are_asked_and_only_it(tmp_path):
    folder = write_export_dir(tmp_path / "export", SIZE, precisions=("fp32", "int8"))
    for threads in ((None,), (1,), (1, 2), (None, 4)):
        found = candidates(folder, 1, threads=threads)
        references = [c for c in found if c.reference]
        assert [(c.name, c.backend, c.precision, c.options.given()) for c in references] == [
            ("onnx-fp32", "onnxruntime", "fp32", {})], threads
        assert sum(c.options.threads is None for c in found if c.backend == "onnxruntime") == (
            1 if None not in threads else 2), threads  # only the reference graph gains the library's threads
    single = [c.name for c in candidates(folder, 1, threads=(1,)) if c.backend == "onnxruntime"]
    assert single == ["onnx-fp32", "onnx-fp32-t1", "onnx-int8-t1"]  # the thread count named, even alone


@pytest.mark.skipif(not OPENVINO, reason="needs openvino")
def test_a_variant_the_cpu_lacks_units_for_is_skipped_naming_them_not_a_flag_tune_lacks(tmp_path):
    from mmad_edge.runtime.backends.openvino import PRECISION_UNITS

    folder = write_export_dir(tmp_path / "export", SIZE, precisions=("fp32",))
    skipped = [c for c in candidates(folder, 1) if c.backend == "openvino" and c.problem is not None]
    if not skipped:
        pytest.skip("this CPU has the units of every OpenVINO compute precision")
    for candidate in skipped:
        precision = candidate.options.given()["inference_precision"]
        assert candidate.problem.startswith(f"inference_precision {precision}: this CPU has no "
                                            f"{PRECISION_UNITS[precision]} units (it offers ")
        assert "--" not in candidate.problem and candidate.problem.endswith(")")


def test_nothing_slower_than_the_reference_is_chosen():
    reference_trial = Trial(Candidate("onnx-fp32", "onnxruntime", Path("model.fp32.onnx"), "fp32", BackendOptions(),
                                      reference=True), {"p50_ms": 9.08}, {"auroc_drop": 0.0}, True)
    slower = [_trial("ov-fp32-latency-t1", 13.4, True), _trial("onnx-fp32-t1", 12.7, True)]
    assert choose([*slower, reference_trial]) is reference_trial
    assert choose([*slower, reference_trial, _trial("ov-int8-latency", 6.0, True)]).candidate.name == "ov-int8-latency"
    assert reference_trial.to_dict()["reference"] is True and slower[0].to_dict()["reference"] is False


def _tune_by_hand(folder: Path, chosen: Trial, ran_on: dict) -> Path:
    """What tune writes for ``chosen``, measured on a machine ``ran_on`` describes."""
    chosen = Trial(chosen.candidate, chosen.timing, chosen.metrics, chosen.passed, chosen.reason, ran_on)
    path = folder / TUNED_FILE
    path.write_text(json.dumps(choice_document(chosen, [chosen], {"batch": 1})))
    return path


def _ort_here(folder: Path) -> dict:
    with Detector.load(folder / artifact_name("fp32"), "onnxruntime") as detector:
        return detector.backend.describe()


def test_load_follows_the_tuned_choice_and_keeps_options_given_over_it(tmp_path):
    folder = write_export_dir(tmp_path / "export", SIZE, precisions=("fp32", "int8"))
    with Detector.load(folder) as plain:
        assert plain.backend.path.name == "model.fp32.onnx"  # CPU order: fp32 first
    chosen = _trial("onnx-int8-t1", 3.0, True, precision="int8", threads=1)
    _tune_by_hand(folder, Trial(Candidate("onnx-int8-t1", "onnxruntime", folder / "model.int8.onnx", "int8",
                                          chosen.candidate.options), chosen.timing, chosen.metrics, True),
                  _ort_here(folder))
    choice = read_choice(folder)
    assert (choice.name, choice.backend, choice.precision, dict(choice.options)) == (
        "onnx-int8-t1", "onnxruntime", "int8", {"threads": 1})
    assert choice.load_options(BackendOptions(threads=2, micro_batch=0)).given() == {"threads": 2, "micro_batch": 0}
    with Detector.load(folder) as tuned:
        assert tuned.backend.path.name == "model.int8.onnx"
    with Detector.load(folder, precision="fp32") as asked:  # a precision asked for wins over the choice
        assert asked.backend.path.name == "model.fp32.onnx"
    with Detector.load(folder, backend="onnxruntime") as named:  # so does a backend asked for by name
        assert named.backend.path.name == "model.fp32.onnx"
    deploy = tmp_path / "deploy"
    promote(folder, deploy)
    with Detector.load(deploy) as deployed:  # a deployment folder: the choice its current version carries
        assert deployed.backend.path == deploy / "versions" / "0001-export" / "model.int8.onnx"


def test_a_choice_that_does_not_load_here_is_ignored_with_one_line(tmp_path, capsys):
    folder = write_export_dir(tmp_path / "export", SIZE, precisions=("fp32", "int8"))
    candidate = Candidate("onnx-int8", "onnxruntime", folder / "model.int8.onnx", "int8", BackendOptions())
    _tune_by_hand(folder, Trial(candidate, {"p50_ms": 1.0}, {"auroc_drop": 0.0}, True), _ort_here(folder))
    capsys.readouterr()
    (folder / "model.int8.onnx").write_bytes(b"not an onnx graph")
    with Detector.load(folder) as detector:  # auto goes on as without the choice
        assert detector.backend.path.name == "model.fp32.onnx"
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"mmad-edge: ignoring {folder / TUNED_FILE}: its onnx-int8 does "
                                                   "not load here (")


def test_a_choice_from_another_machine_is_ignored_with_one_line(tmp_path, capsys, monkeypatch):
    folder = write_export_dir(tmp_path / "export", SIZE, precisions=("fp32", "int8"))
    candidate = Candidate("onnx-int8", "onnxruntime", folder / "model.int8.onnx", "int8", BackendOptions())
    trial = Trial(candidate, {"p50_ms": 1.0}, {"auroc_drop": 0.0}, True)
    ran_on = _ort_here(folder)
    capsys.readouterr()

    _tune_by_hand(folder, trial, {**ran_on, "library_version": "0.0.1"})  # another onnxruntime release
    with Detector.load(folder) as detector:
        assert detector.backend.path.name == "model.fp32.onnx"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tuned on another machine (library_version '0.0.1' -> " in err
    assert f"run mmad-edge tune {folder} here" in err

    _tune_by_hand(folder, trial, ran_on)
    monkeypatch.setattr(choice_module, "cpu_model", lambda: "Some Other CPU")
    assert read_choice(folder) is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cpu {cpu_model()!r} -> 'Some Other CPU'" in err
    monkeypatch.undo()

    assert read_choice(folder).name == "onnx-int8"  # the same machine: followed, silently
    assert capsys.readouterr().err == ""
    (folder / TUNED_FILE).write_text("{not json")
    with Detector.load(folder) as detector:
        assert detector.backend.path.name == "model.fp32.onnx"
    assert "not a tuned choice this version reads" in capsys.readouterr().err
