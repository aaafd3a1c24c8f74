"""Benchmark cases: the run loop, torch / ONNX Runtime factories, and e2e with a fake detector."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from mmad_edge.bench.runner import (
    BenchCase,
    TorchInput,
    e2e_detector_case,
    graph_case,
    peer_case,
    precision_from_name,
    random_feed,
    run_case,
    run_cases,
    torch_module_case,
)
from mmad_edge.bench.tables import build_report
from mmad_edge.runtime.backends.base import BackendOptions
from mmad_edge.runtime.backends.onnxruntime import cpu_micro_batch


def counting_case(name: str = "count", fail: bool = False) -> tuple[BenchCase, dict]:
    log = {"setup": 0, "step": 0, "teardown": 0}

    def step() -> None:
        if fail:
            raise RuntimeError("backend broke")
        log["step"] += 1

    case = BenchCase(
        name=name, backend="fake", precision="fp32", protocol="paper", batch=4, step=step,
        setup=lambda: log.__setitem__("setup", log["setup"] + 1) or {"backend": "resolved"},
        teardown=lambda: log.__setitem__("teardown", log["teardown"] + 1),
    )
    return case, log


def test_run_cases_rows_and_progress(capsys: pytest.CaptureFixture) -> None:
    case, log = counting_case()
    rows = run_cases([case], warmup=2, iters=3)
    assert log == {"setup": 1, "step": 5, "teardown": 1}
    (row,) = rows
    assert row["name"] == "count" and row["backend"] == "resolved" and row["batch"] == 4
    assert row["protocol"] == "paper" and "stages" not in row
    build_report(rows)  # valid report rows
    err = capsys.readouterr().err
    assert err.startswith("[1/1] count [fake fp32 paper b4]: p50 ")


def test_failures_raise_or_are_skipped(capsys: pytest.CaptureFixture) -> None:
    bad, log = counting_case("bad", fail=True)
    good, _ = counting_case("good")
    with pytest.raises(RuntimeError, match="backend broke"):
        run_cases([bad], 0, 1)
    assert log["teardown"] == 1  # torn down even when a step fails
    rows = run_cases([bad, good], 0, 1, progress=False, skip_failures=True)
    assert [r["name"] for r in rows] == ["good"]
    assert "[1/2] bad [fake fp32 paper b4]: FAILED (RuntimeError: backend broke)" in capsys.readouterr().err


def test_e2e_stage_means_cover_timed_iterations_only() -> None:
    values = iter([100.0, 1.0, 3.0])  # warm-up, then two timed calls

    def step() -> dict:
        v = next(values)
        return {"preprocess": v, "inference": 2 * v}

    case = BenchCase("e", "fake", "fp16", "e2e", 1, step)
    row = run_case(case, warmup=1, iters=2)
    assert row["stages"] == {"preprocess": 2.0, "inference": 4.0}


def test_torch_module_case_runs_a_module() -> None:
    calls = []

    class Probe(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append((tuple(x.shape), x.dtype, torch.is_inference_mode_enabled()))
            return x

    row = run_case(torch_module_case("probe", Probe(), 2, 8), 1, 2)
    assert calls == [((2, 3, 8, 8), torch.float32, True)] * 3
    assert row["device"] == "cpu" and row["precision"] == "fp32"

    calls.clear()
    run_case(torch_module_case("frames", Probe, 1, 8, TorchInput(frames=True)), 0, 1)  # a factory is built in setup
    assert calls == [((1, 8, 8, 3), torch.uint8, True)]


def test_torch_module_case_wrap_and_errors() -> None:
    wrapped = []
    case = torch_module_case("w", torch.nn.Identity(), 1, 4, wrap=lambda net, x: lambda: wrapped.append(x.shape))
    run_case(case, 0, 2)
    assert wrapped == [torch.Size([1, 3, 4, 4])] * 2
    with pytest.raises(ValueError, match="fp16 convolutions are not supported on the CPU"):
        torch_module_case("x", torch.nn.Identity(), 1, 4, TorchInput(precision="fp16"))
    with pytest.raises(ValueError, match="precision must be one of"):
        torch_module_case("x", torch.nn.Identity(), 1, 4, TorchInput(precision="int4"))


def test_peer_case_builds_in_setup() -> None:
    case = peer_case("patchcore-wrn50", 1, 32, bank_size=8)
    assert case.name == "patchcore-wrn50" and case.protocol == "paper"
    assert run_case(case, 0, 1)["images_per_s"] > 0
    with pytest.raises(ValueError, match="unknown peer 'padim'"):
        peer_case("padim", 1)


def relu_model_bytes() -> bytes:
    x = helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", "size", "size", 3])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", "size", "size", 3])
    nodes = [helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT), helper.make_node("Relu", ["f"], ["out"])]
    graph = helper.make_graph(nodes, "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()


def ort_session_case(name: str, model, batch: int, image_size: int | None = None, **options) -> BenchCase:
    """A paper case of ONNX Runtime on the bare graph (``graph_case``) with these backend options."""
    return graph_case("onnxruntime", name, model, batch, BackendOptions(**options), image_size=image_size)


def test_ort_session_case(tmp_path: Path) -> None:
    path = tmp_path / "model.fp16.onnx"
    path.write_bytes(relu_model_bytes())
    case = ort_session_case("ort", path, 2, image_size=16, threads=1)
    assert case.precision == "fp16" and case.backend == "onnxruntime"
    row = run_case(case, 1, 2)
    assert row["providers"] == ["CPUExecutionProvider"] and row["batch"] == 2
    assert ort_session_case("mem", relu_model_bytes(), 1, image_size=8).precision == "fp32"


def test_ort_session_case_micro_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime as ort

    runs: list[int] = []
    real_run = ort.InferenceSession.run
    monkeypatch.setattr(ort.InferenceSession, "run",
                        lambda self, names, feeds: runs.append(len(feeds["image"])) or real_run(self, names, feeds))
    row = run_case(ort_session_case("ort", relu_model_bytes(), 5, image_size=8, micro_batch=2), 0, 1)
    assert row["micro_batch"] == 2 and row["batch"] == 5
    assert runs == [2, 2, 1]  # one timed call: the batch of 5 as runs of 2, 2 and 1
    assert run_case(ort_session_case("ort", relu_model_bytes(), 2, image_size=8, micro_batch=4), 0, 1)["micro_batch"] == 2
    # The runtime's rule: None is automatic (tiny images: the whole batch fits one run), 0 whole.
    assert run_case(ort_session_case("ort", relu_model_bytes(), 3, image_size=8), 0, 1)["micro_batch"] == 3
    runs.clear()
    assert run_case(ort_session_case("ort", relu_model_bytes(), 5, image_size=8, micro_batch=0), 0, 1)["micro_batch"] == 5
    assert runs == [5]
    runs.clear()
    auto = run_case(ort_session_case("ort", relu_model_bytes(), 5, image_size=256), 0, 1)
    assert auto["micro_batch"] == cpu_micro_batch((256, 256)) == 4 and runs == [4, 1]
    with pytest.raises(ValueError, match="micro_batch must be None"):
        ort_session_case("ort", relu_model_bytes(), 2, micro_batch=-1)


def test_random_feed_shapes_and_errors() -> None:
    feed = random_feed("image", "tensor(uint8)", ["batch", "h", "w", 3], 4, 32)
    assert feed.shape == (4, 32, 32, 3) and feed.dtype == np.uint8
    assert random_feed("x", "tensor(float)", [None, 3, 8, 8], 2, None).shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match="dynamic dimension 'h' at axis 1; pass image_size"):
        random_feed("x", "tensor(float)", ["b", "h"], 1, None)
    with pytest.raises(ValueError, match="cannot make a random input of type tensor\\(string\\)"):
        random_feed("x", "tensor(string)", [1], 1, None)


def test_precision_from_name() -> None:
    assert precision_from_name("exports/model.int8.onnx") == "int8"
    assert precision_from_name("model.fp16.engine") == "fp16"
    assert precision_from_name("custom.onnx") == "fp32"


@dataclass
class FakeResult:
    timings: dict


@dataclass
class FakeDetector:
    """Mimics mmad_edge.runtime Detector: per-frame shares of the batch's stage times."""

    path: str
    kwargs: dict
    seen: list = field(default_factory=list)
    closed: bool = False

    class backend:  # noqa: N801 - attribute shaped like the runtime's backend object
        name = "tensorrt"

    class info:  # noqa: N801
        precision = "int8"

    def predict(self, frames: list) -> list:
        self.seen.append(len(frames))
        share = {"preprocess": 1.0 / len(frames), "inference": 8.0 / len(frames), "postprocess": 3.0 / len(frames)}
        return [FakeResult(dict(share)) for _ in frames]

    def close(self) -> None:
        self.closed = True


