"""`--pretrained unireplknet_n_in1k` through huggingface_hub against a localhost stand-in for the
hub (HF_ENDPOINT): downloaded once into the cache, reused without a second download, used
offline (HF_HUB_OFFLINE=1) without a request, and a one-line error offline without a copy."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from reference_encoder import assert_same_encoder
from typer.testing import CliRunner

from mmad_edge.checkpoint import load_checkpoint
from mmad_edge.cli import app
from mmad_edge.data.demo import make_demo_dataset
from mmad_edge.weights import OFFICIAL, REPO_ID

FILE = OFFICIAL["unireplknet_n_in1k"].filename
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class Hub(ThreadingHTTPServer):
    """Answers HEAD and GET on /<repo>/resolve/main/<file> with the headers huggingface_hub needs."""

    def __init__(self, payload: bytes) -> None:
        super().__init__(("127.0.0.1", 0), HubHandler)
        self.payload, self.requests = payload, []


class HubHandler(BaseHTTPRequestHandler):
    server: Hub

    def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
        self._answer(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        self.server.requests.append((self.command, self.path))
        if self.path != f"/{REPO_ID}/resolve/main/{FILE}":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("ETag", f'"{hashlib.sha256(self.server.payload).hexdigest()}"')
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("Content-Length", str(len(self.server.payload)))
        self.end_headers()
        if body:
            self.wfile.write(self.server.payload)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def hub(official_state, tmp_path, monkeypatch):
    path = tmp_path / "served.pth"
    torch.save({"model": official_state}, path)
    server = Hub(path.read_bytes())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setenv("MMAD_EDGE_WEIGHTS", str(tmp_path / "no-local-copies"))
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # the suite set it before import
    yield server
    server.shutdown()
    server.server_close()


def test_named_weights_download_once_then_reuse_then_work_offline(hub, reference_outputs, tmp_path, monkeypatch):
    runner = CliRunner()
    data = make_demo_dataset(tmp_path / "data", ("brick",), n_train=4, n_test_good=1, n_test_defect=1, size=64)
    result = runner.invoke(app, ["train", "--data", str(data), "--variant", "n", "--image-size", "64", "--epochs",
                                 "1", "--max-steps", "1", "--batch-size", "2", "--pretrained", "unireplknet_n_in1k",
                                 "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert [m for m, _ in hub.requests].count("GET") == 1
    model, ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert_same_encoder(model, reference_outputs)
    assert ckpt["encoder_weights"] == {"kind": "imagenet", "name": "unireplknet_n_in1k", "file": FILE,
                                       "sha256": hashlib.sha256(hub.payload).hexdigest()}
    assert "encoder weights: ImageNet unireplknet_n_in1k" in result.output

    result = runner.invoke(app, ["weights", "--json", str(tmp_path / "w.json")])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads((tmp_path / "w.json").read_text())["weights"]}
    assert Path(rows["unireplknet_n_in1k"]["cached"]).read_bytes() == hub.payload
    assert rows["unireplknet_a_in1k"]["cached"] is None and rows["unireplknet_s_in22k"]["variant"] == "s"

    second = ["import-checkpoint", "--variant", "n", "--image-size", "64", "--encoder", "unireplknet_n_in1k"]
    result = runner.invoke(app, [*second, "--out", str(tmp_path / "again.pt")])
    assert result.exit_code == 0, result.output
    assert [m for m, _ in hub.requests].count("GET") == 1  # the cached copy is reused: nothing downloaded

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = len(hub.requests)
    result = runner.invoke(app, [*second, "--out", str(tmp_path / "offline.pt")])
    assert result.exit_code == 0, result.output
    assert len(hub.requests) == before  # offline: not one request
    assert_same_encoder(load_checkpoint(tmp_path / "offline.pt")[0], reference_outputs)


def test_offline_without_a_copy_names_the_file_and_where_to_put_it(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = make_demo_dataset(tmp_path / "data", ("brick",), n_train=4, n_test_good=1, n_test_defect=1, size=64)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--data", str(data), "--variant", "a", "--image-size", "64",
                                      "--out", str(out)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    endpoint = f"http://127.0.0.1:{hub.server_address[1]}"
    assert result.output.strip().splitlines() == [
        "error: no --pretrained given, so train uses unireplknet_a_in1k (the ImageNet weights of variant a): "
        "HF_HUB_OFFLINE is set and unireplknet_a_in1k_224_acc77.03.pth is not cached; offline, pass --encoder-init "
        "texture (fitted on the training images) or --pretrained PATH"]
    result = CliRunner().invoke(app, ["import-checkpoint", "--variant", "n", "--encoder", "unireplknet_n_in1k",
                                      "--out", str(tmp_path / "c.pt")])
    assert result.exit_code == 2 and result.output.strip().splitlines() == [
        f"error: unireplknet_n_in1k: HF_HUB_OFFLINE is set and {FILE} is not cached; download "
        f"{endpoint}/{REPO_ID}/resolve/main/{FILE} and put it in {tmp_path / 'no-local-copies'}/ "
        "(or pass its path instead of the name)"]
    assert hub.requests == [] and not out.exists() and not (tmp_path / "c.pt").exists()
