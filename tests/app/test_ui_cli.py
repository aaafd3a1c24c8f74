"""`run --ui` and `review export` from the command line: an open bind without a token refused in
one line, the page up after a finite source ended until SIGTERM, marked frames out as a dataset."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner
from ui_fixtures import free_port, wait_for, write_deployed

from mmad_edge.cli import app
from mmad_edge.data.layouts import mvtec_records
from mmad_edge.runtime.ui.review_store import ReviewStore
from mmad_edge.runtime.ui.security import TOKEN_ENV

pytest.importorskip("starlette", reason="the UI tests need the ui extra (pip install 'mmad-edge[ui]')")


@pytest.fixture
def folder(tmp_path):
    """Six frames, the stand-in scoring half above the 0.5 threshold."""
    images = tmp_path / "frames"
    images.mkdir()
    for index, level in enumerate([100, 200] * 3):
        cv2.imwrite(str(images / f"{index}.png"), np.full((48, 64, 3), level, np.uint8))
    return images


def test_an_open_bind_without_a_token_is_refused_in_one_line_before_any_frame(tmp_path, folder, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    result = CliRunner().invoke(app, ["run", str(write_deployed(tmp_path / "export")), "--source", str(folder),
                                      "--ui", "0.0.0.0:8765", "--review-dir", str(tmp_path / "review")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: --ui on 0.0.0.0 listens beyond this machine and needs a token: set {TOKEN_ENV} or pass "
        "--ui-token-file FILE (or listen on 127.0.0.1)"]
    assert not (tmp_path / "review").exists()


def test_with_a_finite_source_the_page_stays_up_until_sigterm(tmp_path, folder):
    """--json is written when the sources end, and again at the stop once a mark changed it."""
    port, export = free_port(), write_deployed(tmp_path / "export")
    command = [sys.executable, "-m", "mmad_edge.cli", "run", str(export), "--source", str(folder), "--backend",
               "onnxruntime", "--ui", f"127.0.0.1:{port}", "--review-dir", str(tmp_path / "review"),
               "--json", str(tmp_path / "summary.json")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        state = wait_for(lambda: _state(port, process), 60, "the page to say the source ended")
        assert (state["sources"][0]["frames"], state["sources"][0]["anomalies"]) == (6, 3)
        early = json.loads((tmp_path / "summary.json").read_text())  # written before the page is held
        assert (early["frames"], early["anomalies"], early["review"]["marked"]) == (6, 3, 0)
        with ReviewStore(tmp_path / "review") as store:
            store.mark(store.items()[0].id, "good")
        time.sleep(1.0)
        assert process.poll() is None  # still serving
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert f"live page at http://127.0.0.1:{port}/" in err and "the page stays at" in err
    final = json.loads((tmp_path / "summary.json").read_text())
    assert (final["frames"], final["review"]["marked"]) == (6, 1)
    assert err.count(f"wrote {tmp_path / 'summary.json'}") == 2
    with ReviewStore(tmp_path / "review") as store:
        assert {item.reason for item in store.items()} == {"flagged"}


def _state(port: int, process: subprocess.Popen) -> dict | None:
    if process.poll() is not None:
        raise AssertionError(f"run ended early: {process.communicate()[1]}")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/state", timeout=2) as answer:
            state = json.loads(answer.read())
    except OSError:
        return None
    return state if state["ended"] else None


def test_review_export_writes_the_marked_frames_as_a_dataset(tmp_path):
    store = ReviewStore(tmp_path / "review")
    for label in ("good", "good", "defect"):
        frame = np.full((32, 32, 3), 90, np.uint8)
        store.mark(store.add(frame, frame, source="cam", category="screw", score=0.6, threshold=0.5,
                             reason="flagged"), label)
    store.close()
    result = CliRunner().invoke(app, ["review", "export", str(tmp_path / "dataset"), "--review-dir",
                                      str(tmp_path / "review"), "--json", str(tmp_path / "export.json")])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [f"wrote 3 marked frames to {tmp_path / 'dataset'}",
                                          "  screw: test/defect 1, test/good 1, train/good 1",
                                          f"wrote {tmp_path / 'export.json'}"]
    assert sorted(record.label for record in mvtec_records(tmp_path / "dataset", "screw", "test")) == [0, 1]
    assert json.loads((tmp_path / "export.json").read_text())["frames"] == 3
    again = CliRunner().invoke(app, ["review", "export", str(tmp_path / "dataset"), "--review-dir",
                                     str(tmp_path / "review")])
    assert again.exit_code == 2 and "exists and is not an empty folder" in again.output
