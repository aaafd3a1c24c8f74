"""Where stream results go: JSON lines, saved anomalies, an OpenCV window."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

from ..errors import BackendUnavailableError
from ..log import notice
from ..result import Result
from .overlay import map_image, render_overlay
from .sources import FramePosition, SourceId

QUIT_KEYS = (ord("q"), 27)


def frame_place(source_name: str, source_id: SourceId, index: int) -> dict:
    """Where a frame came from (the file; or the source's name with the frame index and time) and its
    place in the run (``index``), as JSON fields."""
    where = {"source": source_name, **source_id.to_json()} if isinstance(source_id, FramePosition) else {"source": source_id}
    return {**where, "index": index}


def frame_record(source_name: str, source_id: SourceId, index: int, result: Result) -> dict:
    """The JSON object for one frame: ``frame_place`` and ``result.to_json()``."""
    return {**frame_place(source_name, source_id, index), **result.to_json()}


def json_safe(value: Any) -> Any:
    """``value`` with every NaN / infinity replaced by None: strict JSON has no such numbers, and a
    bare ``NaN`` in a line breaks the readers (jq, browsers, most languages) that consume it."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


class JsonlWriter:
    """One strict-JSON object per line, flushed per line so a reader (or a crash) loses nothing."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, record: dict) -> None:
        self._stream.write(json.dumps(json_safe(record), allow_nan=False) + "\n")
        self._stream.flush()


class AnomalySaver:
    """For each anomalous frame: the frame, its overlay and map PNGs, a line in results.jsonl.

    The map PNG has the size of ``result.anomaly_map``: the model's, or the frame's when the
    stream runs with ``map_size="frame"`` (``mmad-edge run --save DIR --map-size frame``).

    results.jsonl is appended to; file names start with the run's start time so a restarted
    run never overwrites the images an earlier line points at.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lines = (self.folder / "results.jsonl").open("a", encoding="utf-8")
        self._log = JsonlWriter(self._lines)
        self._run = time.strftime("%Y%m%d-%H%M%S")

    def save(self, source_id: SourceId, frame: np.ndarray, result: Result, record: dict,
             normalization: tuple[float, float] | None) -> None:
        """``normalization``: the source's (low, high), which colours the overlay and map."""
        stem = f"{self._run}_{record['index']:06d}"
        if isinstance(source_id, str):
            stem += "_" + Path(source_id).stem
        images = {
            "frame": frame,
            "overlay": render_overlay(frame, result, normalization),
            "map": map_image(result.anomaly_map, normalization),
        }
        files = {}
        for kind, image in images.items():
            name = f"{stem}.png" if kind == "frame" else f"{stem}_{kind}.png"
            if not cv2.imwrite(str(self.folder / name), image):
                notice(f"could not write {self.folder / name}; check free space and permissions")
            files[kind] = name
        self._log.write({**record, "files": files})

    def close(self) -> None:
        self._lines.close()


class Viewer:
    """An OpenCV window; ``show`` returns False once the user pressed q or Esc."""

    def __init__(self, title: str = "mmad-edge") -> None:
        self.title = title
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise BackendUnavailableError(
                "--show needs OpenCV with GUI support, which opencv-python-headless lacks; "
                "pip uninstall -y opencv-python-headless && pip install opencv-python, or drop --show"
            ) from None

    def show(self, canvas: np.ndarray) -> bool:
        cv2.imshow(self.title, canvas)
        return (cv2.waitKey(1) & 0xFF) not in QUIT_KEYS

    def close(self) -> None:
        cv2.destroyWindow(self.title)
