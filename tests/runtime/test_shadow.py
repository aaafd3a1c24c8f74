"""`run --shadow`: a candidate export scored on the deployed detector's frames, off the loop's path.

The deployed stand-in has threshold 0.5 and the candidate 0.4 (both with the normal median at 0.3),
so uniform frames scoring in (0.4, 0.5] are the known disagreements (the stand-in's score of a
uniform frame of value v is v / 255).
"""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from runtime_fixtures import reference, write_export_dir

from mmad_edge.runtime import Detector, RunOptions, run_stream
from mmad_edge.runtime.errors import ArtifactError
from mmad_edge.runtime.loop.shadow import QUEUE_FRAMES, DisagreementLog, Shadow, ShadowFrame
from mmad_edge.runtime.loop.sources import FrameSource
from mmad_edge.runtime.monitor.prometheus import DetectorMetrics

SIZE = 32
VALUES = list(range(61, 181, 8))  # 15 frames, scores 0.24 ... 0.68, none on a threshold
LOW, DEPLOYED, CANDIDATE = 0.3, 0.5, 0.4


def score(value: int) -> float:
    return reference(np.full((SIZE, SIZE, 3), value, np.uint8))[1]


def normalized(value: int, threshold: float) -> float:
    return float(np.clip(0.5 + 0.5 * (score(value) - threshold) / (threshold - LOW), 0, 1))


DISAGREEING = [value for value in VALUES if CANDIDATE < score(value) <= DEPLOYED]


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("shadow")
    return {"deployed": write_export_dir(root / "deployed", SIZE, threshold=DEPLOYED, low=LOW),
            "candidate": write_export_dir(root / "candidate", SIZE, threshold=CANDIDATE, low=LOW),
            "bare": write_export_dir(root / "bare", SIZE, statistics=False)}


class PacedSource(FrameSource):
    """Uniform frames of the given values, one every ``pause_s`` (a file-like source: nothing dropped
    upstream), named ``v<value>``."""

    def __init__(self, values, pause_s=0.0, name="paced"):
        self.values, self.pause_s, self.name = values, pause_s, name

    def frames(self):
        for value in self.values:
            time.sleep(self.pause_s)
            yield f"v{value}", np.full((24, 24, 3), value, np.uint8)


def test_agreement_counts_and_disagreements_against_a_second_export(exports, tmp_path):
    assert len(DISAGREEING) == 3
    out = io.StringIO()
    summary = run_stream(exports["deployed"], PacedSource(VALUES, pause_s=0.02), stdout=out,
                         options=RunOptions(jsonl=True, shadow=exports["candidate"], shadow_log=tmp_path / "log"))
    shadow = summary["shadow"]
    assert summary["frames"] == len(VALUES) and len(out.getvalue().splitlines()) == len(VALUES)
    assert shadow["dropped"] == 0 and shadow["error"] is None
    assert (shadow["compared"], shadow["agreed"], shadow["disagreed"]) == (15, 12, 3)
    assert shadow["agreement"] == pytest.approx(12 / 15)
    differences = [abs(normalized(v, DEPLOYED) - normalized(v, CANDIDATE)) for v in VALUES]
    assert shadow["score_normalized_difference"]["mean"] == pytest.approx(np.mean(differences), abs=1e-6)
    assert shadow["score_normalized_difference"]["max"] == pytest.approx(max(differences), abs=1e-6)
    assert shadow["sources"]["paced"]["compared"] == 15 and shadow["candidate"].endswith("model.fp32.onnx")
    records = [json.loads(line) for line in (tmp_path / "log" / "disagreements.jsonl").read_text().splitlines()]
    assert [record["source"] for record in records] == [f"v{value}" for value in DISAGREEING]
    for record, value in zip(records, DISAGREEING):
        assert record["index"] == VALUES.index(value)
        assert (record["deployed"]["is_anomaly"], record["candidate"]["is_anomaly"]) == (False, True)
        assert record["deployed"]["threshold"] == DEPLOYED and record["candidate"]["threshold"] == CANDIDATE
        assert record["candidate"]["score"] == pytest.approx(score(value), rel=1e-6)
        image = cv2.imread(str(tmp_path / "log" / record["files"]["frame"]))
        assert image.shape == (24, 24, 3) and int(image[0, 0, 0]) == value
    assert shadow["log"] == {"folder": str(tmp_path / "log"), "written": 3, "skipped": 0, "held": 3, "max": 500}


