"""`mmad-edge tune` for real over a small export: every candidate timed and verified against FP32 on
images, the fastest faithful one written to tuned.json, and `auto` loading it afterwards."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from runtime_fixtures import build_standin, reference, standin_metadata, write_export_dir
from typer.testing import CliRunner

from mmad_edge.app import tuning
from mmad_edge.cli import app
from mmad_edge.data.catalog import labelled_split
from mmad_edge.data.demo import make_demo_dataset
from mmad_edge.runtime import Detector
from mmad_edge.runtime.artifact.contract import TUNED_FILE
from mmad_edge.runtime.artifact.metadata import ARTIFACT_STATISTICS

SIZE = 64


@pytest.fixture(autouse=True)
def few_timed_calls(monkeypatch):
    monkeypatch.setattr(tuning, "WARMUP", 1)
    monkeypatch.setattr(tuning, "ITERS", 3)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_demo_dataset(tmp_path_factory.mktemp("tune") / "data", ("brick",), n_train=4, n_test_good=6,
                             n_test_defect=6, size=SIZE, seed=0)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _scaled_int8(folder, factor, precision="int8"):
    """An "int8" graph whose scores are ``factor`` times FP32's: as fast, but unfaithful."""
    model = build_standin(SIZE, "dynamic", standin_metadata(SIZE, precision=precision))
    scale = next(init for init in model.graph.initializer if init.name == "scale")
    scale.CopyFrom(onnx.numpy_helper.from_array(np.array(factor / 255.0, np.float32), "scale"))
    onnx.save(model, str(folder / f"model.{precision}.onnx"))


def test_tune_writes_the_fastest_passing_candidate_and_auto_then_loads_it(tmp_path, data):
    folder = write_export_dir(tmp_path / "export", SIZE, precisions=("fp32", "fp16"))
    result = invoke("tune", folder, "--data", data, "--json", tmp_path / "tune.json")
    assert result.exit_code == 0, result.output
    document = json.loads((folder / TUNED_FILE).read_text())
    assert json.loads((tmp_path / "tune.json").read_text()) == document
    trials = document["evidence"]["candidates"]
    timed = [t for t in trials if t["passed"]]
    assert {"onnx-fp32", "onnx-fp16"} <= {t["name"] for t in timed}
    fastest = min(timed, key=lambda t: t["timing"]["p50_ms"])
    assert document["choice"]["name"] == fastest["name"]
    for trial in timed:  # the same graph everywhere: each agrees with FP32 on the demo images
        assert trial["comparison"]["auroc_drop"] == pytest.approx(0.0, abs=1e-6)
        assert trial["timing"]["batch"] == 1 and trial["timing"]["iters"] == 3
    for trial in (t for t in trials if t["passed"] is None):
        assert trial["reason"] and trial["timing"] is None  # cannot run here: listed with the reason
    evidence = document["evidence"]
    assert evidence["image_count"] == 12 and evidence["defective"] == 6
    assert evidence["judged_by"] == "auroc_drop and verdict_agreement"
    assert evidence["machine"]["cpu_model"] == document["machine"]["cpu"]
    assert "onnxruntime" in evidence["machine"]["libraries"] and len(evidence["load_average"]["before"]) == 3
    assert f"{fastest['name']} " in result.stdout and "<- deployed" in result.stdout
    assert f"wrote {folder / TUNED_FILE}" in result.stderr
    chosen = document["choice"]
    with Detector.load(folder) as detector:
        described = detector.backend.describe()
        assert (described["backend"], detector.backend.path.name) == (chosen["backend"], chosen["artifact"])
        assert described["library_version"] == document["machine"]["library_version"]


