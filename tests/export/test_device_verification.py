"""`verify`, `calibrate-threshold` and `bench --data` on one small trained export (FP32, FP16, INT8).

Numbers are checked against `eval` (the PyTorch evaluation), numpy's quantile and scikit-learn's
metrics, and the rewritten graphs are read back with the onnx package.
"""

import json
import shutil

import numpy as np
import onnx
import pytest
from runtime_only_cli import runtime_only
from sklearn.metrics import f1_score, precision_recall_curve, recall_score, roc_curve
from typer.testing import CliRunner

from mmad_edge.cli import app
from mmad_edge.data.demo import make_demo_dataset
from mmad_edge.data.records import list_images
from mmad_edge.export.checks import agreement_check, default_checks
from mmad_edge.export.threshold_calibration import detection_metrics
from mmad_edge.runtime import Detector
from mmad_edge.runtime.artifact.metadata import load_contract
from mmad_edge.runtime.imageio import read_image
from mmad_edge.runtime.tuning.selection import Rule
from mmad_edge.stats import score_statistics

SIZE = 64
pytestmark = pytest.mark.slow


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def line(tmp_path_factory):
    """A demo brick model trained briefly and exported in three precisions, and `eval`'s metrics."""
    root = tmp_path_factory.mktemp("line")
    data = make_demo_dataset(root / "data", ("brick",), n_train=16, n_test_good=6, n_test_defect=6, size=96)
    run = root / "run"
    result = invoke("train", "--data", data, "--category", "brick", "--variant", "a", "--image-size", SIZE,
                    "--epochs", "2", "--batch-size", "4", "--encoder-init", "texture", "--out", run)
    assert result.exit_code == 0, result.output
    out = root / "export"
    result = invoke("export", run / "checkpoint.pt", "--out", out, "--precision", "fp32,fp16,int8", "--calib-data",
                    data / "brick" / "train" / "good", "--calib-count", "12", "--batch", "1:4:8", "--data", data,
                    "--category", "brick")
    assert result.exit_code == 0, result.output
    result = invoke("eval", run / "checkpoint.pt", "--data", data, "--category", "brick", "--json", root / "eval.json")
    assert result.exit_code == 0, result.output
    good = root / "good"  # 22 normal images: enough for the rules (>= 20)
    good.mkdir()
    for image in [*list_images(data / "brick" / "train" / "good"), *list_images(data / "brick" / "test" / "good")]:
        shutil.copy(image, good / f"{image.parent.parent.name}_{image.name}")
    bad = root / "bad"
    bad.mkdir()
    for folder in (data / "brick" / "test").iterdir():
        if folder.name != "good":
            for image in list_images(folder):
                shutil.copy(image, bad / f"{folder.name}_{image.name}")
    return {"root": root, "data": data, "checkpoint": run / "checkpoint.pt", "out": out, "good": good, "bad": bad,
            "eval": json.loads((root / "eval.json").read_text())}


@pytest.fixture
def export_copy(line, tmp_path):
    """A private copy of the export folder (calibration and perturbation write into it)."""
    return shutil.copytree(line["out"], tmp_path / "export")


def scores_of(artifact, folder):
    with Detector.load(artifact) as detector:
        frames = [read_image(p) for p in list_images(folder)]
        results = detector.predict(frames)
    return np.array([r.score for r in results]), np.stack([r.anomaly_map for r in results])


# ---------------------------------------------------------------- verify


def test_verify_reproduces_eval_auroc_for_every_precision(line):
    expected = line["eval"]["mean"]
    for precision, tolerance in (("fp32", 0.002), ("fp16", 0.002), ("int8", 0.01)):
        artifact = line["out"] / f"model.{precision}.onnx"
        report = line["root"] / f"verify.{precision}.json"
        result = invoke("verify", artifact, "--data", line["data"], "--category", "brick", "--json", report)
        assert result.exit_code == 0, result.output
        verified = json.loads(report.read_text())
        assert abs(verified["accuracy"]["image_auroc"] - expected["image_auroc"]) <= tolerance, precision
        assert abs(verified["accuracy"]["pixel_auroc"] - expected["pixel_auroc"]) <= max(tolerance, 0.002), precision
        beside = json.loads((line["out"] / f"model.{precision}.onnx.verify.json").read_text())
        assert beside == verified
        assert beside["ran_on"]["backend"] == "onnxruntime" and beside["ran_on"]["library_version"]
        assert beside["ran_on"]["date"] and beside["images"] == 12
        if precision == "fp32":  # its own reference: nothing to compare
            assert beside["passed"] is None and beside["reference"] is None
        else:
            assert beside["passed"] is True and beside["reference"].endswith("model.fp32.onnx")
            agreement = beside["comparison"]["verdict_agreement"]
            assert {"name": "verdict_agreement", "value": agreement, "limit": 0.99, "at_most": False, "enforced": True,
                    "passed": True} in beside["checks"]
            assert f"verdict agreement {agreement:.4g} (0 of 12 flipped; min 0.99)" in result.stdout
            assert abs(beside["comparison"]["score_shift"]) < 0.05


