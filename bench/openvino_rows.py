"""The OpenVINO rows of a bench, beside ONNX Runtime's on the same artifacts and batches.

- ``ov-fp32``: the FP32 artifact, computed in f32 (the plugin's precision set explicitly);
- ``ov-fp32-bf16`` / ``ov-fp32-f16``: the same graph with that inference precision, only where
  the CPU reports the units (else listed as skipped with what the CPU has);
- ``ov-int8``: the INT8 artifact. The TensorRT-form Q/DQ graph runs; the CPU-form QOperator graph
  cannot be read by OpenVINO, so its rows become skips naming the fix.

The FP16 artifact gets no OpenVINO rows: on CPUs the f16 hint on the FP32 graph is that path.
Paper rows compile the paper graph (the float NCHW twin of FP32) with random inputs; e2e rows
run ``Detector.load(backend="openvino")``. Hint: latency at batch 1, throughput (the batch split
over the plugin's infer requests) above, unless one is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from mmad_edge.runtime.backends import REGISTRY
from mmad_edge.runtime.backends.openvino import HINTS, PRECISION_UNITS

from .artifacts import Artifact
from .runner import BenchCase, e2e_detector_case, ov_model_case

BACKEND = "openvino"
HINT_PRECISIONS = tuple(PRECISION_UNITS)  # f32, bf16, f16


@dataclass(frozen=True)
class OvSettings:
    """What the OpenVINO rows run with: threads, inference precision(s) and performance hint."""

    threads: int
    inference_precision: str | None = None  # None: f32 plus every lower precision the CPU has units for
    performance_hint: str | None = None  # None: latency at batch 1, throughput above

    def hint(self, batch: int) -> str:
        return self.performance_hint or ("latency" if batch == 1 else "throughput")


def unavailable() -> str | None:
    """Why OpenVINO rows cannot run here, or None when openvino is installed."""
    if BACKEND in REGISTRY and REGISTRY[BACKEND].available():
        return None
    return "needs openvino: pip install 'mmad-edge[openvino]'"


def row_variants(artifact: Artifact, settings: OvSettings) -> list[tuple[str, str]]:
    """(name suffix, inference precision) of each OpenVINO row of ``artifact``; none for FP16."""
    if artifact.engine or artifact.precision == "fp16":
        return []
    if artifact.precision != "fp32":
        return [("", "f32")]
    asked = (settings.inference_precision,) if settings.inference_precision else HINT_PRECISIONS
    return [("" if precision == "f32" else f"-{precision}", precision) for precision in asked]


def precision_problem(precision: str) -> str | None:
    """Why this CPU cannot compute in ``precision`` (the backend's one-line refusal), or None."""
    from mmad_edge.runtime.backends import openvino as ov_backend

    core = ov_backend.import_openvino().Core()
    try:
        ov_backend.check_inference_precision(precision, ov_backend.cpu_capabilities(core))
    except (ValueError, RuntimeError) as exc:
        return str(exc)
    return None


def ov_detector_loader(threads: int, precision: str, hint: str) -> Callable[[Path], Any]:
    """``Detector.load`` on OpenVINO's CPU plugin with these settings."""

    def load(path: Path) -> Any:
        from mmad_edge.runtime.detector import Detector

        return Detector.load(path, BACKEND, threads=threads, inference_precision=precision, performance_hint=hint)

    return load


def openvino_cases(
    named: Sequence[tuple[Artifact, str]], batch: int, protocol: str, settings: OvSettings,
    frames: Sequence[np.ndarray], probe: Callable[[Any], dict[str, Any]] | None = None,
) -> tuple[list[BenchCase], list[dict[str, Any]]]:
    """The OpenVINO cases of every artifact at one batch and protocol, and the skip entries."""
    cases: list[BenchCase] = []
    skipped: list[dict[str, Any]] = []
    for artifact, base in named:
        for suffix, precision in row_variants(artifact, settings):
            name = base.replace("onnx-", "ov-", 1) + suffix
            problem = precision_problem(precision)
            if problem is not None:
                skipped.append(_skip(name, protocol, problem, batch))
            elif _fits(artifact, batch, protocol, name, skipped):
                cases.append(_case(artifact, name, (batch, protocol), (precision, settings), frames, probe))
    return cases, skipped


def _fits(artifact: Artifact, batch: int, protocol: str, name: str, skipped: list[dict[str, Any]]) -> bool:
    low, high = artifact.batch_range
    if low <= batch <= high:
        return True
    graph = artifact.paper_graph.name if protocol == "paper" else artifact.path.name
    skipped.append(_skip(name, protocol, f"{graph} takes batch {low}..{high}; re-export with --batch 1:{batch}:{batch}",
                         batch))
    return False


def _case(
    artifact: Artifact, name: str, where: tuple[int, str], how: tuple[str, OvSettings],
    frames: Sequence[np.ndarray], probe: Callable[[Any], dict[str, Any]] | None,
) -> BenchCase:
    (batch, protocol), (precision, settings) = where, how
    hint = settings.hint(batch)
    if protocol == "paper":
        knobs = {"precision": artifact.precision, "inference_precision": precision, "hint": hint,
                 "threads": settings.threads}
        case = ov_model_case(name, artifact.paper_graph, batch, knobs, image_size=int(frames[0].shape[0]))
        case.extra.update(family="minimaxad", graph=artifact.paper_graph.name, **artifact.facts)
        return case
    loader = ov_detector_loader(settings.threads, precision, hint)
    case = e2e_detector_case(artifact.path, batch, frames, name=name, loader=loader, probe=probe)
    case.backend = BACKEND
    case.extra.update(family="minimaxad", artifact=str(artifact.path), **artifact.facts)
    return case


def _skip(name: str, protocol: str, reason: str, batch: int | None = None) -> dict[str, Any]:
    return {"name": name, "backend": BACKEND, "protocol": protocol, "batch": batch, "reason": reason}
