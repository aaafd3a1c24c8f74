"""Frame sources: camera index, stream URL, video file, image folder.

Each yields ``(source_id, frame)``: the frame index for cameras, URLs and videos, the file path
for folders. Live sources (cameras, URLs) and videos that fail mid-stream are reopened with
bounded retries and exponential backoff; a video is reopened at the next frame index. A corrupt
image in a folder is reported on stderr and skipped.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Tuple, Union

import cv2
import numpy as np

from .errors import SourceError
from .imageio import ImageReadError, read_image
from .log import report

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def is_image_file(path: Path) -> bool:
    """An image file by suffix, not a hidden one (``._x.png`` from macOS copies is not an image)."""
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")
SourceId = Union[int, str]
Frame = Tuple[SourceId, np.ndarray]
OpenCapture = Callable[[Union[int, str]], Any]


class FrameSource:
    """Base: ``live`` sources drop stale frames downstream; files keep every frame."""

    live = False
    name = ""

    def frames(self) -> Iterator[Frame]:
        raise NotImplementedError

    @property
    def counters(self) -> dict:
        """Source-side counts for the run summary (reopens, skipped files)."""
        return {}


class CaptureSource(FrameSource):
    """An OpenCV capture (camera, URL or video file) that reopens itself when reads fail."""

    def __init__(
        self,
        target: Union[int, str],
        live: bool,
        open_capture: OpenCapture = cv2.VideoCapture,
        retries: int = 5,
        backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.target = target
        self.live = live
        self.name = f"camera {target}" if isinstance(target, int) else str(target)
        self._open_capture = open_capture
        self._retries = retries
        self._backoff_s = backoff_s
        self._sleep = sleep
        self.reopened = 0

    @property
    def counters(self) -> dict:
        return {"reopened": self.reopened}

    def _open(self, index: int) -> Optional[Any]:
        capture = self._open_capture(self.target)
        if not capture.isOpened():
            capture.release()
            return None
        if index > 0 and not self.live:
            capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        return capture

    @staticmethod
    def _read(capture: Optional[Any]) -> Optional[np.ndarray]:
        if capture is None:
            return None
        try:
            ok, frame = capture.read()
        except cv2.error:
            return None
        return frame if ok and frame is not None and frame.size else None

    def _finished(self, capture: Optional[Any], index: int) -> bool:
        """A video read that fails at or past its frame count is the end, not a failure."""
        if self.live or capture is None:
            return False
        total = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        return total <= 0 or index >= total

    def frames(self) -> Iterator[Frame]:
        capture = self._open(0)
        if capture is None and not self.live:
            raise SourceError(f"{self.name}: cannot open video (missing file or unsupported codec); check the path")
        index, failures = 0, 0
        try:
            while True:
                frame = self._read(capture)
                if frame is not None:
                    failures = 0
                    yield index, frame
                    index += 1
                    continue
                if self._finished(capture, index):
                    return
                failures += 1
                if failures > self._retries:
                    if self.live:
                        raise SourceError(f"{self.name}: no frames after {self._retries} reopen attempts; check the camera/URL")
                    report(f"{self.name}: giving up at frame {index} after {self._retries} reopen attempts")
                    return
                report(f"{self.name}: read failed at frame {index}; reopening (attempt {failures}/{self._retries})")
                if capture is not None:
                    capture.release()
                self._sleep(min(self._backoff_s * 2 ** (failures - 1), 10.0))
                capture = self._open(index)
                self.reopened += 1
        finally:
            if capture is not None:
                capture.release()


class ImageFolderSource(FrameSource):
    """The images in a folder, sorted by name; unreadable files are reported and skipped."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.name = str(folder)
        self.files: List[Path] = sorted(p for p in folder.iterdir() if is_image_file(p))
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
                report(f"skipping {exc}")
                continue
            yield str(path), image


def open_source(spec: "Union[int, str, os.PathLike[str], FrameSource]", **capture_options: Any) -> FrameSource:
    """A camera index (0 or "0"), a URL (rtsp://, http://, ...), a video file or an image folder."""
    if isinstance(spec, FrameSource):
        return spec
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        return CaptureSource(int(spec), live=True, **capture_options)
    text = os.fspath(spec)
    if "://" in text:
        return CaptureSource(text, live=True, **capture_options)
    path = Path(text)
    if path.is_dir():
        return ImageFolderSource(path)
    if path.is_file():
        return CaptureSource(text, live=False, **capture_options)
    raise SourceError(f"{text}: not a camera index, URL, video file or folder; check --source")
