"""What an INT8 export produced, and its section of ``report.json``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Int8Result:
    """The INT8 artifact and everything needed to trust (or reject) it.

    ``metrics``: INT8 vs FP32 ONNX on ``eval_source`` (same names as the export verification
    table). ``float_blocks``: blocks the sensitivity search kept in float, each
    ``{block, nodes, reason, error_alone, alone}`` (the score error and metrics
    with that block alone in INT8). ``always_float``: what never goes INT8 and
    why. ``latency_ms``: ORT CPU, median of a few runs of one batch (1, or the graph's fixed
    batch), on this machine.
    """

    path: Path
    target: str
    metrics: dict[str, float | None]
    accuracy_target: dict[str, float]
    target_met: bool
    search: dict[str, Any]
    float_blocks: list[dict[str, Any]]
    always_float: list[dict[str, Any]]
    quantized_nodes: int
    calibration: dict[str, Any]
    eval_source: str
    latency_ms: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    def to_report(self) -> dict[str, Any]:
        """JSON-ready dict for the export report's ``int8`` section."""
        return {
            "precision": "int8",
            "path": str(self.path),
            "target": self.target,
            "passed": self.target_met,
            "metrics": dict(self.metrics),
            "accuracy_target": dict(self.accuracy_target),
            "eval_source": self.eval_source,
            "search": dict(self.search),
            "excluded_layers": [
                {k: b[k] for k in ("block", "nodes", "reason", "error_alone", "alone")} for b in self.float_blocks
            ],
            "always_float": list(self.always_float),
            "quantized_nodes": self.quantized_nodes,
            "calibration": dict(self.calibration),
            "latency_ms": dict(self.latency_ms),
            "warnings": list(self.warnings),
        }
