"""The one interface every backend implements: the detector hands it the parsed contract.

A backend reads no metadata itself; ``Detector.load`` reads it once through
``runtime.metadata.load_contract`` and passes the result in, so all backends agree on it.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Dict, Optional, Sequence, Tuple

import numpy as np

from ..artifact.contract import INPUT_DTYPE, INPUT_LAYOUT
from ..artifact.metadata import ArtifactInfo


@dataclass(frozen=True)
class BackendOptions:
    """Per-load settings the detector passes to every backend; a backend ignores what it has no use for."""

    micro_batch: Optional[int] = None  # ONNX Runtime CPU micro-batching (None automatic, 0 whole batches)
    inference_precision: Optional[str] = None  # OpenVINO: "f32" | "bf16" | "f16"; None = backend default
    performance_hint: Optional[str] = None  # "latency" | "throughput"; None = backend default
    cache_dir: Optional[Path] = None  # compiled-model / engine caches
    device: Optional[str] = None  # backend device string, e.g. "CPU", "cuda:0"
    providers: Optional[Sequence[Any]] = None  # ONNX Runtime execution providers (None: best available)
    threads: Optional[int] = None  # CPU intra-op threads (None: the library's choice)
    use_cuda_graph: bool = True  # TensorRT: replay each batch size from a captured CUDA graph


@dataclass(frozen=True)
class InputSpec:
    """What the backend's graph takes: one uint8 NHWC BGR batch within [batch_min, batch_max]."""

    name: str
    image_size: Tuple[int, int]
    batch_min: int
    batch_max: int
    dtype: str = INPUT_DTYPE
    layout: str = INPUT_LAYOUT


class Backend(abc.ABC):
    """One loaded artifact that runs batches of frames."""

    name: ClassVar[str]

    def __init__(self, path: Path, contract: ArtifactInfo, options: BackendOptions) -> None:
        self.path = Path(path)
        self.info = contract

    @property
    @abc.abstractmethod
    def input_spec(self) -> InputSpec:
        """The input the artifact takes (size from the contract, batch limits from the artifact)."""

    @abc.abstractmethod
    def run(self, images: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """uint8 (B, H, W, 3) BGR -> (maps (B, H, W) float32, scores (B,) float32)."""

    @abc.abstractmethod
    def describe(self) -> Dict[str, Any]:
        """{"backend", "library_version", "device", "precision", ...} for summaries and reports."""

    @abc.abstractmethod
    def close(self) -> None:
        """Free sessions and buffers; idempotent."""
