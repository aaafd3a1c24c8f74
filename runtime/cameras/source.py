"""A GenICam camera as a frame source of ``run``: open, set up, acquire, reopen when it fails.

Each frame carries its part ID (``part_ids``). A camera that stops delivering (unplugged, a
stream error, no frame within ``timeout_ms`` in free run or after a software trigger) is
reopened with exponential backoff for up to ``retry_s`` seconds, then the run fails naming it; a
hardware-triggered camera may wait for its next part for ever. A frame that arrives incomplete is
counted (``lost``) and skipped. Bad settings fail at once, without retries.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..errors import SourceError
from ..log import notice
from ..loop.sources import Frame, FramePosition, FrameSource, check_retry_s
from .features import Features, configure
from .part_ids import FrameCounter, PartIdProvider, part_id_queue
from .url import CameraUrl

# How often a waiting source looks at its stop flag (hardware trigger, part ID queue).
POLL_S = 0.1


class CameraFault(Exception):
    """The camera cannot deliver (not found, unplugged, stream error): the source reopens it."""


class FrameLost(Exception):
    """One frame arrived incomplete; the camera goes on."""


@dataclass(frozen=True)
class Grab:
    """One acquired frame: BGR uint8 pixels and the camera's block ID (its frame counter)."""

    frame: np.ndarray
    block_id: int


class Camera(Protocol):
    """What a driver opens: the node map, acquisition start, one frame at a time, release."""

    features: Features

    def start(self) -> None: ...

    def trigger(self, timeout_s: float) -> None:
        """Fire the software trigger once the camera can take it; raises CameraFault."""

    def grab(self, timeout_s: float) -> Grab | None:
        """The next frame, None when none came within ``timeout_s``; raises CameraFault or FrameLost."""

    def close(self) -> None:
        """Stop acquiring and release the device (never raises)."""


OpenCamera = Callable[[CameraUrl], Camera]


def select_device(url: CameraUrl, serials: list[str]) -> int:
    """The position of ``url``'s camera among those found (by index or serial number)."""
    found = ", ".join(serials) or "none"
    if url.index is not None:
        if url.index < len(serials):
            return url.index
        raise CameraFault(f"no camera at index {url.index}; serial numbers found: {found}")
    if not url.device:
        if serials:
            return 0
        raise CameraFault("no camera found; check its cable, power and network settings")
    if url.device in serials:
        return serials.index(url.device)
    raise CameraFault(f"no camera with serial number {url.device}; serial numbers found: {found}")


class CameraSource(FrameSource):
    """Frames of one camera, each with a ``FramePosition`` that carries its ``part_id``."""

    live = True

    def __init__(
        self,
        url: CameraUrl,
        open_camera: OpenCamera,
        retry_s: float | None = None,
        part_ids: PartIdProvider | None = None,
        backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``part_ids``: where software-trigger part IDs come from (default: the queue ``url.part_ids``
        names; none: the camera's frame counter)."""
        self.url = url
        self.name = url.name
        self._open_camera = open_camera
        self._retry_s = check_retry_s(retry_s)
        self._part_ids = part_ids if part_ids is not None else (
            part_id_queue(url.part_ids) if url.part_ids is not None else None)
        if self._part_ids is not None and not url.software:
            raise ValueError(f"{url.name}: announced part IDs arm a software trigger; add trigger=software")
        self._backoff_s = backoff_s
        self._sleep = sleep
        self._clock = clock
        self._stop = threading.Event()
        self._counter = FrameCounter()
        self.reopened = 0
        self.lost = 0

    @property
    def counters(self) -> dict:
        return {"reopened": self.reopened, "lost": self.lost}

    def stop(self) -> None:
        self._stop.set()

    def _open(self) -> Camera:
        """The camera opened, set up and acquiring; a setting it refuses fails naming this source."""
        try:
            camera = self._open_camera(self.url)
            try:
                configure(camera.features, self.url)
                camera.start()
            except BaseException:
                camera.close()
                raise
        except ValueError as exc:
            raise ValueError(f"{self.name}: {exc}") from None
        self._counter.restart()
        return camera

    def _grab(self, camera: Camera) -> Grab | None:
        """One frame: fire the software trigger first; a missing frame is a fault unless a hardware
        trigger simply has not fired (then None, after ``POLL_S``)."""
        if self.url.hardware:
            return camera.grab(POLL_S)
        if self.url.software:
            camera.trigger(self.url.timeout_ms / 1000)
        grab = camera.grab(self.url.timeout_ms / 1000)
        if grab is None:
            raise CameraFault(f"no frame within {self.url.timeout_ms} ms (timeout_ms)")
        return grab

    def frames(self) -> Iterator[Frame]:
        camera: Camera | None = None
        pending: str | None = None  # an announced part whose frame is still to come (kept across reopens)
        index, attempts, deadline = 0, 0, None
        try:
            while not self._stop.is_set():
                try:
                    if camera is None:
                        camera = self._open()
                    if self._part_ids is not None and pending is None:
                        pending = self._part_ids.take(POLL_S)
                        if pending is None:
                            continue
                    grab = self._grab(camera)
                except CameraFault as exc:
                    if camera is not None:
                        camera.close()
                        camera = None
                    now = self._clock()
                    if deadline is None:
                        deadline = now + self._retry_s
                        if self._retry_s > 0:
                            notice(f"{self.name}: {exc}; reopening for up to {self._retry_s:g} s (--retry-seconds)")
                    if now >= deadline:
                        raise SourceError(f"{self.name}: {exc} (after {attempts} reopen attempts); check the camera, "
                                          "or wait longer with --retry-seconds") from None
                    self._sleep(min(self._backoff_s * 2**attempts, 10.0, deadline - now))
                    attempts += 1
                    self.reopened += 1
                    continue
                except FrameLost as exc:
                    self.lost += 1
                    notice(f"{self.name}: frame lost ({exc}); {self.lost} so far")
                    continue
                if grab is None:
                    continue
                if deadline is not None:
                    notice(f"{self.name}: frames again after {attempts} reopen attempt(s)")
                    attempts, deadline = 0, None
                part_id = pending if pending is not None else str(self._counter.number(grab.block_id))
                pending = None
                yield FramePosition(index, captured_at=round(time.time(), 3), part_id=part_id), grab.frame
                index += 1
        finally:
            if camera is not None:
                camera.close()
