"""TensorRT backend logic with fakes (no GPU here): compat checks, buffers, graphs, splitting.

The fake engine computes the stand-in model (channel mean / 255, top-k mean) on "device"
memory that the fake CUDA layer copies to and from, so data flow through the pinned buffers,
graph capture and replay is checked with real numbers.
"""

from __future__ import annotations

import ctypes
import json
import types
from pathlib import Path

import numpy as np
import pytest
from runtime_fixtures import reference, standin_metadata, top_k, write_export_dir

from mmad_edge.runtime import ArtifactError, BackendUnavailableError, Detector
from mmad_edge.runtime.artifact.metadata import load_contract
from mmad_edge.runtime.backends.base import BackendOptions
from mmad_edge.runtime.backends.cuda_memory import CudaRuntimeMemory, GpuInfo, open_cuda
from mmad_edge.runtime.backends.tensorrt import TensorRTBackend, engine_problem

SIZE = 32
ENGINE_BYTES = b"FAKE-ENGINE"


class FakeCuda:
    """Device memory as numpy byte arrays; capture records operations, launch replays them."""

    def __init__(self, gpu=GpuInfo("Orin", "8.7"), capture_ok: bool = True) -> None:
        self.gpu = gpu
        self.stream_handle = 7
        self.device = {}
        self.recording = None
        self.capture_ok = capture_ok
        self.launches = self.captures = self.released = 0
        self.closed = False

    def host_array(self, shape, dtype):
        return np.zeros(shape, dtype)

    def device_buffer(self, nbytes):
        self.device[len(self.device) + 1] = np.zeros(nbytes, np.uint8)
        return len(self.device)

    def submit(self, op):
        if self.recording is not None:
            self.recording.append(op)
        else:
            op()

    def copy_to_device(self, dst, src):
        def op():
            self.device[dst][: src.nbytes] = np.ascontiguousarray(src).view(np.uint8).ravel()

        self.submit(op)

    def copy_to_host(self, dst, src):
        def op():
            dst.reshape(-1).view(np.uint8)[:] = self.device[src][: dst.nbytes]

        self.submit(op)

    def synchronize(self):
        assert self.recording is None

    def begin_capture(self):
        self.recording = []

    def end_capture(self):
        graph, self.recording = self.recording, None
        self.captures += 1
        return graph if self.capture_ok else None

    def launch(self, graph):
        self.launches += 1
        for op in graph:
            op()

    def release_graph(self, graph):
        self.released += 1

    def close(self):
        self.closed = True


class FakeContext:
    def __init__(self, engine, cuda):
        self.engine, self.cuda, self.addresses, self.shape, self.executions = engine, cuda, {}, None, 0

    def set_input_shape(self, name, shape):
        self.shape = shape
        return True

    def set_tensor_address(self, name, pointer):
        self.addresses[name] = pointer

    def execute_async_v3(self, stream):
        assert stream == self.cuda.stream_handle
        batch = self.shape[0]

        def op():
            self.executions += 1
            raw = self.cuda.device[self.addresses["image"]][: batch * SIZE * SIZE * 3]
            images = raw.reshape(batch, SIZE, SIZE, 3)
            maps = images.astype(np.float32).mean(axis=3) * np.float32(1 / 255)
            scores = np.sort(maps.reshape(batch, -1), axis=1)[:, ::-1][:, : top_k(SIZE)].mean(axis=1).astype(np.float32)
            self.cuda.device[self.addresses["anomaly_map"]][: maps.nbytes] = maps.view(np.uint8).ravel()
            self.cuda.device[self.addresses["score"]][: scores.nbytes] = scores.view(np.uint8).ravel()

        self.cuda.submit(op)
        return True


def fake_trt(cuda, batch=(1, 4), version="10.3.0.26"):
    """A module-like namespace with just the TensorRT API the backend calls."""
    io_mode = types.SimpleNamespace(INPUT="in", OUTPUT="out")
    dtypes = types.SimpleNamespace(UINT8="u8", FLOAT="f32")
    shapes = {"image": (SIZE, SIZE, 3), "anomaly_map": (SIZE, SIZE), "score": ()}
    dynamic = batch[0] != batch[1]

    class Engine:
        num_io_tensors = 3

        def get_tensor_name(self, index):
            return ("image", "anomaly_map", "score")[index]

        def get_tensor_mode(self, name):
            return io_mode.INPUT if name == "image" else io_mode.OUTPUT

        def get_tensor_dtype(self, name):
            return dtypes.UINT8 if name == "image" else dtypes.FLOAT

        def get_tensor_shape(self, name):
            return (-1 if dynamic else batch[0], *shapes[name])

        def get_tensor_profile_shape(self, name, profile):
            return [(b, *shapes[name]) for b in (batch[0], batch[0], batch[1])]

        def create_execution_context(self):
            self.context = FakeContext(self, cuda)
            return self.context

    class Runtime:
        created = []

        def __init__(self, logger):
            self.engine_host_code_allowed = False
            Runtime.created.append(self)

        def deserialize_cuda_engine(self, data):
            return Engine() if data == ENGINE_BYTES else None

    class Logger:
        WARNING = 2

        def __init__(self, level):
            self.level = level

    return types.SimpleNamespace(
        __version__=version,
        Runtime=Runtime,
        Logger=Logger,
        TensorIOMode=io_mode,
        DataType=dtypes,
        nptype=lambda d: np.uint8 if d == "u8" else np.float32,
    )


