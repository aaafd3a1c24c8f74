"""One line, never a traceback: `eval` given an export, `bench` given a .onnx that is not ONNX, a bad
value naming the flag that was typed."""

from __future__ import annotations

import pytest
from runtime_fixtures import write_export_dir
from typer.testing import CliRunner

from mmad_edge.cli import app
from mmad_edge.runtime.backends import choices


def one_line_error(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_eval_given_an_export_says_what_it_takes(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    (export / "model.fp32.onnx").write_bytes(b"graph")
    for target in (export, export / "model.fp32.onnx"):
        line = one_line_error(["eval", str(target), "--data", str(tmp_path)])
        assert line == (f"error: {target}: eval takes a training checkpoint (RUN_DIR/checkpoint.pt), not an "
                        f"export; score an export with 'mmad-edge verify {target} --data {tmp_path}' (its "
                        "report.json holds the export's accuracy at export time)")
    assert (export / "model.fp32.onnx").read_bytes() == b"graph"


def test_bench_given_a_file_that_is_not_onnx(tmp_path):
    fake = tmp_path / "model.fp32.onnx"
    fake.write_text("not a graph")
    line = one_line_error(["bench", str(fake), "--no-peers", "--quiet"])
    assert line == (f"error: {fake}: not a loadable ONNX model (Protobuf parsing failed.); pass a "
                    "model.<precision>.onnx written by mmad-edge export")


@pytest.mark.parametrize("command", [["run", "--source", "frames"], ["verify", "--data", "data"],
                                     ["calibrate-threshold", "--good", "good"], ["triton-repo", "repo"]])
def test_a_bad_backend_names_the_flag(tmp_path, command):
    export = write_export_dir(tmp_path / "export")
    line = one_line_error([command[0], str(export), *command[1:], "--backend", "onnx"])
    assert line == f"error: --backend must be one of {', '.join(choices())}, got 'onnx'"


def test_bench_batch_sizes_name_the_flag(tmp_path):
    export = write_export_dir(tmp_path / "export")
    line = one_line_error(["bench", str(export), "--batch-size", "x", "--no-peers", "--quiet"])
    assert line == "error: --batch-size must be comma-separated integers like 1,16, got 'x'"


def test_show_without_a_gui_opencv_names_the_package(tmp_path, monkeypatch):
    import cv2
    import numpy as np
    from runtime_fixtures import write_export_dir

    def no_gui(*args, **kwargs):
        raise cv2.error("The function is not implemented. Rebuild the library with GUI support")

    monkeypatch.setattr(cv2, "namedWindow", no_gui)
    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "a.png"), np.full((64, 64, 3), 128, np.uint8))
    line = one_line_error(["run", str(write_export_dir(tmp_path / "export")), "--source", str(frames), "--show"])
    assert "pip install opencv-python" in line and "opencv-python-headless" in line
