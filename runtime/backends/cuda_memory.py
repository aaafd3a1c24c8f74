"""The few CUDA calls the TensorRT backend needs, behind one small interface.

Two implementations: cuda-python (``cuda.bindings.runtime``, or the older ``cuda.cudart``)
and pycuda (often what a Jetson image already has). Both give pinned host arrays, device
buffers, one non-default stream and async copies; cuda-python also captures CUDA graphs.
Everything allocated is freed by ``close()``.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..errors import BackendUnavailableError

NO_GPU_HINT = "use the .onnx artifact with backend='onnxruntime'"


@dataclass(frozen=True)
class GpuInfo:
    """Name and compute capability ("8.7") of the GPU the engine will run on."""

    name: str
    compute_capability: str


class CudaMemory(Protocol):
    """Pinned host memory, device memory, one stream, async copies and graph replay."""

    gpu: GpuInfo
    stream_handle: int

    def host_array(self, shape: Sequence[int], dtype: np.dtype[Any] | type) -> np.ndarray: ...

    def device_buffer(self, nbytes: int) -> int: ...

    def copy_to_device(self, dst: int, src: np.ndarray) -> None: ...

    def copy_to_host(self, dst: np.ndarray, src: int) -> None: ...

    def synchronize(self) -> None: ...

    def begin_capture(self) -> None: ...

    def end_capture(self) -> object | None: ...

    def launch(self, graph: object) -> None: ...

    def release_graph(self, graph: object) -> None: ...

    def close(self) -> None: ...


class CudaCallError(RuntimeError):
    """A CUDA runtime call that returned an error code."""


def _import_cudart() -> Any:
    try:
        from cuda.bindings import runtime
    except ImportError:
        from cuda import cudart as runtime  # cuda-python < 12.6 layout
    return runtime


def _gpu_of(props: Any) -> GpuInfo:
    """GpuInfo from cudaDeviceProp (its name is a NUL-padded byte string)."""
    name = props.name.split(b"\0", 1)[0].decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    return GpuInfo(name.strip(), f"{props.major}.{props.minor}")


def query_gpu(device: int = 0) -> GpuInfo:
    """Name and compute capability of CUDA ``device`` via cuda-python, allocating nothing.

    The project's one GPU query (the engine builder and the TensorRT backend both use it).
    Raises ImportError without cuda-python and CudaCallError when no GPU is usable.
    """
    rt = _import_cudart()
    error, count = rt.cudaGetDeviceCount()
    if error != rt.cudaError_t.cudaSuccess or not count:
        reason = getattr(error, "name", str(error)) if error != rt.cudaError_t.cudaSuccess else "0 devices"
        raise CudaCallError(f"no CUDA GPU is visible here (cudaGetDeviceCount: {reason})")
    error, props = rt.cudaGetDeviceProperties(device)
    if error != rt.cudaError_t.cudaSuccess:
        raise CudaCallError(f"cannot query CUDA device {device} ({getattr(error, 'name', error)})")
    return _gpu_of(props)


class CudaRuntimeMemory:
    """cuda-python implementation (CUDA runtime API)."""

    def __init__(self, device: int = 0, cudart: Any = None) -> None:
        self._rt = cudart if cudart is not None else _import_cudart()
        self._host: list[int] = []
        self._device: list[int] = []
        self._stream: Any = None
        self._call("cudaSetDevice", device)
        self.gpu = _gpu_of(self._call("cudaGetDeviceProperties", device))
        self._stream = self._call("cudaStreamCreateWithFlags", self._rt.cudaStreamNonBlocking)
        self.stream_handle = int(self._stream)

    def _call(self, name: str, *args: Any) -> Any:
        result = getattr(self._rt, name)(*args)
        err, values = result[0], result[1:]
        if int(err) != 0:
            text = self._rt.cudaGetErrorString(err)[1]
            text = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
            raise CudaCallError(f"{name} failed: {text}")
        if not values:
            return None
        return values[0] if len(values) == 1 else values

    def host_array(self, shape: Sequence[int], dtype: np.dtype[Any] | type) -> np.ndarray:
        dtype = np.dtype(dtype)
        count = int(np.prod(shape))
        nbytes = max(count * dtype.itemsize, 1)
        pointer = int(self._call("cudaMallocHost", nbytes))
        self._host.append(pointer)
        raw = (ctypes.c_uint8 * nbytes).from_address(pointer)
        return np.frombuffer(raw, dtype=dtype, count=count).reshape(tuple(shape))

    def device_buffer(self, nbytes: int) -> int:
        pointer = int(self._call("cudaMalloc", max(int(nbytes), 1)))
        self._device.append(pointer)
        return pointer

    def copy_to_device(self, dst: int, src: np.ndarray) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call("cudaMemcpyAsync", dst, src.ctypes.data, src.nbytes, kind, self._stream)

    def copy_to_host(self, dst: np.ndarray, src: int) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call("cudaMemcpyAsync", dst.ctypes.data, src, dst.nbytes, kind, self._stream)

    def synchronize(self) -> None:
        self._call("cudaStreamSynchronize", self._stream)

    def begin_capture(self) -> None:
        mode = self._rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        self._call("cudaStreamBeginCapture", self._stream, mode)

    def end_capture(self) -> object | None:
        """Finish capture and instantiate; None when the captured work cannot be a graph."""
        try:
            graph = self._call("cudaStreamEndCapture", self._stream)
        except CudaCallError:
            return None
        try:
            return self._call("cudaGraphInstantiate", graph, 0)
        except CudaCallError:
            return None
        finally:
            self._rt.cudaGraphDestroy(graph)

    def launch(self, graph: object) -> None:
        self._call("cudaGraphLaunch", graph, self._stream)

    def release_graph(self, graph: object) -> None:
        self._rt.cudaGraphExecDestroy(graph)

    def close(self) -> None:
        """Free every buffer and the stream; safe to call twice."""
        if self._stream is not None:
            self._rt.cudaStreamSynchronize(self._stream)
        for pointer in self._device:
            self._rt.cudaFree(pointer)
        for pointer in self._host:
            self._rt.cudaFreeHost(pointer)
        self._device.clear()
        self._host.clear()
        if self._stream is not None:
            self._rt.cudaStreamDestroy(self._stream)
            self._stream = None


class PycudaMemory:
    """pycuda implementation; runs without CUDA graphs (plain execution every time)."""

    def __init__(self, device: int = 0) -> None:
        import pycuda.driver as driver

        self._driver = driver
        driver.init()
        handle = driver.Device(device)
        self._context = handle.make_context()
        major, minor = handle.compute_capability()
        self.gpu = GpuInfo(handle.name(), f"{major}.{minor}")
        self._stream = driver.Stream()
        self.stream_handle = int(self._stream.handle)
        self._device: list[Any] = []

    def host_array(self, shape: Sequence[int], dtype: np.dtype[Any] | type) -> np.ndarray:
        return self._driver.pagelocked_empty(tuple(shape), np.dtype(dtype))

    def device_buffer(self, nbytes: int) -> int:
        allocation = self._driver.mem_alloc(max(int(nbytes), 1))
        self._device.append(allocation)
        return int(allocation)

    def copy_to_device(self, dst: int, src: np.ndarray) -> None:
        self._driver.memcpy_htod_async(dst, src, self._stream)

    def copy_to_host(self, dst: np.ndarray, src: int) -> None:
        self._driver.memcpy_dtoh_async(dst, src, self._stream)

    def synchronize(self) -> None:
        self._stream.synchronize()

    def begin_capture(self) -> None:
        raise CudaCallError("CUDA graph capture is not wired for pycuda")

    def end_capture(self) -> object | None:
        return None

    def launch(self, graph: object) -> None:
        raise CudaCallError("CUDA graph replay is not wired for pycuda")

    def release_graph(self, graph: object) -> None:
        return None

    def close(self) -> None:
        if self._context is None:
            return
        self._stream.synchronize()
        for allocation in self._device:
            allocation.free()
        self._device.clear()
        self._context.pop()
        self._context = None


def open_cuda(device: int = 0) -> CudaMemory:
    """cuda-python if importable, else pycuda; a one-line error when no GPU/driver is usable."""
    try:
        _import_cudart()
    except ImportError:
        try:
            return PycudaMemory(device)
        except ImportError:
            raise BackendUnavailableError(
                "TensorRT backend needs cuda-python (pip install cuda-python) or pycuda; " + NO_GPU_HINT
            ) from None
        except Exception as exc:  # pycuda raises its own LogicError/RuntimeError types
            raise BackendUnavailableError(
                f"TensorRT backend needs an NVIDIA GPU with a driver: {exc}; {NO_GPU_HINT}"
            ) from None
    try:
        return CudaRuntimeMemory(device)
    except CudaCallError as exc:
        raise BackendUnavailableError(f"TensorRT backend needs an NVIDIA GPU with a driver: {exc}; {NO_GPU_HINT}") from None


def gpu_info(device: int = 0) -> GpuInfo:
    """Name and compute capability of ``device`` (raises BackendUnavailableError without one):
    ``query_gpu``, or through pycuda where cuda-python is missing."""
    try:
        return query_gpu(device)
    except ImportError:
        pass
    except CudaCallError as exc:
        raise BackendUnavailableError(f"TensorRT backend needs an NVIDIA GPU with a driver: {exc}; {NO_GPU_HINT}") from None
    memory = open_cuda(device)
    try:
        return memory.gpu
    finally:
        memory.close()
