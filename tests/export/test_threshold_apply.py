"""Apply from the review page: the metadata written atomically with the previous kept, running
detectors switched between batches, and what cannot be applied refused in one line."""

import json
import threading

import numpy as np
import pytest
from ui_fixtures import wait_for, write_deployed

from mmad_edge.export.threshold_apply import MetadataThresholds
from mmad_edge.runtime import Detector
from mmad_edge.runtime.artifact.deployment import deployed_folder, promote, rollback
from mmad_edge.runtime.artifact.metadata import load_contract

BRIGHT = np.full((40, 40, 3), 150, np.uint8)  # the stand-in scores it 150 / 255 = 0.588


@pytest.fixture
def export(tmp_path):
    return write_deployed(tmp_path / "export")


def test_apply_writes_the_metadata_keeps_the_previous_and_switches_running_detectors(export):
    with Detector.load(export, "onnxruntime") as first, Detector.load(export, "onnxruntime") as second:
        assert first(BRIGHT).is_anomaly and second(BRIGHT).is_anomaly
        summary = MetadataThresholds([first, second]).apply(None, 0.62)
        assert summary["previous_threshold"] == 0.5 and "threshold 0.5 -> 0.62" in summary["message"]
        for detector in (first, second):
            judged = detector(BRIGHT)
            assert (judged.is_anomaly, judged.threshold) == (False, 0.62)
            assert judged.score_normalized == pytest.approx(0.5 + 0.5 * (150 / 255 - 0.62) / (0.62 - 0.3), abs=1e-6)
    written = json.loads((export / "metadata.json").read_text())["statistics_by_artifact"]["model.fp32.onnx"]
    assert (written["threshold"], written["normalization"]) == (0.62, {"low": 0.3, "high": 0.62})
    assert json.loads((export / "metadata.json.previous.json").read_text())["statistics"]["threshold"] == 0.5
    assert (export / "model.fp32.onnx.previous.json").is_file()
    with Detector.load(export, "onnxruntime") as reloaded:  # a restart keeps it
        assert reloaded.threshold == 0.62


def test_apply_refuses_what_it_cannot_do_in_one_line(export):
    with Detector.load(export, "onnxruntime") as detector:
        thresholds = MetadataThresholds([detector])
        with pytest.raises(ValueError, match="at or below the normal median 0.3 of the pooled threshold"):
            thresholds.apply(None, 0.2)
        with pytest.raises(ValueError, match="no statistics for category screw; run mmad-edge calibrate-threshold"):
            thresholds.apply("screw", 0.6)
    with Detector.load(export, "onnxruntime", threshold=0.7) as fixed:
        with pytest.raises(ValueError, match="fixed by --threshold 0.7; restart without --threshold"):
            MetadataThresholds([fixed]).apply(None, 0.6)
    assert not (export / "metadata.json.previous.json").exists()


def test_a_detector_scoring_on_another_thread_sees_one_threshold_per_batch(export):
    with Detector.load(export, "onnxruntime") as detector:
        frames = [BRIGHT] * 4
        seen, stop = [], threading.Event()

        def score() -> None:
            while not stop.is_set():
                seen.append({result.threshold for result in detector.predict(frames)})

        worker = threading.Thread(target=score)
        worker.start()
        for threshold in (0.55, 0.6, 0.65, 0.7, 0.58):
            MetadataThresholds([detector]).apply(None, threshold)
        batches = len(seen)
        wait_for(lambda: len(seen) >= batches + 2, what="two batches after the last Apply")
        stop.set()
        worker.join()
    assert seen and all(len(batch) == 1 for batch in seen)
    assert seen[-1] == {0.58}


def test_the_applied_metadata_is_valid_for_every_reader(export):
    with Detector.load(export, "onnxruntime") as detector:
        MetadataThresholds([detector]).apply(None, 0.6)
    info = load_contract(export / "model.fp32.onnx")
    assert info.threshold == 0.6 and info.raw["statistics"]["threshold_rule"] == "set on the review page"


def test_apply_on_a_deployment_promotes_a_copy_and_rollback_undoes_it(export, tmp_path):
    deploy = tmp_path / "deploy"
    promote(export, deploy)
    running = deployed_folder(deploy)
    before = {path.name: path.read_bytes() for path in running.iterdir()}
    with Detector.load(deploy, "onnxruntime") as detector:
        summary = MetadataThresholds([detector]).apply(None, 0.62)
        assert (detector(BRIGHT).is_anomaly, detector.threshold) == (False, 0.62)  # at once, in process
    assert summary["promoted"] == "0002-export-applied" and summary["written"] == []
    assert summary["message"] == (f"the pooled threshold: threshold 0.5 -> 0.62, judging frames from the next batch; "
                                  f"promoted as 0002-export-applied in {deploy} (its versions are never changed in "
                                  "place; mmad-edge rollback undoes it)")
    assert {path.name: path.read_bytes() for path in running.iterdir()} == before  # the running version: untouched
    applied = deployed_folder(deploy)
    assert applied.name == "0002-export-applied" and not list(applied.glob("*.previous.json"))
    with Detector.load(deploy, "onnxruntime") as reloaded:
        assert reloaded.threshold == 0.62
        again = MetadataThresholds([reloaded]).apply(None, 0.64)  # an Apply on an applied version
    assert again["promoted"] == "0003-export-applied" and deployed_folder(deploy).name == "0003-export-applied"
    rollback(deploy)
    with Detector.load(deploy, "onnxruntime") as previous:
        assert previous.threshold == 0.62
    rollback(deploy)
    with Detector.load(deploy, "onnxruntime") as restored:
        assert restored.threshold == 0.5
