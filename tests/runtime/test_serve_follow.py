"""`serve` on a deployment folder follows promote / rollback: its follower and real handlers over real
version folders (no Triton: PyTriton would call the handlers just as these tests do)."""

from __future__ import annotations

import json
import re
import threading
import time

import numpy as np
import onnx
import pytest
from runtime_fixtures import reference, rescale_standin, write_export_dir

from mmad_edge.runtime.artifact.deployment import deployed_folder, promote
from mmad_edge.runtime.loop import follow
from mmad_edge.runtime.scoring import normalize_score
from mmad_edge.runtime.serving.follow import ServeFollower
from mmad_edge.runtime.serving.handler import InferenceHandler
from mmad_edge.runtime.serving.options import ServeOptions
from mmad_edge.runtime.serving.server import load_detectors
from mmad_edge.runtime.serving.watch import ServeWatch

SIZE = 16
EVERY_S = 0.02  # how often the tests' followers read current (serve: once a second)
WAIT_S = 10.0
FRAMES = np.stack([np.full((SIZE, SIZE, 3), value, np.uint8) for value in (77, 128, 200)])


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict:
    """first: the stand-in; second: its scores doubled (scale 2/255), calibrated to them; broken: does
    not load; wide: another map size; narrow: batches up to 2 where the served one takes 4; blind: no
    statistics, so no threshold."""
    root = tmp_path_factory.mktemp("serve-follow")
    made = {"first": write_export_dir(root / "first", SIZE, threshold=0.6, low=0.3),
            "second": write_export_dir(root / "second", SIZE, threshold=0.9, low=0.6),
            "broken": write_export_dir(root / "broken", SIZE),
            "wide": write_export_dir(root / "wide", 2 * SIZE),
            "narrow": write_export_dir(root / "narrow", SIZE, max_batch=2),
            "blind": write_export_dir(root / "blind", SIZE, statistics=False)}
    rescale_standin(made["second"] / "model.fp32.onnx", 2.0)
    broken = onnx.load(str(made["broken"] / "model.fp32.onnx"))
    broken.graph.node[1].op_type = "NoSuchReduce"  # the metadata reads (promote takes it), the graph does not load
    onnx.save(broken, str(made["broken"] / "model.fp32.onnx"))
    return made


class Served:
    """What `serve` builds over a deployment folder: two instances' handlers, their watch, the follower."""

    def __init__(self, deploy, options: ServeOptions = ServeOptions(instances=2, drift_window=4),
                 every_s: float | None = EVERY_S, load=load_detectors) -> None:
        folder = deployed_folder(deploy)
        detectors = load_detectors(folder, options)
        self.watch = ServeWatch(detectors[0].info.raw.get("statistics"), options)
        self.handlers = [InferenceHandler(detector, self.watch) for detector in detectors]
        self.following = ServeFollower(deploy, folder.name, self.handlers, lambda path: load(path, options), every_s)
        self.err = ""

    def poll_until(self, done) -> None:
        """Poll as serve's main thread does until ``done()`` holds."""
        deadline = time.monotonic() + WAIT_S
        while not done():
            assert time.monotonic() < deadline
            self.following.poll()
            time.sleep(0.005)

    def stderr(self, capsys) -> str:
        """What was said on stderr so far."""
        self.err += capsys.readouterr().err
        return self.err

    def close(self) -> None:
        self.following.close()
        for handler in self.handlers:
            handler.close()


def scores(answer: dict) -> list[float]:
    return answer["score"].reshape(-1).tolist()


def expected(scale: float) -> list[float]:
    return [scale * reference(frame)[1] for frame in FRAMES]


