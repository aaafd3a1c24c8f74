"""Run a serialized TensorRT engine (TensorRT 10.3+ / 11.x Python API, or the lean runtime).

An engine only runs on the TensorRT version and GPU it was built for, so the sidecar
``<engine>.json`` is checked before deserialising and a mismatch names the rebuild command.
Buffers are allocated once at the profile's max batch; each fixed batch size is captured into
a CUDA graph after one plain warm-up run and replayed from then on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact.contract import INPUT_NAME, ONNX_SUFFIX, OUTPUT_NAMES, artifact_name, sidecar_path, tensorrt_version
from ..artifact.metadata import ArtifactInfo, read_metadata_file
from ..errors import ArtifactError, BackendUnavailableError
from ..log import notice
from .base import Backend, BackendOptions
from .cuda_memory import NO_GPU_HINT, CudaMemory, GpuInfo, gpu_info, open_cuda


def import_tensorrt() -> Any:
    """The full ``tensorrt`` package if present (JetPack, x86 wheels), else ``tensorrt_lean``."""
    try:
        import tensorrt as trt
    except ImportError:
        try:
            import tensorrt_lean as trt
        except ImportError:
            raise BackendUnavailableError(
                "TensorRT backend needs the tensorrt package (JetPack: python3-libnvinfer; "
                f"x86: pip install tensorrt or tensorrt-lean); or {NO_GPU_HINT}"
            ) from None
    return trt


def rebuild_command(engine: Path, precision: str) -> str:
    """The CLI call that rebuilds ``engine`` on this device from its ONNX sibling."""
    return f"mmad-edge build-engine {engine.parent / artifact_name(precision, ONNX_SUFFIX)}"


def check_engine_compat(engine: Path, info: ArtifactInfo, trt_version: str, gpu: GpuInfo) -> None:
    """Raise ArtifactError when the engine was built for another TensorRT release or GPU."""
    section = info.tensorrt
    built_version = section.get("version")
    if not built_version:
        raise ArtifactError(
            f"{sidecar_path(engine)}: no tensorrt.version recorded; rebuild it here: "
            f"{rebuild_command(engine, info.precision)}"
        )
    built_cc = str(section.get("compute_capability", gpu.compute_capability))
    built_gpu = section.get("gpu", "unknown GPU")
    version_ok = bool(section.get("version_compatible")) or tensorrt_version(built_version) == tensorrt_version(trt_version)
    if not version_ok or built_cc != gpu.compute_capability:
        raise ArtifactError(
            f"{engine.name} was built with TensorRT {built_version} for {built_gpu} (sm {built_cc}) but this "
            f"device has TensorRT {trt_version} on {gpu.name} (sm {gpu.compute_capability}); rebuild it "
            f"here: {rebuild_command(engine, info.precision)}"
        )
    if built_gpu != gpu.name:
        notice(f"{engine.name} was built on {built_gpu}, running on {gpu.name} (same sm {built_cc})")


def engine_problem(engine: str | os.PathLike[str]) -> str | None:
    """Why ``engine`` cannot run here (None when it can): used to pick an artifact from a folder."""
    engine = Path(engine)
    try:
        trt = import_tensorrt()
        info = read_metadata_file(sidecar_path(engine))
        check_engine_compat(engine, info, trt.__version__, gpu_info())
    except (BackendUnavailableError, ArtifactError) as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class TrtOptions:
    """TensorRT's own settings."""

    use_cuda_graph: bool = True  # replay each batch size from a captured CUDA graph


