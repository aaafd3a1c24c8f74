"""Pick the artifact to run from an export folder.

Order (first that exists and can run here wins):

1. ``model.<p>.engine`` for p in fp16, fp32, int8 -- only when the backend is "auto" or
   "tensorrt", TensorRT and a GPU are usable and the engine's sidecar matches this device;
2. ``model.<p>.onnx`` -- with a GPU execution provider fp16, fp32, int8; on CPU (and always
   for ``backend="openvino"``) fp32, fp16, int8 (fp16 is emulated on CPUs, so fp32 is both
   faster there and the reference).

INT8 comes last everywhere because it trades accuracy for speed: ask for it with
``precision="int8"``. Engines that cannot run here are reported on stderr with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from ..backends import choices
from .contract import REPORT_FILE
from .contract import CPU_ORDER, ENGINE_SUFFIX, GPU_ORDER, ONNX_SUFFIX, PRECISIONS, artifact_name
from ..errors import ArtifactError
from ..log import notice


def _order(precision: Optional[str], default: Sequence[str]) -> Sequence[str]:
    if precision is None:
        return default
    if precision not in PRECISIONS:
        raise ArtifactError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return (precision,)


def select_artifact(
    folder: Path,
    backend: str,
    precision: Optional[str],
    engine_problem: Callable[[Path], Optional[str]],
    onnx_on_gpu: bool,
) -> Path:
    """The file to load from ``folder`` (see the module docstring for the order)."""
    if backend not in choices():
        raise ArtifactError(f"backend must be one of {', '.join(choices())}, got {backend!r}")
    skipped: List[str] = []
    if backend in ("auto", "tensorrt"):
        for name in _order(precision, GPU_ORDER):
            engine = folder / artifact_name(name, ENGINE_SUFFIX)
            if not engine.is_file():
                continue
            problem = engine_problem(engine)
            if problem is None:
                return engine
            if backend == "tensorrt":
                raise ArtifactError(problem)
            skipped.append(f"{engine.name}: {problem}")
        if backend == "tensorrt":
            raise ArtifactError(
                f"{folder}: no model.<precision>.engine here; build one with mmad-edge build-engine "
                f"{folder / artifact_name('fp16')}"
            )
    for name in _order(precision, GPU_ORDER if onnx_on_gpu else CPU_ORDER):
        candidate = folder / artifact_name(name, ONNX_SUFFIX)
        if candidate.is_file():
            for line in skipped:
                notice(f"skipping {line}")
            return candidate
    wanted = artifact_name(precision) if precision else f"model.<{'|'.join(PRECISIONS)}>.onnx or .engine"
    raise ArtifactError(f"{folder}: no {wanted} in this folder; point at an mmad-edge export folder")


def export_report(artifact: Path) -> Dict[str, Any]:
    """The export's ``report.json`` beside ``artifact`` ({} when absent, unreadable or not an object):
    what the export recorded (INT8 form and accuracy target, trained weights) for the rooms that read it."""
    try:
        report = json.loads((Path(artifact).parent / REPORT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return report if isinstance(report, dict) else {}
