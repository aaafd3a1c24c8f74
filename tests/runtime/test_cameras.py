"""GenICam camera sources without a camera: URLs, part IDs, the setup on a real GenApi node map
(the genicam package, from an XML description), pixel conversion and the reopen logic."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from mmad_edge.runtime import SourceError
from mmad_edge.runtime.cameras import PartIdQueue, camera_scheme, open_camera, parse_camera_url, part_id_queue
from mmad_edge.runtime.cameras.features import configure
from mmad_edge.runtime.cameras.part_ids import FrameCounter
from mmad_edge.runtime.cameras.source import CameraFault, CameraSource, FrameLost, Grab
from mmad_edge.runtime.loop.outputs import frame_record
from mmad_edge.runtime.loop.sources import FramePosition, parse_source
from mmad_edge.runtime.result import Result

NODE_MAP = Path(__file__).parents[1] / "fixtures" / "genicam_camera.xml"


def test_camera_url_settings_and_features_in_order():
    url = parse_camera_url("pylon://40012345?trigger=Line1&exposure_us=800&gain_db=-1.5&timeout_ms=250"
                           "&PixelFormat=BGR8&TriggerActivation=FallingEdge")
    assert (url.name, url.device, url.index, url.trigger, url.hardware) == ("pylon://40012345", "40012345", None,
                                                                          "line1", True)
    assert (url.exposure_us, url.gain_db, url.timeout_ms) == (800.0, -1.5, 250)
    assert url.features == (("PixelFormat", "BGR8"), ("TriggerActivation", "FallingEdge"))
    assert parse_camera_url("genicam://2?cti=/opt/p.cti").index == 2
    first = parse_camera_url("pylon://")
    assert (first.device, first.index, first.trigger, first.timeout_ms) == ("", None, "free", 5000)
    assert parse_source("gravel=pylon://0?trigger=software").category == "gravel"
    assert [camera_scheme(text) for text in ("PYLON://0", "genicam://", "rtsp://cam/1", "0")] == [
        "pylon", "genicam", None, None]


@pytest.mark.parametrize("text, message", [
    ("pylon://0?exposure=5", "unknown setting 'exposure'; use trigger, exposure_us"),
    ("pylon://0?exposure_us=-3", "exposure_us='-3' must be > 0"),
    ("pylon://0?gain_db=loud", "gain_db='loud' must be a number"),
    ("pylon://0?timeout_ms=2.5", "timeout_ms='2.5' must be a whole number >= 1"),
    ("pylon://0?trigger=hw", "trigger='hw' is not free, software or a hardware line"),
    ("pylon://0?part_ids=plc", "add trigger=software"),
    ("pylon://0?cti=/x.cti", "only genicam:// uses"),
    ("genicam://0?part_ids=&trigger=software", "part_ids= is empty"),
])
def test_camera_url_errors_name_the_fix(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("?", r"\?")):
        parse_camera_url(text)


def test_part_id_queue_gives_ids_in_order_and_none_when_idle():
    queue = PartIdQueue()
    assert queue.take(0.01) is None
    for part in ("A-1", 17, " B-2 "):
        queue.announce(part)
    assert [queue.take(0.01) for _ in range(4)] == ["A-1", "17", "B-2", None]
    with pytest.raises(ValueError, match="empty part ID"):
        queue.announce("  ")
    threading.Timer(0.05, queue.announce, ("late",)).start()
    assert queue.take(5.0) == "late"
    assert part_id_queue("line-3") is part_id_queue("line-3") is not part_id_queue("line-4")


def test_frame_counter_keeps_gaps_and_continues_after_a_restart():
    counter = FrameCounter()
    assert [counter.number(block) for block in (1, 2, 5)] == [1, 2, 5]  # 3 and 4 lost on the way
    counter.restart()
    assert [counter.number(block) for block in (1, 2)] == [6, 7]
    counter.restart()
    assert counter.number(0) == 8


@pytest.fixture
def features():
    genapi = pytest.importorskip("genicam.genapi", reason="the genicam package (harvesters' GenApi) is not installed")
    from mmad_edge.runtime.cameras.gentl import GenApiFeatures

    node_map = genapi.NodeMap()
    node_map.load_xml_from_file(str(NODE_MAP))
    return GenApiFeatures(node_map)


def test_setup_on_a_genapi_node_map(features):
    configure(features, parse_camera_url("genicam://?trigger=line2&exposure_us=2500&PixelFormat=BGR8"))
    assert [features.get(name) for name in ("TriggerSelector", "TriggerSource", "TriggerMode", "ExposureAuto",
                                            "PixelFormat")] == ["FrameStart", "Line2", "On", "Off", "BGR8"]
    assert float(features.get("ExposureTime")) == 2500.0
    assert features.choices("TriggerSource") == ["Software", "Line1", "Line2"] and features.limits("ExposureTime") == (
        10.0, 100000.0)
    configure(features, parse_camera_url("genicam://?trigger=free"))
    assert features.get("TriggerMode") == "Off"


@pytest.mark.parametrize("query, message", [
    ("trigger=line7", "cannot be triggered so; use trigger=free, software, line1, line2"),
    ("exposure_us=5", "exposure_us=5 is outside the camera's range 10 to 100000 (ExposureTime)"),
    ("gain_db=3", "gain_db: the camera has none of Gain, GainAbs"),
    ("BlackLevel=4", "the camera has no feature 'BlackLevel'"),
    ("PixelFormat=RGB16", "PixelFormat=RGB16: the camera refuses it"),
])
def test_setup_errors_name_feature_and_accepted_values(features, query, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        configure(features, parse_camera_url("genicam://?" + query))


def test_bayer_and_colour_formats_become_bgr():
    gentl = pytest.importorskip("mmad_edge.runtime.cameras.gentl", reason="harvesters is not installed")
    bgr = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    assert np.array_equal(gentl.to_bgr(bgr.ravel(), 8, 6, "BGR8"), bgr)
    assert np.array_equal(gentl.to_bgr(bgr[..., ::-1].ravel(), 8, 6, "RGB8"), bgr)
    assert np.array_equal(gentl.to_bgr(bgr[..., 1].ravel(), 8, 6, "Mono8"), np.repeat(bgr[..., 1:2], 3, axis=2))
    flat = np.zeros((8, 8, 3), np.uint8)
    flat[:] = (30, 120, 220)  # B, G, R: a flat colour survives demosaicing exactly
    channel = {"B": 0, "G": 1, "R": 2}
    for pattern in ("RGGB", "BGGR", "GRBG", "GBRG"):
        mosaic = np.zeros((8, 8), np.uint8)
        for position, colour in enumerate(pattern):
            mosaic[position // 2::2, position % 2::2] = flat[position // 2::2, position % 2::2, channel[colour]]
        name = "Bayer" + pattern[0] + pattern[1] + "8"
        assert tuple(gentl.to_bgr(mosaic.ravel(), 8, 8, name)[4, 4]) == (30, 120, 220), name
    with pytest.raises(ValueError, match="pixel format Mono12 is not supported; set one of Mono8"):
        gentl.to_bgr(bgr.ravel(), 8, 6, "Mono12")


def test_genicam_needs_a_producer(tmp_path, monkeypatch):
    gentl = pytest.importorskip("mmad_edge.runtime.cameras.gentl", reason="harvesters is not installed")
    monkeypatch.delenv(gentl.PRODUCER_PATH, raising=False)
    with pytest.raises(ValueError, match=r"no GenTL producer; pass \?cti=/path/to/Producer.cti"):
        gentl.producers(parse_camera_url("genicam://"))
    with pytest.raises(ValueError, match="cti=/nowhere/p.cti: no such file"):
        gentl.producers(parse_camera_url("genicam://?cti=/nowhere/p.cti"))
    (tmp_path / "b.cti").write_bytes(b"not a shared library")
    monkeypatch.setenv(gentl.PRODUCER_PATH, str(tmp_path))
    with pytest.raises(ValueError, match=f"cti={tmp_path / 'b.cti'}: not a loadable GenTL producer"):
        gentl.producers(parse_camera_url("genicam://"))
    with pytest.raises(ValueError, match=f"genicam://: cti={tmp_path / 'b.cti'}: not a loadable GenTL producer"):
        next(open_camera(f"genicam://?cti={tmp_path / 'b.cti'}", retry_s=0).frames())


class ScriptedCamera:
    """A driver whose grabs follow a script: an int is a frame with that block ID, "fault" a
    CameraFault, "lost" a FrameLost, None a timeout. Opens, triggers and closes are logged."""

    def __init__(self, script: list, log: list) -> None:
        self.features, self._script, self._log = None, script, log
        log.append("open")

    def start(self) -> None:
        self._log.append("start")

    def trigger(self, timeout_s: float) -> None:
        self._log.append("trigger")

    def grab(self, timeout_s: float) -> Grab | None:
        step = self._script.pop(0) if self._script else None
        if step == "fault":
            raise CameraFault("stream error")
        if step == "lost":
            raise FrameLost("incomplete")
        return None if step is None else Grab(np.full((4, 4, 3), step, np.uint8), step)

    def close(self) -> None:
        self._log.append("close")


def test_reopens_after_a_fault_and_part_numbers_go_on(monkeypatch, capsys):
    monkeypatch.setattr("mmad_edge.runtime.cameras.source.configure", lambda features, url: None)
    log: list = []
    source = CameraSource(parse_camera_url("pylon://0"), lambda url: ScriptedCamera(script, log), sleep=lambda s: None)
    script = [1, 2, "lost", 4, "fault", 1, 2]
    frames = source.frames()
    got = [next(frames) for _ in range(5)]
    frames.close()
    assert [position.part_id for position, _ in got] == ["1", "2", "4", "5", "6"]
    assert [position.index for position, _ in got] == [0, 1, 2, 3, 4]
    assert [int(frame[0, 0, 0]) for _, frame in got] == [1, 2, 4, 1, 2]
    assert log == ["open", "start", "close", "open", "start", "close"]
    assert source.counters == {"reopened": 1, "lost": 1}
    err = capsys.readouterr().err
    assert "pylon://0: frame lost (incomplete); 1 so far" in err
    assert "pylon://0: stream error; reopening for up to 15 s (--retry-seconds)" in err
    assert "pylon://0: frames again after 1 reopen attempt(s)" in err


def test_free_run_without_frames_gives_up_after_the_retry_time(monkeypatch):
    monkeypatch.setattr("mmad_edge.runtime.cameras.source.configure", lambda features, url: None)
    log: list = []
    clock = iter(range(100))
    source = CameraSource(parse_camera_url("pylon://0?timeout_ms=20"), lambda url: ScriptedCamera([], log),
                          retry_s=3, sleep=lambda s: None, clock=lambda: float(next(clock)))
    with pytest.raises(SourceError, match=r"pylon://0: no frame within 20 ms \(timeout_ms\) \(after 3 reopen attempts\)"):
        next(source.frames())
    assert log.count("open") == 4 and log.count("close") == 4


def test_software_trigger_per_announced_part_survives_a_fault(monkeypatch):
    monkeypatch.setattr("mmad_edge.runtime.cameras.source.configure", lambda features, url: None)
    log: list = []
    queue = PartIdQueue()
    source = CameraSource(parse_camera_url("pylon://0?trigger=software"), lambda url: ScriptedCamera(script, log),
                          part_ids=queue, sleep=lambda s: None)
    script = [7, "fault", 8]
    for part in ("P1", "P2"):
        queue.announce(part)
    frames = source.frames()
    got = [next(frames) for _ in range(2)]
    assert [(position.part_id, int(frame[0, 0, 0])) for position, frame in got] == [("P1", 7), ("P2", 8)]
    assert log.count("trigger") == 3  # P2's trigger is fired again on the reopened camera
    stopper = threading.Timer(0.2, source.stop)
    stopper.start()
    assert list(frames) == []  # no part announced: waits until stopped, then releases the camera
    assert log[-1] == "close"


def test_hardware_trigger_waits_without_fault_until_stopped(monkeypatch):
    monkeypatch.setattr("mmad_edge.runtime.cameras.source.configure", lambda features, url: None)
    log: list = []
    source = CameraSource(parse_camera_url("pylon://0?trigger=line1"), lambda url: ScriptedCamera([None] * 3 + [5], log),
                          retry_s=0)
    frames = source.frames()
    position, _ = next(frames)
    assert position.part_id == "5" and "trigger" not in log
    threading.Timer(0.2, source.stop).start()
    assert list(frames) == [] and log == ["open", "start", "close"]


def test_part_id_reaches_the_frame_record_and_is_absent_elsewhere():
    result = Result(0.25, 0.1, False, 0.5, np.zeros((2, 2), np.float32))
    with_part = frame_record("pylon://0", FramePosition(3, captured_at=1.5, part_id="P-9"), 7, result)
    assert (with_part["source"], with_part["frame_index"], with_part["part_id"], with_part["index"]) == (
        "pylon://0", 3, "P-9", 7)
    assert "part_id" not in frame_record("rtsp://cam", FramePosition(3, captured_at=1.5), 7, result)