def test_a_slow_candidate_drops_frames_and_never_holds_up_the_deployed_detector(exports, monkeypatch):
    pause_s, count = 0.1, 40
    original = Detector.predict

    def predict(self, frames, *args, **kwargs):
        if Path(self.backend.path).parent == exports["candidate"]:
            time.sleep(pause_s)
        return original(self, frames, *args, **kwargs)

    monkeypatch.setattr(Detector, "predict", predict)
    out = io.StringIO()
    summary = run_stream(exports["deployed"], PacedSource([100] * count), RunOptions(jsonl=True, shadow=exports["candidate"]), stdout=out)
    shadow = summary["shadow"]
    assert summary["frames"] == count and len(out.getvalue().splitlines()) == count  # every deployed result
    assert shadow["compared"] + shadow["dropped"] == count and shadow["dropped"] > 0 and shadow["compared"] >= 1
    # the candidate needs count * pause_s = 4 s for all; the loop did not wait for it
    assert summary["elapsed_s"] < count * pause_s / 2
    # what was waiting when the source ended is compared after the summary's clock stopped
    assert shadow["compared"] <= QUEUE_FRAMES + summary["elapsed_s"] / pause_s + 1


def test_a_failing_candidate_stops_its_shadow_and_the_run_goes_on(exports, monkeypatch, capsys):
    original, calls = Detector.predict, []

    def predict(self, frames, *args, **kwargs):
        if Path(self.backend.path).parent == exports["candidate"]:
            calls.append(1)
            if len(calls) == 3:
                raise RuntimeError("device lost\nsecond line")
        return original(self, frames, *args, **kwargs)

    monkeypatch.setattr(Detector, "predict", predict)
    summary = run_stream(exports["deployed"], PacedSource(VALUES, pause_s=0.01),
                         RunOptions(shadow=exports["candidate"]), stdout=io.StringIO())
    shadow = summary["shadow"]
    assert summary["frames"] == len(VALUES) and shadow["error"] == "device lost"
    assert shadow["compared"] == 2 and shadow["dropped"] == len(VALUES) - 2
    assert "mmad-edge: shadow candidate failed (device lost); the deployed detector goes on without it" in (
        capsys.readouterr().err)


class Collecting:
    """A DisagreementSink as the review queue implements it."""

    def __init__(self):
        self.seen, self.closed = [], False

    def on_disagreement(self, frame, deployed, candidate):
        self.seen.append((frame.source, frame.index, frame.category, deployed.is_anomaly, candidate.is_anomaly,
                          frame.image.shape))

    def close(self):
        self.closed = True


def offer_all(shadow: Shadow, deployed: Detector, values, source="cam") -> None:
    for index, value in enumerate(values):
        image = np.full((24, 24, 3), value, np.uint8)
        shadow.offer(ShadowFrame(image, source, None, f"v{value}", index, deployed.normalization), deployed(image))


