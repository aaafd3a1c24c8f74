"""Export metadata: schema, checkpoint hash, ONNX embedding, atomic JSON and validation errors."""

from __future__ import annotations

import copy
import hashlib
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import mmad_edge
from mmad_edge.config import ModelConfig
from mmad_edge.export.metadata import (
    METADATA_KEY,
    MetadataError,
    build_metadata,
    engine_metadata,
    metadata_for_onnx,
    read_metadata_json,
    read_onnx_metadata,
    validate_metadata,
    write_onnx_metadata,
)
from mmad_edge.fileio import file_sha256, write_bytes_atomic, write_json_atomic

STATS = {"threshold": 0.12, "normalization": {"low": 0.05, "high": 0.12}, "threshold_rule": "max_normal",
         "normal_scores": {"count": 6, "mean": 0.06, "std": 0.01, "quantiles": {"0.5": 0.05}}}
BATCH = {"min": 1, "opt": 8, "max": 16}


def _metadata(precision="fp32", statistics=STATS, checkpoint=None, size=64):
    return build_metadata(ModelConfig(image_size=size).to_dict(), precision, 17, BATCH, statistics, checkpoint)


def _tiny_onnx():
    """uint8 NHWC image in, float map out: enough graph for metadata round trips and onnxruntime."""
    image = helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", 64, 64, 3])
    out = helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, ["batch", 64, 64, 3])
    graph = helper.make_graph([helper.make_node("Cast", ["image"], ["anomaly_map"], to=TensorProto.FLOAT)],
                              "tiny", [image], [out])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_build_metadata_follows_the_schema(tmp_path):
    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(b"weights" * 1000)
    meta = _metadata(checkpoint=checkpoint)
    assert meta["schema_version"] == 1 and meta["mmad_edge_version"] == mmad_edge.__version__
    assert (meta["precision"], meta["opset"], meta["batch"]) == ("fp32", 17, BATCH)
    assert meta["model"] == ModelConfig(image_size=64).to_dict()
    assert meta["input"] == {"name": "image", "layout": "NHWC", "dtype": "uint8", "channel_order": "BGR",
                             "height": 64, "width": 64}
    assert meta["outputs"] == {"anomaly_map": {"shape": ["B", 64, 64], "dtype": "float32"},
                               "score": {"shape": ["B"], "dtype": "float32"}}
    assert meta["statistics"] == STATS and meta["statistics"] is not STATS
    assert meta["source_checkpoint"] == {"path": str(checkpoint),
                                         "sha256": hashlib.sha256(b"weights" * 1000).hexdigest()}
    assert "tensorrt" not in meta
    json.dumps(meta)  # plain JSON types only


def test_statistics_and_checkpoint_may_be_null():
    meta = _metadata(statistics=None, checkpoint=None)
    assert meta["statistics"] is None and meta["source_checkpoint"] is None


def test_file_sha256_streams_in_chunks(tmp_path):
    data = np.random.default_rng(0).bytes(10_000)
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert file_sha256(path, chunk_size=333) == hashlib.sha256(data).hexdigest()


def test_build_metadata_rejects_bad_inputs(tmp_path):
    with pytest.raises(MetadataError, match="metadata field 'precision' must be one of fp32, fp16, int8, got 'fp8'"):
        _metadata(precision="fp8")
    with pytest.raises(MetadataError, match="metadata field 'model' is not a valid model config: image size 100"):
        build_metadata({"image_size": 100}, "fp32", 17, BATCH, None, None)
    with pytest.raises(MetadataError, match="source checkpoint .*missing.pt not found"):
        _metadata(checkpoint=tmp_path / "missing.pt")
    with pytest.raises(MetadataError, match=r"metadata field 'batch.max' must be an integer >= batch.opt \(8\), got 4"):
        build_metadata(ModelConfig().to_dict(), "fp32", 17, {"min": 1, "opt": 8, "max": 4}, None, None)


