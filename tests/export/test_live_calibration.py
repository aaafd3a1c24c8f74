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
    live = calibrate_threshold(export(tmp_path / "b"), CalibrateOptions(source=str(video), frames=9))
    assert live["threshold"] == from_folder["threshold"] and live["normal_scores"] == from_folder["normal_scores"]
    assert live["threshold"] != 0.5 and live["previous_threshold"] == 0.5
    written = json.loads((tmp_path / "b" / "metadata.json").read_text())
    calibration = next(iter(written["statistics_by_artifact"].values()))["calibration"]
    assert (calibration["good"], calibration["images"]) == (str(video), 9)


def test_good_images_from_exactly_one_of_folder_and_source(video, tmp_path):
    for options, which in ((CalibrateOptions(), "neither"), (CalibrateOptions(good=tmp_path, source=str(video)), "both")):
        with pytest.raises(ValueError, match=f"pass either --good FOLDER or --source URL .* not {which}"):
            calibrate_threshold(export(tmp_path / which), options)
    with pytest.raises(ValueError, match="^--frames 9 counts frames of --source; with --good every image of the folder "
                                         "is scored: drop --frames, or thin the folder$"):
        calibrate_threshold(export(tmp_path / "frames"), CalibrateOptions(good=tmp_path, frames=9))


def test_a_source_shorter_than_frames_fails_saying_how_many(video):
    with pytest.raises(ValueError, match=f"{video} ended after 12 frames, fewer than --frames 20; pass --frames 12"):
        list(take_frames(str(video), 20, progress=False))
    with pytest.raises(ValueError, match="--frames must be a whole number >= 1, got 0"):
        take_frames(str(video), 0)
    assert len(list(take_frames(str(video), 12, progress=False))) == 12


def test_the_command_calibrates_from_a_source(video, tmp_path):
    from typer.testing import CliRunner

    from mmad_edge.cli import app

    artifact = export(tmp_path / "c")
    result = CliRunner().invoke(app, ["calibrate-threshold", str(artifact), "--source", str(video), "--frames", "9",
                                      "--json", str(tmp_path / "out.json")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out.json").read_text())
    assert summary["threshold"] != 0.5 and summary["previous_threshold"] == 0.5
    assert f"{artifact}: {summary['moved']['threshold']} threshold {summary['threshold']:.6g} (was 0.5;" in result.output
