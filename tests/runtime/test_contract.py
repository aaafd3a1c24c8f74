"""One definition of each contract item (runtime.contract), read by every room; the
onnx-free metadata_props reader against files the real onnx package writes."""

from __future__ import annotations

import ast
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
ROOM_NAMES = ("runtime", "export", "calib", "bench", "mmad_edge")
CONTRACT_FILE = "runtime/artifact/contract.py"
# Precision and dtype names are the words every room speaks (options, numpy dtypes), not names the
# artifact fixes, so a literal "fp32" or "uint8" is no copy; every other contract string is checked.
VOCABULARY = {*contract.PRECISIONS, contract.INPUT_DTYPE, contract.OUTPUT_DTYPE}
# (file, literal) where the literal means something else than the contract item of that spelling.
OTHER_MEANINGS = {
    ("runtime/imageio.py", "image"): "what a decode error calls the file read",
    ("runtime/artifact/schema.py", "category"): "how the runtime's errors name a category's statistics",
    ("runtime/loop/run.py", "category"): "the JSON record's category field",
    ("runtime/loop/tally.py", "category"): "the JSON summary's category field",
    ("runtime/loop/shadow.py", "category"): "the disagreement record's category field",
    ("runtime/ui/app.py", "category"): "the Apply request's field",
    ("runtime/ui/review_store.py", "category"): "a review item's field",
    ("runtime/ui/state.py", "category"): "the page's source card field",
    ("runtime/ui/whatif.py", "category"): "the what-if's field",
    ("export/threshold_apply.py", "category"): "the Apply summary's field",
    ("bench/map_corners.py", "category"): "a results table column",
    ("bench/map_corners.py", "image"): "the dataset sample's key",
    ("runtime/serving/watch.py", "category"): "a Prometheus label name",
    ("export/threshold_calibration.py", "category"): "the calibration report's field",
    ("export/device_verification.py", "mmad_edge"): "the package version's key in a report",
    ("mmad_edge/data/dataset.py", "image"): "the dataset sample's key",
    ("mmad_edge/data/dataset.py", "category"): "the dataset sample's key",
    ("mmad_edge/inference.py", "image"): "the dataset sample's key",
    ("mmad_edge/inference.py", "category"): "the dataset sample's key",
    ("mmad_edge/train.py", "image"): "the dataset sample's key",
    ("mmad_edge/evaluate.py", "category"): "a table header",
    ("runtime/cameras/gentl.py", "BGR"): "a GenICam pixel format prefix",
    ("bench/compression.py", "category"): "the recorded run's field",
    ("runtime/serving/options.py", "category"): "a help text word (drift per category)",
}
# Copies in rooms owned elsewhere, each to be replaced by the contract's name; a new copy fails here.
KNOWN_COPIES = {
    ("export/pipeline.py", "image"), ("export/onnx_export.py", "score"), ("calib/quantize.py", ".onnx"),
    ("bench/peer_export.py", "image"), ("bench/peer_export.py", "anomaly_map"), ("bench/peer_export.py", "score"),
    ("bench/peer_export.py", ".onnx"), ("bench/peer_export.py", "('anomaly_map', 'score')"),
}


def contract_values() -> tuple[set[str], set[tuple[str, ...]]]:
    """The contract's string items and string tuples (its upper-case module constants)."""
    strings, tuples = set(), set()
    for name, value in vars(contract).items():
        if name.isupper() and isinstance(value, str):
            strings.add(value)
        elif name.isupper() and isinstance(value, tuple) and all(isinstance(item, str) for item in value):
            tuples.add(value)
            strings.update(value)
    return strings - VOCABULARY, tuples


def _docstrings(tree: ast.AST) -> set[int]:
    return {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body
            and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}


def contract_copies(path: Path, relative: str) -> list[tuple[str, str]]:
    """(``relative``:line, literal) of every literal in ``path`` that spells a contract item: a string
    (or a piece of an f-string) equal to one, a tuple or list equal to a contract tuple, or an f-string
    building ``model.<precision>...`` names itself (``contract.artifact_name``)."""
    strings, tuples = contract_values()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings \
                and node.value in strings:
            found.append((f"{relative}:{node.lineno}", node.value))
        elif isinstance(node, (ast.Tuple, ast.List)) and node.elts and all(
                isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
            spelled = tuple(e.value for e in node.elts)
            if spelled in tuples:
                found.append((f"{relative}:{node.lineno}", repr(spelled)))
        elif isinstance(node, ast.JoinedStr) and len(node.values) > 1 and isinstance(node.values[0], ast.Constant) \
                and node.values[0].value == "model." and isinstance(node.values[1], ast.FormattedValue):
            found.append((f"{relative}:{node.lineno}", 'f"model.{...}"'))
    return found


def _room_copies() -> list[tuple[str, str]]:
    found = []
    for room in ROOM_NAMES:
        for path in sorted((ROOMS / room).rglob("*.py")):
            relative = path.relative_to(ROOMS).as_posix()
            if relative != CONTRACT_FILE:
                found += contract_copies(path, relative)
    return found


def test_no_room_spells_a_contract_item_itself():
    copies = [(where, value) for where, value in _room_copies()
              if (where.split(":")[0], value) not in {*OTHER_MEANINGS, *KNOWN_COPIES}]
    assert copies == [], "import these from runtime.artifact.contract instead"


def test_the_known_copies_shrink_with_the_code():
    found = {(where.split(":")[0], value) for where, value in _room_copies()}
    assert {*KNOWN_COPIES, *OTHER_MEANINGS} - found == set(), "replaced: remove it from the list"


def test_the_contract_check_finds_a_planted_copy(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text('''"""A module whose docstring may say anomaly_map and model.fp16.onnx."""
from mmad_edge.runtime.artifact.contract import OUTPUT_NAMES
NAMES = ("anomaly_map", "score")
KEY = "mmad_edge.metadata"
SAFE = OUTPUT_NAMES[0], "fp32", "uint8", "anomaly"


def engine(precision):
    return f"model.{precision}.engine", f"{precision}.onnx"
''')
    found = sorted(contract_copies(planted, "planted.py"))
    assert found == sorted([("planted.py:3", "('anomaly_map', 'score')"), ("planted.py:3", "anomaly_map"),
                            ("planted.py:3", "score"), ("planted.py:4", "mmad_edge.metadata"),
                            ("planted.py:9", 'f"model.{...}"'), ("planted.py:9", ".engine"),
                            ("planted.py:9", ".onnx")])


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
