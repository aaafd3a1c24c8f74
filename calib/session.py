"""ONNX Runtime on the CPU: the reference backend that export verification and INT8
calibration and evaluation run on. A graph exported with a fixed batch only accepts that
batch, so frames go in chunks of it, the last one padded."""

from __future__ import annotations

import os
from typing import Iterator

import numpy as np
import onnx
import onnxruntime as ort

from mmad_edge.runtime.contract import OUTPUT_NAMES


def cpu_session(model: onnx.ModelProto | str | os.PathLike[str], emulate_qdq: bool = False) -> ort.InferenceSession:
    """A CPU session for an in-memory model or a file. ``emulate_qdq`` runs Q/DQ as plain ops
    (ORT's QDQ fusions off): the exact fake-quant result TensorRT approximates, and much faster
    than ORT's handling of a TensorRT-style graph (whose conv outputs have no Q to fuse with)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if emulate_qdq:
        options.add_session_config_entry("session.disable_quant_qdq", "1")
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else os.fspath(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def fixed_batch(session: ort.InferenceSession) -> int | None:
    """The graph's fixed batch size, or None when the batch dim is dynamic."""
    dim = session.get_inputs()[0].shape[0]
    return dim if isinstance(dim, int) else None


def padded_batches(frames: np.ndarray, batch: int, pad: bool) -> Iterator[tuple[np.ndarray, int]]:
    """Chunks of ``batch`` frames and how many of each are real; with ``pad`` the last chunk is
    filled up to ``batch`` by repeating its final frame (what a fixed-batch graph needs)."""
    for start in range(0, len(frames), batch):
        chunk = frames[start:start + batch]
        count = len(chunk)
        if pad and count < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - count, axis=0)])
        yield chunk, count


def run_batched(session: ort.InferenceSession, inputs: np.ndarray, batch: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(maps, scores) for all ``inputs`` in chunks of ``batch``; a fixed-batch graph gets its
    batch, the last chunk padded (padding results are dropped)."""
    name = session.get_inputs()[0].name
    fixed = fixed_batch(session)
    maps, scores = [], []
    for chunk, count in padded_batches(inputs, fixed or batch, pad=fixed is not None):
        anomaly_map, score = session.run(list(OUTPUT_NAMES), {name: chunk})
        maps.append(anomaly_map[:count])
        scores.append(score[:count])
    return np.concatenate(maps), np.concatenate(scores)

