"""A live page over the stand-in detector for the UI tests, and the browser settings.

``LevelSource`` gives uniform frames whose stand-in score is exactly ``level / 255``, so a test
knows each frame's verdict from the threshold. ``live_page`` runs ``run_stream`` with its page on
a thread, as `mmad-edge run --ui` does.
"""

from __future__ import annotations

import io
import json
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from runtime_fixtures import standin_metadata, write_standin

from mmad_edge.bench.line_servers import free_port
from mmad_edge.export.threshold_apply import MetadataThresholds
from mmad_edge.runtime.loop.options import RunOptions
from mmad_edge.runtime.loop.run import run_stream
from mmad_edge.runtime.loop.sources import FrameSource
from mmad_edge.runtime.ui.options import PageOptions
from mmad_edge.runtime.ui.review_store import ReviewStore

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1100")


def write_deployed(folder: Path, threshold: float = 0.5, low: float = 0.3) -> Path:
    """An export folder (``model.fp32.onnx`` + ``metadata.json``) whose metadata passes the full
    schema check, as Apply's writer demands."""
    folder.mkdir(parents=True, exist_ok=True)
    metadata = {**standin_metadata(threshold=threshold, low=low), "source_checkpoint": None}
    write_standin(folder / "model.fp32.onnx", metadata=metadata)
    (folder / "metadata.json").write_text(json.dumps(metadata))
    return folder


class LevelSource(FrameSource):
    """Uniform frames cycling through ``levels`` (each scores level / 255 on the stand-in), ``period_s``
    apart; a test may set ``levels`` while it runs."""

    live = True

    def __init__(self, levels: Sequence[int], name: str = "camera-1", period_s: float = 0.02,
                 size: tuple[int, int] = (96, 128)) -> None:
        self.levels, self.name, self.period_s, self.size = list(levels), name, period_s, size

    def frames(self) -> Iterator[tuple[int, np.ndarray]]:
        index = 0
        while True:
            yield index, np.full((*self.size, 3), self.levels[index % len(self.levels)], np.uint8)
            index += 1
            time.sleep(self.period_s)


class VerdictLog(io.TextIOBase):
    """The run's stdout under ``--jsonl``: each frame's score and verdict with the time it came."""

    def __init__(self) -> None:
        self.verdicts: list[tuple[float, float, bool]] = []  # (time, score, is_anomaly)
        self._partial = ""

    def write(self, text: str) -> int:
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            record = json.loads(line)
            if "score" in record:
                self.verdicts.append((time.monotonic(), record["score"], bool(record["is_anomaly"])))
        return len(text)

    def since(self, start: float) -> list[tuple[float, bool]]:
        return [(score, flagged) for when, score, flagged in list(self.verdicts) if when >= start]


@dataclass
class RunningPage:
    """What ``live_page`` yields: the page's address, its review queue (a second connection to the
    run's), the source (whose ``levels`` a test may change) and the run's verdicts."""

    url: str
    store: ReviewStore
    source: LevelSource
    log: VerdictLog


@contextmanager
def live_page(export: Path, review_dir: Path, levels: Sequence[int], token: str | None = None,
              shadow: Path | None = None) -> Iterator[RunningPage]:
    """``run_stream`` (what `mmad-edge run --ui` calls) over ``LevelSource(levels)`` on a thread, its
    page on a free port, Apply writing the export's metadata, ``shadow`` a candidate export in
    shadow; stopped (the page too) at exit."""
    port, source, log, stop, failed = free_port(), LevelSource(levels), VerdictLog(), threading.Event(), []
    token_file = None
    if token is not None:
        token_file = review_dir.parent / "ui-token"
        token_file.write_text(token)
    page = PageOptions(ui=f"127.0.0.1:{port}", token_file=None if token_file is None else str(token_file),
                       review_dir=str(review_dir), review_per_s=50.0)
    options = RunOptions(backend="onnxruntime", jsonl=True, page=page, shadow=shadow)

    def run() -> None:
        try:
            run_stream(str(export), source, options, stdout=log, stop_event=stop, thresholds=MetadataThresholds)
        except BaseException as exc:  # handed to the test
            failed.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for(lambda: failed or page_state(url, token) is not None, what=f"the page at {url}")
        if failed:
            raise failed[0]
        with ReviewStore(review_dir) as store:
            yield RunningPage(url, store, source, log)
    finally:
        stop.set()
        thread.join(10)
    if failed:
        raise failed[0]


def page_state(url: str, token: str | None = None) -> dict | None:
    """The page's ``/api/state`` (None while it does not answer)."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    try:
        with urllib.request.urlopen(urllib.request.Request(f"{url}api/state", headers=headers), timeout=2) as answer:
            return json.loads(answer.read())
    except OSError:
        return None


def wait_for(check, timeout_s: float = 10.0, what: str = "the condition"):
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