def test_e2e_detector_case_with_fake_detector() -> None:
    made: list[FakeDetector] = []

    def loader(path: str, **kwargs: object) -> FakeDetector:
        made.append(FakeDetector(path, kwargs))
        return made[-1]

    frames = [np.zeros((20, 30, 3), np.uint8), np.ones((10, 10, 3), np.uint8)]
    case = e2e_detector_case("exports/model.fp16.onnx", 4, frames, loader=loader, backend="auto")
    assert (case.name, case.backend, case.precision, case.protocol) == ("model.fp16", "onnxruntime", "fp16", "e2e")
    row = run_case(case, warmup=1, iters=3)
    (detector,) = made
    assert detector.kwargs == {"backend": "auto"}
    assert detector.seen == [4, 4, 4, 4]
    assert detector.closed
    assert row["backend"] == "tensorrt" and row["precision"] == "int8"  # what the loaded detector reports
    assert row["stages"] == pytest.approx({"preprocess": 1.0, "inference": 8.0, "postprocess": 3.0})
    build_report([row])


def test_e2e_detector_case_argument_errors() -> None:
    with pytest.raises(ValueError, match="no frames to run"):
        e2e_detector_case("m.onnx", 1, [])
    with pytest.raises(ValueError, match="batch must be >= 1"):
        e2e_detector_case("m.onnx", 0, [np.zeros((4, 4, 3), np.uint8)])


