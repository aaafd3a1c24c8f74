"""pylon:// against pypylon's camera emulator (PYLON_CAMEMU), serving the images of a folder."""

from __future__ import annotations

import io
import json
import time

import cv2
import numpy as np
import pytest
from runtime_fixtures import write_export_dir

from mmad_edge.runtime import Detector, RunOptions, SourceError, run_stream
from mmad_edge.runtime.cameras import open_camera, part_id_queue
from mmad_edge.runtime.loop.stream import FrameReader

IMAGES = 3


@pytest.fixture(scope="module")
def emulator():
    """Two emulated cameras (the variable must be set before pylon's transport layers load)."""
    pytest.importorskip("pypylon", reason="pypylon is not installed (pip install '.[camera]' from the checkout)")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYLON_CAMEMU", "2")
        from pypylon import pylon

        serials = [device.GetSerialNumber() for device in pylon.TlFactory.GetInstance().EnumerateDevices()]
        if not serials:
            pytest.skip("pylon found no emulated camera (PYLON_CAMEMU was set after pylon started)")
        yield serials


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Three random 64 x 48 colour images the emulator serves in name order, then again."""
    folder = tmp_path_factory.mktemp("camera_images")
    rng = np.random.default_rng(27)
    for index in range(IMAGES):
        cv2.imwrite(str(folder / f"{index:03d}.png"), rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    return folder


def url(device: str, folder, query: str = "") -> str:
    return (f"pylon://{device}?PixelFormat=BGR8Packed&Width=64&Height=48&TestImageSelector=Off&ImageFileMode=On"
            f"&ImageFilename={folder}" + (f"&{query}" if query else ""))


def images(folder) -> list[np.ndarray]:
    return [cv2.imread(str(folder / f"{index:03d}.png")) for index in range(IMAGES)]


def take(source, count: int) -> list:
    frames = source.frames()
    try:
        return [next(frames) for _ in range(count)]
    finally:
        frames.close()


def test_free_run_serves_the_folder_with_increasing_part_ids(emulator, folder):
    got = take(open_camera(url("0", folder, "exposure_us=500&gain_db=2"), retry_s=0), 7)
    expected = images(folder)
    for position, (_, frame) in enumerate(got):
        assert np.array_equal(frame, expected[position % IMAGES]), position
    assert [where.part_id for where, _ in got] == [str(part) for part in range(7)]  # the camera's block IDs
    assert [where.index for where, _ in got] == list(range(7))


def test_software_trigger_per_announced_part(emulator, folder):
    queue = part_id_queue("test-line")
    for part in ("A-100", "A-101", "A-102", "A-103"):
        queue.announce(part)
    got = take(open_camera(url(emulator[1], folder, "trigger=software&part_ids=test-line&timeout_ms=2000"),
                           retry_s=0), 4)
    assert [where.part_id for where, _ in got] == ["A-100", "A-101", "A-102", "A-103"]
    expected = images(folder)
    assert all(np.array_equal(frame, expected[position % IMAGES]) for position, (_, frame) in enumerate(got))
    assert len(queue) == 0


def test_software_trigger_counts_its_frames(emulator, folder):
    got = take(open_camera(url("0", folder, "trigger=software"), retry_s=0), 4)
    assert [where.part_id for where, _ in got] == ["0", "1", "2", "3"]


def test_run_writes_one_record_per_frame_with_part_id(emulator, folder, tmp_path):
    with Detector.load(write_export_dir(tmp_path / "export", 32, threshold=0.5, low=0.3)) as detector:
        out = io.StringIO()
        summary = run_stream(detector, [url("0", folder, "trigger=software")],
                             RunOptions(jsonl=True, max_frames=6, retry_s=0), stdout=out)
        expected = detector.predict(images(folder))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert summary["frames"] == len(lines) == 6 and summary["source"] == "pylon://0"
    assert summary["reopened"] == 0 and summary["lost"] == 0
    assert {line["stream"] for line in lines} == {"pylon://0"}
    parts = [int(line["part_id"]) for line in lines]
    assert parts == sorted(set(parts)) and parts[0] == 0  # frames dropped while inference was busy leave gaps
    assert [line["score"] for line in lines] == [expected[part % IMAGES].score for part in parts]


def test_unknown_serial_and_refused_settings_fail_in_one_line(emulator, folder):
    with pytest.raises(SourceError, match=f"pylon://12345678: no camera with serial number 12345678; serial numbers "
                                          f"found: {', '.join(emulator)}"):
        take(open_camera("pylon://12345678", retry_s=0), 1)
    with pytest.raises(ValueError, match=r"pylon://0: gain_db=99 is outside the camera's range 0 to 48"):
        take(open_camera("pylon://0?gain_db=99", retry_s=0), 1)
    with pytest.raises(ValueError, match=r"pylon://0: PixelFormat=YUV9: the camera refuses it"):
        take(open_camera("pylon://0?PixelFormat=YUV9", retry_s=0), 1)


def test_a_reader_stopped_while_waiting_for_a_hardware_trigger_releases_the_camera(emulator, folder):
    reader = FrameReader(open_camera(url("0", folder, "trigger=line1"), retry_s=0), capacity=2).start()
    time.sleep(0.5)
    assert not reader.items and not reader.done
    started = time.perf_counter()
    reader.stop()
    assert reader.done and reader.error is None and time.perf_counter() - started < 1.0
    assert len(take(open_camera(url("0", folder), retry_s=0), 1)) == 1  # released: it opens again


def test_a_pylon_error_while_listing_cameras_is_a_camera_fault_reopened_with_backoff(emulator, monkeypatch):
    from pypylon import genicam, pylon

    from mmad_edge.runtime.cameras import pylon as pylon_camera
    from mmad_edge.runtime.cameras.source import CameraFault
    from mmad_edge.runtime.cameras.url import parse_camera_url

    class Failing:
        def EnumerateDevices(self):  # noqa: N802 (pylon's name)
            raise genicam.RuntimeException("transport layer gone")

    monkeypatch.setattr(pylon.TlFactory, "GetInstance", staticmethod(lambda: Failing()))
    with pytest.raises(CameraFault, match=r"^cannot list the cameras: transport layer gone$"):
        pylon_camera.open_camera(parse_camera_url("pylon://0"))
