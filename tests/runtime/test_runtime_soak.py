"""Soak: thousands of frames through run_stream must not grow memory (months on a Jetson)."""

from __future__ import annotations

import os

import numpy as np
import psutil
from runtime_fixtures import write_export_dir

from mmad_edge.runtime import Detector, RunOptions, run_stream
from mmad_edge.runtime.loop.sources import FrameSource

FRAMES = 5000
WARM_UP = 500
MAX_GROWTH_MB = 3.0


class RecordingSource(FrameSource):
    """Cycles a few frames of mixed sizes and samples the process RSS at two points."""

    live = False
    name = "soak"

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.pool = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((64, 64, 3), (48, 96, 3), (80, 80), (64, 64, 4))]
        self.rss = {}

    def frames(self):
        process = psutil.Process()
        for index in range(FRAMES):
            if index in (WARM_UP, FRAMES - 1):
                self.rss[index] = process.memory_info().rss
            yield index, self.pool[index % len(self.pool)]


def test_memory_is_flat_over_thousands_of_frames(tmp_path):
    source = RecordingSource()
    with Detector.load(write_export_dir(tmp_path, 64)) as detector, open(os.devnull, "w") as sink:
        summary = run_stream(detector, source, RunOptions(jsonl=True, batch=2, save_dir=tmp_path / "saved", threshold=2.0),
                             stdout=sink)
    assert summary["frames"] == FRAMES and summary["anomalies"] == 0
    growth_mb = (source.rss[FRAMES - 1] - source.rss[WARM_UP]) / 2**20
    assert growth_mb < MAX_GROWTH_MB, f"RSS grew {growth_mb:.2f} MB after warm-up"
