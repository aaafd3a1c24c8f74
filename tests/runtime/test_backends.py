"""The backend registry and the backend matrix: every registered backend that can run here
joins the matrix by its registry entry alone (artifacts are made per file suffix)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from runtime_fixtures import build_standin, reference, standin_metadata, write_standin

from mmad_edge.export.tensorrt import EngineBuildError, TensorRTUnavailable
from mmad_edge.runtime import ArtifactError, Detector, DetectorClosedError, backends
from mmad_edge.runtime.artifact.contract import INPUT_NAME, artifact_name
from mmad_edge.runtime.backends import REGISTRY, BackendEntry, backend_class, choices
from mmad_edge.runtime.backends.base import Backend, InputSpec
from mmad_edge.runtime.backends.onnxruntime import OnnxRuntimeBackend
from mmad_edge.runtime.errors import BackendUnavailableError

SIZE = 32
MAX_BATCH = 4


def _onnx(folder: Path) -> Path:
    path = folder / artifact_name("fp32")
    metadata = {**standin_metadata(SIZE, "dynamic", max_batch=MAX_BATCH), "source_checkpoint": None}
    return write_standin(path, SIZE, "dynamic", metadata)


def _engine(folder: Path) -> Path:
    from mmad_edge.export.options import EngineOptions
    from mmad_edge.export.tensorrt import build_engine

    engine = folder / artifact_name("fp32", ".engine")
    build_engine(_onnx(folder), engine, EngineOptions(batch=f"1:{MAX_BATCH}:{MAX_BATCH}"))
    return engine


ARTIFACT_MAKERS = {".onnx": _onnx, ".engine": _engine}
RUNNABLE = [name for name, entry in REGISTRY.items() if entry.available()]


@pytest.fixture(params=RUNNABLE)
def loaded(request, tmp_path):
    entry = REGISTRY[request.param]
    suffix = entry.suffixes[0]
    assert suffix in ARTIFACT_MAKERS, f"add an artifact maker for {suffix} files to this matrix"
    try:
        artifact = ARTIFACT_MAKERS[suffix](tmp_path)
    except (TensorRTUnavailable, EngineBuildError) as exc:  # no builder or no GPU on this machine
        pytest.skip(f"{entry.name}: cannot make a {suffix} artifact here ({exc})")
    if entry.rank(artifact) is None and suffix == ".engine":
        pytest.skip(f"{entry.name}: the engine cannot run here")
    detector = Detector.load(artifact, backend=entry.name, cache_dir=tmp_path / "cache")
    yield entry, detector
    detector.close()


def test_backend_runs_the_contract(loaded):
    entry, detector = loaded
    assert isinstance(detector.backend, Backend) and detector.backend.name == entry.name
    assert detector.backend.input_spec == InputSpec(INPUT_NAME, (SIZE, SIZE), 1, MAX_BATCH)
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(MAX_BATCH + 1)]
    maps, scores = detector.backend.run(np.stack(frames[:MAX_BATCH]))
    assert maps.dtype == np.float32 and maps.shape == (MAX_BATCH, SIZE, SIZE) and scores.shape == (MAX_BATCH,)
    for frame, result in zip(frames, detector.predict(frames)):
        expected_map, expected_score = reference(frame)
        np.testing.assert_allclose(result.anomaly_map, expected_map, atol=1e-2)
        assert result.score == pytest.approx(expected_score, abs=1e-2)


def test_backend_describes_itself_and_closes(loaded):
    entry, detector = loaded
    description = detector.backend.describe()
    assert description["backend"] == entry.name and description["precision"] == "fp32"
    assert description["library_version"] and "device" in description
    detector.close()
    detector.close()  # idempotent
    with pytest.raises(DetectorClosedError):
        detector.predict([np.zeros((SIZE, SIZE, 3), np.uint8)])


def test_every_registered_backend_names_its_class():
    assert choices() == ("auto", *REGISTRY)
    for name, entry in REGISTRY.items():
        assert entry.suffixes and all(suffix.startswith(".") for suffix in entry.suffixes)
        if entry.available():
            assert backend_class(name).name == name


class _Ranked(OnnxRuntimeBackend):
    name = "ranked"


def test_auto_takes_the_best_ranked_available_backend_and_a_new_entry_is_a_backend_choice(tmp_path, monkeypatch):
    """A backend joins by one registry entry: ``auto`` prefers it when it ranks higher."""
    monkeypatch.setattr(backends, "REGISTRY", dict(REGISTRY))
    monkeypatch.setattr("mmad_edge.runtime.artifact.selection.REGISTRY", backends.REGISTRY)
    backends.register(replace(REGISTRY["openvino"], rank=lambda path: None))  # this CPU's kind must not matter
    module = type(backends)("fake_ranked_backend")
    module.BACKEND = _Ranked
    monkeypatch.setitem(__import__("sys").modules, "fake_ranked_backend", module)
    artifact = _onnx(tmp_path)
    backends.register(BackendEntry("ranked", "fake_ranked_backend", (".onnx",), lambda: True, lambda path: 99))
    assert "ranked" in choices()
    with Detector.load(artifact) as detector:
        assert detector.backend.name == "ranked"
    backends.register(BackendEntry("ranked", "fake_ranked_backend", (".onnx",), lambda: True, lambda path: None))
    with Detector.load(artifact) as detector:
        assert detector.backend.name == "onnxruntime"  # None: never chosen by auto
    with Detector.load(artifact, backend="ranked") as detector:
        assert detector.backend.name == "ranked"  # but still runs when asked for


# --- OpenVINO: equal to ONNX Runtime on a real (tiny) MiniMaxAD graph, precisions, cache, errors ---

needs_openvino = pytest.mark.skipif(not REGISTRY["openvino"].available(), reason="openvino is not installed")
TINY_SIZE = 64


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory) -> Path:
    """Variant a at 64 px, random weights: FP32 + FP16 uint8 graphs with metadata, batch 1..16."""
    from mmad_edge.bench.default_export import default_artifacts
    from mmad_edge.config import ModelConfig

    return default_artifacts(ModelConfig(variant="a", image_size=TINY_SIZE), tmp_path_factory.mktemp("tiny"), False)


def _graded_frames(count: int = 12) -> np.ndarray:
    """Frames whose noise grows with the index, so the scores spread out (ranks are meaningful)."""
    rng = np.random.default_rng(7)
    noise = rng.standard_normal((count, TINY_SIZE, TINY_SIZE, 3))
    amplitude = np.linspace(2.0, 90.0, count)[:, None, None, None]
    return np.clip(128.0 + amplitude * noise, 0, 255).astype(np.uint8)


def _outputs(path: Path, backend: str, frames: np.ndarray, **options) -> tuple:
    with Detector.load(path, backend, **options) as detector:
        maps, scores = detector.backend.run(frames)
    return maps, scores


@needs_openvino
@pytest.mark.parametrize("hint", ["latency", "throughput"])
def test_openvino_fp32_equals_onnxruntime_within_the_export_tolerance(tiny_export, tmp_path, hint):
    from mmad_edge.export.checks import FP32_RELATIVE
    from mmad_edge.runtime.monitor.compare import error_metrics

    frames = _graded_frames()
    path = tiny_export / artifact_name("fp32")
    reference = _outputs(path, "onnxruntime", frames, providers=["CPUExecutionProvider"], micro_batch=0)
    candidate = _outputs(path, "openvino", frames, cache_dir=tmp_path, performance_hint=hint)
    metrics = error_metrics(reference, candidate)
    assert metrics["map_relative"] <= FP32_RELATIVE and metrics["score_relative"] <= FP32_RELATIVE, metrics


@needs_openvino
@pytest.mark.parametrize("precision", ["bf16", "f16"])
def test_openvino_low_precision_without_the_units_is_refused_in_one_line(tiny_export, tmp_path, precision):
    """A one-line refusal naming what the CPU has. Where it has the units, the precision's accuracy is
    judged on a trained model (random weights rank nothing): tests/export/test_device_verification.py."""
    import openvino

    from mmad_edge.runtime.backends.openvino import PRECISION_UNITS, cpu_capabilities

    capabilities = cpu_capabilities(openvino.Core())
    if PRECISION_UNITS[precision] in capabilities:
        pytest.skip(f"this CPU has {PRECISION_UNITS[precision]} units: judged by the verify test on a trained model")
    with pytest.raises(BackendUnavailableError) as refused:
        Detector.load(tiny_export / artifact_name("fp32"), "openvino", cache_dir=tmp_path, inference_precision=precision)
    message = str(refused.value)
    assert "\n" not in message and f"no {PRECISION_UNITS[precision]} units" in message
    assert all(capability in message for capability in capabilities) and "f32" in message


@needs_openvino
def test_openvino_bf16_runs_the_cosine_head_in_f32_and_the_convolutions_in_bf16(tiny_export, tmp_path, monkeypatch):
    """Checked per node in the compiled model; a plain bf16 compile of the same graph runs the head's
    reductions in bf16, so the f32 comes from the marks. Where the plugin cannot even emulate bf16
    (no AVX-512) there is nothing to check."""
    import openvino

    from mmad_edge.runtime.backends import openvino as ov_backend
    from mmad_edge.runtime.backends.openvino_f32 import runtime_precisions

    path = tiny_export / artifact_name("fp32")
    core = openvino.Core()
    plain = core.compile_model(core.read_model(str(path)), "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})
    if plain.get_property("INFERENCE_PRECISION_HINT").get_type_name() != "bf16":
        pytest.skip("this CPU cannot compute bf16, not even emulated")
    monkeypatch.setattr(ov_backend, "cpu_capabilities", lambda core, device="CPU": ["FP32", "BF16"])
    with Detector.load(path, "openvino", cache_dir=tmp_path, inference_precision="bf16") as detector:
        kept = runtime_precisions(detector.backend._compiled)
    before = runtime_precisions(plain)
    head = [name for name in kept if name.startswith("/head/") and name.split("/")[-1].split("_")[0] in
            ("ReduceSum", "Sqrt", "Div", "Sub", "Clip")]
    convs = [name for name in kept if name.endswith("pw1/Conv/WithoutBiases")]
    assert len(head) >= 12 and convs, sorted(kept)
    assert {kept[name] for name in head} == {"f32"}, {name: kept[name] for name in head}
    assert "bf16" in {before[name] for name in head if name in before}
    assert {kept[name] for name in convs} == {"bf16"}


@needs_openvino
def test_openvinos_cache_keeps_the_f32_marked_bf16_model_apart_from_a_plain_bf16_one(tiny_export, tmp_path):
    """The marks live in the model's rt_info; a cache keyed without them would hand a bf16 compile
    without the f32 head (another tool's, or an older mmad-edge's) to our load, or the reverse."""
    import openvino

    from mmad_edge.runtime.backends.openvino import for_precision

    core = openvino.Core()
    path = str(tiny_export / artifact_name("fp32"))
    config = {"INFERENCE_PRECISION_HINT": "bf16", "PERFORMANCE_HINT": "LATENCY", "CACHE_DIR": str(tmp_path)}
    plain = core.compile_model(core.read_model(path), "CPU", config)
    if plain.get_property("INFERENCE_PRECISION_HINT").get_type_name() != "bf16":
        pytest.skip("this CPU cannot compute bf16, not even emulated")
    marked = core.compile_model(for_precision(core, core.read_model(path), "bf16"), "CPU", config)
    again = core.compile_model(for_precision(core, core.read_model(path), "bf16"), "CPU", config)
    assert [plain.get_property("LOADED_FROM_CACHE"), marked.get_property("LOADED_FROM_CACHE"),
            again.get_property("LOADED_FROM_CACHE")] == [False, False, True]


@needs_openvino
def test_openvino_reuses_its_compiled_model_cache(tmp_path):
    artifact = _onnx(tmp_path)
    cache = tmp_path / "ov-cache"
    with Detector.load(artifact, "openvino", cache_dir=cache) as first:
        assert first.backend.describe()["loaded_from_cache"] is False
        assert first.backend.describe()["inference_precision"] == "f32"  # set explicitly, whatever the CPU
    blobs = {path.name: path.stat().st_mtime_ns for path in cache.iterdir()}
    assert any(name.endswith(".blob") for name in blobs)
    with Detector.load(artifact, "openvino", cache_dir=cache) as second:
        assert second.backend.describe()["loaded_from_cache"] is True
    assert {path.name: path.stat().st_mtime_ns for path in cache.iterdir()} == blobs


@needs_openvino
def test_openvino_splits_a_batch_over_its_infer_requests_under_the_throughput_hint(tmp_path):
    artifact = _onnx(tmp_path)
    frames = np.random.default_rng(4).integers(0, 256, (MAX_BATCH, SIZE, SIZE, 3), dtype=np.uint8)
    with Detector.load(artifact, "openvino", cache_dir=tmp_path, performance_hint="throughput", threads=2) as det:
        assert det.backend.describe()["performance_hint"] == "throughput"
        for _ in range(3):  # repeated calls: the request pool must not deadlock
            maps, scores = det.backend.run(frames)
            for index, frame in enumerate(frames):
                np.testing.assert_allclose(maps[index], reference(frame)[0], atol=1e-6)
        assert det.backend.run(frames[:1])[0].shape == (1, SIZE, SIZE)
    with pytest.raises(ValueError, match="performance_hint must be 'latency' or 'throughput'"):
        Detector.load(artifact, "openvino", cache_dir=tmp_path, performance_hint="fast")


def test_openvino_missing_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "openvino", None)  # import openvino -> ImportError
    with pytest.raises(BackendUnavailableError, match=r'pip install "\.\[openvino\]" from the mmad-edge checkout') as missing:
        Detector.load(_onnx(tmp_path), "openvino", cache_dir=tmp_path)
    assert "\n" not in str(missing.value)


def _qoperator_int8(path: Path) -> Path:
    """The stand-in with a per-channel QLinearConv in its map path: the CPU-form INT8 graph's node."""
    from onnx import TensorProto, helper

    model = build_standin(SIZE, "dynamic", {**standin_metadata(SIZE, "dynamic", max_batch=MAX_BATCH, precision="int8")})
    graph = model.graph
    mean = next(node for node in graph.node if node.output[0] == "anomaly_map")
    mean.output[0] = "float_map"
    tensor = helper.make_tensor
    graph.initializer.extend([
        tensor("q_scale", TensorProto.FLOAT, [], [1 / 255]), tensor("q_zero", TensorProto.UINT8, [], [0]),
        tensor("w", TensorProto.INT8, [2, 1, 1, 1], [1, 1]), tensor("w_scale", TensorProto.FLOAT, [2], [0.5, 0.5]),
        tensor("w_zero", TensorProto.INT8, [2], [0, 0]), tensor("channel_axis", TensorProto.INT64, [1], [1]),
    ])
    index = list(graph.node).index(mean) + 1
    nodes = [
        helper.make_node("Unsqueeze", ["float_map", "channel_axis"], ["map4"]),
        helper.make_node("QuantizeLinear", ["map4", "q_scale", "q_zero"], ["q"]),
        helper.make_node("QLinearConv", ["q", "q_scale", "q_zero", "w", "w_scale", "w_zero", "q_scale", "q_zero"], ["qc"]),
        helper.make_node("DequantizeLinear", ["qc", "q_scale", "q_zero"], ["both"]),
        helper.make_node("ReduceSum", ["both", "channel_axis"], ["anomaly_map"], keepdims=0),
    ]
    for offset, node in enumerate(nodes):
        graph.node.insert(index + offset, node)
    onnx.save(model, str(path))
    return path


