"""Detector on the stand-in ONNX with ONNX Runtime (CPU): numbers, batching, inputs, errors."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest
from runtime_fixtures import reference, standin_metadata, write_export_dir, write_standin

from mmad_edge.runtime import ArtifactError, Detector, Result
from mmad_edge.runtime.backends import choices
from mmad_edge.runtime.preprocess import resize_frame
from mmad_edge.runtime.scoring import normalize_score

RUNTIME_DIR = Path(__file__).resolve().parents[2] / "runtime"
SIZE = 64


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    return write_export_dir(tmp_path_factory.mktemp("export"), SIZE, precisions=("fp32", "fp16"))


@pytest.fixture(scope="module")
def detector(export_dir):
    with Detector.load(export_dir) as det:
        yield det


def _frames(seed: int = 0):
    rng = np.random.default_rng(seed)
    shapes = [(64, 64, 3), (48, 80, 3), (300, 200, 3), (31, 31, 3), (64, 64, 3), (128, 96, 3), (90, 90, 3)]
    return [rng.integers(0, 256, shape, dtype=np.uint8) for shape in shapes]


def test_scores_match_the_reference_computation(detector):
    frame = np.random.default_rng(1).integers(0, 256, (200, 150, 3), dtype=np.uint8)
    result = detector(frame)
    expected_map, expected_score = reference(resize_frame(frame, SIZE))
    assert result.anomaly_map.shape == (SIZE, SIZE) and result.anomaly_map.dtype == np.float32
    np.testing.assert_allclose(result.anomaly_map, expected_map, rtol=1e-6)
    assert result.score == pytest.approx(expected_score, rel=1e-6)
    assert result.score_normalized == pytest.approx(normalize_score(result.score, 0.5, 0.6))
    assert result.is_anomaly == (result.score > 0.6)
    assert set(result.timings) == {"preprocess", "inference", "postprocess"}


def test_batch_and_single_frame_results_agree_exactly(detector):
    frames = _frames()
    assert detector.batch_max == 4  # 7 frames -> chunks of 4 and 3
    batched = detector.predict(frames)
    single = [detector(frame) for frame in frames]
    assert len(batched) == len(frames)
    for one, many in zip(single, batched):
        assert one.score == many.score
        assert np.array_equal(one.anomaly_map, many.anomaly_map)
    same_size = np.stack([cv2.resize(f, (64, 64)) for f in frames])
    from_array = detector.predict(same_size)
    assert [r.score for r in from_array] == [detector(f).score for f in same_size]


def test_grayscale_bgra_and_frame_sized_maps(detector):
    rng = np.random.default_rng(2)
    gray = rng.integers(0, 256, (120, 90), dtype=np.uint8)
    as_bgr = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    assert detector(gray).score == detector(gray[:, :, None]).score == detector(as_bgr).score
    bgra = cv2.cvtColor(as_bgr, cv2.COLOR_BGR2BGRA)
    assert detector(bgra).score == detector(as_bgr).score
    full = detector(gray, map_size="frame")
    assert full.anomaly_map.shape == (120, 90)
    assert full.score == detector(gray).score


def test_threshold_override_per_detector_and_call(export_dir, detector):
    frame = np.full((64, 64, 3), 170, dtype=np.uint8)  # map 0.667 everywhere
    assert detector(frame).is_anomaly is True
    assert detector(frame, threshold=0.9).is_anomaly is False
    with Detector.load(export_dir, threshold=0.95) as strict:
        result = strict(frame)
        assert result.is_anomaly is False and result.threshold == 0.95
    record = result.to_json()
    assert "anomaly_map" not in record and json.loads(json.dumps(record))["score"] == pytest.approx(170 / 255, rel=1e-6)


def test_no_statistics_means_no_threshold(tmp_path):
    path = write_standin(tmp_path / "m.onnx", SIZE, metadata=standin_metadata(SIZE, statistics=False))
    with Detector.load(path) as det:
        result = det(np.zeros((10, 10, 3), np.uint8))
        assert result.is_anomaly is None and result.score_normalized is None and result.threshold is None
        assert det(np.zeros((10, 10, 3), np.uint8), threshold=-1.0).is_anomaly is True


def test_fixed_batch_is_padded_and_padding_dropped(tmp_path):
    path = write_standin(tmp_path / "fixed.onnx", SIZE, batch=3, metadata=standin_metadata(SIZE, batch=3))
    frames = _frames(3)[:5]
    with Detector.load(path) as det:
        assert (det.batch_min, det.batch_max) == (3, 3)
        results = det.predict(frames)  # chunks 3 + 2 (padded to 3)
        assert len(results) == 5
        for frame, result in zip(frames, results):
            assert result.score == pytest.approx(reference(resize_frame(frame, SIZE))[1], rel=1e-6)
        assert det(frames[0]).score == results[0].score


def test_folder_order_and_precision_choice(export_dir, tmp_path, capsys):
    with Detector.load(export_dir) as det:
        assert det.backend.path.name == "model.fp32.onnx"  # CPU order: fp32 first
    with Detector.load(export_dir, precision="fp16") as det:
        assert det.backend.path.name == "model.fp16.onnx"
    only_fp16 = write_export_dir(tmp_path / "half", SIZE, precisions=("fp16",))
    (only_fp16 / "model.fp16.engine").write_bytes(b"not an engine")
    with Detector.load(only_fp16) as det:
        assert det.backend.path.name == "model.fp16.onnx"
    assert "skipping model.fp16.engine" in capsys.readouterr().err
    with pytest.raises(ArtifactError, match="no model.int8.onnx"):
        Detector.load(export_dir, precision="int8")


def test_metadata_falls_back_to_metadata_json(tmp_path):
    folder = tmp_path / "exp"
    folder.mkdir()
    write_standin(folder / "model.fp32.onnx", SIZE, embed=False)
    with pytest.raises(ArtifactError, match="no 'mmad_edge.metadata' metadata"):
        Detector.load(folder / "model.fp32.onnx")
    (folder / "metadata.json").write_text(json.dumps(standin_metadata(SIZE, threshold=0.3, low=0.1)))
    with Detector.load(folder / "model.fp32.onnx") as det:
        assert det.threshold == 0.3 and det.normalization == (0.1, 0.3)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda d: d(None), "frame is None"),
        (lambda d: d(np.zeros((4, 4, 5), np.uint8)), r"expected an H x W"),
        (lambda d: d.predict(np.zeros((4, 4, 3), np.uint8)), r"use detector\(frame\)"),
        (lambda d: d(np.zeros((4, 4, 3), np.uint8), map_size="big"), "map_size"),
    ],
)
def test_bad_frames_get_one_line_errors(detector, call, message):
    with pytest.raises(ValueError, match=message):
        call(detector)


def test_bad_artifacts_get_one_line_errors(tmp_path, export_dir):
    with pytest.raises(ArtifactError, match="no such artifact"):
        Detector.load(tmp_path / "missing.onnx")
    (tmp_path / "model.txt").write_text("x")
    with pytest.raises(ArtifactError, match="expected a .engine, a .onnx file or an export folder"):
        Detector.load(tmp_path / "model.txt")
    with pytest.raises(ArtifactError) as keyword:
        Detector.load(export_dir, backend="no-such-backend")
    assert str(keyword.value) == f"backend must be one of {', '.join(choices())}, got 'no-such-backend'"
    with pytest.raises(ArtifactError, match="backend=.tensorrt. runs .engine files, not .onnx"):
        Detector.load(export_dir / "model.fp32.onnx", backend="tensorrt")
    (tmp_path / "broken.onnx").write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="broken.onnx: not a loadable ONNX model"):
        Detector.load(tmp_path / "broken.onnx")
    bad = standin_metadata(SIZE)
    bad["schema_version"] = 7
    write_standin(tmp_path / "v7.onnx", SIZE, metadata=bad)
    with pytest.raises(ArtifactError, match="schema_version 7 is not supported"):
        Detector.load(tmp_path / "v7.onnx")


def test_runtime_sources_parse_as_python_310():
    files = sorted(RUNTIME_DIR.rglob("*.py"))  # backends/ included
    assert len(files) >= 10
    for path in files:
        ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=(3, 10))


def test_runtime_imports_no_backend_eagerly():
    heavy = ("onnxruntime", "tensorrt", "tensorrt_lean", "torch", "onnx", "cuda")
    code = f"import sys, mmad_edge.runtime as r; r.Detector; r.run_stream; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_detector_runs_where_torch_and_onnx_cannot_be_imported(export_dir):
    code = textwrap.dedent(
        f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "onnx"):
                    raise ImportError("blocked for this test: " + name)
        sys.meta_path.insert(0, Block())
        import mmad_edge, mmad_edge.runtime
        from mmad_edge.runtime import Detector
        import numpy as np
        with Detector.load({str(export_dir)!r}) as det:
            print(det(np.full((50, 70, 3), 51, np.uint8)).score)
        assert not any(m.split(".")[0] in ("torch", "onnx") for m in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) == pytest.approx(0.2, rel=1e-6)


def test_cpu_micro_batch_splits_a_batch_without_changing_results(export_dir, tmp_path):
    from mmad_edge.runtime.backends.onnxruntime import cpu_micro_batch, resolve_micro_batch

    assert [cpu_micro_batch((s, s)) for s in (128, 256, 320, 1024)] == [16, 4, 2, 1]
    assert resolve_micro_batch(None, (256, 256)) == 4 and resolve_micro_batch(None, (256, 256), on_cpu=False) is None
    assert resolve_micro_batch(0, (256, 256)) is None and resolve_micro_batch(3, (256, 256), on_cpu=False) == 3
    frames = np.stack([cv2.resize(f, (SIZE, SIZE)) for f in _frames(5)[:4]])
    with Detector.load(export_dir, "onnxruntime", precision="fp32", micro_batch=0) as whole, \
            Detector.load(export_dir, "onnxruntime", precision="fp32", micro_batch=3) as split:
        assert whole.backend.micro_batch is None and split.backend.micro_batch == 3
        calls = []
        run = split.backend._session.run
        split.backend._session.run = lambda names, feeds: calls.append(len(feeds["image"])) or run(names, feeds)
        expected, got = whole.predict(frames), split.predict(frames)
        assert calls == [3, 1]  # 4 frames -> runs of 3 and 1
        for a, b in zip(expected, got):
            assert a.score == b.score and np.array_equal(a.anomaly_map, b.anomaly_map)
    with Detector.load(export_dir, "onnxruntime", precision="fp32") as auto:  # CPU: 4 x 256^2 pixels per run
        assert auto.backend.micro_batch == cpu_micro_batch((SIZE, SIZE))
    fixed = write_standin(tmp_path / "fixed.onnx", SIZE, batch=3, metadata=standin_metadata(SIZE, batch=3))
    with Detector.load(fixed, "onnxruntime", micro_batch=1) as det:
        assert det.backend.micro_batch is None  # a fixed-batch graph always runs whole
    with pytest.raises(ValueError, match=r"micro_batch must be None \(automatic\), 0 \(whole batch\) or a positive int"):
        Detector.load(export_dir, "onnxruntime", micro_batch=-1)


def test_category_threshold_and_normalisation(tmp_path):
    """A unified model's metadata carries per-category numbers; category= picks them."""
    meta = standin_metadata(SIZE)  # pooled: threshold 0.6, low 0.5
    meta["statistics"]["categories"] = {
        "gravel": {"threshold": 0.2, "normalization": {"low": 0.1, "high": 0.2}},
        "brick": {"threshold": 0.9, "normalization": {"low": 0.7, "high": 0.9}},
    }
    path = write_standin(tmp_path / "m.onnx", SIZE, metadata=meta)
    frame = np.full((64, 64, 3), 102, dtype=np.uint8)  # score 0.4
    with Detector.load(path) as pooled, Detector.load(path, category="gravel") as gravel:
        assert pooled(frame).is_anomaly is False and pooled.category is None
        result = gravel(frame)
        assert result.is_anomaly is True and result.threshold == 0.2 and gravel.normalization == (0.1, 0.2)
        assert result.score_normalized == pytest.approx(normalize_score(0.4, 0.1, 0.2))
    with Detector.load(path, category="brick", threshold=0.3) as brick:  # an explicit threshold still wins
        assert brick.threshold == 0.3 and brick.normalization == (0.7, 0.9)
    with pytest.raises(ArtifactError) as unknown:
        Detector.load(path, category="grass")
    assert str(unknown.value) == ("the artifact has no statistics for category 'grass'; categories with statistics: "
                                  "brick, gravel. Pass one of them, or a threshold: threshold=T (--threshold T)")
    old = write_standin(tmp_path / "old.onnx", SIZE, metadata=standin_metadata(SIZE))
    with pytest.raises(ArtifactError, match="none \\(exported from an older checkpoint\\)"):
        Detector.load(old, category="gravel")
    bad = standin_metadata(SIZE)
    bad["statistics"]["categories"] = ["gravel"]
    with pytest.raises(ArtifactError, match="statistics.categories must map names to objects"):
        Detector.load(write_standin(tmp_path / "bad.onnx", SIZE, metadata=bad))


def test_the_public_signatures_resolve_their_type_hints():
    """``from __future__ import annotations`` defers hints: each name they use must be importable."""
    import typing

    hints = typing.get_type_hints(Detector.predict)
    assert hints["categories"] == Sequence[str | None] | None
    assert hints["return"] == list[Result]
    assert typing.get_type_hints(Detector.load)["return"] is Detector
