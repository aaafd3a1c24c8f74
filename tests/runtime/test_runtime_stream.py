"""Sources, the pipelined stream and run_stream on the stand-in ONNX (CPU)."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from runtime_fixtures import write_export_dir

from mmad_edge.runtime import DetectionStream, Detector, RunOptions, SourceError, SourceSpec, run_stream
from mmad_edge.runtime.loop.sources import CaptureSource, FrameSource, open_source
from mmad_edge.runtime.loop.stream import ReaderGroup

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


def _reject(constant: str):
    raise ValueError(f"not strict JSON: {constant}")


def json_lines(text: str) -> list:
    """Every line parsed by a strict parser (NaN / Infinity are refused, as jq or a browser would)."""
    return [json.loads(line, parse_constant=_reject) for line in text.splitlines()]


def test_video_every_frame_in_order_with_expected_json(detector, video):
    out = io.StringIO()
    summary = run_stream(detector, str(video), RunOptions(jsonl=True, batch=3), stdout=out)
    lines = json_lines(out.getvalue())
    expected = detector.predict(decoded(video))
    assert summary["frames"] == len(lines) == FRAMES and summary["dropped"] == 0
    assert [line["frame_index"] for line in lines] == [line["index"] for line in lines] == list(range(FRAMES))
    assert [line["timestamp_ms"] for line in lines] == pytest.approx([100.0 * i for i in range(FRAMES)])  # 10 fps
    assert {line["source"] for line in lines} == {str(video)}
    for line, result in zip(lines, expected):
        assert {"source", "score", "score_normalized", "is_anomaly"} <= set(line)
        assert line["score"] == result.score and line["is_anomaly"] == result.is_anomaly
        assert set(line["timings"]) == {"preprocess_ms", "inference_ms", "postprocess_ms"}
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
    summary = run_stream(detector, source, RunOptions(jsonl=True), stdout=out)
    lines = json_lines(out.getvalue())
    assert [line["frame_index"] for line in lines] == list(range(FRAMES))
    assert [line["timestamp_ms"] for line in lines] == pytest.approx([100.0 * i for i in range(FRAMES)])
    assert [line["score"] for line in lines] == [r.score for r in detector.predict(decoded(video))]
    assert summary["reopened"] == 2
    err = capsys.readouterr().err.splitlines()
    assert err[:2] == ["mmad-edge: ramp.avi: read failed at frame 10; reopening for up to 15 s (--retry-seconds)"
                       .replace("ramp.avi", str(video)), f"mmad-edge: {video}: frames again after 2 reopen attempt(s)"]


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


class FakeClock:
    """Time that passes only when the source sleeps."""

    def __init__(self):
        self.now, self.sleeps = 1000.0, []

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def test_live_source_recovers_then_gives_up_with_a_clear_error(detector, capsys):
    FakeCamera.reads = FakeCamera.opens = 0
    source = CaptureSource(0, live=True, open_capture=lambda t: FakeCamera(t, fail={5, 6}), sleep=lambda s: None)
    out = io.StringIO()
    summary = run_stream(detector, source, RunOptions(max_frames=20, jsonl=True), stdout=out)
    assert summary["frames"] == 20 and summary["reopened"] == 2 and FakeCamera.opens == 3
    lines = json_lines(out.getvalue())
    indices = [line["frame_index"] for line in lines]  # live: stale frames are dropped, so gaps are expected
    assert indices == sorted(set(indices)) and [line["index"] for line in lines] == list(range(20))
    assert {line["source"] for line in lines} == {"camera 0"}
    assert all(abs(line["captured_at"] - time.time()) < 600 for line in lines)  # Unix time of the read
    capsys.readouterr()
    FakeCamera.reads = 0
    clock = FakeClock()
    dead = CaptureSource(0, live=True, retry_s=2, open_capture=lambda t: FakeCamera(t, limit=3), sleep=clock.sleep,
                         clock=lambda: clock.now)
    with pytest.raises(SourceError) as caught:
        run_stream(detector, dead, stdout=io.StringIO())
    assert str(caught.value) == ("camera 0: no frames after 3 reopen attempts in 2 s; check the camera/URL, "
                                 "or wait longer with --retry-seconds")
    assert clock.sleeps == [0.5, 1.0, 0.5]  # backoff, cut to the 2 s budget
    err = capsys.readouterr().err.splitlines()
    assert err == ["mmad-edge: camera 0: read failed at frame 3; reopening for up to 2 s (--retry-seconds)"]


def test_retry_seconds_zero_fails_at_once():
    FakeCamera.reads = FakeCamera.opens = 0
    clock = FakeClock()
    dead = CaptureSource(0, live=True, retry_s=0, open_capture=lambda t: FakeCamera(t, limit=0), sleep=clock.sleep,
                         clock=lambda: clock.now)
    with pytest.raises(SourceError, match=r"^camera 0: no frames \(--retry-seconds 0: no reopening\)"):
        list(dead.frames())
    assert FakeCamera.opens == 1 and clock.sleeps == []
    with pytest.raises(ValueError, match="retry seconds must be a number >= 0, got -1"):
        CaptureSource(0, live=True, retry_s=-1)


def test_folder_with_a_corrupt_image_reports_it_and_continues(detector, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    for name, value in (("a.png", 20), ("c.png", 200), ("d.jpg", 90)):
        cv2.imwrite(str(folder / name), np.full((40, 40, 3), value, np.uint8))
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (folder / "notes.txt").write_text("ignored")
    (folder / "._a.png").write_bytes(b"AppleDouble")  # hidden copy metadata, not an image
    for batch in (1, 2):
        summary = run_stream(detector, str(folder), RunOptions(jsonl=True, batch=batch))
        captured = capsys.readouterr()
        lines = json_lines(captured.out)
        assert [Path(line["source"]).name for line in lines] == ["a.png", "c.png", "d.jpg"]
        assert summary["skipped"] == 1 and summary["frames"] == 3
        err = captured.err.splitlines()
        assert err[0] == (f"mmad-edge: skipping {folder / 'b.png'}: cannot decode image (corrupt or not an image); "
                          "replace or remove the file")  # OpenCV's own WARN/ERROR lines are silenced
        assert len(err) == 2 and err[1].startswith("mmad-edge: done: 3 processed, 1 anomalous, 1 skipped, 0 dropped, ")


def test_save_dir_keeps_anomalies_with_pngs_and_one_line_each(detector, video, tmp_path):
    out = io.StringIO()
    summary = run_stream(detector, video, RunOptions(save_dir=tmp_path / "saved"), stdout=out)
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
    framed = run_stream(detector, video, RunOptions(save_dir=tmp_path / "framed", map_size="frame"),
                        stdout=io.StringIO())
    records = json_lines((tmp_path / "framed" / "results.jsonl").read_text())
    assert len(records) == framed["anomalies"] == summary["anomalies"]
    for record in records:
        saved_map = cv2.imread(str(tmp_path / "framed" / record["files"]["map"]), cv2.IMREAD_UNCHANGED)
        assert saved_map.shape == (60, 80)  # the frame's size, not the model's 32 x 32
        assert record["files"]["map"].endswith(f"_{record['index']:06d}_map.png")


class CountingSource(FrameSource):
    def __init__(self, count, live, interrupt_at=None):
        self.count, self.live, self.name, self.interrupt_at = count, live, "counting", interrupt_at

    def frames(self):
        for index in range(self.count):
            if index == self.interrupt_at:
                raise KeyboardInterrupt
            yield index, np.full((16, 16, 3), index % 256, np.uint8)


def test_live_reader_keeps_the_newest_frames_and_counts_drops():
    group = ReaderGroup([CountingSource(10, live=True)], capacity=2).start()
    reader = group.readers[0]
    reader._thread.join(5)
    assert [i for _, (i, _) in group.take(5)] == [8, 9] and reader.dropped == 8
    assert group.take(1) == []
    files = ReaderGroup([CountingSource(10, live=False)], capacity=2).start()
    seen = []
    while batch := files.take(3):
        seen += [i for _, (i, _) in batch]
    assert seen == list(range(10)) and files.readers[0].dropped == 0


def test_ctrl_c_and_stop_end_the_run_cleanly(detector):
    out = io.StringIO()
    summary = run_stream(detector, CountingSource(50, live=False, interrupt_at=7), RunOptions(jsonl=True), stdout=out)
    assert summary["interrupted"] is True and summary["frames"] == 7 and len(json_lines(out.getvalue())) == 7
    import threading

    event = threading.Event()
    event.set()
    summary = run_stream(detector, CountingSource(50, live=False), stop_event=event, stdout=io.StringIO())
    assert summary["stopped"] is True and summary["frames"] >= 1


def test_detection_stream_takes_what_run_stream_takes(detector, video, tmp_path):
    """Paths as text or Path, SourceSpecs and FrameSources are opened by the stream itself, each
    frame scored as the detector scores it; anything else is refused in one line."""
    folder = tmp_path / "frames"
    folder.mkdir()
    images = [np.full((40, 40, 3), level, np.uint8) for level in (20, 140, 250)]
    for index, image in enumerate(images):
        cv2.imwrite(str(folder / f"{index}.png"), image)
    expected = [result.score for result in detector.predict(images)]
    for sources in ([str(folder)], folder, [SourceSpec(str(folder))], [open_source(str(folder))]):
        items = list(DetectionStream(detector, sources, batch=2))
        assert [item.source_id for item in items] == [str(folder / f"{index}.png") for index in range(3)]
        assert [item.result.score for item in items] == pytest.approx(expected)
    both = list(DetectionStream(detector, [str(folder), str(video)], batch=4))
    assert len(both) == 3 + FRAMES and {item.source.name for item in both} == {str(folder), str(video)}
    with pytest.raises(TypeError, match="a source is a camera index, URL, video file, folder, SourceSpec or "
                                        "FrameSource, got float 3.5"):
        DetectionStream(detector, [3.5])
    with pytest.raises(ValueError, match="is given twice; pass each --source once"):
        DetectionStream(detector, [str(folder), folder])


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
        run_stream(detector, video, RunOptions(show=True), stdout=io.StringIO())


class NonFiniteBackend:
    """Wraps a backend; scores of frames whose first pixel is 1 or 2 come out NaN or +inf."""

    def __init__(self, backend):
        self._backend = backend

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def run(self, images):
        maps, scores = self._backend.run(images)
        scores = scores.copy()
        scores[images[:, 0, 0, 0] == 1] = np.nan
        scores[images[:, 0, 0, 0] == 2] = np.inf
        return maps, scores


def test_jsonl_is_strict_json_even_for_non_finite_scores(export_dir, tmp_path):
    with Detector.load(export_dir) as det:
        det.backend = NonFiniteBackend(det.backend)
        out = io.StringIO()
        frames = [np.full((16, 16, 3), value, np.uint8) for value in (1, 200, 2, 0)]
        run_stream(det, ListSource(frames), RunOptions(jsonl=True, save_dir=tmp_path / "saved"), stdout=out)
    lines = json_lines(out.getvalue())
    assert [line["score"] for line in lines][::2] == [None, None]
    assert lines[1]["score"] == pytest.approx(200 / 255, rel=1e-6) and lines[3]["score"] == 0.0
    saved = json_lines((tmp_path / "saved" / "results.jsonl").read_text())
    # A NaN or infinite score is a broken output: the frame is rejected (kept), its score written as null.
    assert [line["is_anomaly"] for line in lines][::2] == [True, True]
    assert [record["index"] for record in saved] == [0, 1, 2]
    assert saved[2]["score"] is None and saved[2]["score_normalized"] == 1.0 and lines[0]["score_normalized"] is None


class ListSource(FrameSource):
    def __init__(self, frames):
        self.items, self.name = frames, "list"

    def frames(self):
        for index, frame in enumerate(self.items):
            yield str(index), frame


@pytest.mark.parametrize("max_frames", [0, -1])
def test_max_frames_below_one_is_refused_before_any_frame(detector, max_frames):
    source = CountingSource(5, live=False)
    out = io.StringIO()
    with pytest.raises(ValueError, match=f"^max frames must be at least 1, got {max_frames}; pass --max-frames N"):
        run_stream(detector, source, RunOptions(jsonl=True, max_frames=max_frames), stdout=out)
    assert out.getvalue() == ""
