"""Run an exported ONNX artifact with ONNX Runtime (TensorRT / CUDA provider when present, else CPU)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact.contract import INPUT_NAME, OUTPUT_NAMES, output_shapes
from ..artifact.metadata import ArtifactInfo
from ..errors import ArtifactError, BackendUnavailableError, one_line
from .base import Backend, BackendOptions, Feed, GraphRun, option

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
CPU_PROVIDERS = ("CPUExecutionProvider",)
# Input pixels per ONNX Runtime CPU run. A bigger batch runs as consecutive sub-batches of this
# size, so that more of each intermediate tensor stays in the CPU's caches. Measured on a 2-core
# Zen 5 (32 MiB L3), variant n, interleaved in one process: at 256x256, runs of 4 images take
# 48.9 ms/image against 50.6 for one run of 16 (3-10 % over several sessions; INT8 31 vs 34);
# at 128x128 one run of 16 is as good as any split, which this budget gives.
CPU_PIXELS_PER_RUN = 4 * 256 * 256


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise BackendUnavailableError(
            "the ONNX backend needs onnxruntime: pip install onnxruntime (Jetson: the onnxruntime-gpu wheel for your JetPack)"
        ) from None
    return onnxruntime


def open_session(path: str | os.PathLike[str], options: Any = None, providers: Sequence[Any] | None = None) -> Any:
    """An InferenceSession, or an ArtifactError of one line naming the file (also for the bench).

    onnxruntime raises several private exception types with multi-line texts; this keeps the
    first line and drops its ``[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from ...``
    preamble.
    """
    ort = _import_onnxruntime()
    try:
        return ort.InferenceSession(os.fspath(path), options, providers=list(providers or ["CPUExecutionProvider"]))
    except Exception as exc:  # noqa: BLE001 -- onnxruntime's exception types are private
        reason = one_line(exc)
        reason = reason.split(" failed:", 1)[-1].strip() or reason
        raise ArtifactError(
            f"{path}: not a loadable ONNX model ({reason}); pass a model.<precision>.onnx written by mmad-edge export"
        ) from None


def runs_on_gpu(providers: Sequence[Any] | None = None) -> bool:
    """True when ``providers`` (default: what this onnxruntime build offers) include a GPU one."""
    if providers is None:
        try:
            providers = _import_onnxruntime().get_available_providers()
        except BackendUnavailableError:
            return False
    names = [p[0] if isinstance(p, (tuple, list)) else p for p in providers]
    return any(name in GPU_PROVIDERS for name in names)


def default_providers(available: Sequence[str], cache_dir: Path) -> list[Any]:
    """TensorRT EP (engine cache next to the model), then CUDA EP, then CPU: whichever exist."""
    providers: list[Any] = []
    if "TensorrtExecutionProvider" in available:
        options = {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache_dir)}
        providers.append(("TensorrtExecutionProvider", options))
    if "CUDAExecutionProvider" in available:
        providers.append("CUDAExecutionProvider")
    providers.append("CPUExecutionProvider")
    return providers


def cpu_micro_batch(image_size: tuple[int, int]) -> int:
    """Images per CPU run for this input size (at least 1): ``CPU_PIXELS_PER_RUN`` worth."""
    height, width = image_size
    return max(1, CPU_PIXELS_PER_RUN // (int(height) * int(width)))


def check_micro_batch(micro_batch: int | None) -> None:
    """None (automatic), 0 (one run per batch) or a positive count; anything else is refused."""
    if micro_batch is not None and (isinstance(micro_batch, bool) or not isinstance(micro_batch, int) or micro_batch < 0):
        raise ValueError(f"micro_batch must be None (automatic), 0 (whole batch) or a positive int, got {micro_batch!r}")


def resolve_micro_batch(requested: int | None, image_size: tuple[int, int], on_cpu: bool = True) -> int | None:
    """Images per run for a ``micro_batch`` request, None meaning whole batches: None (automatic)
    gives ``cpu_micro_batch`` on the CPU and whole batches elsewhere, 0 whole batches, n >= 1 n.
    Anything else is refused (``check_micro_batch``)."""
    check_micro_batch(requested)
    if requested is None:
        return cpu_micro_batch(image_size) if on_cpu else None
    return requested or None


def cpu_session(model: Any, emulate_qdq: bool = False) -> Any:
    """A CPU session for an in-memory model (an onnx ModelProto) or a file: the reference that
    export verification and INT8 calibration compare against. ``emulate_qdq`` runs Q/DQ as plain ops
    (ORT's QDQ fusions off): the exact fake-quant result TensorRT approximates, and much faster
    than ORT's handling of a TensorRT-style graph (whose conv outputs have no Q to fuse with)."""
    ort = _import_onnxruntime()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if emulate_qdq:
        options.add_session_config_entry("session.disable_quant_qdq", "1")
    source = model.SerializeToString() if hasattr(model, "SerializeToString") else os.fspath(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def fixed_batch(session: Any) -> int | None:
    """The graph's fixed batch size, or None when the batch dim is dynamic."""
    dim = session.get_inputs()[0].shape[0]
    return dim if isinstance(dim, int) else None


def padded_batches(frames: np.ndarray, batch: int, pad: bool) -> Iterator[tuple[np.ndarray, int]]:
    """Chunks of ``batch`` frames and how many of each are real; with ``pad`` the last chunk is
    filled up to ``batch`` by repeating its final frame (what a fixed-batch graph needs)."""
    for start in range(0, len(frames), batch):
        chunk = frames[start:start + batch]
        count = len(chunk)
        if pad and count < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - count, axis=0)])
        yield chunk, count


