"""Run an exported ONNX artifact with ONNX Runtime (TensorRT / CUDA provider when present, else CPU)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from .errors import ArtifactError, BackendUnavailableError
from .metadata import METADATA_FILE, METADATA_KEY, ArtifactInfo, parse_metadata, read_metadata_file, reconcile

INPUT_NAME = "image"
OUTPUT_NAMES = ("anomaly_map", "score")
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
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


def open_session(path: "str | os.PathLike[str]", options: Any = None, providers: Optional[Sequence[Any]] = None) -> Any:
    """An InferenceSession, or an ArtifactError of one line naming the file (also for the bench).

    onnxruntime raises several private exception types with multi-line texts; this keeps the
    first line and drops its ``[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from ...``
    preamble.
    """
    ort = _import_onnxruntime()
    try:
        return ort.InferenceSession(os.fspath(path), options, providers=list(providers or ["CPUExecutionProvider"]))
    except Exception as exc:  # noqa: BLE001 -- onnxruntime's exception types are private
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        reason = reason.split(" failed:", 1)[-1].strip() or reason
        raise ArtifactError(
            f"{path}: not a loadable ONNX model ({reason}); pass a model.<precision>.onnx written by mmad-edge export"
        ) from None


def runs_on_gpu(providers: Optional[Sequence[Any]] = None) -> bool:
    """True when ``providers`` (default: what this onnxruntime build offers) include a GPU one."""
    if providers is None:
        try:
            providers = _import_onnxruntime().get_available_providers()
        except BackendUnavailableError:
            return False
    names = [p[0] if isinstance(p, (tuple, list)) else p for p in providers]
    return any(name in GPU_PROVIDERS for name in names)


def default_providers(available: Sequence[str], cache_dir: Path) -> List[Any]:
    """TensorRT EP (engine cache next to the model), then CUDA EP, then CPU: whichever exist."""
    providers: List[Any] = []
    if "TensorrtExecutionProvider" in available:
        options = {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache_dir)}
        providers.append(("TensorrtExecutionProvider", options))
    if "CUDAExecutionProvider" in available:
        providers.append("CUDAExecutionProvider")
    providers.append("CPUExecutionProvider")
    return providers


def cpu_micro_batch(image_size: Tuple[int, int]) -> int:
    """Images per CPU run for this input size (at least 1): ``CPU_PIXELS_PER_RUN`` worth."""
    height, width = image_size
    return max(1, CPU_PIXELS_PER_RUN // (int(height) * int(width)))


def check_micro_batch(micro_batch: Optional[int]) -> None:
    """None (automatic), 0 (one run per batch) or a positive count; anything else is refused."""
    if micro_batch is not None and (isinstance(micro_batch, bool) or not isinstance(micro_batch, int) or micro_batch < 0):
        raise ValueError(f"micro_batch must be None (automatic), 0 (whole batch) or a positive int, got {micro_batch!r}")


def resolve_micro_batch(requested: Optional[int], image_size: Tuple[int, int], on_cpu: bool = True) -> Optional[int]:
    """Images per run for a ``micro_batch`` request, None meaning whole batches: None (automatic)
    gives ``cpu_micro_batch`` on the CPU and whole batches elsewhere, 0 whole batches, n >= 1 n.
    Anything else is refused (``check_micro_batch``)."""
    check_micro_batch(requested)
    if requested is None:
        return cpu_micro_batch(image_size) if on_cpu else None
    return requested or None


def read_onnx_info(path: "str | os.PathLike[str]", session: Any = None) -> ArtifactInfo:
    """The graph's embedded metadata, reconciled with a metadata.json beside it (``reconcile``).

    Without ``session`` a session with graph optimisation off is opened just to read it, which is
    cheap: the bench lists artifacts this way before it times them.
    """
    path = Path(path)
    if session is None:
        ort = _import_onnxruntime()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = open_session(path, options)
    text = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    sibling = path.parent / METADATA_FILE
    beside = read_metadata_file(sibling) if sibling.is_file() else None
    if text is None:
        if beside is None:
            raise ArtifactError(
                f"{path}: no '{METADATA_KEY}' metadata and no {METADATA_FILE} beside it; export with mmad-edge export"
            )
        return beside
    embedded = parse_metadata(text, f"{path} ({METADATA_KEY})")
    return embedded if beside is None else reconcile(embedded, beside, str(path))


class OnnxRuntimeBackend:
    """One InferenceSession; batch limits from the graph (fixed dim) or the metadata profile."""

    name = "onnxruntime"

    def __init__(
        self,
        path: "str | os.PathLike[str]",
        providers: Optional[Sequence[Any]] = None,
        threads: Optional[int] = None,
        micro_batch: Optional[int] = None,
    ) -> None:
        """``threads``: ONNX Runtime intra-op threads (default: its own choice, all cores).
        ``micro_batch``: images per run of a larger batch; None picks ``cpu_micro_batch`` when
        the session runs on the CPU only (whole batches on a GPU provider), 0 always runs the
        whole batch. Graphs with a fixed batch always run whole."""
        check_micro_batch(micro_batch)
        ort = _import_onnxruntime()
        self.path = Path(path)
        if not self.path.is_file():
            raise ArtifactError(f"{self.path}: no such ONNX file; export one with mmad-edge export")
        if providers is None:
            providers = default_providers(ort.get_available_providers(), self.path.parent / "ort_trt_cache")
        options = ort.SessionOptions()
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be at least 1, got {threads}")
            options.intra_op_num_threads = int(threads)
        self._session = open_session(self.path, options, providers)
        self.providers = self._session.get_providers()
        self.info = read_onnx_info(self.path, self._session)
        self._check_io()
        fixed = self.batch_min == self.batch_max
        self.micro_batch = None if fixed else resolve_micro_batch(micro_batch, self.image_size, not runs_on_gpu(self.providers))

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
        height, width = self.image_size
        expected = {"anomaly_map": ["B", height, width], "score": ["B"]}
        for output in self._session.get_outputs():
            want = expected.get(output.name)
            if want is None:
                continue
            shape = list(output.shape)
            fits = len(shape) == len(want) and all(not isinstance(d, int) or not isinstance(w, int) or d == w
                                                   for d, w in zip(shape, want))
            if output.type != "tensor(float)" or not fits:
                raise ArtifactError(
                    f"{self.path}: output '{output.name}' is {output.type} {shape}, expected tensor(float) {want}; "
                    "export with mmad-edge export"
                )

    def run(self, images: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
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