@needs_openvino
def test_openvino_refuses_the_cpu_form_int8_graph_naming_the_tensorrt_form(tmp_path):
    artifact = _qoperator_int8(tmp_path / artifact_name("int8"))
    with Detector.load(artifact, "onnxruntime") as ort:  # a valid graph: ONNX Runtime runs it
        frame = np.full((SIZE, SIZE, 3), 200, np.uint8)
        assert ort(frame).anomaly_map.mean() == pytest.approx(200 / 255, abs=2 / 255)
    with pytest.raises(ArtifactError, match="CPU-form INT8 graph.*QLinearConv.*--target tensorrt") as refused:
        Detector.load(artifact, "openvino", cache_dir=tmp_path)
    assert "\n" not in str(refused.value)


def test_auto_without_a_tuned_choice_keeps_the_plain_ranking_and_never_picks_openvino(tmp_path, monkeypatch):
    from mmad_edge.runtime.backends import backend_for as _backend_for
    from mmad_edge.runtime.backends import onnxruntime as ort_backend

    monkeypatch.setitem(REGISTRY, "openvino", replace(REGISTRY["openvino"], available=lambda: True))
    for gpu in (False, True):
        monkeypatch.setattr(ort_backend, "runs_on_gpu", lambda providers=None, gpu=gpu: gpu)
        for precision in ("fp32", "fp16", "int8"):
            assert _backend_for(tmp_path / artifact_name(precision), "auto") == "onnxruntime"
    assert REGISTRY["openvino"].rank(tmp_path / artifact_name("fp32")) is None  # only `mmad-edge tune` routes to it