@pytest.mark.parametrize("mutate, message", [
    (lambda m: m.pop("batch"), "metadata field 'batch' is missing"),
    (lambda m: m["input"].pop("dtype"), "metadata field 'input.dtype' is missing"),
    (lambda m: m.update(schema_version=2), "metadata field 'schema_version' must be 1"),
    (lambda m: m["input"].update(height=32), "metadata field 'input.height' must be 64 (model.image_size), got 32"),
    (lambda m: m["batch"].update(min=0), "metadata field 'batch.min' must be a positive integer, got 0"),
    (lambda m: m["statistics"].pop("threshold"), "metadata field 'statistics.threshold' is missing"),
    (lambda m: m["statistics"]["normalization"].update(low=float("nan")),
     "metadata field 'statistics.normalization.low' must be a finite number"),
    (lambda m: m.update(source_checkpoint={"path": "c.pt", "sha256": "xyz"}),
     "metadata field 'source_checkpoint.sha256' must be 64 lowercase hex digits"),
    (lambda m: m.update(opset=True), "metadata field 'opset' must be a positive integer, got True"),
])
def test_validate_metadata_names_the_first_bad_field(mutate, message):
    meta = _metadata()
    mutate(meta)
    with pytest.raises(MetadataError) as caught:
        validate_metadata(meta)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_engine_metadata_adds_the_tensorrt_section():
    base = _metadata(precision="fp16")
    meta = engine_metadata(base, "10.3.0", "Orin", "8.7", (1, 8, 16), False, 0)
    assert meta["tensorrt"] == {"version": "10.3.0", "gpu": "Orin", "compute_capability": "8.7",
                                "profile": {"min": 1, "opt": 8, "max": 16}, "version_compatible": False,
                                "dla_core": 0}
    assert "tensorrt" not in base and meta["batch"] == base["batch"]
    with pytest.raises(MetadataError, match="'tensorrt.dla_core' must be null or a DLA core number >= 0, got -1"):
        engine_metadata(base, "10.3.0", "Orin", "8.7", {"min": 1, "opt": 1, "max": 1}, False, -1)
    with pytest.raises(MetadataError, match="'tensorrt.profile.opt' must be an integer >= tensorrt.profile.min"):
        engine_metadata(base, "10.3.0", "Orin", "8.7", (4, 2, 8), False, None)


def test_onnx_metadata_round_trip_and_onnxruntime_can_read_it(tmp_path):
    model = _tiny_onnx()
    write_onnx_metadata(model, _metadata(precision="fp32"))
    meta = _metadata(precision="fp16")
    write_onnx_metadata(model, meta)  # replaces the earlier copy
    assert [p.key for p in model.metadata_props] == [METADATA_KEY]
    path = tmp_path / "model.fp16.onnx"
    onnx.save(model, str(path))
    assert read_onnx_metadata(path) == meta
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert json.loads(session.get_modelmeta().custom_metadata_map[METADATA_KEY]) == meta


def test_read_onnx_metadata_errors_name_the_file(tmp_path):
    path = tmp_path / "plain.onnx"
    onnx.save(_tiny_onnx(), str(path))
    with pytest.raises(MetadataError, match=f"plain.onnx carries no '{METADATA_KEY}' metadata; re-export"):
        read_onnx_metadata(path)
    model = _tiny_onnx()
    model.metadata_props.add(key=METADATA_KEY, value="{not json")
    onnx.save(model, str(path))
    with pytest.raises(MetadataError, match="is not valid JSON"):
        read_onnx_metadata(path)


def test_write_json_atomic_writes_whole_files_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "metadata.json"
    meta = _metadata()
    write_json_atomic(path, meta)
    assert read_metadata_json(path) == meta and path.read_text().endswith("\n")
    with pytest.raises(TypeError):
        write_bytes_atomic(path, object())  # fails mid-write: the old file must survive
    assert read_metadata_json(path) == meta
    assert sorted(p.name for p in path.parent.iterdir()) == ["metadata.json"]


def test_metadata_for_onnx_falls_back_to_metadata_json_and_needs_no_onnx(tmp_path, monkeypatch):
    shared = _metadata(precision="fp32")
    write_json_atomic(tmp_path / "metadata.json", shared)
    (tmp_path / "model.int8.onnx").write_bytes(b"\x0a\x00")  # a protobuf without metadata_props
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError
    meta = metadata_for_onnx(tmp_path / "model.int8.onnx")
    assert meta["precision"] == "int8" and meta["model"] == shared["model"]
    model = _tiny_onnx()
    monkeypatch.undo()
    embedded = _metadata(precision="fp16")
    embedded["opset"] = 18  # differs from metadata.json: shows which copy was read
    write_onnx_metadata(model, embedded)
    onnx.save(model, str(tmp_path / "model.fp16.onnx"))
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert metadata_for_onnx(tmp_path / "model.fp16.onnx") == embedded  # the embedded copy, read without onnx
    (tmp_path / "metadata.json").unlink()
    with pytest.raises(MetadataError, match=f"model.int8.onnx carries no '{METADATA_KEY}' metadata"):
        metadata_for_onnx(tmp_path / "model.int8.onnx")


def test_metadata_for_onnx_prefers_the_embedded_copy(tmp_path):
    model = _tiny_onnx()
    embedded = _metadata(precision="fp16")
    write_onnx_metadata(model, embedded)
    onnx.save(model, str(tmp_path / "model.fp16.onnx"))
    other = copy.deepcopy(embedded)
    other["opset"] = 18
    write_json_atomic(tmp_path / "metadata.json", other)
    assert metadata_for_onnx(tmp_path / "model.fp16.onnx") == embedded
