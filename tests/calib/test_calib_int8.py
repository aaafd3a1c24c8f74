"""export_int8 end to end on a small random MiniMaxAD (variant a, 64 px): the Q/DQ graph
TensorRT needs, the CPU graph, the sensitivity search, the range cache, clear errors and no
partial artifacts."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from model_utils import randomize
from onnx import numpy_helper
from textures import write_textures

import mmad_edge.calib.quantize as quantize_module
import mmad_edge.calib.ranges as ranges_module
from mmad_edge.calib.graph import block_of, consumers, quantizable_convs
from mmad_edge.calib.int8_graph import QuantizationError, build_int8_graph
from mmad_edge.calib.options import Int8Options
from mmad_edge.calib.qdq import with_float_nodes
from mmad_edge.calib.quantize import export_int8
from mmad_edge.calib.ranges import CalibrationSettings
from mmad_edge.calib.reader import CalibrationDataError, CalibrationWarning, find_images, select_images
from mmad_edge.calib.sensitivity import AccuracyTarget
from mmad_edge.config import ModelConfig
from mmad_edge.export.onnx_export import export_onnx
from mmad_edge.fileio import file_sha256
from mmad_edge.model.minimaxad import MiniMaxAD
from mmad_edge.runtime.monitor.compare import error_metrics

SIZE = 64
SENSITIVE = "encoder.stages.2.0"


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("calib")


@pytest.fixture(scope="module")
def fp32(work: Path) -> Path:
    """Random weights, plus an outlier in encoder stage 2 block 0: FFN hidden channel 0 is a
    constant 1000 that the second linear ignores (zero weights), and the block's layer scale
    is large. Per-tensor INT8 of that hidden activation rounds every other channel to zero,
    wiping out the block's FFN; the search has to find that block."""
    torch.manual_seed(0)
    model = randomize(MiniMaxAD(ModelConfig(variant="a", image_size=SIZE)), seed=0).eval()
    block = model.encoder.stages[2][0]
    with torch.no_grad():
        block.pwconv1[1].bias[0] = 1000.0
        block.pwconv2[0].weight[:, 0] = 0.0
        block.gamma.fill_(3.0)
    return export_onnx(model, work / "model.fp32.onnx").path


@pytest.fixture(scope="module")
def images(work: Path) -> Path:
    write_textures(work / "normal", 20, seed=1)
    return work / "normal"


@pytest.fixture(scope="module")
def trt(fp32: Path, images: Path, work: Path):
    """A strict target (scores within 0.05 of their spread on 12 held-out images) forces the search."""
    return export_int8(fp32, work / "out" / "model.int8.onnx", images,
                       Int8Options(count=8, eval_count=12, cache_dir=work / "cache",
                                   accuracy=AccuracyTarget(score_error_max=0.05)))


def tensors(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}


