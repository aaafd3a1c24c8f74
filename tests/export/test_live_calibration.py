"""calibrate-threshold from N frames of a live source equals calibrating on those frames as a folder."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from runtime_fixtures import standin_metadata, write_standin

from mmad_edge.export.live_frames import take_frames
from mmad_edge.export.options import CalibrateOptions
from mmad_edge.export.threshold_calibration import calibrate_threshold

SIZE = 32


def export(folder):
    """The stand-in export with the full metadata an export writes (calibration validates it)."""
    folder.mkdir()
    metadata = {**standin_metadata(SIZE, threshold=0.5, low=0.3), "source_checkpoint": None}
    write_standin(folder / "model.fp32.onnx", SIZE, "dynamic", metadata)
    (folder / "metadata.json").write_text(json.dumps(metadata))
    return folder / "model.fp32.onnx"


@pytest.fixture
def video(tmp_path):
    """A 12-frame MJPG video of random textures (each frame different)."""
    path = tmp_path / "line.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (48, 40))
    rng = np.random.default_rng(5)
    for _ in range(12):
        writer.write(cv2.GaussianBlur(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8), (5, 5), 1.5))
    writer.release()
    return path


def decoded(path, count):
    capture = cv2.VideoCapture(str(path))
    frames = [capture.read()[1] for _ in range(count)]
    capture.release()
    return frames


def test_live_frames_give_the_folder_calibration_of_the_same_frames(video, tmp_path):
    folder = tmp_path / "good"
    folder.mkdir()
    for index, frame in enumerate(decoded(video, 9)):
        cv2.imwrite(str(folder / f"{index:02d}.png"), frame)
    from_folder = calibrate_threshold(export(tmp_path / "a"), CalibrateOptions(good=folder))
    live = calibrate_threshold(export(tmp_path / "b"), CalibrateOptions(good=None),
                               take_frames(str(video), 9, progress=False), str(video))
    assert live["threshold"] == from_folder["threshold"] and live["normal_scores"] == from_folder["normal_scores"]
    assert live["threshold"] != 0.5 and live["previous_threshold"] == 0.5
    written = json.loads((tmp_path / "b" / "metadata.json").read_text())
    calibration = next(iter(written["statistics_by_artifact"].values()))["calibration"]
    assert (calibration["good"], calibration["images"]) == (str(video), 9)


def test_a_source_shorter_than_frames_fails_saying_how_many(video):
    with pytest.raises(ValueError, match=f"{video} ended after 12 frames, fewer than --frames 20; pass --frames 12"):
        list(take_frames(str(video), 20, progress=False))
    with pytest.raises(ValueError, match="--frames must be a whole number >= 1, got 0"):
        list(take_frames(str(video), 0))
    assert len(list(take_frames(str(video), 12, progress=False))) == 12
