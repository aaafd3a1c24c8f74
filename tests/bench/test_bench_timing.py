"""Timing statistics on known samples, and the measure loop driven by a fake clock."""

from __future__ import annotations

import math

import pytest

from mmad_edge.bench import timing
from mmad_edge.bench.timing import Timing, measure


def test_statistics_of_known_samples() -> None:
    t = Timing((1.0, 2.0, 3.0, 4.0, 10.0), batch=4)
    assert t.mean_ms == pytest.approx(4.0)
    assert t.p50_ms == pytest.approx(3.0)
    assert t.p90_ms == pytest.approx(7.6)  # index 3.6: 4 + 0.6 * (10 - 4)
    assert t.p99_ms == pytest.approx(9.76)  # index 3.96
    assert t.min_ms == 1.0
    assert t.std_ms == pytest.approx(math.sqrt(10.0))  # population std
    assert t.images_per_s == pytest.approx(1000.0)  # 4 images per 4 ms


def test_summary_is_the_row_fields() -> None:
    summary = Timing((2.0, 2.0), batch=16).summary()
    assert summary == {
        "batch": 16, "mean_ms": 2.0, "p50_ms": 2.0, "p90_ms": 2.0, "p99_ms": 2.0,
        "min_ms": 2.0, "std_ms": 0.0, "images_per_s": 8000.0,
    }


class FakeClock:
    """perf_counter that advances only when the timed function 'works'."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


def test_measure_counts_warmup_and_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(timing, "time", clock)
    calls, syncs = [], []
    durations = iter([0.5, 0.5, 0.001, 0.002, 0.003])  # two warm-up calls, then 1, 2, 3 ms

    def work() -> None:
        calls.append(1)
        clock.now += next(durations)

    t = measure(work, warmup=2, iters=3, sync=lambda: syncs.append(1), batch=2)
    assert len(calls) == 5
    assert len(syncs) == 4  # once after warm-up, once per timed call
    assert t.samples_ms == pytest.approx((1.0, 2.0, 3.0))
    assert t.images_per_s == pytest.approx(1000.0)


@pytest.mark.parametrize(
    ("warmup", "iters", "message"), [(-1, 1, "warmup must be >= 0"), (0, 0, "iters must be >= 1")]
)
def test_measure_rejects_bad_counts(warmup: int, iters: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        measure(lambda: None, warmup, iters)


def test_empty_samples_and_bad_batch() -> None:
    with pytest.raises(ValueError, match="no timing samples"):
        Timing(())
    with pytest.raises(ValueError, match="batch must be >= 1"):
        Timing((1.0,), batch=0)


def test_device_events_need_cuda() -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("CUDA present: device events work here")
    with pytest.raises(RuntimeError, match="needs a CUDA device"):
        measure(lambda: None, 0, 1, device_events=True)