def load_trt(engine: Path, **fakes) -> TensorRTBackend:
    """The TensorRT backend on ``engine`` with its sidecar read the way Detector.load reads it."""
    return TensorRTBackend(engine, load_contract(engine), BackendOptions(), **fakes)


def write_engine(folder: Path, tensorrt=None, batch=(1, 4), precision="fp16", data=ENGINE_BYTES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    engine = folder / f"model.{precision}.engine"
    engine.write_bytes(data)
    meta = standin_metadata(SIZE, batch[0] if batch[0] == batch[1] else "dynamic", max_batch=batch[1], precision=precision)
    meta["tensorrt"] = tensorrt or {"version": "10.3.0", "gpu": "Orin", "compute_capability": "8.7", "version_compatible": False}
    (folder / f"{engine.name}.json").write_text(json.dumps(meta))
    return engine


def frames(count, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (40 + 3 * i, 50, 3), dtype=np.uint8) for i in range(count)]


def test_engine_results_splitting_and_graph_replay(tmp_path):
    cuda = FakeCuda()
    backend = load_trt(write_engine(tmp_path), trt=fake_trt(cuda), cuda=cuda)
    assert (backend.batch_min, backend.batch_max, backend.image_size) == (1, 4, (SIZE, SIZE))
    with Detector(backend) as det:
        batch = frames(10)
        results = det.predict(batch)  # 4 + 4 + 2
        for frame, result in zip(batch, results):
            expected_map, expected_score = reference(det_resize(frame))
            np.testing.assert_allclose(result.anomaly_map, expected_map, rtol=1e-6)
            assert result.score == pytest.approx(expected_score, rel=1e-6)
        # batch 4 ran plain then was captured and replayed; the switch to 2 dropped the graph
        assert cuda.captures == 1 and cuda.launches == 1 and cuda.released == 1
        first = det(batch[0]).score  # new shape (1): plain warm-up run
        again = [det(f).score for f in batch[:3]]  # capture + replay, then replays
        assert cuda.captures == 2 and cuda.launches == 4 and again[0] == first
        assert again == [r.score for r in results[:3]]  # replay reads the new frame's pixels
    assert cuda.closed


def det_resize(frame):
    from mmad_edge.runtime.preprocess import resize_frame

    return resize_frame(frame, SIZE)


def test_failed_capture_falls_back_to_plain_runs(tmp_path, capsys):
    cuda = FakeCuda(capture_ok=False)
    backend = load_trt(write_engine(tmp_path), trt=fake_trt(cuda), cuda=cuda)
    with Detector(backend) as det:
        scores = [det(f).score for f in frames(4)]
    assert cuda.captures == 1 and cuda.launches == 0
    assert scores == [pytest.approx(reference(det_resize(f))[1], rel=1e-6) for f in frames(4)]
    assert "CUDA graph capture failed" in capsys.readouterr().err


def test_fixed_batch_engine_pads_small_batches(tmp_path):
    cuda = FakeCuda()
    backend = load_trt(write_engine(tmp_path, batch=(4, 4)), trt=fake_trt(cuda, batch=(4, 4)), cuda=cuda)
    with Detector(backend) as det:
        results = det.predict(frames(5))
        assert len(results) == 5 and backend._context.shape[0] == 4


def test_version_mismatch_names_both_and_the_rebuild_command(tmp_path):
    cuda = FakeCuda(gpu=GpuInfo("NVIDIA H200", "9.0"))
    engine = write_engine(tmp_path / "exp")
    with pytest.raises(ArtifactError) as info:
        load_trt(engine, trt=fake_trt(cuda, version="10.7.0.23"), cuda=cuda)
    message = str(info.value)
    assert "\n" not in message
    for part in ("TensorRT 10.3.0", "Orin", "sm 8.7", "TensorRT 10.7.0.23", "NVIDIA H200", "sm 9.0"):
        assert part in message
    assert f"mmad-edge build-engine {tmp_path / 'exp' / 'model.fp16.onnx'}" in message
    assert cuda.closed  # nothing left allocated after a failed load