def test_verify_against_the_checkpoint_holds_fp32_to_the_export_tolerance(line):
    result = invoke("verify", line["out"] / "model.fp32.onnx", "--data", line["data"], "--against", line["checkpoint"])
    assert result.exit_code == 0, result.output
    verified = json.loads((line["out"] / "model.fp32.onnx.verify.json").read_text())
    assert [c["name"] for c in verified["checks"]] == ["map_relative", "score_relative", "verdict_agreement"]
    assert verified["checks"][-1] == {"name": "verdict_agreement", "value": 1.0, "limit": 0.99, "at_most": False,
                                      "enforced": True, "passed": True}  # tune's rule, at its default
    assert verified["passed"] is True and verified["comparison"]["map_relative"] <= 1e-4
    assert verified["comparison"]["verdict_agreement"] == 1.0 and verified["comparison"]["spearman"] > 0.9999


@pytest.mark.parametrize("precision", ["bf16", "f16"])
def test_verify_judges_openvino_low_precision_with_its_own_bounds_or_it_is_refused(export_copy, line, precision):
    """The FP32 graph computed in BF16 / FP16 by OpenVINO, on the briefly trained model against its
    checkpoint: where the CPU has the units, verify passes with the checks of the precision that
    computes, from ``default_checks``, the same call that judges the FP16 graph on every CPU (the
    test above); where it lacks them, one error line naming what the CPU has."""
    openvino = pytest.importorskip("openvino")
    from mmad_edge.runtime.backends.openvino import PRECISION_UNITS, cpu_capabilities

    report = export_copy / "verify.json"
    result = invoke("verify", export_copy / "model.fp32.onnx", "--data", line["data"], "--category", "brick",
                    "--backend", "openvino", "--inference-precision", precision, "--against", line["checkpoint"],
                    "--json", report)
    if PRECISION_UNITS[precision] not in cpu_capabilities(openvino.Core()):
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1, result.output
        assert lines[0].startswith("error: ") and f"no {PRECISION_UNITS[precision]} units" in lines[0]
        assert not report.exists()
        return
    assert result.exit_code == 0, result.output
    verified = json.loads(report.read_text())
    computed = {"bf16": "bf16", "f16": "fp16"}[precision]
    assert (verified["precision"], verified["compute_precision"]) == ("fp32", computed)
    assert verified["ran_on"]["inference_precision"] == precision
    assert f"({computed} (fp32 graph)) on openvino" in result.output
    expected = [*default_checks(computed, verified["comparison"]), agreement_check(verified["comparison"], Rule())]
    assert [(c["name"], c["limit"]) for c in verified["checks"]] == [(c.name, c.limit) for c in expected]
    assert [c.name for c in expected] == ["spearman", "auroc_delta", "verdict_agreement"] and verified["passed"] is True


def test_verify_judges_bf16_through_openvino_on_every_cpu_that_computes_it(export_copy, line, monkeypatch):
    """The BF16 branch above runs only on a CPU with BF16 units. On an AVX-512 CPU without them,
    OpenVINO's CPU plugin still computes bf16 by emulation (bf16 rounding of every tensor it keeps in
    bf16), so the same verify, with the same bounds, runs everywhere bf16 computes at all, the
    units' check bypassed (where the units exist, this is the real thing a second time)."""
    openvino = pytest.importorskip("openvino")
    from mmad_edge.runtime.backends import openvino as ov_backend

    core = openvino.Core()
    plain = core.compile_model(core.read_model(str(export_copy / "model.fp32.onnx")), "CPU",
                               {"INFERENCE_PRECISION_HINT": "bf16"})
    if plain.get_property("INFERENCE_PRECISION_HINT").get_type_name() != "bf16":
        pytest.skip("this CPU's OpenVINO cannot even emulate bf16 (no AVX-512)")
    monkeypatch.setattr(ov_backend, "cpu_capabilities", lambda core, device="CPU": ["FP32", "BF16"])
    report = export_copy / "verify.json"
    result = invoke("verify", export_copy / "model.fp32.onnx", "--data", line["data"], "--category", "brick",
                    "--backend", "openvino", "--inference-precision", "bf16", "--against", line["checkpoint"],
                    "--json", report)
    assert result.exit_code == 0, result.output
    verified = json.loads(report.read_text())
    assert (verified["precision"], verified["compute_precision"], verified["ran_on"]["inference_precision"]) == (
        "fp32", "bf16", "bf16")
    assert "(bf16 (fp32 graph)) on openvino" in result.output  # what the native branch above asserts
    expected = [*default_checks("bf16", verified["comparison"]), agreement_check(verified["comparison"], Rule())]
    assert [(c["name"], c["limit"]) for c in verified["checks"]] == [(c.name, c.limit) for c in expected]
    assert verified["passed"] is True, verified["comparison"]
    assert verified["comparison"]["map_relative"] > 1e-3  # bf16 computed (8 significant bits), not f32 (1e-6)


