"""`mmad-edge triton-repo`: the config is read back with Triton's own ModelConfig protobuf."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from runtime_fixtures import standin_metadata, write_export_dir, write_standin

from mmad_edge.runtime.errors import ArtifactError
from mmad_edge.runtime.serving.options import RepoOptions
from mmad_edge.runtime.serving.repo import TRITON_IMAGE, write_model_repository

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
text_format = pytest.importorskip("google.protobuf.text_format")
CATEGORIES = {"gravel": {"threshold": 0.3, "normalization": {"low": 0.2, "high": 0.3}}}


def parsed(folder: Path):
    return text_format.Parse((folder / "mmad_edge" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def tensor(entry) -> tuple:
    return entry.name, model_config_pb2.DataType.Name(entry.data_type), list(entry.dims)


def test_dynamic_onnx_export_gives_a_batching_onnxruntime_model(tmp_path):
    metadata = standin_metadata(64, max_batch=16)
    metadata["statistics"]["categories"] = CATEGORIES
    export = tmp_path / "export"
    export.mkdir()
    write_standin(export / "model.fp32.onnx", 64, metadata=metadata)
    (export / "metadata.json").write_text(json.dumps(metadata))
    repo = tmp_path / "repo"
    (repo / "other_model").mkdir(parents=True)
    written = write_model_repository(export, repo, RepoOptions(max_batch=8, max_queue_delay_us=200, instances=2))
    config = parsed(repo)
    assert (config.name, config.platform, config.max_batch_size) == ("mmad_edge", "onnxruntime_onnx", 8)
    assert [tensor(entry) for entry in config.input] == [("image", "TYPE_UINT8", [64, 64, 3])]
    assert [tensor(entry) for entry in config.output] == [("anomaly_map", "TYPE_FP32", [64, 64]),
                                                          ("score", "TYPE_FP32", [1])]
    assert not config.output[0].HasField("reshape")
    assert config.output[1].HasField("reshape") and list(config.output[1].reshape.shape) == []
    assert config.HasField("dynamic_batching") and config.dynamic_batching.max_queue_delay_microseconds == 200
    assert [(group.count, model_config_pb2.ModelInstanceGroup.Kind.Name(group.kind))
            for group in config.instance_group] == [(2, "KIND_AUTO")]
    parameters = {key: value.string_value for key, value in config.parameters.items()}
    assert parameters == {
        "threshold": "0.6", "normalization_low": "0.5", "normalization_high": "0.6",
        "category.gravel.threshold": "0.3", "category.gravel.normalization_low": "0.2",
        "category.gravel.normalization_high": "0.3", "precision": "fp32", "input_size": "64x64",
        "channel_order": "BGR", "input_note": "frames must be resized to 64x64 by the client (the graph does not resize)"}
    assert (repo / "mmad_edge" / "1" / "model.onnx").read_bytes() == (export / "model.fp32.onnx").read_bytes()
    assert written["model_file"] == str(repo / "mmad_edge" / "1" / "model.onnx")
    assert sorted(path.name for path in repo.iterdir()) == ["mmad_edge", "other_model"]


def test_fixed_batch_graph_has_explicit_batch_dims_and_no_batcher(tmp_path):
    export = write_export_dir(tmp_path / "export", size=32, batch=2, statistics=False)
    write_model_repository(export, tmp_path / "repo")
    config = parsed(tmp_path / "repo")
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert [tensor(entry) for entry in config.input] == [("image", "TYPE_UINT8", [2, 32, 32, 3])]
    assert [tensor(entry) for entry in config.output] == [("anomaly_map", "TYPE_FP32", [2, 32, 32]),
                                                          ("score", "TYPE_FP32", [2])]
    assert not any(entry.HasField("reshape") for entry in config.output)
    assert "threshold" not in config.parameters


def test_an_engine_becomes_a_tensorrt_plan_on_the_gpu_and_replaces_the_old_model(tmp_path):
    export = write_export_dir(tmp_path / "export", size=32)
    engine = export / "model.fp16.engine"
    engine.write_bytes(b"plan bytes")
    (export / "model.fp16.engine.json").write_text(json.dumps(standin_metadata(32, precision="fp16", max_batch=4)))
    repo = tmp_path / "repo"
    write_model_repository(export, repo, RepoOptions(backend="onnxruntime"))
    write_model_repository(engine, repo)  # an engine for another machine: named itself
    config = parsed(repo)
    assert (config.platform, config.max_batch_size) == ("tensorrt_plan", 4)
    assert model_config_pb2.ModelInstanceGroup.Kind.Name(config.instance_group[0].kind) == "KIND_GPU"
    assert sorted(path.name for path in (repo / "mmad_edge" / "1").iterdir()) == ["model.plan"]
    assert (repo / "mmad_edge" / "1" / "model.plan").read_bytes() == b"plan bytes"
    assert [path.name for path in repo.iterdir()] == ["mmad_edge"]


def test_an_export_folder_is_picked_as_serve_picks_it_and_the_summary_names_the_precision(tmp_path):
    from mmad_edge.runtime import Detector
    from mmad_edge.runtime.serving.repo import repo_summary

    export = write_export_dir(tmp_path / "export", size=32, precisions=("fp16", "fp32"))
    written = write_model_repository(export, tmp_path / "repo")
    with Detector.load(export) as served:
        assert Path(written["artifact"]) == served.backend.path
        expected = served.info.precision
    assert written["precision"] == expected == parsed(tmp_path / "repo").parameters["precision"].string_value
    assert f"(from model.{expected}.onnx: {expected}, onnxruntime_onnx," in repo_summary(written)


def test_a_profile_that_cannot_take_one_frame_is_refused(tmp_path):
    metadata = standin_metadata(32, max_batch=8)
    metadata["batch"] = {"min": 2, "opt": 4, "max": 8}
    onnx_path = write_standin(tmp_path / "model.fp32.onnx", 32, metadata=metadata)
    with pytest.raises(ArtifactError, match="starts at 2.*--batch 1:OPT:MAX"):
        write_model_repository(onnx_path, tmp_path / "repo")
    assert not (tmp_path / "repo" / "mmad_edge").exists()


def test_the_command_prints_the_docker_line(tmp_path):
    export = write_export_dir(tmp_path / "export", size=32)
    out = subprocess.run([sys.executable, "-m", "mmad_edge.cli", "triton-repo", str(export), str(tmp_path / "repo"),
                          "--json", str(tmp_path / "repo.json")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == (
        "  serve it: docker run --rm --gpus all -p 8000:8000 -p 8001:8001 -p 8002:8002 -v "
        f"{(tmp_path / 'repo').resolve()}:/models nvcr.io/nvidia/tritonserver:24.10-py3 tritonserver "
        "--model-repository=/models")
    serving_md = (Path(__file__).parents[2] / "docs" / "serving.md").read_text()
    assert f"{TRITON_IMAGE} tritonserver --model-repository=/models" in serving_md  # the docs name the same release
    assert json.loads((tmp_path / "repo.json").read_text())["platform"] == "onnxruntime_onnx"
    missing = subprocess.run([sys.executable, "-m", "mmad_edge.cli", "triton-repo", str(tmp_path / "nothing"),
                              str(tmp_path / "repo")], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "no such artifact" in missing.stderr


def test_max_batch_above_a_dynamic_onnx_profile_is_written_as_asked_and_the_summary_names_it(tmp_path):
    from mmad_edge.runtime.serving.repo import repo_summary

    export = write_export_dir(tmp_path / "export", size=32, max_batch=2)  # dynamic batch axis, profile 1:1:2
    written = write_model_repository(export, tmp_path / "repo", RepoOptions(max_batch=8))
    config = parsed(tmp_path / "repo")
    assert config.max_batch_size == written["max_batch_size"] == 8 and config.HasField("dynamic_batching")
    assert [tensor(entry) for entry in config.input] == [("image", "TYPE_UINT8", [32, 32, 3])]
    assert "onnxruntime_onnx, uint8 32x32 BGR frames resized by the client, dynamic batching up to 8, above the " \
           "export's profile 1..2, KIND_AUTO)" in repo_summary(written)
    fixed = write_model_repository(write_export_dir(tmp_path / "fixed", size=32, batch=2), tmp_path / "repo2")
    assert ", fixed batch of 2 (no dynamic batching), KIND_AUTO)" in repo_summary(fixed)


def refused(tmp_path: Path, artifact: Path) -> str:
    """`triton-repo ARTIFACT --max-batch 8`'s one stderr line; nothing may be written."""
    out = subprocess.run([sys.executable, "-m", "mmad_edge.cli", "triton-repo", str(artifact), str(tmp_path / "repo"),
                          "--max-batch", "8"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and out.stdout == "", (out.stdout, out.stderr)
    assert not (tmp_path / "repo" / "mmad_edge").exists()
    return out.stderr


def test_max_batch_past_an_engines_profile_or_a_fixed_onnx_batch_is_refused_in_one_line(tmp_path):
    engine = tmp_path / "model.fp16.engine"
    engine.write_bytes(b"plan bytes")
    (tmp_path / "model.fp16.engine.json").write_text(json.dumps(standin_metadata(32, precision="fp16", max_batch=4)))
    assert ("model.fp16.engine: max batch 8 is above the engine's batch profile 1..4; rebuild it from the ONNX with "
            "mmad-edge build-engine --batch 1:8:8, or ask for at most 4") in refused(tmp_path, engine)
    # `export --batch 1` writes a batch dim of 1 into the graph: Triton's ONNX Runtime backend batches only a
    # dynamic first dim, so max_batch_size 8 there would not load.
    fixed = write_export_dir(tmp_path / "export", size=32, batch=1)
    assert ("model.fp32.onnx: max batch 8 is above the graph's fixed batch of 1 (profile 1:1:1, no dynamic batch "
            "axis); re-export it with mmad-edge export CHECKPOINT --batch 1:8:8, or ask for at most 1") \
        in refused(tmp_path, fixed)
