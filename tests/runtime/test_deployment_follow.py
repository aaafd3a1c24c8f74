"""`run` on a deployment folder follows promote / rollback: a real loop over real version folders,
frames fed one at a time, each record checked against the version it names."""

from __future__ import annotations

import io
import json
import queue
import re
import threading
import time

import numpy as np
import onnx
import pytest
from runtime_fixtures import reference, write_export_dir

from mmad_edge.runtime import RunOptions, run_stream
from mmad_edge.runtime.artifact.deployment import promote, rollback
from mmad_edge.runtime.loop import follow, run
from mmad_edge.runtime.loop.sources import FrameSource
from mmad_edge.runtime.scoring import normalize_score

SIZE = 16
LOW = 0.3
THRESHOLDS = {"first": 0.6, "second": 0.45}
WAIT_S = 10.0


class Conveyor(FrameSource):
    """Frames handed in by the test one at a time (``put``); ``end`` closes the source."""

    name = "line"

    def __init__(self) -> None:
        self.items: queue.Queue = queue.Queue()
        self.given = 0

    def frames(self):
        index = 0
        while (frame := self.items.get()) is not None:
            yield f"part-{index}", frame
            index += 1

    def put(self) -> None:
        value = (37 * self.given) % 256  # frames differ, so each record's score is checkable
        self.items.put(np.full((SIZE, SIZE, 3), value, np.uint8))
        self.given += 1

    def end(self) -> None:
        self.items.put(None)