def test_an_int8_graph_keeps_its_calibrator_targets_whatever_its_float_ops_compute_in(export_copy):
    """OpenVINO's bf16 hint lowers an INT8 graph's float ops too (compute precision bf16), but the
    graph is still judged by the INT8 targets its export met, not by BF16's FP32-graph bounds."""
    from mmad_edge.export.device_verification import _checks

    metrics = {"spearman": 0.99, "auroc_drop": 0.001, "score_error": 0.05, "auroc_reference": 1.0}
    path = export_copy / "model.int8.onnx"
    assert [c.name for c in _checks(path, "int8", "bf16", metrics, False)] == ["spearman", "auroc_drop", "score_error"]
    assert [c.name for c in _checks(path, "fp32", "bf16", metrics, False)] == ["spearman", "auroc_delta"]


def test_verify_fails_naming_the_metric_on_perturbed_weights(export_copy, line):
    path = export_copy / "model.fp16.onnx"
    model = onnx.load(str(path))
    rng = np.random.default_rng(0)
    for init in model.graph.initializer:
        values = onnx.numpy_helper.to_array(init)
        if values.ndim == 4 and values.size > 1000:  # every convolution: the scores move, not only their scale
            wide = values.astype(np.float32)  # each weight moved by ~30 %
            noisy = wide * (1 + 0.3 * rng.standard_normal(values.shape).astype(np.float32))
            init.CopyFrom(onnx.numpy_helper.from_array(noisy.astype(values.dtype), init.name))
    onnx.save(model, str(path))
    result = invoke("verify", path, "--data", line["data"])
    assert result.exit_code == 1, result.output
    assert "verification failed: spearman" in result.output or "verification failed: auroc_delta" in result.output
    verified = json.loads((export_copy / "model.fp16.onnx.verify.json").read_text())
    assert verified["passed"] is False and verified["failed"]


def test_build_engine_verify_is_one_call_to_verify(export_copy, line, monkeypatch):
    """No TensorRT here: the build is stubbed to return an artifact; what runs after it is verify itself."""
    from mmad_edge.export import tensorrt as trt_build

    artifact = export_copy / "model.fp16.onnx"
    monkeypatch.setattr(trt_build, "build_engine", lambda onnx_path, engine_path, options: {"engine": str(artifact)})
    monkeypatch.setattr(trt_build, "build_summary", lambda info: f"built {info['engine']}")
    result = invoke("build-engine", artifact, "--verify", line["data"], "--category", "brick")
    assert result.exit_code == 0, result.output
    assert "verification: pass" in result.output
    assert json.loads((export_copy / "model.fp16.onnx.verify.json").read_text())["passed"] is True


def test_verify_bad_input_is_one_line(line, tmp_path):
    result = invoke("verify", line["out"], "--data", tmp_path / "missing")
    assert result.exit_code == 2 and "dataset root not found" in result.output
    assert len(result.output.strip().splitlines()) == 1


# ---------------------------------------------------------------- calibrate-threshold