def run_batched(session: Any, inputs: np.ndarray, batch: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(maps, scores) for all ``inputs`` in chunks of ``batch``; a fixed-batch graph gets its
    batch, the last chunk padded (padding results are dropped)."""
    name = session.get_inputs()[0].name
    fixed = fixed_batch(session)
    maps, scores = [], []
    for chunk, count in padded_batches(inputs, fixed or batch, pad=fixed is not None):
        anomaly_map, score = session.run(list(OUTPUT_NAMES), {name: chunk})
        maps.append(anomaly_map[:count])
        scores.append(score[:count])
    return np.concatenate(maps), np.concatenate(scores)


def session_options(ort: Any, threads: int | None) -> Any:
    """SessionOptions with ``threads`` intra-op threads (None: ONNX Runtime's choice, all cores)."""
    options = ort.SessionOptions()
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        options.intra_op_num_threads = int(threads)
    return options


@dataclass(frozen=True)
class OrtOptions:
    """ONNX Runtime's own settings."""

    providers: Sequence[Any] | None = None  # execution providers (None: best available)
    micro_batch: int | None = option(None, check_micro_batch)  # CPU micro-batching (None automatic, 0 whole)


class OnnxRuntimeBackend(Backend):
    """One InferenceSession; batch limits from the graph (fixed dim) or the metadata profile."""

    name = "onnxruntime"
    Options = OrtOptions

    def __init__(self, path: Path, contract: ArtifactInfo, options: BackendOptions) -> None:
        """``options.threads``: ONNX Runtime intra-op threads (default: its own choice, all cores).
        ``micro_batch``: images per run of a larger batch; None picks ``cpu_micro_batch``
        when the session runs on the CPU only (whole batches on a GPU provider), 0 always runs
        the whole batch. Graphs with a fixed batch always run whole."""
        super().__init__(path, contract, options)
        check_micro_batch(self.settings.micro_batch)
        ort = _import_onnxruntime()
        if not self.path.is_file():
            raise ArtifactError(f"{self.path}: no such ONNX file; export one with mmad-edge export")
        providers = self.settings.providers
        if providers is None:
            cache = options.cache_dir or self.path.parent / "ort_trt_cache"
            providers = default_providers(ort.get_available_providers(), cache)
        self._session = open_session(self.path, session_options(ort, options.threads), providers)
        self.providers = self._session.get_providers()
        self._version = ort.__version__
        self._check_io()
        fixed = self.batch_min == self.batch_max
        on_cpu = not runs_on_gpu(self.providers)
        self.micro_batch = None if fixed else resolve_micro_batch(self.settings.micro_batch, self.image_size, on_cpu)

    @classmethod
    def library(cls) -> Any:
        return _import_onnxruntime()

    @classmethod
    def on_gpu(cls, options: BackendOptions) -> bool:
        return runs_on_gpu(options.settings(OrtOptions).providers)

    @classmethod
    def on_cpu(cls, options: BackendOptions) -> BackendOptions:
        return options.replace(providers=list(CPU_PROVIDERS))

    @classmethod
    def time_graph(cls, graph: Path | bytes, batch: int, options: BackendOptions, feed: Feed,
                   image_size: int | None) -> GraphRun | None:
        """``session.run`` on host arrays, split into ``micro_batch`` runs as the backend splits a
        batch (sizes from ``image_size``, else the two largest per-item dims of the first input);
        a fixed-batch graph runs whole. Facts: the providers and the images per run."""
        settings = options.settings(OrtOptions)
        ort = _import_onnxruntime()
        source = graph if isinstance(graph, bytes) else str(graph)
        session = ort.InferenceSession(source, session_options(ort, options.threads),
                                       providers=list(settings.providers or CPU_PROVIDERS))
        inputs = session.get_inputs()
        feeds = {i.name: feed(i.name, i.type, i.shape) for i in inputs}
        dynamic = all(not isinstance(i.shape[0], int) for i in inputs)
        size = (image_size, image_size) if image_size else tuple(sorted(next(iter(feeds.values())).shape[1:])[-2:])
        on_cpu = not runs_on_gpu(session.get_providers())
        per_run = min(resolve_micro_batch(settings.micro_batch, size, on_cpu) or batch, batch) if dynamic else batch
        chunks = [{name: value[start:start + per_run] for name, value in feeds.items()} for start in range(0, batch, per_run)]
        return (lambda: [session.run(None, chunk) for chunk in chunks]), {"providers": session.get_providers(),
                                                                          "micro_batch": per_run}

    @classmethod
    def bench_settings(cls, options: BackendOptions) -> Mapping[str, Any]:
        micro_batch = options.settings(OrtOptions).micro_batch
        return {"micro_batch": "auto" if micro_batch is None else micro_batch}

    @classmethod
    def bench_machine(cls, options: BackendOptions) -> Mapping[str, Any]:
        return {"ort_intra_op_threads": options.threads, "onnxruntime_providers": list(CPU_PROVIDERS)}

    def describe(self) -> dict[str, Any]:
        """Backend, library version, execution provider in use and the artifact's precision."""
        return {"backend": self.name, "library_version": self._version, "device": self.providers[0],
                "precision": self.info.precision, "compute_precision": self.info.precision,
                "providers": list(self.providers), "micro_batch": self.micro_batch}

    def _check_io(self) -> None:
        inputs = self._session.get_inputs()
        outputs = {o.name for o in self._session.get_outputs()}
        if len(inputs) != 1 or inputs[0].name != INPUT_NAME or not set(OUTPUT_NAMES) <= outputs:
            names = [i.name for i in inputs]
            raise ArtifactError(
                f"{self.path}: expected input '{INPUT_NAME}' and outputs {list(OUTPUT_NAMES)}, got {names} -> "
                f"{sorted(outputs)}; export with mmad-edge export"
            )
        if inputs[0].type != "tensor(uint8)":
            raise ArtifactError(f"{self.path}: input must be uint8 NHWC BGR, got {inputs[0].type}; re-export")
        shape = inputs[0].shape
        self.image_size = self.info.image_size
        self._check_outputs()
        if isinstance(shape[1], int) and isinstance(shape[2], int) and (shape[1], shape[2]) != self.image_size:
            raise ArtifactError(f"{self.path}: input is {shape[1]}x{shape[2]} but metadata says {self.image_size}; re-export")
        if isinstance(shape[0], int):
            self.batch_min = self.batch_max = shape[0]
        else:
            self.batch_min, self.batch_max = 1, self.info.batch_max

    def _check_outputs(self) -> None:
        """float32 ``anomaly_map`` (B, H, W) and ``score`` (B,), the sizes where the graph fixes them."""
        expected = output_shapes(*self.image_size)
        for output in self._session.get_outputs():
            if output.name not in expected:
                continue
            want = expected[output.name]["shape"]
            shape = list(output.shape)
            fits = len(shape) == len(want) and all(not isinstance(d, int) or not isinstance(w, int) or d == w
                                                   for d, w in zip(shape, want))
            if output.type != "tensor(float)" or not fits:
                raise ArtifactError(
                    f"{self.path}: output '{output.name}' is {output.type} {shape}, expected tensor(float) {want}; "
                    "export with mmad-edge export"
                )

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Maps (B, S, S) and scores (B,) for a uint8 (B, S, S, 3) batch (in ``micro_batch`` runs)."""
        step = self.micro_batch or len(images)
        if len(images) <= step:
            maps, scores = self._session.run(list(OUTPUT_NAMES), {INPUT_NAME: images})
            return maps, scores
        parts = [self._session.run(list(OUTPUT_NAMES), {INPUT_NAME: images[i:i + step]})
                 for i in range(0, len(images), step)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def close(self) -> None:
        """Drop the session (ONNX Runtime frees its arenas with it)."""
        self._session = None


BACKEND = OnnxRuntimeBackend
