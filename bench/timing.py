"""Time a callable: warm-up, timed iterations, and the statistics every benchmark row reports.

Wall-clock timing (``time.perf_counter`` around the call plus an optional ``sync``) is the
default; on a GPU ``device_events=True`` times each call with CUDA events instead, so host-side
launch jitter does not count. torch is imported only in that case.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Timing:
    """Per-call samples in milliseconds and their summary; ``batch`` images per call."""

    samples_ms: tuple[float, ...]
    batch: int = 1
    mean_ms: float = field(init=False)
    p50_ms: float = field(init=False)
    p90_ms: float = field(init=False)
    p99_ms: float = field(init=False)
    min_ms: float = field(init=False)
    std_ms: float = field(init=False)
    images_per_s: float = field(init=False)

    def __post_init__(self) -> None:
        if not self.samples_ms:
            raise ValueError("no timing samples; run at least one timed iteration (iters >= 1)")
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.batch}")
        values = np.asarray(self.samples_ms, dtype=np.float64)
        p50, p90, p99 = np.percentile(values, [50, 90, 99], method="linear")
        mean = float(values.mean())
        stats = {
            "mean_ms": mean,
            "p50_ms": float(p50),
            "p90_ms": float(p90),
            "p99_ms": float(p99),
            "min_ms": float(values.min()),
            "std_ms": float(values.std()),
            "images_per_s": self.batch * 1000.0 / mean if mean > 0 else float("inf"),
        }
        for key, value in stats.items():
            object.__setattr__(self, key, value)

    def summary(self) -> dict[str, Any]:
        """The statistics as the plain dict a report row carries (samples left out)."""
        return {
            "batch": self.batch,
            "mean_ms": self.mean_ms,
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p99_ms": self.p99_ms,
            "min_ms": self.min_ms,
            "std_ms": self.std_ms,
            "images_per_s": self.images_per_s,
        }


def measure(
    fn: Callable[[], Any],
    warmup: int,
    iters: int,
    sync: Callable[[], None] | None = None,
    batch: int = 1,
    device_events: bool = False,
) -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then ``iters`` times timed; one sample per call.

    ``sync`` (e.g. ``torch.cuda.synchronize``) runs after every call so asynchronous work is
    inside the sample. Throughput uses the mean, so ``images_per_s = batch / mean``.
    """
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    for _ in range(warmup):
        fn()
    if sync is not None:
        sync()
    if device_events:
        return Timing(tuple(_cuda_event_samples(fn, iters)), batch)
    samples = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        samples.append((time.perf_counter() - start) * 1000.0)
    return Timing(tuple(samples), batch)


def _cuda_event_samples(fn: Callable[[], Any], iters: int) -> list[float]:
    """Time each call between two CUDA events on the current stream; one sync at the end."""
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("device_events=True needs a CUDA device; time on the CPU with device_events=False")
    pairs = []
    for _ in range(iters):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        pairs.append((start, end))
    torch.cuda.synchronize()
    return [start.elapsed_time(end) for start, end in pairs]