def test_calibrate_moves_the_fp16_threshold_to_fp16_scores_and_is_idempotent(export_copy, line, capfd):
    artifact = export_copy / "model.fp16.onnx"
    old = json.loads((export_copy / "metadata.json").read_text())["statistics"]
    scores, maps = scores_of(artifact, line["good"])
    expected = score_statistics(scores, maps, "mean+3std")
    result = invoke("calibrate-threshold", artifact, "--good", line["good"], "--json", export_copy / "cal.json")
    assert result.exit_code == 0, result.output
    first = json.loads((export_copy / "cal.json").read_text())
    assert first["threshold"] == pytest.approx(expected["threshold"], rel=1e-9)
    assert first["threshold"] != old["threshold"] and first["previous_threshold"] == old["threshold"]
    assert first["normal_scores"]["quantiles"] == pytest.approx(expected["normal_scores"]["quantiles"], rel=1e-9)
    assert first["normal_scores"]["std"] == pytest.approx(expected["normal_scores"]["std"], rel=1e-9)
    capfd.readouterr()
    info = load_contract(artifact)  # embedded and metadata.json agree: no override notice
    assert "overrides" not in capfd.readouterr().err
    assert info.threshold == first["threshold"] and info.categories["brick"][0] == first["threshold"]
    with Detector.load(artifact) as detector:
        assert detector.threshold == first["threshold"]
    embedded = onnx.load(str(artifact))
    assert len(embedded.metadata_props) == 1
    onnx.checker.check_model(embedded)
    assert json.loads(embedded.metadata_props[0].value)["statistics"]["threshold"] == first["threshold"]
    for backup in ("model.fp16.onnx.previous.json", "metadata.json.previous.json"):
        assert json.loads((export_copy / backup).read_text())["statistics"]["threshold"] == old["threshold"]
    beside = json.loads((export_copy / "metadata.json").read_text())  # shared file: only the FP16 graph's entry
    assert beside["statistics"] == old and beside["statistics_by_artifact"]["model.fp16.onnx"]["threshold"] == \
        first["threshold"]
    for other in ("model.fp32.onnx", "model.int8.onnx"):
        assert load_contract(export_copy / other).threshold == old["threshold"]
    files = sorted(p.name for p in export_copy.iterdir())
    result = invoke("calibrate-threshold", artifact, "--good", line["good"], "--json", export_copy / "cal2.json")
    assert result.exit_code == 0 and "metadata unchanged" in result.output
    second = json.loads((export_copy / "cal2.json").read_text())
    assert second["threshold"] == first["threshold"] and second["written"] == []
    assert sorted(p.name for p in export_copy.iterdir()) == sorted([*files, "cal2.json"])
    assert json.loads((export_copy / "metadata.json.previous.json").read_text())["statistics"] == old


def test_fpr_threshold_is_the_quantile_and_bad_metrics_match_sklearn(export_copy, line):
    artifact = export_copy / "model.fp32.onnx"
    fpr = 0.1
    result = invoke("calibrate-threshold", artifact, "--good", line["good"], "--bad", line["bad"], "--fpr", fpr,
                    "--json", export_copy / "cal.json")
    assert result.exit_code == 0, result.output
    summary = json.loads((export_copy / "cal.json").read_text())
    good, _ = scores_of(artifact, line["good"])
    bad, _ = scores_of(artifact, line["bad"])
    threshold = summary["threshold"]
    assert threshold == pytest.approx(float(np.quantile(good, 1 - fpr)), rel=1e-12)
    labels = np.r_[np.zeros(len(good)), np.ones(len(bad))]
    scores = np.r_[good, bad]
    fprs, _, cuts = roc_curve(labels, scores, drop_intermediate=False)  # flags score >= cut; ours score > threshold
    above = cuts[cuts > threshold].min() if (cuts > threshold).any() else None
    measured = 0.0 if above is None else fprs[cuts == above][-1]
    assert measured == pytest.approx(np.mean(good > threshold)) and measured <= fpr + (1 - fpr) / len(good)
    bad_metrics = summary["bad"]
    assert bad_metrics["recall"] == pytest.approx(recall_score(labels, scores > threshold))
    assert bad_metrics["f1"] == pytest.approx(f1_score(labels, scores > threshold))
    precision, recall, _ = precision_recall_curve(labels, scores)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0)
    assert bad_metrics["best_f1"] == pytest.approx(f1.max())
    assert f1_score(labels, scores > bad_metrics["best_f1_threshold"]) == pytest.approx(f1.max())


def test_detection_metrics_with_ties_match_sklearn():
    good = np.array([0.1, 0.2, 0.2, 0.3, 0.5])
    bad = np.array([0.2, 0.5, 0.5, 0.9])
    metrics = detection_metrics(good, bad, 0.2)
    labels, scores = np.r_[np.zeros(5), np.ones(4)], np.r_[good, bad]
    assert metrics["recall"] == pytest.approx(recall_score(labels, scores > 0.2))
    assert metrics["f1"] == pytest.approx(f1_score(labels, scores > 0.2))
    assert f1_score(labels, scores > metrics["best_f1_threshold"]) == pytest.approx(metrics["best_f1"])


