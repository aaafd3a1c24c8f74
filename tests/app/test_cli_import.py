"""The CLI around artifacts: `import-checkpoint` and `train --pretrained` on fake reference
checkpoints (the weights that land in the project checkpoint are exactly the ones given, reference
key names, variant n), `build-engine --json` on a fake TensorRT, and `run`'s one-line errors."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from fake_tensorrt import FakeTRT, orin, tiny_export
from random_states import state_from_shapes
from runtime_fixtures import write_export_dir
from typer.testing import CliRunner

import mmad_edge.export.tensorrt as trt_build
from mmad_edge.checkpoint import load_checkpoint
from mmad_edge.cli import app


@pytest.fixture(scope="module")
def reference_files(tmp_path_factory, reference_keys):
    """UniRepLKNet-n ImageNet weights (wrapped in "models", with a classifier) and a MiniMaxAD run."""
    root = tmp_path_factory.mktemp("reference")
    encoder = state_from_shapes(reference_keys["encoder"])
    encoder["head.weight"] = torch.randn(1000, 640)
    run = {"bn": state_from_shapes(reference_keys["bn"], 1), "decoder": state_from_shapes(reference_keys["decoder"], 2)}
    torch.save({"models": encoder}, root / "unireplknet_n.pth")
    torch.save(run, root / "run.pth")
    return {"encoder_path": root / "unireplknet_n.pth", "run_path": root / "run.pth", "encoder": encoder, **run}


def assert_part_equals(part: torch.nn.Module, expected: dict) -> None:
    """Every tensor of ``part`` (but the BN step counters) equals the one of that name in ``expected``."""
    state = {k: v for k, v in part.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert set(state) <= set(expected)
    for key, value in state.items():
        assert torch.equal(value, expected[key].to(value.dtype)), key


def test_import_checkpoint_cli_writes_the_given_weights(reference_files, tmp_path):
    out, summary = tmp_path / "run" / "checkpoint.pt", tmp_path / "import.json"
    result = CliRunner().invoke(app, ["import-checkpoint", "--variant", "n", "--image-size", "64",
                                      "--encoder", str(reference_files["encoder_path"]),
                                      "--minimaxad", str(reference_files["run_path"]), "--out", str(out),
                                      "--json", str(summary)])
    assert result.exit_code == 0, result.output
    model, ckpt = load_checkpoint(out)
    assert ckpt["config"]["variant"] == "n" and ckpt["config"]["image_size"] == 64
    assert_part_equals(model.encoder, reference_files["encoder"])
    assert_part_equals(model.bottleneck, reference_files["bn"])
    assert_part_equals(model.decoder, reference_files["decoder"])
    imports = json.loads(summary.read_text())["imports"]
    assert [r["target"] for r in imports] == ["encoder", "bottleneck", "decoder"]
    assert "head.weight" in imports[0]["ignored"] and not imports[1]["ignored"] and not imports[2]["ignored"]


def test_import_checkpoint_cli_refuses_a_run_of_another_variant(reference_files, tmp_path):
    result = CliRunner().invoke(app, ["import-checkpoint", "--variant", "a", "--image-size", "64",
                                      "--minimaxad", str(reference_files["run_path"]), "--out", str(tmp_path / "c.pt")])
    assert result.exit_code == 2 and "another --variant" in result.output.strip().splitlines()[-1]
    assert not (tmp_path / "c.pt").exists()


def test_build_engine_json_describes_the_engine_and_its_sidecar(tmp_path, monkeypatch):
    onnx_path = tiny_export(tmp_path)
    monkeypatch.setattr(trt_build, "load_tensorrt", lambda: FakeTRT())
    monkeypatch.setattr(trt_build, "cuda_device_info", orin)
    summary = tmp_path / "build.json"
    result = CliRunner().invoke(app, ["build-engine", str(onnx_path), "--batch", "1:8:16", "--json", str(summary)])
    assert result.exit_code == 0, result.output
    written = json.loads(summary.read_text())
    engine = tmp_path / "model.fp16.engine"
    assert written["engine"] == str(engine) and written["engine_bytes"] == engine.stat().st_size > 0
    assert written["metadata"] == json.loads((tmp_path / "model.fp16.engine.json").read_text())
    assert written["metadata"]["tensorrt"]["profile"]["max"] == 16


def test_run_errors_are_one_line(tmp_path):
    export = write_export_dir(tmp_path / "export")
    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "a.png"), np.full((64, 64, 3), 128, np.uint8))
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    runner = CliRunner()
    cases = [
        (["run", str(tmp_path / "missing.onnx"), "--source", str(frames)], "missing.onnx"),
        (["run", str(export), "--source", str(tmp_path / "missing.mp4")], "not a camera index"),
        (["run", str(export), "--source", str(frames), "--json", str(blocker / "run.json")],
         f"{blocker}: "),
    ]
    for args, expected in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        last = result.output.strip().splitlines()[-1]
        assert last.startswith("error: ") and expected in last, last
