"""ONNX Runtime CPU sessions and a tiny latency probe (median of a few batch-1 runs).

Good enough to pick the faster CPU INT8 format and to put FP32 vs INT8 in the report; the
bench measures properly.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnxruntime as ort


def cpu_session(path: Path, emulate_qdq: bool = False) -> ort.InferenceSession:
    """A CPU session. ``emulate_qdq`` runs Q/DQ as plain ops (ORT's QDQ fusions off): the exact
    fake-quant result TensorRT approximates, and much faster than ORT's handling of a
    TensorRT-style graph (whose conv outputs have no Q to fuse with)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if emulate_qdq:
        options.add_session_config_entry("session.disable_quant_qdq", "1")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def median_latency_ms(path: Path, frame: np.ndarray, runs: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``runs`` batch-1 inferences of ``frame`` (H x W x 3 uint8)."""
    session = cpu_session(path)
    feed = {session.get_inputs()[0].name: frame[None]}
    for _ in range(warmup):
        session.run(None, feed)
    times = []
    for _ in range(max(1, runs)):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000.0)