def test_calibrate_one_category_of_a_unified_model(export_copy, line):
    artifact = export_copy / "model.int8.onnx"
    result = invoke("calibrate-threshold", artifact, "--good", line["good"], "--category", "brick", "--rule",
                    "quantile:0.95", "--json", export_copy / "cal.json")
    assert result.exit_code == 0, result.output
    threshold = json.loads((export_copy / "cal.json").read_text())["threshold"]
    scores, _ = scores_of(artifact, line["good"])
    assert threshold == pytest.approx(float(np.quantile(scores, 0.95)), rel=1e-12)
    with Detector.load(artifact, category="brick") as detector:
        assert detector.threshold == threshold


@pytest.mark.parametrize("args, message", [
    (["--good", "{missing}"], "--good {missing}: folder not found"),
    (["--good", "{empty}"], "--good {empty}: no images in this folder"),
    (["--good", "{good}", "--category", "grass"], "unknown category 'grass': the artifact has statistics for brick"),
    (["--good", "{good}", "--fpr", "1.5"], "--fpr must be in [0, 1)"),
    (["--good", "{good}", "--fpr", "0.1", "--rule", "mean+3std"], "pass either --fpr or --rule"),
])
def test_calibrate_bad_input_is_one_line_and_writes_nothing(export_copy, line, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    names = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "good": line["good"]}
    before = {p.name: p.read_bytes() for p in export_copy.iterdir()}
    result = invoke("calibrate-threshold", export_copy / "model.fp16.onnx", *[a.format(**names) for a in args])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [result.output.strip()]
    assert message.format(**names) in result.output
    assert {p.name: p.read_bytes() for p in export_copy.iterdir()} == before


# ---------------------------------------------------------------- bench --data


def test_bench_puts_each_rows_auroc_beside_its_latency(line, tmp_path):
    from sklearn.metrics import roc_auc_score

    from mmad_edge.data.catalog import labelled_split

    report = tmp_path / "bench.json"
    result = invoke("bench", line["out"], "--data", line["data"], "--category", "brick", "--batch-size", "1",
                    "--protocol", "paper,e2e", "--iters", "1", "--warmup", "0", "--no-peers", "--case-budget", "1",
                    "--checkpoint", line["checkpoint"], "--json", report, "--quiet")
    assert result.exit_code == 0, result.output
    assert "image AUROC" in result.output.splitlines()[0]
    rows = json.loads(report.read_text())["results"]
    split = labelled_split(line["data"], "mvtec", ["brick"], SIZE)
    for precision in ("fp32", "fp16", "int8"):
        with Detector.load(line["out"] / f"model.{precision}.onnx") as detector:
            expected = roc_auc_score(split.labels, [r.score for r in detector.predict(list(split.frames))])
        measured = [r["image_auroc"] for r in rows if r["name"] == f"onnx-{precision}"]
        assert len(measured) == 2 and measured == pytest.approx([expected] * 2, abs=1e-12)
    torch_rows = {r["name"]: r["image_auroc"] for r in rows if r["backend"] == "torch"}
    assert set(torch_rows) == {"torch-eager-trainform", "torch-reparam"}
    assert all(abs(value - line["eval"]["mean"]["image_auroc"]) <= 0.002 for value in torch_rows.values())


def test_bench_data_missing_fails_before_timing(line, tmp_path):
    result = invoke("bench", line["out"], "--data", tmp_path / "missing", "--quiet")
    assert result.exit_code == 2 and "--data" in result.output and "dataset root not found" in result.output


# ---------------------------------------------------------------- on a runtime-only device


def test_verify_and_calibrate_run_without_torch_or_onnx(export_copy, line, tmp_path):
    loaded = tmp_path / "loaded.json"
    artifact = export_copy / "model.fp16.onnx"
    result = runtime_only("verify", str(artifact), "--data", str(line["data"]), loaded_report=loaded)
    assert result.returncode == 0, result.stderr
    assert "verification: pass" in result.stdout and json.loads(loaded.read_text()) == []
    result = runtime_only("calibrate-threshold", str(artifact), "--good", str(line["good"]), loaded_report=loaded)
    assert result.returncode == 0, result.stderr
    assert json.loads(loaded.read_text()) == []
    assert onnx.load(str(artifact)).metadata_props[0].key == "mmad_edge.metadata"
    result = runtime_only("verify", str(artifact), "--data", str(line["data"]), "--against", str(line["checkpoint"]))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: --against {line['checkpoint']} runs the PyTorch "
                                                              "model, which needs torch")