class Lines(io.StringIO):
    """stdout of the run thread, read by the test while it runs."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        with self.lock:
            return super().write(text)

    def records(self) -> list[dict]:
        with self.lock:
            return [json.loads(line) for line in self.getvalue().splitlines()]


class Running:
    """run_stream on a thread over a Conveyor, with helpers to feed it and wait on what it says."""

    def __init__(self, deploy, options: RunOptions, capsys) -> None:
        self.source, self.out, self.capsys, self.err = Conveyor(), Lines(), capsys, ""
        self.summary: dict = {}
        self.thread = threading.Thread(target=lambda: self.summary.update(
            run_stream(str(deploy), self.source, options, stdout=self.out)))
        self.thread.start()

    def feed(self, count: int = 1) -> list[dict]:
        """Give ``count`` frames and wait until they are scored."""
        for _ in range(count):
            self.source.put()
        self.wait(lambda: len(self.out.records()) == self.source.given)
        return self.out.records()

    def feed_until(self, done, count: int = 1) -> None:
        """Give frames, ``count`` at a time, until ``done(records, stderr)`` holds."""
        deadline = time.monotonic() + WAIT_S
        while not done(self.feed(count), self.stderr()):
            assert time.monotonic() < deadline, self.stderr()
            time.sleep(0.01)

    def stderr(self) -> str:
        self.err += self.capsys.readouterr().err
        return self.err

    def wait(self, condition) -> None:
        deadline = time.monotonic() + WAIT_S
        while not condition():
            assert self.thread.is_alive() and time.monotonic() < deadline, self.stderr()
            time.sleep(0.002)

    def finish(self) -> dict:
        self.source.end()
        self.thread.join(WAIT_S)
        assert not self.thread.is_alive()
        return self.summary


def promoted_while_running(deploy, exports: dict, options: RunOptions, capsys, frames: int, then: str) -> Running:
    """"first" deployed and running, ``frames`` scored by it, then ``then`` promoted."""
    promote(exports["first"], deploy)
    line = Running(deploy, options, capsys)
    line.feed(frames)
    promote(exports[then], deploy)
    return line


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("follow")
    made = {name: write_export_dir(root / name, SIZE, threshold=threshold, low=LOW)
            for name, threshold in THRESHOLDS.items()}
    made["plain"] = write_export_dir(root / "plain", SIZE, statistics=False)  # no threshold to judge by
    broken = write_export_dir(root / "broken", SIZE)
    model = onnx.load(str(broken / "model.fp32.onnx"))
    model.graph.node[1].op_type = "NoSuchReduce"  # the metadata reads (promote takes it), the graph does not load
    onnx.save(model, str(broken / "model.fp32.onnx"))
    made["broken"] = broken
    return made


@pytest.fixture
def quick(monkeypatch):
    """Look at ``current`` every 20 ms instead of every second, so the test is short."""
    monkeypatch.setattr(run, "CHECK_EVERY_S", 0.02)


def expected(record: dict, threshold: float) -> tuple[float, float]:
    value = (37 * int(record["source"].split("-")[1])) % 256
    score = reference(np.full((SIZE, SIZE, 3), value, np.uint8))[1]
    return score, float(normalize_score(score, LOW, threshold))


def test_promote_and_rollback_reach_the_running_loop_between_two_frames(exports, tmp_path, capsys, quick):
    deploy = tmp_path / "deploy"
    line = promoted_while_running(deploy, exports, RunOptions(jsonl=True), capsys, 4, "second")
    line.feed_until(lambda records, _: records[-1]["version"] == "0002-second")
    promote(exports["broken"], deploy)
    line.feed_until(lambda _, err: "0003-broken not loaded" in err)
    for _ in range(15):  # ~ 15 looks at current: the broken version is not tried again
        line.feed()
    rollback(deploy)  # back to the version scoring already: nothing to load
    line.feed_until(lambda _, err: "current is 0002-second again" in err)
    rollback(deploy)
    line.feed_until(lambda records, _: records[-1]["version"] == "0001-first")
    line.feed(2)
    summary = line.finish()
    records = line.out.records()

    assert [record["index"] for record in records] == list(range(line.source.given))  # none lost, none twice
    assert [record["source"] for record in records] == [f"part-{index}" for index in range(line.source.given)]
    versions = [record["version"] for record in records]
    to_second, back = versions.index("0002-second"), len(versions) - versions[::-1].index("0002-second")
    assert versions == (["0001-first"] * to_second + ["0002-second"] * (back - to_second)
                        + ["0001-first"] * (len(versions) - back))
    assert to_second >= 4 and back - to_second >= 16
    for record in records:
        threshold = THRESHOLDS[record["version"].split("-")[1]]
        score, normalized = expected(record, threshold)
        assert record["threshold"] == threshold and record["score"] == pytest.approx(score, rel=1e-6)
        assert record["score_normalized"] == pytest.approx(normalized, rel=1e-5)
        assert record["is_anomaly"] == (record["score"] > threshold)
    assert {record["is_anomaly"] for record in records[to_second:back]} == {True, False}  # the change is visible

    err = line.stderr()
    deploy_line = re.escape(f"mmad-edge: deployment {deploy}: ")
    assert len(re.findall(deploy_line + "now scoring with 0002-second from frame " + f"{to_second} "
                          r"\(was 0001-first, promoted at \d\d:\d\d:\d\d; threshold 0.6 -> 0.45\)\n", err)) == 1
    assert len(re.findall(deploy_line + r"0003-broken not loaded, still scoring with 0002-second: .*NoSuchReduce.*; "
                          "it is tried again when current changes\n", err)) == 1
    assert len(re.findall(deploy_line + "current is 0002-second again, which is scoring already\n", err)) == 1
    assert len(re.findall(deploy_line + f"now scoring with 0001-first from frame {back} "
                          r"\(was 0002-second, rolled back at .*; threshold 0.45 -> 0.6\)\n", err)) == 1
    assert err.count(f"deployment {deploy}") == 4
    assert f"  swap at frame {to_second}: 0001-first -> 0002-second (promoted)\n" in err
    assert f"  swap at frame {back}: 0002-second -> 0001-first (rolled back)\n" in err

    assert [(swap["from"], swap["to"], swap["frame"], swap["how"]) for swap in summary["swaps"]] == [
        ("0001-first", "0002-second", to_second, "promoted"), ("0002-second", "0001-first", back, "rolled back")]
    assert [failure["version"] for failure in summary["swap_failures"]] == ["0003-broken"]
    assert "NoSuchReduce" in summary["swap_failures"][0]["reason"]
    assert (summary["deployment"], summary["version"], summary["follow"]) == (str(deploy), "0001-first", True)
    assert summary["threshold"] == 0.6 and summary["frames"] == len(records)


def test_with_batches_the_swap_waits_for_the_batch_scored_by_the_old_version(exports, tmp_path, capsys, quick):
    deploy = tmp_path / "deploy"
    line = promoted_while_running(deploy, exports, RunOptions(jsonl=True, batch=3), capsys, 3, "second")
    # whole batches until the load is done: it is swapped in after the last frame of a batch
    line.feed_until(lambda records, _: records[-1]["version"] == "0002-second", count=3)
    records = line.out.records()
    line.finish()
    swap = [record["version"] for record in records].index("0002-second")
    assert swap % 3 == 0 and swap >= 3 and len(records) % 3 == 0
    assert [record["threshold"] for record in records] == [0.6] * swap + [0.45] * (len(records) - swap)
    assert f"now scoring with 0002-second from frame {swap} " in line.stderr()


def test_a_version_the_loop_cannot_judge_with_is_refused_unless_threshold_is_given(exports, tmp_path, capsys, quick):
    deploy = tmp_path / "deploy"
    line = promoted_while_running(deploy, exports, RunOptions(jsonl=True), capsys, 2, "plain")
    line.feed_until(lambda _, err: "0002-plain not loaded" in err)
    line.feed(3)
    summary = line.finish()
    assert {record["version"] for record in line.out.records()} == {"0001-first"} and summary["swaps"] == []
    assert (f"mmad-edge: deployment {deploy}: 0002-plain not loaded, still scoring with 0001-first: no threshold for "
            "the pooled scores (exported without statistics) while the run judges frames; run mmad-edge "
            "calibrate-threshold on it, or pass --threshold; it is tried again when current changes\n") in line.stderr()

    given = tmp_path / "given"  # --threshold keeps applying across the swap, so the same version is fine
    line = promoted_while_running(given, exports, RunOptions(jsonl=True, threshold=0.5), capsys, 2, "plain")
    line.feed_until(lambda records, _: records[-1]["version"] == "0002-plain")
    summary = line.finish()
    records = line.out.records()
    assert {record["threshold"] for record in records} == {0.5} and records[-1]["score_normalized"] is None
    assert records[0]["score_normalized"] is not None and len(summary["swaps"]) == 1
    assert "drift watch off" in line.stderr()


def test_no_follow_keeps_the_version_loaded_at_the_start(exports, tmp_path, capsys, quick, monkeypatch):
    looks = []
    monkeypatch.setattr(follow, "current_version", lambda folder: looks.append(folder))
    deploy = tmp_path / "deploy"
    line = promoted_while_running(deploy, exports, RunOptions(jsonl=True, follow=False), capsys, 2, "second")
    time.sleep(0.1)
    line.feed(3)
    summary = line.finish()
    assert {record["version"] for record in line.out.records()} == {"0001-first"} and looks == []
    assert (summary["version"], summary["follow"], summary["swaps"]) == ("0001-first", False, [])


def test_current_is_read_once_per_interval_not_per_frame(exports, tmp_path, monkeypatch, quick):
    looks = []
    real = follow.current_version
    monkeypatch.setattr(follow, "current_version", lambda folder: looks.append(folder) or real(folder))
    deploy = tmp_path / "deploy"
    promote(exports["first"], deploy)
    frames = [np.full((SIZE, SIZE, 3), value, np.uint8) for value in range(200)]

    class Frames(FrameSource):
        name = "frames"

        def frames(self):
            for index, frame in enumerate(frames):
                time.sleep(0.001)  # a paced line: the run spans many 20 ms intervals
                yield str(index), frame

    started = time.monotonic()
    summary = run_stream(str(deploy), Frames(), RunOptions(jsonl=True), stdout=io.StringIO())
    intervals = (time.monotonic() - started) / run.CHECK_EVERY_S
    assert summary["frames"] == 200 and 1 <= len(looks) <= intervals + 1, (len(looks), intervals)