def test_with_normal_images_only_an_unfaithful_candidate_fails_and_is_never_chosen(tmp_path, data):
    folder = write_export_dir(tmp_path / "export", SIZE, precisions=("fp32",))
    _scaled_int8(folder, 1.5)
    result = invoke("tune", folder, "--good", data / "brick" / "test" / "good", "--json", tmp_path / "tune.json")
    assert result.exit_code == 0, result.output
    document = json.loads((folder / TUNED_FILE).read_text())
    assert document["evidence"]["judged_by"] == "score_shift and verdict_agreement"
    trials = {t["name"]: t for t in document["evidence"]["candidates"]}
    scaled = trials["onnx-int8"]
    assert scaled["passed"] is False and scaled["comparison"]["score_shift"] == pytest.approx(0.5, abs=1e-5)
    assert "score_shift 0.5 beyond 0.01" in scaled["reason"] and scaled["timing"]["p50_ms"] > 0
    assert document["choice"]["artifact"] == "model.fp32.onnx"
    assert "FAIL (score_shift" in result.stdout


def _set_thresholds(folder, shared, **by_artifact):
    """metadata.json with the folder's threshold ``shared`` and graphs' own calibrated thresholds."""
    def statistics(threshold):
        return standin_metadata(SIZE, threshold=threshold)["statistics"]
    metadata = {**standin_metadata(SIZE, threshold=shared),
                ARTIFACT_STATISTICS: {name: statistics(t) for name, t in by_artifact.items()}}
    (folder / "metadata.json").write_text(json.dumps(metadata))


def test_with_labels_a_candidate_that_keeps_auroc_but_flips_verdicts_fails_and_recalibrated_passes(tmp_path, data):
    factor = 1.05  # scores 5 % higher: the same ranking (AUROC), other verdicts near the threshold
    folder = write_export_dir(tmp_path / "export", SIZE, precisions=("fp32",))
    _scaled_int8(folder, factor)
    scores = np.array([reference(frame)[1] for frame in labelled_split(data, "mvtec", None, SIZE, None).frames])
    threshold = float(np.median(scores)) * 1.01  # among the scores, as a threshold on a real line sits
    flipped = int(((scores > threshold) != (scores * factor > threshold)).sum())
    assert flipped >= 1
    _set_thresholds(folder, threshold)
    result = invoke("tune", folder, "--data", data, "--json", tmp_path / "tune.json")
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "tune.json").read_text())
    assert document["evidence"]["judged_by"] == "auroc_drop and verdict_agreement"
    scaled = {t["name"]: t for t in document["evidence"]["candidates"]}["onnx-int8"]
    assert scaled["comparison"]["auroc_drop"] == pytest.approx(0.0, abs=1e-9)  # within --max-auroc-drop
    assert scaled["comparison"]["verdicts_differing"] == flipped
    assert scaled["passed"] is False and scaled["judged"] == ["auroc_drop", "verdict_agreement"]
    assert scaled["reason"] == f"verdict_agreement {1 - flipped / 12:.4g} < 0.99 ({flipped} of 12 flipped)"
    assert document["choice"]["artifact"] == "model.fp32.onnx" and "FAIL (verdict_agreement" in result.stdout

    _set_thresholds(folder, threshold, **{"model.int8.onnx": threshold * factor})  # its own calibrated threshold
    result = invoke("tune", folder, "--data", data, "--json", tmp_path / "tune.json")
    assert result.exit_code == 0, result.output
    scaled = {t["name"]: t for t in json.loads((tmp_path / "tune.json").read_text())["evidence"]["candidates"]}[
        "onnx-int8"]
    assert scaled["comparison"]["verdict_agreement"] == 1.0 and scaled["passed"] is True and scaled["reason"] is None


def test_with_labels_and_no_threshold_verdicts_are_said_not_judged(tmp_path, data):
    folder = write_export_dir(tmp_path / "export", SIZE, precisions=("fp32",), statistics=False)
    _scaled_int8(folder, 1.05)
    result = invoke("tune", folder, "--data", data, "--json", tmp_path / "tune.json")
    assert result.exit_code == 0, result.output
    evidence = json.loads((tmp_path / "tune.json").read_text())["evidence"]
    assert evidence["judged_by"] == tuning.NOT_JUDGED and "verdicts not judged" in evidence["judged_by"]
    scaled = {t["name"]: t for t in evidence["candidates"]}["onnx-int8"]
    assert scaled["passed"] is True and scaled["judged"] == ["auroc_drop"]
    assert "verdict_agreement" not in scaled["comparison"]
    row = next(line for line in result.stdout.splitlines() if line.startswith("onnx-int8 "))
    assert "not judged" in row and f"judged by {tuning.NOT_JUDGED}" in result.stdout