def contract_onnx(path: Path, size: int = 16) -> Path:
    """A stand-in artifact honouring docs/contracts.md: uint8 NHWC image -> anomaly_map, score."""
    image = helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", size, size, 3])
    amap = helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, ["batch", size, size])
    score = helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"])
    nodes = [
        helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["f"], ["anomaly_map"], axes=[3], keepdims=0),
        helper.make_node("ReduceMax", ["anomaly_map"], ["score"], axes=[1, 2], keepdims=0),
    ]
    model = helper.make_model(helper.make_graph(nodes, "stand_in", [image], [amap, score]),
                              opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    metadata = {"schema_version": 1, "precision": "fp32", "input": {"height": size, "width": size},
                "batch": {"min": 1, "max": 4}, "statistics": None}
    helper.set_model_props(model, {"mmad_edge.metadata": json.dumps(metadata)})
    onnx.save(model, path)
    return path


def test_e2e_detector_case_with_the_real_runtime(tmp_path: Path) -> None:
    pytest.importorskip("mmad_edge.runtime.detector")
    path = contract_onnx(tmp_path / "model.fp32.onnx")
    frames = [np.full((24, 40, 3), 7, np.uint8)]
    case = e2e_detector_case(path, 2, frames, backend="onnxruntime", providers=["CPUExecutionProvider"])
    row = run_case(case, warmup=1, iters=2)
    assert (row["backend"], row["precision"], row["batch"]) == ("onnxruntime", "fp32", 2)
    assert {"preprocess", "inference", "postprocess"} <= set(row["stages"])
    assert all(ms > 0 for ms in row["stages"].values())
    assert 0 < row["min_ms"] <= row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
    # The stages are parts of one call: together they fit within its mean time.
    assert sum(row["stages"].values()) <= row["mean_ms"] * 1.05
    assert row["images_per_s"] == pytest.approx(2 * 1000.0 / row["mean_ms"])
