"""Frame sources: camera index, stream URL, video file, image folder, GenICam camera.

Each yields ``(source_id, frame)``: a ``FramePosition`` (frame index and time; for GenICam cameras
the part ID too, ``runtime.cameras``) for cameras, URLs and videos, the file path for folders. Live sources (cameras, URLs) and videos that fail are
reopened with exponential backoff for up to ``retry_s`` seconds (said once on stderr); a video is
reopened at the next frame index. A corrupt image in a folder is reported on stderr and skipped.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import cv2
import numpy as np

from ..errors import SourceError
from ..imageio import ImageReadError, opencv_quiet, read_image
from ..log import notice

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def is_image_file(path: Path) -> bool:
    """An image file by suffix, not a hidden one (``._x.png`` from macOS copies is not an image)."""
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


# Reopen a failing capture for this long by default (backoff 0.5, 1, 2, 4, 8 s: five attempts).
DEFAULT_RETRY_S = 15.0


def check_retry_s(retry_s: float | None) -> float:
    """Seconds to keep reopening a capture: None gives ``DEFAULT_RETRY_S``; negative or NaN is refused."""
    if retry_s is None:
        return DEFAULT_RETRY_S
    if isinstance(retry_s, bool) or not isinstance(retry_s, (int, float)) or not math.isfinite(retry_s) or retry_s < 0:
        raise ValueError(f"retry seconds must be a number >= 0, got {retry_s!r}; pass e.g. --retry-seconds 15 "
                         "(0: fail at once)")
    return float(retry_s)


@dataclass(frozen=True)
class FramePosition:
    """Where a capture frame sits: its index in the source and, for a video file, its time in the
    video (``timestamp_ms``) or, for a camera or stream, the Unix time it was read (``captured_at``);
    ``part_id``: the inspected part, where the source knows it (GenICam cameras)."""

    index: int
    timestamp_ms: float | None = None
    captured_at: float | None = None
    part_id: str | None = None

    def to_json(self) -> dict:
        extra = {"timestamp_ms": self.timestamp_ms, "captured_at": self.captured_at, "part_id": self.part_id}
        return {"frame_index": self.index, **{key: value for key, value in extra.items() if value is not None}}

    def __str__(self) -> str:
        return f"frame {self.index}"


SourceId = FramePosition | str
Frame = tuple[SourceId, np.ndarray]
OpenCapture = Callable[[int | str], Any]


class FrameSource:
    """Base: ``live`` sources drop stale frames downstream; files keep every frame. ``category``:
    the training category whose threshold and normalisation score this source (None: the run's)."""

    live = False
    name = ""
    category: str | None = None

    def frames(self) -> Iterator[Frame]:
        raise NotImplementedError

    @property
    def counters(self) -> dict:
        """Source-side counts for the run summary (reopens, skipped files)."""
        return {}

    def stop(self) -> None:
        """Asked from another thread to end ``frames`` soon (a source that waits for a trigger)."""


class CaptureSource(FrameSource):
    """An OpenCV capture (camera, URL or video file) that reopens itself when reads fail."""

    def __init__(
        self,
        target: int | str,
        live: bool,
        open_capture: OpenCapture = cv2.VideoCapture,
        retry_s: float | None = None,
        backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``retry_s``: how long to keep reopening a capture that gives no frames (0: give up at once;
        None: ``DEFAULT_RETRY_S``)."""
        self.target = target
        self.live = live
        self.name = f"camera {target}" if isinstance(target, int) else str(target)
        self._open_capture = open_capture
        self._retry_s = check_retry_s(retry_s)
        self._backoff_s = backoff_s
        self._sleep = sleep
        self._clock = clock
        self.reopened = 0

    @property
    def counters(self) -> dict:
        return {"reopened": self.reopened}

    def _open(self, index: int) -> Any | None:
        with opencv_quiet():
            capture = self._open_capture(self.target)
        if not capture.isOpened():
            capture.release()
            return None
        if index > 0 and not self.live:
            capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        return capture

    @staticmethod
    def _read(capture: Any | None) -> np.ndarray | None:
        if capture is None:
            return None
        try:
            ok, frame = capture.read()
        except cv2.error:
            return None
        return frame if ok and frame is not None and frame.size else None

    def _finished(self, capture: Any | None, index: int) -> bool:
        """A video read that fails at or past its frame count is the end, not a failure."""
        if self.live or capture is None:
            return False
        total = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        return total <= 0 or index >= total

    def _position(self, capture: Any, index: int) -> FramePosition:
        if self.live:
            return FramePosition(index, captured_at=round(time.time(), 3))
        return FramePosition(index, timestamp_ms=round(float(capture.get(cv2.CAP_PROP_POS_MSEC)), 3))

    def _give_up(self, index: int, attempts: int) -> None:
        """Live: raise. Video: say where it stopped (the frames so far stand)."""
        tried = f"after {attempts} reopen attempts in {self._retry_s:g} s" if attempts else "(--retry-seconds 0: no reopening)"
        if self.live:
            raise SourceError(f"{self.name}: no frames {tried}; check the camera/URL, or wait longer with --retry-seconds")
        notice(f"{self.name}: giving up at frame {index} {tried}")

    def frames(self) -> Iterator[Frame]:
        capture = self._open(0)
        if capture is None and not self.live:
            raise SourceError(f"{self.name}: cannot open video (missing file or unsupported codec); check the path")
        index, attempts, deadline = 0, 0, None
        try:
            while True:
                frame = self._read(capture)
                if frame is not None:
                    if deadline is not None:
                        notice(f"{self.name}: frames again after {attempts} reopen attempt(s)")
                    attempts, deadline = 0, None
                    yield self._position(capture, index), frame
                    index += 1
                    continue
                if self._finished(capture, index):
                    return
                now = self._clock()
                if deadline is None:
                    deadline = now + self._retry_s
                    if self._retry_s > 0:
                        notice(f"{self.name}: read failed at frame {index}; reopening for up to {self._retry_s:g} s "
                               "(--retry-seconds)")
                if now >= deadline:
                    self._give_up(index, attempts)
                    return
                if capture is not None:
                    capture.release()
                self._sleep(min(self._backoff_s * 2**attempts, 10.0, deadline - now))
                capture = self._open(index)
                attempts += 1
                self.reopened += 1
        finally:
            if capture is not None:
                capture.release()


class ImageFolderSource(FrameSource):
    """The images in a folder, sorted by name; unreadable files are reported and skipped."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.name = str(folder)
        self.files: list[Path] = sorted(p for p in folder.iterdir() if is_image_file(p))
        if not self.files:
            raise SourceError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
        self.skipped = 0

    @property
    def counters(self) -> dict:
        return {"skipped": self.skipped}

    def frames(self) -> Iterator[Frame]:
        for path in self.files:
            try:
                image = read_image(path)
            except ImageReadError as exc:
                self.skipped += 1
                notice(f"skipping {exc}")
                continue
            yield str(path), image


# NAME=SOURCE gives a source its category; a NAME is a word (letters, digits, _ . -), so a URL's
# own "=" (rtsp://host/s?user=a) is never taken for one.
_CATEGORY_PREFIX = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_.-]*)=(.*)$", re.DOTALL)


