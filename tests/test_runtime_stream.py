"""Sources, the pipelined stream and run_stream on the stand-in ONNX (CPU)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from runtime_fixtures import write_export_dir

from mmad_edge.runtime import Detector, SourceError, run_stream
from mmad_edge.runtime.sources import CaptureSource, FrameSource, open_source
from mmad_edge.runtime.stream import FrameReader

SIZE = 32
FRAMES = 24


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    return write_export_dir(tmp_path_factory.mktemp("export"), SIZE, threshold=0.5, low=0.3)


@pytest.fixture(scope="module")
def detector(export_dir):
    with Detector.load(export_dir) as det:
        yield det


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """A MJPG .avi whose brightness ramps up, so later frames are anomalous."""
    path = tmp_path_factory.mktemp("video") / "ramp.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (80, 60))
    assert writer.isOpened()
    for index in range(FRAMES):
        frame = np.full((60, 80, 3), 10 * index, np.uint8)
        frame[10:20, 10:30] = 10 * index + 5
        writer.write(frame)
    writer.release()
    return path


def decoded(video: Path) -> list:
    capture = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def json_lines(text: str) -> list:
    return [json.loads(line) for line in text.splitlines()]


def test_video_every_frame_in_order_with_expected_json(detector, video):
    out = io.StringIO()
    summary = run_stream(detector, str(video), jsonl=True, stdout=out, batch=3)
    lines = json_lines(out.getvalue())
    expected = detector.predict(decoded(video))
    assert summary["frames"] == len(lines) == FRAMES and summary["dropped"] == 0
    assert [line["source"] for line in lines] == list(range(FRAMES))
    for line, result in zip(lines, expected):
        assert {"source", "score", "score_normalized", "is_anomaly"} <= set(line)
        assert line["score"] == result.score and line["is_anomaly"] == result.is_anomaly
    assert 0 < summary["anomalies"] == sum(r.is_anomaly for r in expected) < FRAMES
    assert summary["interrupted"] is False and summary["fps"] > 0


class FlakyCapture:
    """Wraps a real capture; the n-th read (counted across reopens) fails once."""

    reads = 0

    def __init__(self, target, fail_at):
        self._capture = cv2.VideoCapture(target)
        self._fail_at = fail_at

    def read(self):
        FlakyCapture.reads += 1
        if FlakyCapture.reads in self._fail_at:
            return False, None
        return self._capture.read()

    def __getattr__(self, name):
        return getattr(self._capture, name)


def test_video_failing_mid_way_is_reopened_at_the_next_frame(detector, video, capsys):
    FlakyCapture.reads = 0
    source = CaptureSource(str(video), live=False, open_capture=lambda t: FlakyCapture(t, {11, 12}), sleep=lambda s: None)
    out = io.StringIO()
    summary = run_stream(detector, source, jsonl=True, stdout=out)
    lines = json_lines(out.getvalue())
    assert [line["source"] for line in lines] == list(range(FRAMES))
    assert [line["score"] for line in lines] == [r.score for r in detector.predict(decoded(video))]
    assert summary["reopened"] == 2
    assert "read failed at frame 10; reopening (attempt 1/5)" in capsys.readouterr().err


class FakeCamera:
    """A live camera whose frames count up; reads listed in ``fail`` fail."""

    reads = 0
    opens = 0

    def __init__(self, target, fail=(), limit=10**9):
        FakeCamera.opens += 1
        self._fail, self._limit = fail, limit

    def isOpened(self):
        return True

    def read(self):
        FakeCamera.reads += 1
        if FakeCamera.reads in self._fail or FakeCamera.reads > self._limit:
            return False, None
        return True, np.full((24, 24, 3), FakeCamera.reads % 256, np.uint8)

    def get(self, prop):
        return 0.0

    def set(self, prop, value):
        return True

    def release(self):
        pass


def test_live_source_recovers_then_gives_up_with_a_clear_error(detector):
    FakeCamera.reads = FakeCamera.opens = 0
    source = CaptureSource(0, live=True, open_capture=lambda t: FakeCamera(t, fail={5, 6}), sleep=lambda s: None)
    summary = run_stream(detector, source, max_frames=20, stdout=io.StringIO())
    assert summary["frames"] == 20 and summary["reopened"] == 2 and FakeCamera.opens == 3
    FakeCamera.reads = 0
    dead = CaptureSource(0, live=True, retries=2, open_capture=lambda t: FakeCamera(t, limit=3), sleep=lambda s: None)
    with pytest.raises(SourceError, match="camera 0: no frames after 2 reopen attempts"):
        run_stream(detector, dead, stdout=io.StringIO())


def test_folder_with_a_corrupt_image_reports_it_and_continues(detector, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    for name, value in (("a.png", 20), ("c.png", 200), ("d.jpg", 90)):
        cv2.imwrite(str(folder / name), np.full((40, 40, 3), value, np.uint8))
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (folder / "notes.txt").write_text("ignored")
    (folder / "._a.png").write_bytes(b"AppleDouble")  # hidden copy metadata, not an image
    summary = run_stream(detector, str(folder), jsonl=True)
    captured = capsys.readouterr()
    lines = json_lines(captured.out)
    assert [Path(line["source"]).name for line in lines] == ["a.png", "c.png", "d.jpg"]
    assert summary["skipped"] == 1 and summary["frames"] == 3
    assert "skipping" in captured.err and "b.png" in captured.err and "cannot decode" in captured.err


def test_save_dir_keeps_anomalies_with_pngs_and_one_line_each(detector, video, tmp_path):
    out = io.StringIO()
    summary = run_stream(detector, video, save_dir=tmp_path / "saved", stdout=out)
    records = json_lines((tmp_path / "saved" / "results.jsonl").read_text())
    assert len(records) == summary["anomalies"] > 0
    assert all(record["is_anomaly"] for record in records)
    for record in records:
        for name in record["files"].values():
            image = cv2.imread(str(tmp_path / "saved" / name), cv2.IMREAD_UNCHANGED)
            assert image is not None
        overlay = cv2.imread(str(tmp_path / "saved" / record["files"]["overlay"]))
        assert overlay.shape == (60, 80, 3) and tuple(overlay[0, 0]) == (0, 0, 255)  # red border
    assert out.getvalue().count("anomaly:") == summary["anomalies"]


class CountingSource(FrameSource):
    def __init__(self, count, live, interrupt_at=None):
        self.count, self.live, self.name, self.interrupt_at = count, live, "counting", interrupt_at

    def frames(self):
        for index in range(self.count):
            if index == self.interrupt_at:
                raise KeyboardInterrupt
            yield index, np.full((16, 16, 3), index % 256, np.uint8)


def test_live_reader_keeps_the_newest_frames_and_counts_drops():
    reader = FrameReader(CountingSource(10, live=True), capacity=2).start()
    reader._thread.join(5)
    assert [i for i, _ in reader.take(5)] == [8, 9] and reader.dropped == 8
    assert reader.take(1) == []
    files = FrameReader(CountingSource(10, live=False), capacity=2).start()
    seen = []
    while batch := files.take(3):
        seen += [i for i, _ in batch]
    assert seen == list(range(10)) and files.dropped == 0


def test_ctrl_c_and_stop_end_the_run_cleanly(detector):
    out = io.StringIO()
    summary = run_stream(detector, CountingSource(50, live=False, interrupt_at=7), jsonl=True, stdout=out)
    assert summary["interrupted"] is True and summary["frames"] == 7 and len(json_lines(out.getvalue())) == 7
    import threading

    event = threading.Event()
    event.set()
    summary = run_stream(detector, CountingSource(50, live=False), stop_event=event, stdout=io.StringIO())
    assert summary["stopped"] is True and summary["frames"] >= 1


def test_source_spec_errors():
    with pytest.raises(SourceError, match="not a camera index, URL, video file or folder"):
        open_source("/no/such/thing.mp4")
    assert open_source("0").live and open_source("rtsp://cam/stream").live
    with pytest.raises(SourceError, match="cannot open video"):
        list(CaptureSource(__file__, live=False).frames())


def test_show_without_gui_opencv_says_how_to_fix(detector, video):
    try:
        cv2.namedWindow("probe")
    except cv2.error:
        pass
    else:
        cv2.destroyWindow("probe")
        pytest.skip("this OpenCV has a GUI")
    with pytest.raises(RuntimeError, match="--show needs OpenCV with GUI support"):
        run_stream(detector, video, show=True, stdout=io.StringIO())
