"""Does the exported graph compute what the PyTorch model computes? Checked on the same uint8 frames.

The reference is the training-form PyTorch model with its own post-processing (map and score);
the candidate is the ONNX run by ONNX Runtime on the CPU. Errors are relative to the reference:
map: max|a - b| / max|b| over all pixels of all images; score: max over images of |a - b| / |b|.
Score ranking is compared with Spearman's rho and, when labels exist, image AUROC.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import onnx
import torch

from mmad_edge.data.catalog import labelled_split
from mmad_edge.export.checks import Check, default_checks
from mmad_edge.export.onnx_export import numpy_input
from mmad_edge.model.minimaxad import MiniMaxAD
from mmad_edge.runtime.backends.onnxruntime import cpu_session, run_batched
from mmad_edge.runtime.monitor.compare import Outputs, error_metrics


@dataclass
class VerificationResult:
    """Errors and rank agreement of one exported precision against the PyTorch model."""

    precision: str
    images: int
    source: str
    metrics: dict[str, float | None]
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True unless an enforced check failed (a check with no value, e.g. AUROC without labels, is skipped)."""
        return all(c.passed is not False for c in self.checks if c.enforced)

    def to_dict(self) -> dict[str, Any]:
        return {"precision": self.precision, "images": self.images, "source": self.source,
                "passed": self.passed, "metrics": dict(self.metrics), "checks": [c.to_dict() for c in self.checks]}


def generated_frames(count: int, size: int, seed: int = 0) -> np.ndarray:
    """``count`` seeded smooth random textures, uint8 BGR (count, size, size, 3).

    Each is a sum of colour noise octaves upsampled bicubically, so the frames have structure
    at several scales (as real images do) and give the network non-trivial features.
    """
    rng = np.random.default_rng(seed)
    frames = np.empty((count, size, size, 3), dtype=np.uint8)
    for index in range(count):
        image = np.zeros((size, size, 3), dtype=np.float32)
        for octave, weight in ((4, 1.0), (8, 0.5), (16, 0.25), (32, 0.125)):
            noise = rng.standard_normal((octave, octave, 3)).astype(np.float32)
            image += weight * cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
        image = (image - image.min()) / max(float(image.max() - image.min()), 1e-6)
        frames[index] = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return frames


def dataset_frames(
    root: str | os.PathLike[str], layout: str, category: str | None, size: int, max_images: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Test images of a dataset category as model-size uint8 frames, and their 0/1 labels."""
    split = labelled_split(root, layout, category, size, max_images)
    return split.frames, split.labels


@torch.no_grad()
def torch_outputs(model: MiniMaxAD, frames: np.ndarray, batch: int = 8) -> Outputs:
    """The training-form model's map and score (its own post-processing) for uint8 BGR frames."""
    model = model.eval()
    maps, scores = [], []
    for start in range(0, len(frames), batch):
        anomaly_map, score = model(torch.from_numpy(np.ascontiguousarray(frames[start:start + batch])))
        maps.append(anomaly_map.float().numpy())
        scores.append(score.float().numpy())
    return np.concatenate(maps), np.concatenate(scores)


def onnx_outputs(model: onnx.ModelProto | str | os.PathLike[str], frames: np.ndarray, batch: int = 8) -> Outputs:
    """The ONNX graph's map and score on ORT CPU; float-input graphs get normalised frames."""
    session = cpu_session(model)
    input_format = "uint8_bgr_nhwc" if session.get_inputs()[0].type == "tensor(uint8)" else "float_rgb_nchw"
    return run_batched(session, numpy_input(frames, input_format), batch)


def verify_onnx(
    onnx_model: onnx.ModelProto | str | os.PathLike[str],
    model: MiniMaxAD,
    frames: np.ndarray,
    precision: str = "fp32",
    labels: np.ndarray | None = None,
    strict: bool = True,
    source: str = "generated",
    reference: Outputs | None = None,
) -> VerificationResult:
    """Compare an exported graph with ``model`` on ``frames``; pass ``reference`` (``torch_outputs``)
    to reuse the PyTorch run across precisions."""
    reference = reference if reference is not None else torch_outputs(model, frames)
    metrics = error_metrics(reference, onnx_outputs(onnx_model, frames), labels)
    return VerificationResult(precision, len(frames), source, metrics, default_checks(precision, metrics, strict))


def format_results(results: Sequence[VerificationResult]) -> str:
    """A short fixed-width table, one row per precision."""
    columns = ("map_max_abs", "map_relative", "score_relative", "spearman", "auroc_reference", "auroc")
    header = f"{'precision':<9} {'images':>6} " + " ".join(f"{c:>15}" for c in columns) + "  result"
    rows = [header]
    for result in results:
        values = " ".join(f"{_number(result.metrics.get(c)):>15}" for c in columns)
        failed = [c.name for c in result.checks if c.enforced and c.passed is False]
        unchecked = [c.name for c in result.checks if not c.enforced]
        verdict = "FAIL (" + ", ".join(failed) + ")" if failed else "pass"
        if unchecked:
            verdict += " (reported only: " + ", ".join(unchecked) + ")"
        rows.append(f"{result.precision:<9} {result.images:>6} {values}  {verdict}")
    return "\n".join(rows)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}" if abs(value) < 1e-2 else f"{value:.4f}"
