"""The backend registry and the backend matrix: every registered backend that can run here
joins the matrix by its registry entry alone (artifacts are made per file suffix)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from runtime_fixtures import reference, standin_metadata, write_standin

from mmad_edge.export.tensorrt import EngineBuildError, TensorRTUnavailable
from mmad_edge.runtime import Detector, DetectorClosedError
from mmad_edge.runtime import backends
from mmad_edge.runtime.backends import REGISTRY, BackendEntry, backend_class, choices
from mmad_edge.runtime.backends.base import Backend, InputSpec
from mmad_edge.runtime.backends.onnxruntime import OnnxRuntimeBackend
from mmad_edge.runtime.contract import INPUT_NAME, artifact_name

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
    detector = Detector.load(artifact, backend=entry.name)
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
    monkeypatch.setattr("mmad_edge.runtime.detector.REGISTRY", backends.REGISTRY)
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
