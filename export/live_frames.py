"""Frames of the line itself for ``calibrate-threshold --source URL --frames N``: the threshold
then comes from what the deployed camera delivers (its compression, noise and light), not from
clean stills. Any source ``run`` takes: a GenICam or OpenCV camera, a stream URL, a video, a folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from mmad_edge.runtime.log import say
from mmad_edge.runtime.loop.sources import open_source, parse_source

PROGRESS_EVERY = 25


def take_frames(source: str, count: int, retry_s: float | None = None, progress: bool = True) -> Iterator[np.ndarray]:
    """The first ``count`` frames of ``source`` in order (none dropped), as they arrive; the source
    is opened at the first read (not while a model loads: a camera would buffer stale frames, and
    a failed load would leave it open) and released after the last. Bad arguments fail here; a
    source that ends sooner fails when read, saying how many frames it gave."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"--frames must be a whole number >= 1, got {count!r}; e.g. --frames 200 known-good parts")
    return _read(parse_source(source).target, retry_s, count, progress)


def _read(target: Any, retry_s: float | None, count: int, progress: bool) -> Iterator[np.ndarray]:
    source = open_source(target, retry_s=retry_s)
    frames = source.frames()
    taken = 0
    try:
        for _, frame in frames:
            yield frame
            taken += 1
            if taken % PROGRESS_EVERY == 0 or taken == count:
                say(f"{source.name}: {taken}/{count} frames", progress)
            if taken == count:
                return
    finally:
        frames.close()
    raise ValueError(f"{source.name} ended after {taken} frames, fewer than --frames {count}; pass --frames {taken} "
                     "or a longer source")
