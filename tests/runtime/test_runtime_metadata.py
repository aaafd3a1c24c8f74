"""Metadata the runtime refuses, metadata.json against the graph's copy, and misshapen graphs."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from runtime_fixtures import build_standin, standin_metadata, write_export_dir, write_standin

from mmad_edge.runtime import ArtifactError, Detector, DetectorClosedError
from mmad_edge.runtime.backends.onnxruntime import open_session

SIZE = 32
FRAME_SCORE_04 = np.full((SIZE, SIZE, 3), 102, np.uint8)  # stand-in map 0.4 everywhere, score 0.4


def _with(change) -> dict:
    meta = standin_metadata(SIZE)
    change(meta)
    return meta


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m["statistics"].update(threshold=float("nan")), "statistics.threshold must be a finite number, got nan"),
        (lambda m: m["statistics"].update(threshold=float("inf")), "statistics.threshold must be a finite number, got inf"),
        (lambda m: m["statistics"]["normalization"].update(low=float("-inf")),
         "statistics.normalization.low must be a finite number, got -inf"),
        (lambda m: m["statistics"].update(categories={"gravel": {"threshold": float("nan")}}),
         r"\(category gravel\): metadata statistics.threshold must be a finite number, got nan"),
        (lambda m: m["statistics"].update(normalization=[0.5, 0.6]),
         r'statistics.normalization must be an object \{"low": ..., "high": ...\}, got \[0.5, 0.6\]'),
        (lambda m: m["batch"].update(max="8x"), "metadata batch.max must be an integer, got '8x'"),
        (lambda m: m["batch"].update(min=None), "metadata batch.min must be an integer, got None"),
    ],
)
def test_bad_statistics_and_batch_fields_are_refused_naming_the_field(tmp_path, change, message):
    path = write_standin(tmp_path / "m.onnx", SIZE, metadata=_with(change))
    with pytest.raises(ArtifactError, match=message) as caught:
        Detector.load(path)
    assert "\n" not in str(caught.value) and str(caught.value).startswith(str(path))


def test_metadata_json_statistics_override_the_graphs_and_say_so_once(tmp_path, capsys):
    folder = write_export_dir(tmp_path / "export", SIZE, precisions=("fp32", "fp16"))  # threshold 0.6 everywhere
    with Detector.load(folder) as det:
        assert det.threshold == 0.6 and det(FRAME_SCORE_04).is_anomaly is False
    assert "overrides" not in capsys.readouterr().err  # the export's own copy (another precision) agrees
    meta = json.loads((folder / "metadata.json").read_text())
    meta["statistics"]["threshold"] = 0.0
    (folder / "metadata.json").write_text(json.dumps(meta))
    with Detector.load(folder) as det:
        result = det(FRAME_SCORE_04)
        assert det.threshold == 0.0 and result.is_anomaly is True and result.threshold == 0.0
        assert det.normalization == (0.5, 0.6)  # unchanged: only the threshold was edited
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["mmad-edge: metadata.json overrides the graph's statistics: threshold 0.6 -> 0.0"]
    meta["statistics"]["normalization"] = {"low": 0.1, "high": 0.3}
    (folder / "metadata.json").write_text(json.dumps(meta))
    with Detector.load(folder / "model.fp16.onnx") as det:
        assert det.normalization == (0.1, 0.3) and det.threshold == 0.0
    assert capsys.readouterr().err.splitlines() == [
        "mmad-edge: metadata.json overrides the graph's statistics: threshold 0.6 -> 0.0, "
        "normalization.low 0.5 -> 0.1, normalization.high 0.6 -> 0.3"
    ]


@pytest.mark.parametrize(
    "change, field, ours, theirs",
    [
        (lambda m: m["batch"].update(max=8), "batch.max", "4", "8"),
        (lambda m: m["input"].update(height=64), "input.height", "32", "64"),
        (lambda m: m["input"].update(layout="NCHW"), "input.layout", '"NHWC"', '"NCHW"'),
        (lambda m: m["model"].pop("score_mode"), "model.score_mode", '"top_percent"', "(absent)"),
        (lambda m: m["outputs"]["score"].update(dtype="float16"), "outputs.score.dtype", '"float32"', '"float16"'),
    ],
)
def test_structural_disagreement_with_metadata_json_fails_in_one_line(tmp_path, change, field, ours, theirs):
    folder = write_export_dir(tmp_path / "export", SIZE)
    meta = json.loads((folder / "metadata.json").read_text())
    change(meta)
    (folder / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError) as caught:
        Detector.load(folder)
    assert str(caught.value) == (
        f"{folder / 'model.fp32.onnx'}: metadata.json beside it disagrees with the graph's metadata on {field} "
        f"(graph {ours}, metadata.json {theirs}); restore metadata.json from the export or re-export"
    )


def _reshaped_output(name: str, axis: int) -> onnx.ModelProto:
    """The stand-in with one output given an extra axis (``score`` (B, 1) or ``anomaly_map`` (B, 1, S, S))."""
    model = build_standin(SIZE, "batch", standin_metadata(SIZE))
    graph = model.graph
    for node in graph.node:
        node.output[:] = [f"{name}_raw" if out == name else out for out in node.output]
        node.input[:] = [f"{name}_raw" if inp == name else inp for inp in node.input]
    graph.initializer.append(helper.make_tensor("extra_axis", TensorProto.INT64, [1], [axis]))
    graph.node.append(helper.make_node("Unsqueeze", [f"{name}_raw", "extra_axis"], [name]))
    old = next(o for o in graph.output if o.name == name)
    dims = ["batch", *(SIZE for _ in old.type.tensor_type.shape.dim[1:])]
    dims.insert(axis, 1)
    graph.output.remove(old)
    graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, dims))
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize(
    "name, axis, shown",
    [("score", 1, "['batch', 1], expected tensor(float) ['B']"),
     ("anomaly_map", 1, f"['batch', 1, {SIZE}, {SIZE}], expected tensor(float) ['B', {SIZE}, {SIZE}]")],
)
def test_outputs_of_another_shape_are_refused_at_load(tmp_path, name, axis, shown):
    path = tmp_path / "m.onnx"
    onnx.save(_reshaped_output(name, axis), str(path))
    with pytest.raises(ArtifactError) as caught:
        Detector.load(path)
    assert str(caught.value) == f"{path}: output '{name}' is tensor(float) {shown}; export with mmad-edge export"


def test_other_output_names_and_non_onnx_files_get_one_line(tmp_path):
    model = build_standin(SIZE, "batch", standin_metadata(SIZE))
    model.graph.output[1].name = "image_score"
    model.graph.node[-1].output[0] = "image_score"
    renamed = tmp_path / "renamed.onnx"
    onnx.save(model, str(renamed))
    with pytest.raises(ArtifactError, match=r"expected input 'image' and outputs \['anomaly_map', 'score'\], got"):
        Detector.load(renamed)
    broken = tmp_path / "model.fp32.onnx"
    broken.write_text("this is a text file, not a protobuf")
    expected = f"{broken}: not a loadable ONNX model (Protobuf parsing failed.); pass a model.<precision>.onnx written by mmad-edge export"
    for load in (lambda: Detector.load(broken), lambda: open_session(broken)):
        with pytest.raises(ArtifactError) as caught:
            load()
        assert str(caught.value) == expected


def test_a_closed_detector_says_so(tmp_path):
    det = Detector.load(write_standin(tmp_path / "m.onnx", SIZE))
    assert det(FRAME_SCORE_04).score == pytest.approx(0.4, rel=1e-6)
    det.close()
    det.close()  # idempotent
    for use in (lambda: det(FRAME_SCORE_04), lambda: det.predict([FRAME_SCORE_04, FRAME_SCORE_04])):
        with pytest.raises(DetectorClosedError, match=r"^this Detector is closed; load it again with Detector.load"):
            use()
    with Detector.load(write_standin(tmp_path / "n.onnx", SIZE)) as inside:
        inside(FRAME_SCORE_04)
    with pytest.raises(ValueError, match="closed"):
        inside(FRAME_SCORE_04)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_threshold_overrides_are_refused(tmp_path, value):
    path = write_standin(tmp_path / "m.onnx", SIZE)
    with pytest.raises(ValueError, match=f"threshold must be a finite number, got {value}"):
        Detector.load(path, threshold=value)
    with Detector.load(path) as det, pytest.raises(ValueError, match="threshold must be a finite number"):
        det(FRAME_SCORE_04, threshold=value)



def test_calibrated_statistics_in_metadata_json_apply_to_their_graph_only(tmp_path, capsys):
    """`calibrate-threshold` files a graph's own numbers under statistics_by_artifact in the shared metadata.json."""
    folder = write_export_dir(tmp_path / "export", SIZE, precisions=("fp32", "fp16"))  # threshold 0.6 everywhere
    meta = json.loads((folder / "metadata.json").read_text())
    calibrated = {"threshold": 0.3, "normalization": {"low": 0.2, "high": 0.3}}
    meta["statistics_by_artifact"] = {"model.fp16.onnx": calibrated}
    (folder / "metadata.json").write_text(json.dumps(meta))
    with Detector.load(folder / "model.fp16.onnx") as det:
        assert det.threshold == 0.3 and det.normalization == (0.2, 0.3) and det(FRAME_SCORE_04).is_anomaly is True
    assert "threshold 0.6 -> 0.3" in capsys.readouterr().err
    with Detector.load(folder / "model.fp32.onnx") as det:
        assert det.threshold == 0.6 and det.normalization == (0.5, 0.6)
    assert "overrides" not in capsys.readouterr().err
    meta["statistics_by_artifact"]["model.fp16.onnx"]["threshold"] = float("nan")
    (folder / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=r"metadata.json \(statistics_by_artifact model.fp16.onnx\): metadata statistics.threshold must be a finite number"):
        Detector.load(folder / "model.fp16.onnx")


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda m: m["batch"].update(max="8x"), "batch.max"),
        (lambda m: m["batch"].update(min=0), "batch.min"),
        (lambda m: m["input"].update(width=0), "input.width"),
        (lambda m: m["statistics"].update(threshold=float("nan")), "statistics.threshold"),
        (lambda m: m["statistics"]["normalization"].pop("high"), "statistics.normalization.high"),
        (lambda m: m["statistics"].update(categories=["gravel"]), "statistics.categories"),
        (lambda m: m.update(statistics_by_artifact=[1]), "statistics_by_artifact"),
    ],
)
def test_the_runtime_and_the_export_refuse_a_field_by_the_one_schema(change, field):
    """Each field the runtime reads is refused by both readers, each naming it: one declaration."""
    from mmad_edge.runtime.artifact.metadata import MetadataError, parse_metadata, validate_metadata

    meta = {**_with(change), "source_checkpoint": None}
    with pytest.raises(ArtifactError) as runtime:
        parse_metadata(meta, "m.json")
    with pytest.raises(MetadataError) as export:
        validate_metadata(meta)
    assert str(runtime.value).startswith(f"m.json: metadata {field} must") or \
        str(runtime.value).startswith(f"m.json: metadata lacks {field};")
    assert str(export.value).startswith(f"metadata field {field!r}")


def test_the_runtime_reads_only_what_it_acts_on_and_defaults_the_batch():
    from mmad_edge.runtime.artifact.metadata import parse_metadata

    meta = _with(lambda m: m.update(precision="fp8", opset=None, batch=None))  # the export would refuse these
    meta["statistics"]["categories"] = {"gravel": {"threshold": 0.2, "normalization": None}}
    info = parse_metadata(meta, "m.json")
    assert (info.batch_min, info.batch_max, info.precision) == (1, 1, "fp8")
    assert info.categories == {"gravel": (0.2, None)} and info.threshold == 0.6