def test_no_candidate_passing_writes_nothing_and_exits_1(tmp_path, data, monkeypatch):
    folder = write_export_dir(tmp_path / "export", SIZE, precisions=("fp32",))
    monkeypatch.setattr(tuning, "judge", lambda metrics, rule: ["forced failure"])
    result = invoke("tune", folder, "--data", data)
    assert result.exit_code == 1
    assert "no candidate passed" in result.output and not (folder / TUNED_FILE).exists()


@pytest.mark.parametrize("args, message", [
    ((), "tune verifies on --data ROOT (a labelled test split) or --good DIR"),
    (("--data", "DATA", "--good", "DATA"), "pass one of them"),
    (("--data", "DATA", "--max-auroc-drop", "-1"), "need --max-auroc-drop >= 0"),
    (("--data", "DATA", "--try-threads", "0"), "--try-threads takes positive thread counts"),
    (("--data", "DATA", "--batch-size", "0"), "--batch-size must be at least 1, got 0"),
])
def test_bad_requests_are_one_line_errors(tmp_path, data, args, message):
    folder = write_export_dir(tmp_path / "export", SIZE, precisions=("fp32",))
    result = invoke("tune", folder, *[data if a == "DATA" else a for a in args])
    assert result.exit_code == 2 and message in result.output
    assert result.output.count("\n") == 1


def test_a_folder_without_its_fp32_graph_is_refused_naming_the_fix(tmp_path, data):
    folder = write_export_dir(tmp_path / "export", SIZE, precisions=("fp16",))
    result = invoke("tune", folder, "--data", data)
    assert result.exit_code == 2 and "no model.fp32.onnx; tune verifies every candidate against the FP32" in result.output


def test_the_reference_is_timed_whatever_try_threads_says_and_the_choice_is_never_slower(tmp_path, data):
    folder = write_export_dir(tmp_path / "export", SIZE, precisions=("fp32", "fp16"))
    result = invoke("tune", folder, "--data", data, "--try-threads", "1", "--json", tmp_path / "tune.json")
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "tune.json").read_text())
    trials = {t["name"]: t for t in document["evidence"]["candidates"]}
    reference_trial = trials["onnx-fp32"]  # ONNX Runtime FP32 at the library's threads, though only 1 was asked
    assert reference_trial["reference"] is True and reference_trial["options"] == {}
    assert reference_trial["passed"] is True and reference_trial["timing"]["p50_ms"] > 0
    assert trials["onnx-fp32-t1"]["options"] == {"threads": 1} and trials["onnx-fp32-t1"]["reference"] is False
    assert [t["name"] for t in trials.values() if t["reference"]] == ["onnx-fp32"]
    assert document["choice"]["timing"]["p50_ms"] <= reference_trial["timing"]["p50_ms"]
    assert "onnx-fp32 (reference)" in result.stdout
    assert f", reference onnx-fp32 {reference_trial['timing']['p50_ms']:.2f} ms" in result.stdout


def test_in_a_log_the_progress_bar_is_drawn_at_the_start_not_once_per_candidate(tmp_path, data):
    folder = write_export_dir(tmp_path / "export", SIZE, precisions=("fp32", "fp16"))
    result = invoke("tune", folder, "--data", data, "--try-threads", "1", "--try-threads", "2")
    assert result.exit_code == 0, result.output
    count = len(json.loads((folder / TUNED_FILE).read_text())["evidence"]["candidates"])
    assert count >= 5  # onnx-fp32, and fp32 and fp16 at 1 and 2 threads
    drawn = [part for part in result.stderr.replace("\r", "\n").splitlines() if part.startswith("tune:")]
    assert drawn and drawn[0].startswith("tune:   0%|") and f" 0/{count} " in drawn[0]
    assert len(drawn) <= 2  # opened, maybe closed: the 30 s log interval, not one redraw per candidate


def _threshold_among_scores(data):
    scores = np.array([reference(frame)[1] for frame in labelled_split(data, "mvtec", None, SIZE, None).frames])
    return scores, float(np.median(scores)) * 1.01


