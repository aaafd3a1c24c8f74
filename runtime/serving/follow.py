"""`serve` follows a deployment folder: a promote or rollback reaches every model instance between
two executions, without a restart.

One watcher for the whole server (``loop.follow.DeploymentFollower``, as `run` uses it), polled
from serve's main thread. A new version is loaded in the background as one Detector per instance,
with serve's options, and checked against what Triton's model config declares, which cannot change
without a restart: the anomaly map's size and the largest batch. Once it is loaded every handler's
lock is taken (each waits for its execution in flight, which finishes on the old detector), all
instances are swapped at once, so no two of them score with different versions, and the old
detectors are closed. Clients get the same outputs as before; the version is named in the stop
summary and in one line per swap or failure, worded as `run` words them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from ..detector import Detector
from ..errors import ArtifactError
from ..loop.follow import DeploymentFollower
from .handler import InferenceHandler


class Instances:
    """One version's Detectors, one per model instance: what the follower loads for `serve`."""

    def __init__(self, detectors: Sequence[Detector]) -> None:
        self.detectors = list(detectors)

    @property
    def threshold(self) -> float | None:
        return self.detectors[0].threshold

    def close(self) -> None:
        for detector in self.detectors:
            detector.close()


def check_fits(instances: Instances, served: Detector) -> None:
    """ArtifactError when ``instances`` cannot take over from ``served``: Triton's model config, fixed
    at start, declares the anomaly map's shape and the largest batch; clients rely on ``is_anomaly``
    (a threshold) and on the categories they send."""
    detector = instances.detectors[0]
    image_size, max_batch = served.image_size, served.batch_max
    if served.threshold is not None and detector.threshold is None:
        raise ArtifactError("it has no threshold (exported without statistics), so every is_anomaly would be false; "
                            "run mmad-edge calibrate-threshold on it and promote it again")
    lost = sorted(set(served.info.categories) - set(detector.info.categories))
    if lost:
        raise ArtifactError(f"it has no statistics for {', '.join(lost)}, which clients may send as category; "
                            "promote a version trained on them")
    if tuple(detector.image_size) != tuple(image_size):
        raise ArtifactError(f"its anomaly map is {_size(detector.image_size)}, Triton's model config declares "
                            f"{_size(image_size)}; restart serve to serve it")
    if detector.batch_max < max_batch:
        raise ArtifactError(f"it takes batches up to {detector.batch_max}, Triton's model config declares "
                            f"{max_batch}; restart serve to serve it, or re-export it with a batch profile up to "
                            f"{max_batch}")


class ServeFollower:
    """Watches ``deploy_dir`` (``version`` serving) for ``handlers``: ``load(folder)`` gives one
    Detector per handler with serve's options; ``every_s`` None: never look (``--no-follow``). The
    handlers' shared drift watch and live page follow each swap."""

    def __init__(self, deploy_dir: Path, version: str, handlers: Sequence[InferenceHandler],
                 load: Callable[[Path], list[Detector]], every_s: float | None) -> None:
        self.handlers = list(handlers)
        self.follower = DeploymentFollower(deploy_dir, version, lambda folder: Instances(load(folder)),
                                           lambda loaded: check_fits(loaded, self.handlers[0].detector),
                                           every_s)

    @property
    def version(self) -> str:
        return self.follower.version

    def poll(self) -> None:
        """Swap in a version that finished loading, if any; returns at once otherwise."""
        ready = self.follower.ready()
        if ready is None:
            return
        version, instances = ready
        first, watch, page = self.handlers[0], self.handlers[0].watch, self.handlers[0].page
        with ExitStack() as held:
            for handler in self.handlers:
                held.enter_context(handler.lock)
            old = [handler.detector for handler in self.handlers]
            for handler, detector in zip(self.handlers, instances.detectors):
                handler.detector = detector
            if watch is not None:
                watch.restart(first.detector.info.raw.get("statistics"))
            if page is not None:
                page.use(instances.detectors)
            frame = sum(handler.counters.images for handler in self.handlers)
        self.follower.swapped(version, instances, frame, old[0].threshold)
        for detector in old:
            detector.close()

    def report(self) -> dict[str, Any]:
        """The stop summary's part (the version serving at the end, the swaps and failed swaps)."""
        return self.follower.report()

    def close(self) -> None:
        """Wait for a load still running and close what it loaded."""
        self.follower.close()


def _size(image_size: Sequence[int]) -> str:
    return "x".join(str(side) for side in image_size)
