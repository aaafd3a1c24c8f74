"""Each e2e row's fidelity to ONNX Runtime FP32 on the same frames: how much a faster row costs.

The reference is the FP32 artifact on the reference backend (ONNX Runtime) kept to the CPU, run once per bench on
``ACCURACY_FRAMES`` seeded random frames; every MiniMaxAD e2e row runs the same frames through
its loaded detector (outside the timed calls) and records ``runtime.compare.error_metrics``'s
``map_relative``, ``score_relative`` and ``spearman`` as ``accuracy_vs_ort_fp32``. With random
weights the numbers say how faithfully a backend / precision computes the graph, not how well it
detects.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mmad_edge.export.device_verification import score_frames
from mmad_edge.runtime.backends import backend_class, reference
from mmad_edge.runtime.backends.base import BackendOptions
from mmad_edge.runtime.monitor.compare import error_metrics

ACCURACY_FRAMES = 16
KEPT = ("map_relative", "score_relative", "spearman")
REFERENCE = "onnx-fp32 (ONNX Runtime CPU)"


def accuracy_frames(size: int, count: int = ACCURACY_FRAMES) -> np.ndarray:
    """``count`` seeded random uint8 BGR frames at the model's size."""
    return np.random.default_rng(1).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def detector_outputs(detector: Any, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(maps, scores) of a loaded ``Detector`` on model-size frames (``device_verify.score_frames``)."""
    scored = score_frames(detector, frames, len(frames), None, "")
    return scored.maps, scored.scores.astype(np.float32)


def accuracy_probe(fp32_onnx: Path | None, size: int) -> Callable[[Any], dict[str, Any]] | None:
    """A function of a loaded detector giving its ``accuracy_vs_ort_fp32`` row field, or None
    without an FP32 artifact to compare with. The reference runs on first use, then is kept."""
    if fp32_onnx is None:
        return None
    frames = accuracy_frames(size)
    computed: dict[str, Any] = {}

    def probe(detector: Any) -> dict[str, Any]:
        if "outputs" not in computed:
            from mmad_edge.runtime.detector import Detector

            name = reference().name
            with Detector.load(fp32_onnx, name, backend_class(name).on_cpu(BackendOptions())) as cpu:
                computed["outputs"] = detector_outputs(cpu, frames)
        metrics = error_metrics(computed["outputs"], detector_outputs(detector, frames))
        return {"accuracy_vs_ort_fp32": {"reference": REFERENCE, "frames": len(frames),
                                         **{key: metrics[key] for key in KEPT}}}

    return probe