class TensorRTBackend(Backend):
    """One engine, one execution context, one stream, buffers sized for the max batch."""

    name = "tensorrt"
    Options = TrtOptions

    def __init__(
        self, path: Path, contract: ArtifactInfo, options: BackendOptions, *, trt: Any = None,
        cuda: CudaMemory | None = None,
    ) -> None:
        """``trt`` / ``cuda``: the TensorRT module and CUDA memory to use (default: the real ones)."""
        super().__init__(path, contract, options)
        if not self.path.is_file():
            raise ArtifactError(f"{self.path}: no such engine file; build one with mmad-edge build-engine")
        self._trt = trt if trt is not None else import_tensorrt()
        self._cuda = cuda if cuda is not None else open_cuda()
        self._graphs: dict[int, object] = {}
        self._warm: set = set()
        self._use_graph = self.settings.use_cuda_graph
        self._shape_batch = 0
        self._context: Any = None
        self._engine: Any = None
        try:
            check_engine_compat(self.path, self.info, self._trt.__version__, self._cuda.gpu)
            self._engine = self._deserialize()
            self._bind()
        except BaseException:
            self.close()
            raise

    @classmethod
    def library(cls) -> Any:
        return import_tensorrt()

    @classmethod
    def on_gpu(cls, options: BackendOptions) -> bool:
        return True

    @classmethod
    def missing_hint(cls, folder: Path) -> str | None:
        return f"build one with mmad-edge build-engine {folder / artifact_name('fp16', ONNX_SUFFIX)}"

    def describe(self) -> dict[str, Any]:
        """Backend, TensorRT version, GPU and the engine's precision."""
        gpu = self._cuda.gpu if self._cuda is not None else None
        return {"backend": self.name, "library_version": str(self._trt.__version__),
                "device": gpu.name if gpu else None, "precision": self.info.precision,
                "compute_precision": self.info.precision,
                "compute_capability": gpu.compute_capability if gpu else None, "cuda_graphs": self._use_graph}

    def _deserialize(self) -> Any:
        trt = self._trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        if self.info.tensorrt.get("version_compatible"):
            self._runtime.engine_host_code_allowed = True
        engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise ArtifactError(
                f"{self.path}: TensorRT could not deserialise the engine (corrupt, or built for another "
                f"TensorRT/GPU); rebuild it here: {rebuild_command(self.path, self.info.precision)}"
            )
        return engine

    def _bind(self) -> None:
        trt, engine = self._trt, self._engine
        names = {engine.get_tensor_name(i) for i in range(engine.num_io_tensors)}
        missing = [n for n in (INPUT_NAME, *OUTPUT_NAMES) if n not in names]
        if missing or engine.get_tensor_mode(INPUT_NAME) != trt.TensorIOMode.INPUT:
            raise ArtifactError(
                f"{self.path}: engine tensors {sorted(names)} lack {missing or [INPUT_NAME]}; rebuild from the exported ONNX"
            )
        if engine.get_tensor_dtype(INPUT_NAME) != trt.DataType.UINT8:
            raise ArtifactError(f"{self.path}: engine input must be uint8 NHWC; rebuild from the exported ONNX")
        shape = tuple(engine.get_tensor_shape(INPUT_NAME))
        if shape[0] < 0:
            low, _, high = engine.get_tensor_profile_shape(INPUT_NAME, 0)
            self.batch_min, self.batch_max = int(low[0]), int(high[0])
        else:
            self.batch_min = self.batch_max = int(shape[0])
        self.image_size = (int(shape[1]), int(shape[2]))
        if self.image_size != self.info.image_size:
            raise ArtifactError(
                f"{self.path}: engine input {self.image_size} differs from its sidecar {self.info.image_size}; rebuild"
            )
        self._context = engine.create_execution_context()
        self._host: dict[str, np.ndarray] = {}
        self._device: dict[str, int] = {}
        for name in (INPUT_NAME, *OUTPUT_NAMES):
            sample = tuple(int(d) for d in engine.get_tensor_shape(name)[1:])
            if any(d < 0 for d in sample):
                raise ArtifactError(
                    f"{self.path}: tensor {name} has dynamic non-batch dims {sample}; rebuild from the exported ONNX"
                )
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            self._host[name] = self._cuda.host_array((self.batch_max, *sample), dtype)
            self._device[name] = self._cuda.device_buffer(self._host[name].nbytes)
            self._context.set_tensor_address(name, self._device[name])

    def _enqueue(self, batch: int) -> None:
        self._cuda.copy_to_device(self._device[INPUT_NAME], self._host[INPUT_NAME][:batch])
        if not self._context.execute_async_v3(self._cuda.stream_handle):
            raise RuntimeError(f"{self.path.name}: TensorRT execution failed (see the TensorRT log above)")
        for name in OUTPUT_NAMES:
            self._cuda.copy_to_host(self._host[name][:batch], self._device[name])

    def _capture(self, batch: int) -> object | None:
        """Record H2D + execute + D2H for this batch size; None (plain runs) if capture fails."""
        try:
            self._cuda.begin_capture()
        except RuntimeError:
            return None
        try:
            self._enqueue(batch)
        except RuntimeError:
            self._cuda.end_capture()
            return None
        return self._cuda.end_capture()

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Maps (B, S, S) and scores (B,) for a uint8 (B, S, S, 3) batch within the profile."""
        batch = int(images.shape[0])
        if not self.batch_min <= batch <= self.batch_max:
            raise ValueError(f"batch {batch} is outside the engine profile [{self.batch_min}, {self.batch_max}]")
        if batch != self._shape_batch:
            if not self._context.set_input_shape(INPUT_NAME, tuple(images.shape)):
                raise ValueError(f"{self.path.name}: TensorRT rejected input shape {tuple(images.shape)}")
            self._shape_batch = batch
            self._drop_graphs()
        np.copyto(self._host[INPUT_NAME][:batch], images)
        if self._use_graph and batch in self._warm and batch not in self._graphs:
            graph = self._capture(batch)
            if graph is None:
                self._use_graph = False
                notice(f"{self.path.name}: CUDA graph capture failed; running without graphs")
            else:
                self._graphs[batch] = graph
        if batch in self._graphs:
            self._cuda.launch(self._graphs[batch])
        else:
            self._enqueue(batch)
        self._cuda.synchronize()
        self._warm.add(batch)
        return (self._host[OUTPUT_NAMES[0]][:batch].copy(), self._host[OUTPUT_NAMES[1]][:batch].copy())

    def _drop_graphs(self) -> None:
        """A captured graph fixes the input shape, so a shape change invalidates them."""
        for graph in self._graphs.values():
            self._cuda.release_graph(graph)
        self._graphs.clear()
        self._warm.clear()

    def close(self) -> None:
        """Release graphs, context, engine, then device and pinned memory; idempotent."""
        if self._cuda is None:
            return
        self._drop_graphs()
        self._context = None
        self._engine = None
        self._runtime = None
        self._cuda.close()
        self._cuda = None


BACKEND = TensorRTBackend
