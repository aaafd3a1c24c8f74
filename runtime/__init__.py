"""Lean detector runtime: TensorRT or ONNX Runtime, no torch, no onnx.

This package imports nothing else from mmad_edge and must keep running on Python 3.10
(JetPack 6). Public names load on first use, so ``import mmad_edge.runtime`` stays cheap and
never imports onnxruntime or tensorrt (backends load inside ``Detector.load``).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Detector": "detector",
    "Result": "result",
    "run_stream": "loop.run",
    "RunOptions": "loop.options",
    "DetectionStream": "loop.stream",
    "open_source": "loop.sources",
    "SourceSpec": "loop.sources",
    "DriftMonitor": "monitor.drift",
    "DetectorMetrics": "monitor.prometheus",
    "MetricsPortError": "errors",
    "ArtifactError": "errors",
    "BackendUnavailableError": "errors",
    "DetectorClosedError": "errors",
    "SourceError": "errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mmad_edge.runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
