"""`mmad-edge run` on the stand-in: one error line (exit 2, no traceback, files kept), one summary line."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from runtime_fixtures import standin_metadata, write_export_dir, write_standin
from typer.testing import CliRunner

from mmad_edge.cli import app

SIZE = 32


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("cli")
    frames = root / "frames"
    frames.mkdir()
    for name, value in (("a.png", 20), ("c.png", 200)):
        cv2.imwrite(str(frames / name), np.full((40, 40, 3), value, np.uint8))
    (frames / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    bad = {
        "nan_threshold": lambda m: m["statistics"].update(threshold=float("nan")),
        "list_normalization": lambda m: m["statistics"].update(normalization=[0.5, 0.6]),
        "text_batch": lambda m: m["batch"].update(max="8x"),
    }
    for name, change in bad.items():
        meta = standin_metadata(SIZE)
        change(meta)
        write_standin(root / f"{name}.onnx", SIZE, metadata=meta)
    mismatched = write_export_dir(root / "mismatched", SIZE)
    meta = json.loads((mismatched / "metadata.json").read_text())
    meta["batch"]["max"] = 16
    (mismatched / "metadata.json").write_text(json.dumps(meta))
    (root / "not_onnx").mkdir()
    (root / "not_onnx" / "model.fp32.onnx").write_text("not a protobuf")
    return {"root": root, "frames": frames, "export": write_export_dir(root / "export", SIZE, threshold=0.5, low=0.3)}


CASES = [
    ("export", ["--max-frames", "0"], "max frames must be at least 1, got 0; pass --max-frames N with N >= 1"),
    ("export", ["--max-frames", "-1"], "max frames must be at least 1, got -1"),
    ("export", ["--threshold", "nan"], "threshold must be a finite number, got nan"),
    ("export", ["--threshold", "inf"], "threshold must be a finite number, got inf"),
    ("export", ["--retry-seconds", "-1"], "retry seconds must be a number >= 0, got -1.0"),
    ("export", ["--map-size", "huge"], "map_size must be 'model' or 'frame', got 'huge'"),
    ("nan_threshold.onnx", [], "metadata statistics.threshold must be a finite number, got nan"),
    ("list_normalization.onnx", [], "metadata statistics.normalization must be an object"),
    ("text_batch.onnx", [], "metadata batch.max must be an integer, got '8x'"),
    ("mismatched", [], "metadata.json beside it disagrees with the graph's metadata on batch.max (graph 4, metadata.json 16)"),
    ("not_onnx", [], "model.fp32.onnx: not a loadable ONNX model (Protobuf parsing failed.)"),
    ("export", ["--source", "rtsp://127.0.0.1:9/none", "--retry-seconds", "0"],
     "rtsp://127.0.0.1:9/none: no frames (--retry-seconds 0: no reopening); check the camera/URL"),
]


@pytest.mark.parametrize("artifact, options, message", CASES)
def test_run_errors_are_one_line_exit_2_and_keep_earlier_files(setup, tmp_path, artifact, options, message):
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "results.jsonl").write_text('{"index": 0, "earlier": true}\n')
    summary = tmp_path / "summary.json"
    summary.write_text('{"earlier": true}\n')
    args = ["run", str(setup["root"] / artifact), "--source", str(setup["frames"]), "--save", str(saved),
            "--json", str(summary), *options]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], result.output
    assert (saved / "results.jsonl").read_text() == '{"index": 0, "earlier": true}\n'
    assert summary.read_text() == '{"earlier": true}\n'
    assert sorted(p.name for p in saved.iterdir()) == ["results.jsonl"]


@pytest.mark.parametrize("batch", ["1", "2"])
def test_run_prints_one_summary_line_and_names_a_corrupt_file(setup, tmp_path, batch):
    result = CliRunner().invoke(app, ["run", str(setup["export"]), "--source", str(setup["frames"]), "--batch-size", batch,
                                      "--json", str(tmp_path / "run.json")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert f"mmad-edge: skipping {setup['frames'] / 'b.png'}: cannot decode image (corrupt or not an image); " \
           "replace or remove the file" in lines
    done = [line for line in lines if "anomalous" in line]
    assert len(done) == 1 and done[0].startswith("mmad-edge: done: 2 processed, 1 anomalous, 1 skipped, 0 dropped, ")
    record = json.loads((tmp_path / "run.json").read_text())
    assert (record["frames"], record["anomalies"], record["skipped"]) == (2, 1, 1)


def test_run_on_a_folder_where_nothing_decodes_exits_non_zero_with_one_line(setup, tmp_path):
    folder = tmp_path / "corrupt"
    folder.mkdir()
    for name in ("a.png", "b.jpg"):
        (folder / name).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    result = CliRunner().invoke(app, ["run", str(setup["export"]), "--source", str(folder),
                                      "--json", str(tmp_path / "run.json")])
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert [line for line in lines if not line.startswith("mmad-edge: skipping ")] == [
        f"error: {folder}: nothing was scored, all 2 image files failed to decode (named above); replace or remove them"]
    assert not (tmp_path / "run.json").exists()


def test_run_help_documents_save_map_size_and_retry_seconds():
    text = " ".join(CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "240"}).output.replace("│", " ").split())
    for phrase in ("keeps the anomalous frames only", "--map-size frame", "--retry-seconds",
                   "0: fail at once", "N >= 1", "repeat for several sources", "NAME=SOURCE", "--drift-window",
                   "--drift-tolerance", "--metrics-port", "http://127.0.0.1:PORT/metrics"):
        assert phrase in text, phrase


def test_docs_document_the_run_options_and_the_jsonl_format():
    docs = Path(__file__).resolve().parents[2] / "docs"
    deploying = (docs / "deploying.md").read_text()
    for phrase in ("--retry-seconds", "--map-size frame", "preprocess_ms", "frame_index", "timestamp_ms",
                   "metadata.json overrides the graph's statistics", "--source NAME=SOURCE",
                   "`stream`", "--drift-window N", "--drift-tolerance T", "--metrics-port P", '"event": "drift"',
                   "mmad_edge_drift_statistic"):
        assert phrase in deploying, phrase
    assert "clipped to [0, 1]" in (docs / "api.md").read_text()  # score_normalized, documented with Result


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="openvino is not installed")
@pytest.mark.parametrize("batch, hint", [("1", "latency"), ("2", "throughput")])
def test_run_on_openvino_takes_the_hint_of_its_batch_and_reports_the_precision_used(setup, tmp_path, monkeypatch,
                                                                                     batch, hint):
    monkeypatch.setenv("HOME", str(tmp_path))  # the compiled-model cache goes under ~/.cache/mmad-edge/openvino
    result = CliRunner().invoke(app, ["run", str(setup["export"]), "--source", str(setup["frames"]), "--backend",
                                      "openvino", "--batch-size", batch, "--json", str(tmp_path / "run.json")])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["backend"] == "openvino" and (record["frames"], record["anomalies"]) == (2, 1)
    details = record["backend_details"]
    assert (details["performance_hint"], details["inference_precision"], details["precision"]) == (hint, "f32", "fp32")
    assert (record["precision"], record["compute_precision"], details["compute_precision"]) == ("fp32", "fp32", "fp32")
    done = next(line for line in result.output.splitlines() if " processed, " in line)
    assert " (openvino, fp32); encoder weights: " in done, done


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="openvino is not installed")
@pytest.mark.parametrize("options, message", [
    (["--performance-hint", "fast"], "performance_hint must be 'latency' or 'throughput', got 'fast'"),
    (["--inference-precision", "fp8"], "inference_precision must be one of f32, bf16, f16, got 'fp8'"),
])
def test_run_openvino_option_errors_are_one_line(setup, tmp_path, monkeypatch, options, message):
    monkeypatch.setenv("HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["run", str(setup["export"]), "--source", str(setup["frames"]),
                                      "--backend", "openvino", *options])
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert result.exit_code == 2 and len(errors) == 1 and message in errors[0], result.output
    assert not (tmp_path / ".cache").exists()  # refused before any cache folder was made