def test_sink_interface_metrics_and_the_log_cap(exports, tmp_path):
    sink, metrics = Collecting(), DetectorMetrics()
    with Detector.load(exports["deployed"]) as deployed:
        shadow = Shadow(Detector.load(exports["candidate"]), sink, metrics, capacity=len(VALUES))
        offer_all(shadow, deployed, VALUES)
        summary = shadow.finish()
        assert sink.closed and shadow.candidate.closed and shadow.finish() is summary
        assert sink.seen == [("cam", VALUES.index(v), None, False, True, (24, 24, 3)) for v in DISAGREEING]
        sample = metrics.registry.get_sample_value
        assert sample("mmad_edge_shadow_frames_total", {"source": "cam", "verdict": "agree"}) == 12
        assert sample("mmad_edge_shadow_frames_total", {"source": "cam", "verdict": "disagree"}) == 3
        assert sample("mmad_edge_shadow_agreement", {"source": "cam"}) == pytest.approx(0.8)
        for run in (1, 2):  # the cap holds across runs: the second writes nothing more
            log = DisagreementLog(tmp_path / "log", max_items=2)
            shadow = Shadow(Detector.load(exports["candidate"]), log, capacity=len(VALUES))
            offer_all(shadow, deployed, VALUES)
            assert shadow.finish()["log"]["written"] == (2 if run == 1 else 0)
            assert log.skipped == (1 if run == 1 else 3)
    assert len((tmp_path / "log" / "disagreements.jsonl").read_text().splitlines()) == 2
    assert len(list((tmp_path / "log").glob("*.png"))) == 2


class GatedCandidate:
    """A real candidate whose first run waits for ``gate`` (so the test knows what is queued)."""

    def __init__(self, detector):
        self.detector, self.entered, self.gate = detector, threading.Event(), threading.Event()

    def __getattr__(self, name):
        return getattr(self.detector, name)

    def predict(self, frames, *args, **kwargs):
        self.entered.set()
        assert self.gate.wait(10)
        return self.detector.predict(frames, *args, **kwargs)


def test_a_full_queue_drops_the_oldest_frames_and_counts_them_per_source(exports):
    metrics = DetectorMetrics()
    candidate = GatedCandidate(Detector.load(exports["candidate"]))
    with Detector.load(exports["deployed"]) as deployed:
        shadow = Shadow(candidate, None, metrics, capacity=2)
        for index, value in enumerate(VALUES[:6]):
            image = np.full((24, 24, 3), value, np.uint8)
            shadow.offer(ShadowFrame(image, "a" if index % 2 else "b", None, str(index), index, None), deployed(image))
            if index == 0:
                assert candidate.entered.wait(10)  # frame 0 is in the candidate's hands
        candidate.gate.set()
        summary = shadow.finish()
    assert (summary["compared"], summary["dropped"]) == (3, 3)  # 0, then the newest two: 4 and 5
    assert (summary["sources"]["a"]["dropped"], summary["sources"]["b"]["dropped"]) == (2, 1)  # 1, 3 and 2
    assert metrics.registry.get_sample_value("mmad_edge_shadow_dropped_frames_total", {"source": "a"}) == 2
    assert candidate.detector.closed


@pytest.mark.parametrize("candidate, options, message", [
    ("bare", {}, "no threshold for its frames (an export without statistics), so its verdicts cannot be compared"),
    ("missing", {}, "no such artifact; pass a .onnx, a .engine or an export folder"),
    (None, {"shadow_log": "log"}, "--shadow-log keeps the shadow candidate's disagreements; pass the candidate with "
                                  "--shadow EXPORT, or drop --shadow-log"),
    ("candidate", {"shadow_log": "log", "shadow_log_max": 0}, "the shadow log's cap must be at least 1 disagreement"),
])
def test_bad_shadow_options_fail_before_any_frame(exports, tmp_path, candidate, options, message):
    shadow = None if candidate is None else exports.get(candidate, tmp_path / candidate)
    options = {**options, "shadow_log": tmp_path / options["shadow_log"]} if "shadow_log" in options else options
    out = io.StringIO()
    with pytest.raises((ArtifactError, ValueError), match=message.replace("(", r"\(").replace(")", r"\)")):
        run_stream(exports["deployed"], PacedSource(VALUES), RunOptions(jsonl=True, shadow=shadow, **options),
                   stdout=out)
    assert out.getvalue() == "" and not (tmp_path / "log").exists()