def test_detector_load_takes_backend_options_whole_or_as_keywords(tmp_path):
    from mmad_edge.runtime.backends.base import BackendOptions

    artifact = _onnx(tmp_path)
    with Detector.load(artifact, "onnxruntime", BackendOptions(threads=1, micro_batch=2)) as whole, \
            Detector.load(artifact, "onnxruntime", BackendOptions(threads=1), micro_batch=3) as mixed:
        assert whole.backend.micro_batch == 2 and mixed.backend.micro_batch == 3
    with pytest.raises(TypeError, match="unknown option.*micro_batches"):
        Detector.load(artifact, "onnxruntime", micro_batches=2)


def test_backend_options_reach_only_the_backend_that_declares_them():
    from mmad_edge.runtime.backends.base import BackendOptions, OptionError
    from mmad_edge.runtime.backends.onnxruntime import OrtOptions
    from mmad_edge.runtime.backends.openvino import OvOptions

    options = BackendOptions(threads=2, micro_batch=3, inference_precision="bf16", use_cuda_graph=False)
    assert options.settings(OrtOptions) == OrtOptions(micro_batch=3)
    assert options.settings(OvOptions) == OvOptions(inference_precision="bf16")
    assert options.replace(micro_batch=None).settings(OrtOptions).micro_batch is None and options.threads == 2
    assert {"threads", "micro_batch", "inference_precision", "use_cuda_graph", "providers"} <= set(BackendOptions.names())
    with pytest.raises(TypeError, match="unknown backend option.*micro_batches"):
        BackendOptions(micro_batches=2)
    with pytest.raises(OptionError, match="performance_hint must be 'latency' or 'throughput'") as refused:
        BackendOptions(performance_hint="fast").check()
    assert refused.value.name == "performance_hint"