def test_version_compatible_engine_skips_the_version_check(tmp_path):
    cuda = FakeCuda()
    section = {"version": "10.3.0", "gpu": "Orin", "compute_capability": "8.7", "version_compatible": True}
    trt = fake_trt(cuda, version="11.4.0.106")
    load_trt(write_engine(tmp_path, tensorrt=section), trt=trt, cuda=cuda).close()
    assert trt.Runtime.created[-1].engine_host_code_allowed is True
    cuda = FakeCuda(gpu=GpuInfo("Orin", "8.6"))
    with pytest.raises(ArtifactError, match="sm 8.6"):
        load_trt(write_engine(tmp_path, tensorrt=section), trt=fake_trt(cuda), cuda=cuda)


def test_sidecar_and_engine_problems(tmp_path):
    cuda = FakeCuda()
    engine = write_engine(tmp_path, data=b"corrupt")
    with pytest.raises(ArtifactError, match="could not deserialise"):
        load_trt(engine, trt=fake_trt(cuda), cuda=cuda)
    contract = load_contract(engine)
    (tmp_path / "model.fp16.engine.json").unlink()
    with pytest.raises(ArtifactError, match="cannot read metadata"):
        load_trt(engine, trt=fake_trt(cuda), cuda=cuda)
    with pytest.raises(ArtifactError, match="no such engine file"):
        TensorRTBackend(tmp_path / "nope.engine", contract, BackendOptions(), trt=fake_trt(cuda), cuda=cuda)


def _has_gpu() -> bool:
    try:
        from cuda.bindings import runtime
    except ImportError:
        return False
    err, count = runtime.cudaGetDeviceCount()
    return int(err) == 0 and count > 0


@pytest.mark.skipif(_has_gpu(), reason="checks the no-driver path")
def test_no_gpu_gives_one_line_error_and_auto_falls_back_to_onnx(tmp_path, capsys):
    folder = write_export_dir(tmp_path / "exp", SIZE)
    engine = write_engine(folder)
    for call in (open_cuda, lambda: Detector.load(engine)):
        with pytest.raises(BackendUnavailableError) as info:
            call()
        message = str(info.value)
        assert message.startswith("TensorRT backend needs an NVIDIA GPU with a driver: ")
        assert message.endswith("use the .onnx artifact with backend='onnxruntime'") and "\n" not in message
    assert engine_problem(engine).startswith("TensorRT backend needs an NVIDIA GPU")
    with Detector.load(folder) as det:
        assert det.backend.path.suffix == ".onnx"  # ONNX Runtime, or OpenVINO on a CPU kind where it ranks higher
    assert "skipping model.fp16.engine: TensorRT backend needs an NVIDIA GPU" in capsys.readouterr().err
    with pytest.raises(ArtifactError, match="needs an NVIDIA GPU"):
        Detector.load(folder, backend="tensorrt")


class FakeCudart:
    """cuda-python's runtime API shape: (err, value) tuples, host memory via ctypes buffers."""

    cudaStreamNonBlocking = 1
    cudaMemcpyKind = types.SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)
    cudaStreamCaptureMode = types.SimpleNamespace(cudaStreamCaptureModeThreadLocal=1)

    def __init__(self):
        self.buffers, self.freed = {}, []

    def _alloc(self, nbytes):
        buffer = ctypes.create_string_buffer(nbytes)
        self.buffers[ctypes.addressof(buffer)] = buffer
        return 0, ctypes.addressof(buffer)

    def cudaSetDevice(self, device):
        return (0,)

    def cudaGetDeviceProperties(self, device):
        return 0, types.SimpleNamespace(name=b"Orin\x00\x00", major=8, minor=7)

    def cudaStreamCreateWithFlags(self, flags):
        return 0, 99

    cudaMallocHost = cudaMalloc = _alloc

    def cudaMemcpyAsync(self, dst, src, count, kind, stream):
        ctypes.memmove(dst, src, count)
        return (0,)

    def cudaStreamSynchronize(self, stream):
        return (0,)

    def cudaStreamBeginCapture(self, stream, mode):
        return (35,)

    def cudaGetErrorString(self, err):
        return 0, b"CUDA driver version is insufficient for CUDA runtime version"

    def cudaFree(self, pointer):
        self.freed.append(pointer)
        return (0,)

    cudaFreeHost = cudaFree

    def cudaStreamDestroy(self, stream):
        self.freed.append(stream)
        return (0,)


def test_cuda_python_memory_round_trip_and_cleanup():
    rt = FakeCudart()
    memory = CudaRuntimeMemory(cudart=rt)
    assert memory.gpu == GpuInfo("Orin", "8.7") and memory.stream_handle == 99
    host = memory.host_array((2, 3), np.float32)
    host[:] = np.arange(6, dtype=np.float32).reshape(2, 3)
    device = memory.device_buffer(host.nbytes)
    memory.copy_to_device(device, host)
    back = memory.host_array((2, 3), np.float32)
    memory.copy_to_host(back, device)
    np.testing.assert_array_equal(back, host)
    with pytest.raises(RuntimeError, match="cudaStreamBeginCapture failed: CUDA driver version is insufficient"):
        memory.begin_capture()
    memory.close()
    memory.close()
    assert sorted(rt.freed) == sorted([*rt.buffers, 99])
