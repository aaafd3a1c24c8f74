"""`mmad-edge export` end to end on a tiny checkpoint: artifacts, metadata, report, failures."""

from __future__ import annotations

import contextlib
import io
import json
import sys

import numpy as np
import onnxruntime as ort
import pytest
from model_utils import STATISTICS, random_checkpoint
from typer.testing import CliRunner

from mmad_edge.cli import app
from mmad_edge.export import tensorrt
from mmad_edge.export.metadata import METADATA_KEY
from mmad_edge.export.options import ExportOptions
from mmad_edge.export.parity import generated_frames, verify_onnx
from mmad_edge.export.pipeline import export_checkpoint
from mmad_edge.runtime.backends.onnxruntime import cpu_session

FLAGS = {"batch": "--batch", "json_path": "--json", "variant": "--variant", "image_size": "--image-size",
         "input_format": "--input-format", "opset": "--opset"}


def export_cli(checkpoint, out, precision="fp32,fp16", **options) -> int:
    """`mmad-edge export` through the command line, its stdout and stderr passed on; the exit code."""
    args = ["export", str(checkpoint), "--out", str(out), "--precision", precision]
    for name, value in options.items():
        args += ["--engine" if value else "--no-engine"] if name == "engine" else [FLAGS[name], str(value)]
    result = CliRunner().invoke(app, args)
    assert "Traceback" not in result.output and isinstance(result.exception, (SystemExit, type(None))), result.output
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.exit_code