def test_a_promote_swaps_every_instance_between_two_executions_and_a_broken_one_keeps_serving(exports, tmp_path,
                                                                                              capsys):
    deploy = tmp_path / "deploy"
    promote(exports["first"], deploy)
    served = Served(deploy)
    try:
        answers = [handler([{"image": FRAMES}]) for handler in served.handlers]
        promote(exports["second"], deploy)
        while served.following.version == "0001-first":  # executions and polls in turn, as Triton and serve's loop
            answers += [handler([{"image": FRAMES}]) for handler in served.handlers]
            served.following.poll()
            time.sleep(0.002)
            assert len(answers) < 5000
        after = [handler([{"image": FRAMES}, {"image": FRAMES[:1]}]) for handler in served.handlers]
        promote(exports["broken"], deploy)
        served.poll_until(lambda: "0003-broken not loaded" in served.stderr(capsys))
        for _ in range(20):  # ~ 20 looks at current: the broken version is not tried again
            served.following.poll()
            time.sleep(EVERY_S)
        still = [handler([{"image": FRAMES}]) for handler in served.handlers]
        report = served.following.report()
    finally:
        served.close()

    for answer in answers:  # every execution before the swap: the first version's scores and verdicts
        assert scores(answer[0]) == pytest.approx(expected(1.0), rel=1e-6)
        assert answer[0]["is_anomaly"].reshape(-1).tolist() == [False, False, True]  # 0.3, 0.5, 0.78 > 0.6
    for answer in after + still:  # every one after it: the second's, on both instances
        assert scores(answer[0]) == pytest.approx(expected(2.0), rel=1e-6)
        assert answer[0]["is_anomaly"].reshape(-1).tolist() == [False, True, True]  # 0.6, 1.0, 1.57 > 0.9
        np.testing.assert_allclose(answer[0]["score_normalized"].reshape(-1),
                                   [normalize_score(score, 0.6, 0.9) for score in expected(2.0)], rtol=1e-5)
    assert scores(after[0][1]) == pytest.approx(expected(2.0)[:1], rel=1e-6)
    assert set(after[0][0]) == {"score", "score_normalized", "is_anomaly", "anomaly_map"}  # no new output
    assert all(handler.detector.info.threshold == 0.9 for handler in served.handlers)

    err = served.stderr(capsys)
    swapped_at = len(answers) * len(FRAMES)
    line = re.escape(f"mmad-edge: deployment {deploy}: ")
    assert len(re.findall(line + f"now scoring with 0002-second from frame {swapped_at} "
                          r"\(was 0001-first, promoted at \d\d:\d\d:\d\d; threshold 0.6 -> 0.9\)\n", err)) == 1
    assert len(re.findall(line + r"0003-broken not loaded, still scoring with 0002-second: .*NoSuchReduce.*; "
                          "it is tried again when current changes\n", err)) == 1
    assert err.count(f"deployment {deploy}") == 2
    assert f"  swap at frame {swapped_at}: 0001-first -> 0002-second (promoted)\n" in err
    assert (report["deployment"], report["version"], report["follow"]) == (str(deploy), "0002-second", True)
    assert [(swap["from"], swap["to"], swap["frame"]) for swap in report["swaps"]] == [
        ("0001-first", "0002-second", swapped_at)]
    assert [failure["version"] for failure in report["swap_failures"]] == ["0003-broken"]
    assert "NoSuchReduce" in report["swap_failures"][0]["reason"]


def test_an_execution_in_flight_finishes_on_the_old_version_and_the_swap_waits_for_it(exports, tmp_path):
    deploy = tmp_path / "deploy"
    promote(exports["first"], deploy)
    loaded = threading.Event()

    def load(path, options):
        detectors = load_detectors(path, options)
        loaded.set()
        return detectors

    served = Served(deploy, load=load)
    old = served.handlers[0].detector
    entered, release = threading.Event(), threading.Event()
    predict = old.predict

    def held(*args, **kwargs):
        entered.set()
        release.wait(WAIT_S)
        return predict(*args, **kwargs)

    old.predict = held
    in_flight: list = []
    execution = threading.Thread(target=lambda: in_flight.append(served.handlers[0]([{"image": FRAMES}])))
    swapping = threading.Thread(target=lambda: served.poll_until(lambda: served.following.version != "0001-first"))
    try:
        execution.start()
        assert entered.wait(WAIT_S)
        promote(exports["second"], deploy)
        swapping.start()
        assert loaded.wait(WAIT_S)
        time.sleep(0.3)  # the swap is ready: it waits for the execution in flight
        assert served.following.version == "0001-first" and not old.closed and swapping.is_alive()
        release.set()
        execution.join(WAIT_S)
        swapping.join(WAIT_S)
        assert served.following.version == "0002-second" and old.closed
        assert scores(in_flight[0][0]) == pytest.approx(expected(1.0), rel=1e-6)
        assert scores(served.handlers[0]([{"image": FRAMES}])[0]) == pytest.approx(expected(2.0), rel=1e-6)
        assert served.following.report()["swaps"][0]["frame"] == len(FRAMES)
    finally:
        release.set()
        served.close()