def test_verify_and_tune_judge_verdict_agreement_by_one_rule(tmp_path, data):
    factor = 1.05  # an "fp16" graph ranking like FP32 (Spearman 1, AUROC equal) but flipping verdicts
    folder = write_export_dir(tmp_path / "export", SIZE, precisions=("fp32",))
    _scaled_int8(folder, factor, "fp16")
    scores, threshold = _threshold_among_scores(data)
    flipped = int(((scores > threshold) != (scores * factor > threshold)).sum())
    assert flipped >= 1
    _set_thresholds(folder, threshold)
    agreement = 1 - flipped / 12
    message = f"verdict_agreement {agreement:.4g} < 0.99"
    tuned = invoke("tune", folder, "--data", data, "--json", tmp_path / "tune.json")
    assert tuned.exit_code == 0 and "FAIL (verdict_agreement" in tuned.stdout, tuned.output  # FP32 is deployed
    scaled = {t["name"]: t for t in json.loads((tmp_path / "tune.json").read_text())["evidence"]["candidates"]}[
        "onnx-fp16"]
    assert scaled["passed"] is False and scaled["reason"].startswith(message)

    fp16 = folder / "model.fp16.onnx"
    verified = invoke("verify", fp16, "--data", data, "--json", tmp_path / "verify.json")
    assert verified.exit_code == 1 and f"error: verification failed: {message}" in verified.output
    assert f"verdict agreement {agreement:.4g} ({flipped} of 12 flipped; min 0.99)" in verified.stdout
    checks = {c["name"]: c for c in json.loads((tmp_path / "verify.json").read_text())["checks"]}
    assert set(checks) == {"spearman", "auroc_delta", "verdict_agreement"}  # only the agreement fails
    assert checks["verdict_agreement"] == {"name": "verdict_agreement", "value": pytest.approx(agreement),
                                           "limit": 0.99, "at_most": False, "enforced": True, "passed": False}
    assert checks["spearman"]["passed"] and checks["auroc_delta"]["passed"]

    looser = f"{agreement - 0.01:.4f}"  # the same --min-agreement passes it in both
    assert invoke("verify", fp16, "--data", data, "--min-agreement", looser).exit_code == 0
    assert invoke("tune", folder, "--data", data, "--min-agreement", looser, "--json", tmp_path / "tune.json"
                  ).exit_code == 0
    scaled = {t["name"]: t for t in json.loads((tmp_path / "tune.json").read_text())["evidence"]["candidates"]}[
        "onnx-fp16"]
    assert scaled["passed"] is True
    refused = invoke("verify", fp16, "--data", data, "--min-agreement", "1.5")
    assert refused.exit_code == 2 and "need --min-agreement in [0, 1], got 1.5" in refused.output
    assert refused.output.count("\n") == 1


def test_verify_says_verdict_agreement_is_not_judged_without_a_threshold(tmp_path, data):
    folder = write_export_dir(tmp_path / "export", SIZE, precisions=("fp32",), statistics=False)
    _scaled_int8(folder, 1.05, "fp16")
    result = invoke("verify", folder / "model.fp16.onnx", "--data", data, "--json", tmp_path / "verify.json")
    assert result.exit_code == 0, result.output
    assert "verdict agreement not judged (no threshold)" in result.stdout
    verified = json.loads((tmp_path / "verify.json").read_text())
    assert [c["name"] for c in verified["checks"]] == ["spearman", "auroc_delta"] and verified["passed"] is True


def test_max_images_thins_good_images_evenly_as_it_does_a_labelled_split(tmp_path):
    import cv2

    from mmad_edge.app.tune_options import TuneOptions

    good = tmp_path / "good"
    good.mkdir()
    for index in range(7):  # each image one grey level: which ones were taken shows in the frames
        cv2.imwrite(str(good / f"{index:02d}.png"), np.full((8, 8, 3), 10 * index, np.uint8))
    frames, labels, _ = tuning._images(TuneOptions(good=str(good), max_images=3), 8)
    assert [int(frame[0, 0, 0]) for frame in frames] == [0, 30, 60] and labels.tolist() == [0, 0, 0]