def run(path: Path, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return tuple(np.concatenate(x) for x in zip(*(session.run(None, {"image": f[None]}) for f in frames)))


def test_tensorrt_graph_is_symmetric_int8_per_channel(trt) -> None:
    model = onnx.load(str(trt.path))
    values = tensors(model)
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq and max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 13
    for node in qdq:
        zero_point = values[node.input[2]]
        assert zero_point.dtype == np.int8 and not zero_point.any(), node.name
    users = consumers(model)
    weights = [n for n in qdq if n.op_type == "DequantizeLinear" and n.input[0] in values]
    kinds = set()
    for node in weights:
        (conv,) = users[node.output[0]]
        kinds.add(conv.op_type)
        axis = next(a.i for a in node.attribute if a.name == "axis")
        assert axis == 0  # Conv: output channels; ConvTranspose: TensorRT's per-input-channel
        assert values[node.input[1]].shape == (values[node.input[0]].shape[0],)
        assert values[node.input[0]].dtype == np.int8
    assert kinds == {"Conv", "ConvTranspose"}
    activations = [n for n in qdq if n.op_type == "QuantizeLinear"]
    assert all(values[n.input[1]].size == 1 for n in activations)  # per-tensor
    calibration = trt.to_report()["calibration"]
    assert calibration["method"] == "minmax" and calibration["images_used"] == 8 and calibration["seed"] == 0
    assert calibration["activations"].startswith("int8 symmetric per-tensor") and "format" not in calibration
    assert trt.quantized_nodes > 100


def test_qdq_only_on_convolution_inputs(trt) -> None:
    """No Q/DQ reaches GRN, LayerNorm, residual adds or the head: every DequantizeLinear feeds
    convolutions only, the head's (Gaussian) convolution reads float, and so does the block
    the search kept in float."""
    model = onnx.load(str(trt.path))
    users = consumers(model)
    dq_outputs = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    for name in dq_outputs:
        assert {u.op_type for u in users[name]} <= {"Conv", "ConvTranspose"}
    for node in model.graph.node:
        if node.name.startswith("/head/") or block_of(node.name) == SENSITIVE:
            assert not set(node.input) & dq_outputs, node.name
    head = trt.always_float[0]
    assert head["what"] == "head" and len(head["nodes"]) == 1  # the one zero-padded Gaussian convolution


def test_sensitivity_search_keeps_the_outlier_block_in_float(trt) -> None:
    report = trt.to_report()
    excluded = report["excluded_layers"]
    ranking = report["search"]["ranking"]
    assert ranking[0]["block"] == SENSITIVE and ranking[0]["error_alone"] > 3 * ranking[1]["error_alone"]
    assert excluded[0]["block"] == SENSITIVE and len(excluded) < len(ranking) / 4
    assert excluded[0]["alone"]["spearman"] < 0.99 and excluded[0]["error_alone"] > 0.05
    assert report["passed"] and report["metrics"]["score_error"] <= 0.05
    assert all(n.startswith("/encoder/stages.2/stages.2.0/") for n in excluded[0]["nodes"])


def test_tensorrt_graph_runs_on_cpu_close_to_fp32(trt, fp32: Path, work: Path) -> None:
    paths = sorted((work / "normal").glob("*.png"))[:4]
    frames = np.stack([cv2.resize(cv2.imread(str(p)), (SIZE, SIZE)) for p in paths])
    maps, scores = run(trt.path, frames)
    ref_maps, ref_scores = run(fp32, frames)
    assert maps.shape == (4, SIZE, SIZE) and scores.shape == (4,)
    assert np.isfinite(maps).all()
    assert np.abs(maps - ref_maps).max() < 0.05 * np.abs(ref_maps).max()
    report = trt.to_report()
    assert report["latency_ms"]["fp32"] > 0 and report["latency_ms"]["int8"] > 0
    assert report["calibration"]["method"] == "minmax" and report["calibration"]["images_used"] == 8


def test_second_export_reuses_cached_ranges(trt, fp32: Path, images: Path, work: Path, monkeypatch) -> None:
    def no_calibration(*args, **kwargs):
        raise AssertionError("calibration ran despite a cache entry")

    monkeypatch.setattr(ranges_module, "collect_ranges", no_calibration)
    again = export_int8(fp32, work / "again.int8.onnx", images,
                        Int8Options(count=8, eval_count=3, cache_dir=work / "cache", sensitivity=False,
                                    timing_runs=1))
    assert not trt.calibration["cache_hit"] and again.calibration["cache_hit"]
    assert again.calibration["cache_file"] == trt.calibration["cache_file"]
    with pytest.raises(AssertionError, match="calibration ran"):
        export_int8(fp32, work / "again.int8.onnx", images,
                    Int8Options(method="percentile", count=8, eval_count=3, cache_dir=work / "cache",
                                sensitivity=False, timing_runs=1))
    # The key is the images' content: a copied folder hits, changed pixels miss.
    copy = work / "copied"
    shutil.copytree(images, copy)
    moved = export_int8(fp32, work / "moved.int8.onnx", copy,
                        Int8Options(count=8, eval_count=3, cache_dir=work / "cache", sensitivity=False,
                                    timing_runs=1))
    assert moved.calibration["cache_file"] == trt.calibration["cache_file"]
    write_textures(copy, 20, seed=99)  # same names, new pixels
    with pytest.raises(AssertionError, match="calibration ran"):
        export_int8(fp32, work / "moved.int8.onnx", copy,
                    Int8Options(count=8, eval_count=3, cache_dir=work / "cache", sensitivity=False, timing_runs=1))


def test_cpu_target_uint8_activations_with_labelled_evaluation(fp32: Path, images: Path, work: Path) -> None:
    category = work / "mvtec" / "bottle"
    write_textures(category / "test" / "good", 4, seed=7)
    write_textures(category / "test" / "crack", 4, seed=8)
    result = export_int8(fp32, work / "cpu.int8.onnx", images,
                         Int8Options(target="cpu", count=8, eval_count=4, eval_data=work / "mvtec",
                                     eval_categories="bottle", cache_dir=work / "cache", sensitivity=False,
                                     timing_runs=2))
    model = onnx.load(str(result.path))
    values = tensors(model)
    activation_q = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert activation_q and all(values[n.input[2]].dtype == np.uint8 for n in activation_q)
    assert set(result.latency_ms["int8_by_format"]) == {"qdq", "qoperator"}
    assert result.calibration["format"] in ("qdq", "qoperator")
    assert result.metrics["auroc"] is not None and result.metrics["auroc_reference"] is not None
    assert "4 good, 4 defective" in result.eval_source
    maps, scores = run(result.path, np.zeros((1, SIZE, SIZE, 3), np.uint8))
    assert np.isfinite(maps).all() and np.isfinite(scores).all()


def test_labelled_evaluation_in_the_aebad_layout(fp32: Path, images: Path, work: Path) -> None:
    """AeBAD-S keeps test images one level deeper (test/<good|defect>/<domain>/): the labelled
    set comes from the dataset reader of that layout, not from MVTec's test/good."""
    base = work / "aebad" / "AeBAD_S"
    for domain, seed in (("same", 20), ("view", 30)):
        write_textures(base / "test" / "good" / domain, 2, seed=seed)
        write_textures(base / "test" / "ablation" / domain, 2, seed=seed + 1)
    result = export_int8(fp32, work / "aebad.int8.onnx", images,
                         Int8Options(count=8, eval_count=4, eval_data=work / "aebad", eval_layout="aebad",
                                     eval_categories="AeBAD_S", cache_dir=work / "cache", sensitivity=False,
                                     timing_runs=1))
    assert "aebad:" in result.eval_source and "4 good, 4 defective" in result.eval_source
    assert result.metrics["auroc"] is not None and result.metrics["auroc_drop"] is not None


def test_labelled_evaluation_without_defects_is_a_clear_error(fp32: Path, images: Path, work: Path) -> None:
    write_textures(work / "nodefect" / "screw" / "test" / "good", 2, seed=40)
    with pytest.raises(CalibrationDataError, match=r"2 normal and 0 defective images; INT8 accuracy needs both"):
        export_int8(fp32, work / "nodefect.int8.onnx", images,
                    Int8Options(count=8, eval_data=work / "nodefect", eval_categories="screw",
                                cache_dir=work / "cache", sensitivity=False, timing_runs=1))
    assert not (work / "nodefect.int8.onnx").exists()


def test_fixed_batch_graph_is_calibrated_and_judged_in_its_batch(images: Path, work: Path) -> None:
    """A graph exported with a fixed batch of 3 only accepts 3 frames: calibration (8 images),
    evaluation (5) and timing feed batches of 3, the last one padded."""
    model = randomize(MiniMaxAD(ModelConfig(variant="a", image_size=SIZE)), seed=2).eval()
    fixed = export_onnx(model, work / "fixed" / "model.fp32.onnx", (3, 3, 3)).path
    result = export_int8(fixed, work / "fixed" / "model.int8.onnx", images,
                         Int8Options(count=8, eval_count=5, cache_dir=work / "cache", sensitivity=False,
                                     timing_runs=1))
    assert result.latency_ms["batch"] == 3 and result.calibration["images_used"] == 8
    assert "5 held-out normal images" in result.eval_source and result.metrics["spearman"] is not None
    assert [d.dim_value for d in onnx.load(str(result.path)).graph.input[0].type.tensor_type.shape.dim] == [3, SIZE, SIZE, 3]


def test_error_metrics_guard_shapes_and_single_class_labels() -> None:
    """No readable defect image leaves one class: AUROC and its drop are None, not a TypeError."""
    rng = np.random.default_rng(0)
    reference = (rng.random((4, 8, 8)), rng.random(4))
    candidate = (reference[0] + 0.01, reference[1] + 0.02)
    metrics = error_metrics(reference, candidate, np.zeros(4, dtype=int))
    assert metrics["auroc"] is None and metrics["auroc_reference"] is None and metrics["auroc_drop"] is None
    assert metrics["spearman"] == pytest.approx(1.0) and metrics["map_max_abs"] == pytest.approx(0.01)
    labelled = error_metrics(reference, candidate, np.array([0, 0, 1, 1]))
    assert labelled["auroc_drop"] == pytest.approx(labelled["auroc_reference"] - labelled["auroc"])
    with pytest.raises(ValueError, match=r"output shapes differ: map \(4, 4, 4\) vs \(4, 8, 8\)"):
        error_metrics(reference, (candidate[0][:, :4, :4], candidate[1]), None)


def test_small_folder_warns_and_reuses_calibration_images(fp32: Path, work: Path) -> None:
    write_textures(work / "few", 3, seed=9)
    with pytest.warns(CalibrationWarning) as caught:
        result = export_int8(fp32, work / "few.int8.onnx", work / "few",
                             Int8Options(count=50, eval_count=3, cache_dir=work / "cache", sensitivity=False,
                                         timing_runs=1))
    messages = [str(w.message) for w in caught]
    assert any("3 images found, 50 requested" in m for m in messages)
    assert any("judged on calibration images" in m for m in messages)
    assert result.warnings == [m for m in messages if m in result.warnings] and len(result.warnings) == 2
    assert "calibration images reused" in result.eval_source


def test_failure_leaves_no_partial_artifact(fp32: Path, images: Path, work: Path, monkeypatch) -> None:
    def broken_timer(*args, **kwargs):
        raise RuntimeError("timer failed")

    monkeypatch.setattr(quantize_module, "median_latency_ms", broken_timer)
    out = work / "partial" / "model.int8.onnx"
    with pytest.raises(RuntimeError, match="timer failed"):
        export_int8(fp32, out, images,
                    Int8Options(count=8, eval_count=3, cache_dir=work / "cache", sensitivity=False, timing_runs=1))
    assert list(out.parent.iterdir()) == []


def test_clear_errors(fp32: Path, images: Path, work: Path) -> None:
    (work / "empty").mkdir()
    with pytest.raises(CalibrationDataError, match=r"empty: no images found"):
        export_int8(fp32, work / "x.onnx", work / "empty", Int8Options(cache_dir=work / "cache"))
    with pytest.raises(QuantizationError, match=r"missing\.onnx: FP32 ONNX not found"):
        export_int8(work / "missing.onnx", work / "x.onnx", images)
    with pytest.raises(QuantizationError, match=r"not found among the quantisable convolutions: /no/Conv"):
        export_int8(fp32, work / "x.onnx", images, Int8Options(exclude=["/no/Conv"]))
    with pytest.raises(QuantizationError, match=r"unknown INT8 target 'gpu'"):
        export_int8(fp32, work / "x.onnx", images, Int8Options(target="gpu"))
    assert not (work / "x.onnx").exists()


@pytest.mark.parametrize(
    ("name", "block"),
    [
        ("/encoder/stages.2/stages.2.3/pw1/Conv", "encoder.stages.2.3"),
        ("/decoder/upsample_layers.0/upsample_layers.0.0/ConvTranspose", "decoder.upsample_layers.0"),
        ("/bottleneck/conv4/Conv", "bottleneck.conv4"),
        ("Conv_12", "Conv_12"),
    ],
)
def test_blocks_follow_the_torch_scopes(name: str, block: str) -> None:
    assert block_of(name) == block


def test_float_nodes_edit_equals_quantising_without_them_on_the_cpu_target(fp32: Path, images: Path, work: Path) -> None:
    """The search judges graphs made by editing the all-INT8 graph; on the cpu target (Q/DQ on
    conv outputs too, biases in int32) the edit must equal a quantisation run without the nodes."""
    result = export_int8(fp32, work / "cpu-qdq.int8.onnx", images,
                         Int8Options(target="cpu", count=8, eval_count=3, cache_dir=work / "cache",
                                     sensitivity=False, cpu_format="qdq", timing_runs=1))
    reference, all_int8 = onnx.load(str(fp32)), onnx.load(str(result.path))
    frames = np.stack([cv2.resize(cv2.imread(str(p)), (SIZE, SIZE)) for p in sorted(images.glob("*.png"))[:3]])
    convs = [n.name for n in quantizable_convs(reference)]

    def outputs(model: onnx.ModelProto, name: str) -> tuple[np.ndarray, np.ndarray]:
        onnx.save(model, str(work / name))
        return run(work / name, frames)

    every = outputs(with_float_nodes(all_int8, reference, set(convs)), "all-float.onnx")
    for got, want in zip(every, run(fp32, frames)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    block = {n for n in convs if n.startswith("/encoder/stages.1/")}
    edited = outputs(with_float_nodes(all_int8, reference, block), "edited.onnx")
    built_path = work / "built.onnx"  # quantised without the block, from the export's cached ranges
    settings = CalibrationSettings("minmax", 8, 0, 99.999, SIZE, ("Conv", "ConvTranspose"))
    chosen = select_images(find_images(images), 8, 0, images)
    ranges = ranges_module.calibrated_ranges(fp32, file_sha256(fp32), chosen, images, settings, work / "cache", 1)
    assert ranges.cache_hit
    build_int8_graph(fp32, built_path, ranges.ranges, "minmax", "cpu", block, "qdq")
    for got, want in zip(edited, run(built_path, frames)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert not np.allclose(edited[0], every[0])  # the rest is still INT8
