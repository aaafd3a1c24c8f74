"""A tiny latency probe on the ONNX Runtime CPU (median of a few runs of one batch).

Good enough to pick the faster CPU INT8 format and to put FP32 vs INT8 in the report; the
bench measures properly.
"""

from __future__ import annotations

import os
import time

import numpy as np
import onnx

from mmad_edge.runtime.backends.onnxruntime import cpu_session


def median_latency_ms(
    model: onnx.ModelProto | str | os.PathLike[str], frames: np.ndarray, runs: int = 5, warmup: int = 1
) -> float:
    """Median wall time of ``runs`` inferences of the batch ``frames`` (B x H x W x 3 uint8; B
    must be the graph's fixed batch, if it has one)."""
    session = cpu_session(model)
    feed = {session.get_inputs()[0].name: frames}
    for _ in range(warmup):
        session.run(None, feed)
    times = []
    for _ in range(max(1, runs)):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000.0)
