"""Follow a deployment folder while it is in use: a promote or rollback reaches `run` and `serve`
without a restart.

The user calls ``DeploymentFollower.ready`` when a swap would be safe (`run`: between two batches;
`serve`: from its main thread, ``serving.follow``); at most once per ``CHECK_EVERY_S`` that reads
the ``current`` link (one readlink, never per frame). A new target is loaded on a background
thread with the user's options and checked against what it needs (`run`: ``check_compatible``);
once it is ready the user swaps it in and calls ``swapped``, so each frame is scored once, by one
version, and the old one stays open until then. What is loaded is a ``Loaded``: a Detector for
`run`, one Detector per model instance for `serve`. A version that fails to load or to fit is said
in one line and the old one keeps scoring; it is not tried again until ``current`` moves on.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from ..artifact.deployment import CURRENT, VERSIONS, current_version, version_number
from ..detector import Detector
from ..errors import ArtifactError, one_line
from ..log import notice

CHECK_EVERY_S = 1.0  # how often `current` is read, at most (it is read between batches only)


class Loaded(Protocol):
    """What a version is loaded as: its pooled threshold (said at a swap when it changes) and close."""

    @property
    def threshold(self) -> float | None: ...

    def close(self) -> None: ...


L = TypeVar("L", bound=Loaded)


def check_compatible(detector: Detector, categories: Sequence[str | None], judged: bool) -> None:
    """What the running loop needs of a version (ArtifactError naming what is missing): statistics for
    every source's category, and a threshold when the frames were judged so far (a version without
    one would turn every verdict into none). The input contract itself (BGR uint8 frames, resized to
    the model's size) is the same for every export the runtime loads."""
    for category in dict.fromkeys(categories):
        threshold, _ = detector.scoring(category)
        if judged and threshold is None:
            what = "the pooled scores" if category is None else f"category {category!r}"
            raise ArtifactError(f"no threshold for {what} (exported without statistics) while the run judges "
                                "frames; run mmad-edge calibrate-threshold on it, or pass --threshold")


@dataclass(frozen=True)
class Swap:
    """One change of the version scoring: ``frame`` is the run index of the first frame ``to`` scored;
    ``how``: "promoted" or "rolled back"; ``at``: when ``current`` changed (Unix time)."""

    previous: str
    to: str
    frame: int
    how: str
    at: float

    def to_json(self) -> dict:
        return {"from": self.previous, "to": self.to, "frame": self.frame, "how": self.how,
                "changed_at": round(self.at, 3)}


class _Load(Generic[L]):
    """One version loaded and checked on a daemon thread; ``detector`` or ``error`` once it ends."""

    def __init__(self, version: str, work: Callable[[], L]) -> None:
        self.version = version
        self.detector: L | None = None
        self.error: str | None = None
        self._work = work
        self.thread = threading.Thread(target=self._run, name=f"mmad-edge-follow {version}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.detector = self._work()
        except Exception as exc:  # any failure is the version's, said in one line; the line keeps running
            self.error = one_line(exc)

    def discard(self) -> None:
        self.thread.join()
        if self.detector is not None:
            self.detector.close()


class DeploymentFollower(Generic[L]):
    """Watches ``deploy_dir``'s ``current`` while ``version`` scores. ``load(folder)`` loads a version
    folder with the user's options, ``check(loaded)`` raises when the user cannot use it; ``every_s``
    None: never look (``--no-follow``: the version is still named). ``swaps`` and ``failures``
    (version, reason) are what happened, for the summary; what it hands over is the user's, but the
    last one is closed by ``close`` too (closing is idempotent)."""

    def __init__(self, deploy_dir: Path, version: str, load: Callable[[Path], L],
                 check: Callable[[L], None], every_s: float | None = CHECK_EVERY_S) -> None:
        self.deploy_dir = Path(deploy_dir)
        self.version = version
        self.swaps: list[Swap] = []
        self.failures: list[dict] = []
        self._load, self._check, self._every_s = load, check, every_s
        self._target, self._changed_at = version, 0.0
        self._next_look = math.inf if every_s is None else time.monotonic() + every_s
        self._handed: L | None = None
        self._loading: _Load[L] | None = None
        self._unreadable: str | None = None

    def ready(self) -> tuple[str, L] | None:
        """(version, what was loaded) to swap in now, loaded and checked; None on most calls (nothing
        changed, or still loading)."""
        now = time.monotonic()
        if now >= self._next_look:
            self._next_look = now + self._every_s
            self._look()
        loading = self._loading
        if loading is None or loading.thread.is_alive():
            return None
        self._loading = None
        if loading.version != self._target:  # current moved on while it loaded
            loading.discard()
            self._start()
            return None
        if loading.error is not None:
            self.failures.append({"version": loading.version, "reason": loading.error})
            notice(f"deployment {self.deploy_dir}: {loading.version} not loaded, still scoring with {self.version}: "
                   f"{loading.error}; it is tried again when current changes")
            return None
        return loading.version, loading.detector

    def swapped(self, to: str, detector: L, frame: int, before: float | None) -> Swap:
        """Record that ``to`` (``detector``) scores from frame ``frame`` on (the count scored before it)
        and say so in one line; ``before``: the pooled threshold of the version it replaced."""
        how = "promoted" if version_number(to) > version_number(self.version) else "rolled back"
        swap = Swap(self.version, to, frame, how, self._changed_at)
        self.swaps.append(swap)
        self.version, self._handed = to, detector
        after = detector.threshold
        change = "" if before == after else f"; threshold {_number(before)} -> {_number(after)}"
        notice(f"deployment {self.deploy_dir}: now scoring with {to} from frame {frame} (was {swap.previous}, "
               f"{how} at {time.strftime('%H:%M:%S', time.localtime(swap.at))}{change})")
        return swap

    def report(self) -> dict:
        """The summary's part: the folder, the version scoring at the end, the swaps (one line each on
        stderr) and the versions that could not be swapped in."""
        for swap in self.swaps:
            notice(f"  swap at frame {swap.frame}: {swap.previous} -> {swap.to} ({swap.how})")
        return {"deployment": str(self.deploy_dir), "version": self.version, "follow": self._every_s is not None,
                "swaps": [swap.to_json() for swap in self.swaps], "swap_failures": list(self.failures)}

    def close(self) -> None:
        """Wait for a load still running and close what it loaded, and the last detector swapped in."""
        if self._loading is not None:
            self._loading.discard()
            self._loading = None
        if self._handed is not None:
            self._handed.close()

    def _look(self) -> None:
        """Read the pointer; a new target starts loading (unless a load runs: it is discarded when it ends)."""
        try:
            name = current_version(self.deploy_dir)
        except OSError as exc:  # the folder unreadable for a moment: the line keeps scoring, said once
            if self._unreadable != str(exc):
                notice(f"deployment {self.deploy_dir}: cannot read {CURRENT} ({exc}); still scoring with {self.version}")
            self._unreadable = str(exc)
            return
        self._unreadable = None
        if name is None or name == self._target:
            return
        self._target = name
        try:
            self._changed_at = os.lstat(self.deploy_dir / CURRENT).st_mtime
        except FileNotFoundError:
            self._changed_at = time.time()
        if name == self.version:
            notice(f"deployment {self.deploy_dir}: current is {name} again, which is scoring already")
        elif self._loading is None:
            self._start()

    def _start(self) -> None:
        if self._target != self.version:
            folder = self.deploy_dir / VERSIONS / self._target
            self._loading = _Load(self._target, lambda: self._checked(folder))

    def _checked(self, folder: Path) -> L:
        detector = self._load(folder)
        try:
            self._check(detector)
        except BaseException:
            detector.close()
            raise
        return detector


def _number(value: float | None) -> str:
    return "none" if value is None else f"{value:.6g}"