@dataclass(frozen=True)
class SourceSpec:
    """One ``--source``: what to open and the category that scores it (None: the run's)."""

    target: int | str | os.PathLike[str] | FrameSource
    category: str | None = None


def parse_source(text: str) -> SourceSpec:
    """``--source`` text: ``0``, a URL, a path, or ``NAME=`` before any of them (category NAME).

    An existing path is taken whole, so a file called ``a=b.avi`` stays a file."""
    match = _CATEGORY_PREFIX.match(text)
    if match is None or Path(text).exists():
        if text.startswith("=") or not text.strip():
            raise ValueError(f"source {text!r} has an empty category or is empty; pass --source NAME=SOURCE "
                             "(e.g. gravel=rtsp://cam/1) or just the source")
        return SourceSpec(text)
    name, target = match.groups()
    if not target.strip():
        raise ValueError(f"source {text!r} names category {name!r} but no source after '='; pass --source "
                         f"{name}=SOURCE (a camera index, URL, video file or folder)")
    return SourceSpec(target, name)


SourceLike = Union[int, str, "os.PathLike[str]", FrameSource, SourceSpec]


def source_specs(source: SourceLike | Sequence[SourceLike]) -> list[SourceSpec]:
    """One source or a list of them as SourceSpecs (text parsed for ``NAME=``), as ``run_stream`` and
    ``DetectionStream`` take them; anything else is refused in one line."""
    items = list(source) if isinstance(source, (list, tuple)) else [source]
    if not items:
        raise ValueError("no source given; pass --source (a camera index, URL, video file or folder)")
    specs = []
    for item in items:
        if isinstance(item, str):
            item = parse_source(item)
        elif isinstance(item, bool) or not isinstance(item, (SourceSpec, int, os.PathLike, FrameSource)):
            raise TypeError(f"a source is a camera index, URL, video file, folder, SourceSpec or FrameSource, "
                            f"got {type(item).__name__} {item!r}")
        specs.append(item if isinstance(item, SourceSpec) else SourceSpec(item))
    return specs


def open_sources(specs: list[SourceSpec], **capture_options: Any) -> list[FrameSource]:
    """Open each spec (``open_source``) and give it its category; two sources of one name are refused
    (results and counters are told apart by name)."""
    sources: list[FrameSource] = []
    for spec in specs:
        source = open_source(spec.target, **capture_options)
        if any(seen.name == source.name for seen in sources):
            raise ValueError(f"source {source.name!r} is given twice; pass each --source once")
        if spec.category is not None:
            source.category = spec.category
        sources.append(source)
    return sources


def open_source(spec: int | str | os.PathLike[str] | FrameSource, **capture_options: Any) -> FrameSource:
    """A camera index (0 or "0"), a URL (rtsp://, http://, ...), a GenICam camera (pylon://,
    genicam://: ``runtime.cameras``), a video file or an image folder.

    ``capture_options`` go to ``CaptureSource`` and the GenICam cameras (e.g. ``retry_s``) and are
    ignored for folders."""
    if isinstance(spec, FrameSource):
        return spec
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        return CaptureSource(int(spec), live=True, **capture_options)
    text = os.fspath(spec)
    from ..cameras import camera_scheme, open_camera  # here: the camera sources build on this module

    if camera_scheme(text) is not None:
        return open_camera(text, **capture_options)
    if "://" in text:
        return CaptureSource(text, live=True, **capture_options)
    path = Path(text)
    if path.is_dir():
        return ImageFolderSource(path)
    if path.is_file():
        return CaptureSource(text, live=False, **capture_options)
    raise SourceError(f"{text}: not a camera index, URL, video file or folder; check --source")
