"""ONNX Runtime on the CPU, the reference backend every export is checked with."""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnxruntime as ort


def cpu_session(model: onnx.ModelProto | str | os.PathLike[str]) -> ort.InferenceSession:
    """A CPU session for an in-memory model or a file (no graph rewrites that could hide a bug)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else os.fspath(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def fixed_batch(session: ort.InferenceSession) -> int | None:
    """The graph's fixed batch size, or None when the batch dim is dynamic."""
    dim = session.get_inputs()[0].shape[0]
    return dim if isinstance(dim, int) else None


def run_batched(session: ort.InferenceSession, inputs: np.ndarray, batch: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(maps, scores) for all ``inputs`` in chunks; a fixed-batch graph gets its batch, the last
    chunk padded by repeating its final item (padding results are dropped)."""
    name = session.get_inputs()[0].name
    step = fixed_batch(session) or batch
    maps, scores = [], []
    for start in range(0, len(inputs), step):
        chunk = inputs[start:start + step]
        count = len(chunk)
        if fixed_batch(session) and count < step:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - count, axis=0)])
        anomaly_map, score = session.run(["anomaly_map", "score"], {name: chunk})
        maps.append(anomaly_map[:count])
        scores.append(score[:count])
    return np.concatenate(maps), np.concatenate(scores)
