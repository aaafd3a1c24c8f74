"""One definition of each contract item (runtime.contract), read by every room; the
onnx-free metadata_props reader against files the real onnx package writes."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper
from runtime_fixtures import standin_metadata

from mmad_edge.runtime.artifact import contract
from mmad_edge.runtime.artifact.onnx_props import ProtobufError, read_metadata_props

# (module, its name for the item, the contract's name): each must be the contract's own object.
USERS = [
    ("mmad_edge.export.metadata", "INPUT_NAME", "INPUT_NAME"),
    ("mmad_edge.export.metadata", "PRECISIONS", "PRECISIONS"),
    ("mmad_edge.export.metadata", "METADATA_KEY", "METADATA_KEY"),
    ("mmad_edge.export.metadata", "SCHEMA_VERSION", "SCHEMA_VERSION"),
    ("mmad_edge.export.metadata", "METADATA_FILENAME", "METADATA_FILE"),
    ("mmad_edge.export.onnx_export", "OUTPUT_NAMES", "OUTPUT_NAMES"),
    ("mmad_edge.export.onnx_export", "INPUT_NAME", "INPUT_NAME"),
    ("mmad_edge.export.tensorrt", "INPUT_NAME", "INPUT_NAME"),
    ("mmad_edge.export.tensorrt", "tensorrt_version", "tensorrt_version"),
    ("mmad_edge.export.trt_ops", "tensorrt_version", "tensorrt_version"),
    ("mmad_edge.export.pipeline", "PRECISIONS", "PRECISIONS"),
    ("mmad_edge.export.pipeline", "artifact_name", "artifact_name"),
    ("mmad_edge.runtime.artifact.metadata", "METADATA_KEY", "METADATA_KEY"),
    ("mmad_edge.runtime.artifact.metadata", "SCHEMA_VERSION", "SCHEMA_VERSION"),
    ("mmad_edge.runtime.artifact.metadata", "METADATA_FILE", "METADATA_FILE"),
    ("mmad_edge.runtime.artifact.selection", "PRECISIONS", "PRECISIONS"),
    ("mmad_edge.runtime.backends.onnxruntime", "INPUT_NAME", "INPUT_NAME"),
    ("mmad_edge.runtime.backends.onnxruntime", "OUTPUT_NAMES", "OUTPUT_NAMES"),
    ("mmad_edge.runtime.backends.tensorrt", "OUTPUT_NAMES", "OUTPUT_NAMES"),
    ("mmad_edge.runtime.backends.tensorrt", "tensorrt_version", "tensorrt_version"),
    ("mmad_edge.calib.graph", "INPUT_NAME", "INPUT_NAME"),
    ("mmad_edge.calib.reader", "INPUT_NAME", "INPUT_NAME"),
    ("mmad_edge.app.demo", "PRECISIONS", "PRECISIONS"),
    ("mmad_edge.app.demo", "artifact_name", "artifact_name"),
    ("mmad_edge.bench.artifacts", "PRECISIONS", "PRECISIONS"),
    ("mmad_edge.bench.artifacts", "artifact_name", "artifact_name"),
    ("mmad_edge.bench.artifacts", "ENGINE_SUFFIX", "ENGINE_SUFFIX"),
]


ROOMS = Path(__file__).resolve().parents[2]
# Literal spellings of contract items that only runtime/contract.py may contain.
SPELLINGS = ('"mmad_edge.metadata"', '("fp32", "fp16", "int8")', '("anomaly_map", "score")', 'INPUT_NAME = "image"',
             'SCHEMA_VERSION = 1', 'f"model.{', '"metadata.json"')


def _defines_literal(module: str, name: str) -> bool:
    """Whether ``module`` assigns ``name`` a literal at top level (its own copy of the item)."""
    tree = ast.parse(Path(importlib.import_module(module).__file__).read_text(encoding="utf-8"))
    return any(isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets)
               and not isinstance(node.value, (ast.Name, ast.Attribute)) for node in tree.body)


@pytest.mark.parametrize("module, name, item", USERS)
def test_rooms_take_the_contract_from_the_contract_module(module, name, item):
    assert getattr(importlib.import_module(module), name) is getattr(contract, item)
    assert not _defines_literal(module, name)


def test_no_room_spells_a_contract_item_itself():
    found = []
    for room in ("runtime", "export", "calib", "bench", "mmad_edge"):
        for path in sorted((ROOMS / room).rglob("*.py")):
            if path.name == "contract.py" and path.parent.name == "runtime":
                continue
            text = path.read_text(encoding="utf-8")
            found += [f"{path.relative_to(ROOMS)}: {spelling}" for spelling in SPELLINGS if spelling in text]
    assert found == []


def test_backend_choices_come_from_the_registry():
    from mmad_edge.bench import suite
    from mmad_edge.runtime.backends import choices

    assert suite.BACKENDS == (*choices(), "torch")


def test_metadata_sections_and_file_names():
    assert contract.artifact_name("fp16") == "model.fp16.onnx"
    assert contract.artifact_name("int8", ".engine") == "model.int8.engine"
    assert contract.sidecar_path("/x/model.fp16.engine").name == "model.fp16.engine.json"
    assert [contract.precision_of(n) for n in ("model.int8.onnx", "model.fp16.engine", "model.x.onnx", "m.onnx")] \
        == ["int8", "fp16", None, None]
    assert contract.input_section(64, 48) == {"name": "image", "layout": "NHWC", "dtype": "uint8",
                                              "channel_order": "BGR", "height": 64, "width": 48}
    assert contract.output_shapes(64, 48)["anomaly_map"]["shape"] == ["B", 64, 48]


@pytest.mark.parametrize("text, parts, expected", [
    ("10.3.0.26", 3, (10, 3, 0)), ("10.3", 3, (10, 3, 0)), ("11.0.1", 2, (11, 0)), ("10.7.0.post1", 3, (10, 7, 0)),
    ("8.6.2-rc", 3, (8, 6, 2)), (" 10 ", 2, (10, 0)),
])
def test_tensorrt_versions_parse_one_way(text, parts, expected):
    assert contract.tensorrt_version(text, parts) == expected


def _model(props: dict) -> onnx.ModelProto:
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, doc_string="d" * 300, producer_version="1.2")  # long fields: multi-byte lengths
    helper.set_model_props(model, props)
    return model


def test_metadata_props_reader_matches_the_onnx_package(tmp_path):
    props = {contract.METADATA_KEY: '{"threshold": 0.12, "name": "Prüfstand ✓"}', "other": "", "x" * 200: "y"}
    path = tmp_path / "m.onnx"
    onnx.save(_model(props), str(path))
    expected = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert read_metadata_props(path) == expected == props
    onnx.save(_model({}), str(path))
    assert read_metadata_props(path) == {}


def test_metadata_props_reader_refuses_broken_files(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(_model({"k": "v"}), str(path))
    data = path.read_bytes()
    path.write_bytes(data[:-3])
    with pytest.raises(ProtobufError):
        read_metadata_props(path)
    path.write_text("this is a text file, not a protobuf")
    with pytest.raises(ProtobufError):
        read_metadata_props(path)


def test_readers_migrate_older_schemas_and_refuse_unknown_ones(monkeypatch):
    from mmad_edge.runtime.artifact import metadata

    old = standin_metadata(32)
    old["schema_version"] = 0
    old["input"]["size"] = old["input"].pop("height")  # pretend version 0 named it "size"

    def to_v1(data: dict) -> dict:
        data["input"] = {**data["input"], "height": data["input"]["size"]}
        del data["input"]["size"]
        return {**data, "schema_version": 1}

    with pytest.raises(metadata.ArtifactError, match="schema_version 0 is not supported"):
        metadata.parse_metadata(dict(old), "old.json")
    monkeypatch.setitem(metadata.MIGRATIONS, 0, to_v1)
    assert metadata.parse_metadata(dict(old), "old.json").image_size == (32, 32)
