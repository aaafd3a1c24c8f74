"""onnxsim with a safety net: a simplified graph is used only if it is valid and gives the same outputs."""

from __future__ import annotations

import numpy as np
import onnx
import onnxsim

from mmad_edge.runtime.backends.onnxruntime import cpu_session

# Simplification only folds and fuses float32 arithmetic: anything beyond rounding is a bug.
RELATIVE_TOLERANCE = 1e-5


def simplify_checked(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> tuple[onnx.ModelProto, str]:
    """(graph to keep, status). Status starts with "simplified" or "kept unsimplified" and says why."""
    before = len(model.graph.node)
    try:
        simplified, ok = onnxsim.simplify(model)
    except Exception as exc:  # onnxsim raises anything from RuntimeError to protobuf errors
        return model, f"kept unsimplified: onnxsim failed ({_one_line(exc)})"
    if not ok:
        return model, "kept unsimplified: onnxsim's own check failed"
    try:
        onnx.checker.check_model(simplified, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        return model, f"kept unsimplified: simplified graph is invalid ({_one_line(exc)})"
    difference = output_difference(model, simplified, feeds)
    if difference > RELATIVE_TOLERANCE:
        return model, f"kept unsimplified: simplified graph changed outputs (relative error {difference:.2e})"
    return simplified, f"simplified: {before} -> {len(simplified.graph.node)} nodes (relative change {difference:.1e})"


def output_difference(reference: onnx.ModelProto, candidate: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> float:
    """Largest max|a-b| / max|b| over the graph outputs, both run on the ORT CPU backend."""
    expected = cpu_session(reference).run(None, feeds)
    found = cpu_session(candidate).run(None, feeds)
    worst = 0.0
    for a, b in zip(found, expected):
        scale = max(float(np.max(np.abs(b))), np.finfo(np.float32).tiny)
        worst = max(worst, float(np.max(np.abs(a.astype(np.float64) - b))) / scale)
    return worst


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