@pytest.mark.parametrize("export, reason", [
    ("wide", "its anomaly map is 32x32, Triton's model config declares 16x16; restart serve to serve it"),
    ("narrow", "it takes batches up to 2, Triton's model config declares 4; restart serve to serve it, or re-export "
               "it with a batch profile up to 4"),
    ("blind", "it has no threshold (exported without statistics), so every is_anomaly would be false; run mmad-edge "
              "calibrate-threshold on it and promote it again"),
])
def test_a_version_that_cannot_take_over_is_refused_in_one_line(exports, tmp_path, capsys, export, reason):
    deploy = tmp_path / "deploy"
    promote(exports["first"], deploy)
    served = Served(deploy)
    try:
        promote(exports[export], deploy)
        served.poll_until(lambda: served.following.report()["swap_failures"])
        answer = served.handlers[1]([{"image": FRAMES[:1]}])  # a normal frame: the drift watch stays quiet
    finally:
        served.close()
    assert scores(answer[0]) == pytest.approx(expected(1.0)[:1], rel=1e-6)
    assert capsys.readouterr().err == (f"mmad-edge: deployment {deploy}: 0002-{export} not loaded, still scoring with "
                                       f"0001-first: {reason}; it is tried again when current changes\n")


def test_a_version_without_a_category_clients_send_is_refused_in_one_line(exports, tmp_path, capsys):
    categorized = write_export_dir(tmp_path / "categorized", SIZE, threshold=0.6, low=0.3)
    for name in ("metadata.json",):
        metadata = json.loads((categorized / name).read_text())
        metadata["statistics"]["categories"] = {"gravel": {"threshold": 0.5, "normalization": {"low": 0.2, "high": 0.5}}}
        (categorized / name).write_text(json.dumps(metadata))
    deploy = tmp_path / "deploy"
    promote(categorized, deploy)
    served = Served(deploy)
    try:
        promote(exports["first"], deploy)
        served.poll_until(lambda: served.following.report()["swap_failures"])
        answer = served.handlers[0]([{"image": FRAMES[:1], "category": np.array([[b"gravel"]], dtype=object)}])
    finally:
        served.close()
    assert "mmad_edge_rejected" not in answer[0]  # still served by the version that knows gravel
    said = [line for line in capsys.readouterr().err.splitlines() if "deployment" in line]  # not the override notes
    assert said == [
        f"mmad-edge: deployment {deploy}: 0002-first not loaded, still scoring with 0001-categorized: it has no "
        "statistics for gravel, which clients may send as category; promote a version trained on them; it is tried "
        "again when current changes"]


def test_the_drift_watch_restarts_on_the_new_version_s_normal_scores_and_keeps_its_events(exports, tmp_path,
                                                                                           capsys):
    deploy = tmp_path / "deploy"
    promote(exports["first"], deploy)
    served = Served(deploy)
    bright, normal = FRAMES[1:2], FRAMES[:1]  # first: 0.502 is 20 std above 0.3; second: 0.604 is 0.4 above 0.6
    try:
        for _ in range(2):
            served.handlers[0]([{"image": bright}])
        assert served.watch.summary()["drift"]["pooled"]["drifting"] is True
        promote(exports["second"], deploy)
        served.poll_until(lambda: served.following.version == "0002-second")
        for handler in served.handlers:
            handler([{"image": normal}])
        summary = served.watch.summary()
    finally:
        served.close()
    assert summary["drift_events"] == 1
    assert summary["drift"]["pooled"] == {"events": 1, "drifting": False, "frames": 2,
                                          "statistic": pytest.approx((2 * reference(normal[0])[1] - 0.6) / 0.01,
                                                                     abs=1e-3)}
    assert capsys.readouterr().err.count("mmad-edge: drift: pooled scores (no category): ") == 1


def test_no_follow_never_reads_current(exports, tmp_path, monkeypatch):
    looks = []
    monkeypatch.setattr(follow, "current_version", lambda folder: looks.append(folder))
    deploy = tmp_path / "deploy"
    promote(exports["first"], deploy)
    served = Served(deploy, every_s=None)
    try:
        promote(exports["second"], deploy)
        for _ in range(10):
            served.following.poll()
            time.sleep(EVERY_S)
        answer = served.handlers[0]([{"image": FRAMES}])
        report = served.following.report()
    finally:
        served.close()
    assert looks == [] and scores(answer[0]) == pytest.approx(expected(1.0), rel=1e-6)
    assert (report["version"], report["follow"], report["swaps"]) == ("0001-first", False, [])