def _no_tensorrt():
    raise tensorrt.TensorRTUnavailable("TensorRT is not installed here")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One export with dynamic batch and --engine on a machine made to lack TensorRT."""
    root = tmp_path_factory.mktemp("export")
    checkpoint = random_checkpoint(root / "ckpt.pt")
    out = root / "out"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    stderr, stdout = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
        patch.setattr(tensorrt, "load_tensorrt", _no_tensorrt)  # also on machines that have it
        code = export_cli(checkpoint, out, "fp32,fp16", batch="1:4:8", engine=True, json_path=root / "r.json")
    return {"root": root, "out": out, "code": code, "stderr": stderr.getvalue(), "stdout": stdout.getvalue()}


def test_engine_without_tensorrt_exits_nonzero_with_command_and_keeps_onnx(exported):
    assert exported["code"] == 3
    assert "TensorRT is not installed here" in exported["stderr"]
    assert "mmad-edge build-engine" in exported["stderr"] and "--batch 1:4:8" in exported["stderr"]
    names = sorted(p.name for p in exported["out"].iterdir())
    assert names == ["metadata.json", "model.fp16.onnx", "model.fp32.onnx", "notes.txt", "report.json"]
    assert (exported["out"] / "notes.txt").read_text() == "keep me"
    assert [p.name for p in exported["root"].iterdir() if p.name.startswith(".")] == []  # no staging left
    for precision in ("fp32", "fp16"):
        cpu_session(exported["out"] / f"model.{precision}.onnx")


def test_report_and_embedded_metadata(exported):
    report = json.loads((exported["out"] / "report.json").read_text())
    assert report == json.loads((exported["root"] / "r.json").read_text())
    assert report["verification"]["fp32"]["passed"]
    assert report["verification"]["fp32"]["metrics"]["map_relative"] <= 1e-4
    assert report["verification"]["fp32"]["metrics"]["score_relative"] <= 1e-4
    assert report["simplification"].startswith("simplified")
    assert report["tensorrt_compat"] == {"fp32": [], "fp16": []}
    assert "build-engine" in report["engines"]["error"]
    assert "fp32" in exported["stdout"] and "map_relative" in exported["stdout"]
    for precision in ("fp32", "fp16"):
        session = ort.InferenceSession(str(exported["out"] / f"model.{precision}.onnx"), providers=["CPUExecutionProvider"])
        metadata = json.loads(session.get_modelmeta().custom_metadata_map[METADATA_KEY])
        assert metadata["precision"] == precision
        assert metadata["statistics"] == STATISTICS
        assert metadata["batch"] == {"min": 1, "opt": 4, "max": 8}
        assert metadata["model"]["variant"] == "a"
    on_disk = json.loads((exported["out"] / "metadata.json").read_text())
    assert on_disk["precision"] == "fp32" and on_disk["statistics"] == STATISTICS


def test_dynamic_batch_gives_the_same_per_image_results(exported):
    session = cpu_session(exported["out"] / "model.fp32.onnx")
    frames = generated_frames(8, 64, seed=3)
    maps8, scores8 = session.run(["anomaly_map", "score"], {"image": frames})
    assert maps8.shape == (8, 64, 64) and scores8.shape == (8,)
    for i in range(8):
        map1, score1 = session.run(["anomaly_map", "score"], {"image": frames[i:i + 1]})
        np.testing.assert_allclose(map1[0], maps8[i], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(score1[0], scores8[i], rtol=1e-5)


def _assert_failed_cleanly(capsys, code, fragment, out, root):
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], err
    assert sorted(p.name for p in out.iterdir()) == ["model.fp32.onnx"]
    assert (out / "model.fp32.onnx").read_text() == "old"
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []


@pytest.fixture
def prior_output(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.fp32.onnx").write_text("old")
    return out


def test_variant_mismatch_is_a_one_line_error(tmp_path, prior_output, capsys):
    checkpoint = random_checkpoint(tmp_path / "ckpt.pt")
    code = export_cli(checkpoint, prior_output, variant="n")
    _assert_failed_cleanly(capsys, code, "holds variant 'a' but variant 'n' was asked", prior_output, tmp_path)


def test_missing_checkpoint_is_a_one_line_error(tmp_path, prior_output, capsys):
    code = export_cli(tmp_path / "nope.pt", prior_output)
    _assert_failed_cleanly(capsys, code, "no such checkpoint file", prior_output, tmp_path)


def test_size_not_divisible_by_32_is_a_one_line_error(tmp_path, prior_output, capsys):
    checkpoint = random_checkpoint(tmp_path / "ckpt.pt")
    code = export_cli(checkpoint, prior_output, image_size=100)
    _assert_failed_cleanly(capsys, code, "not a positive multiple of 32", prior_output, tmp_path)


def test_bad_precision_and_batch_are_one_line_errors(tmp_path, prior_output, capsys):
    checkpoint = random_checkpoint(tmp_path / "ckpt.pt")
    _assert_failed_cleanly(capsys, export_cli(checkpoint, prior_output, precision="fp8"), "unknown precision 'fp8'",
                           prior_output, tmp_path)
    _assert_failed_cleanly(capsys, export_cli(checkpoint, prior_output, batch="8:4:1"), "MIN <= OPT <= MAX",
                           prior_output, tmp_path)
    _assert_failed_cleanly(capsys, export_cli(checkpoint, prior_output, precision="int8"), "--calib-data",
                           prior_output, tmp_path)


def test_failure_mid_export_leaves_no_partial_artifacts(tmp_path, prior_output, monkeypatch):
    from mmad_edge.export import pipeline

    def broken(model, path, *args, **kwargs):
        path.write_bytes(b"half a graph")
        raise RuntimeError("simulated crash while exporting")

    monkeypatch.setattr(pipeline, "export_onnx", broken)
    checkpoint = random_checkpoint(tmp_path / "ckpt.pt")
    with pytest.raises(RuntimeError, match="simulated crash"):
        export_checkpoint(checkpoint, prior_output, ExportOptions(progress=False))
    assert sorted(p.name for p in prior_output.iterdir()) == ["model.fp32.onnx"]
    assert (prior_output / "model.fp32.onnx").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_failed_export_never_hands_json_an_older_report(tmp_path, monkeypatch, capsys):
    from mmad_edge.export import pipeline
    from mmad_edge.export.checks import Check

    def failing(*args, **kwargs):
        result = verify_onnx(*args, **kwargs)
        result.checks.append(Check("forced", 1.0, 0.0, True))
        return result

    out = tmp_path / "out"
    out.mkdir()
    old = {"verification": {"fp32": {"passed": True}}, "note": "an earlier export"}
    (out / "report.json").write_text(json.dumps(old))
    monkeypatch.setattr(pipeline, "verify_onnx", failing)
    code = export_cli(random_checkpoint(tmp_path / "ckpt.pt"), out, "fp32", json_path=tmp_path / "r.json")
    assert code == 1
    assert "verification failed" in capsys.readouterr().err
    report = json.loads((tmp_path / "r.json").read_text())
    assert "note" not in report and report["verification"]["fp32"]["passed"] is False
    assert report["files"] == {}
    assert json.loads((out / "report.json").read_text()) == old  # the folder is untouched


def test_engine_with_float_input_is_refused_before_any_work(tmp_path, prior_output, capsys):
    checkpoint = random_checkpoint(tmp_path / "ckpt.pt")
    code = export_cli(checkpoint, prior_output, input_format="float_rgb_nchw", engine=True)
    _assert_failed_cleanly(capsys, code, "--input-format uint8_bgr_nhwc", prior_output, tmp_path)


def test_load_for_export_reads_the_checkpoint_once(tmp_path, monkeypatch):
    from mmad_edge import checkpoint as checkpoint_module
    from mmad_edge.export.pipeline import load_for_export

    path = random_checkpoint(tmp_path / "ckpt.pt")
    reads = []
    real = checkpoint_module.read_torch_file
    monkeypatch.setattr(checkpoint_module, "read_torch_file", lambda p: reads.append(p) or real(p))
    model, ckpt = load_for_export(path, 96, "a")
    assert len(reads) == 1
    assert model.config.image_size == 96 and ckpt["statistics"] == STATISTICS


@pytest.mark.parametrize(("option", "message"), [({"input_format": "rgb"}, "unknown input format"),
                                                 ({"opset": 11}, "opset 11 is too old")])
def test_bad_options_are_refused_before_the_checkpoint_is_read(tmp_path, prior_output, capsys, option, message):
    missing = tmp_path / "not-there.pt"  # were it read, the error would name the missing file instead
    code = export_cli(missing, prior_output, **option)
    _assert_failed_cleanly(capsys, code, message, prior_output, tmp_path)
