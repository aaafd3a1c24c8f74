"""`mmad-edge serve`: a real Triton server (PyTriton) in a subprocess, driven by tritonclient.

One server per module (start-up takes seconds); it is started WITHOUT ``LD_LIBRARY_PATH`` so the
libpython fix is exercised, and stopped by SIGTERM in the last test.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from mmad_edge.runtime import Detector
from mmad_edge.runtime.serving.handler import InferenceHandler
from mmad_edge.runtime.serving.libpython import own_libdir, prefer_own_libpython
from runtime_fixtures import standin_metadata, write_standin

pytest.importorskip("pytriton")
psutil = pytest.importorskip("psutil")
http = pytest.importorskip("tritonclient.http")
grpc = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

pytestmark = pytest.mark.serve
CATEGORIES = {"gravel": {"threshold": 0.3, "normalization": {"low": 0.2, "high": 0.3}}}


def export_with_categories(folder: Path, size: int = 32, max_batch: int = 8) -> Path:
    """A stand-in export whose statistics carry one category besides the pooled numbers."""
    folder.mkdir(parents=True, exist_ok=True)
    metadata = standin_metadata(size, max_batch=max_batch)
    metadata["statistics"]["categories"] = CATEGORIES
    write_standin(folder / "model.fp32.onnx", size, metadata=metadata)
    (folder / "metadata.json").write_text(json.dumps(metadata))
    return folder


def free_ports(count: int) -> list:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


class Server:
    def __init__(self, process: subprocess.Popen, ports: list, export: Path) -> None:
        self.process, self.export = process, export
        self.http, self.grpc, self.metrics = ports

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        client = http.InferenceServerClient(f"localhost:{self.http}")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.process.stdout.read()
            try:
                if client.is_model_ready("mmad_edge"):
                    return
            except Exception:
                pass
            time.sleep(0.5)
        raise AssertionError("mmad-edge serve did not become ready")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    export = export_with_categories(tmp_path_factory.mktemp("serve") / "export")
    ports = free_ports(3)
    env = {key: value for key, value in os.environ.items() if key != "LD_LIBRARY_PATH"}
    command = [sys.executable, "-m", "mmad_edge.cli", "serve", str(export), "--port", str(ports[0]),
               "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2]), "--max-queue-delay-us", "50000",
               "--log-file", str(export.parent / "triton.log"), "--json", str(export.parent / "summary.json")]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    started = Server(process, ports, export)
    try:
        started.wait_ready()
        yield started
    finally:
        if process.poll() is None:
            for child in psutil.Process(process.pid).children(recursive=True):
                child.kill()
            process.kill()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def detector(server):
    with Detector.load(server.export) as loaded:
        yield loaded


def frames_for(seed: int) -> np.ndarray:
    """A request's frames: 1-3 frames of one odd size (Triton batches one shape per request)."""
    rng = np.random.default_rng(seed)
    height, width = int(rng.integers(20, 90)), int(rng.integers(20, 90))
    return rng.integers(0, 256, (int(rng.integers(1, 4)), height, width, 3), dtype=np.uint8)


def infer(module, client, frames: np.ndarray, outputs=None, category=None):
    image = module.InferInput("image", list(frames.shape), "UINT8")
    image.set_data_from_numpy(frames)
    inputs = [image]
    if category is not None:
        names = np.array([[category.encode()]] * len(frames), dtype=object)
        inputs.append(module.InferInput("category", list(names.shape), "BYTES"))
        inputs[-1].set_data_from_numpy(names)
    requested = None if outputs is None else [module.InferRequestedOutput(name) for name in outputs]
    return client.infer("mmad_edge", inputs, outputs=requested)


def assert_matches(answer, results) -> None:
    scores = answer.as_numpy("score").reshape(-1)
    np.testing.assert_allclose(scores, [r.score for r in results], rtol=1e-6, atol=0)
    np.testing.assert_allclose(answer.as_numpy("anomaly_map"), np.stack([r.anomaly_map for r in results]),
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(answer.as_numpy("score_normalized").reshape(-1),
                               [r.score_normalized for r in results], rtol=1e-6, atol=1e-7)
    assert answer.as_numpy("is_anomaly").reshape(-1).tolist() == [r.is_anomaly for r in results]


def same_shape(seed: int) -> np.ndarray:
    """One 40x40 frame: requests of one shape, which Triton's dynamic batcher may put together."""
    return np.random.default_rng(seed).integers(0, 256, (1, 40, 40, 3), dtype=np.uint8)


def client_thread(module, port: int, seeds: list, answers: dict, errors: list, make=frames_for) -> None:
    try:
        client = module.InferenceServerClient(f"localhost:{port}")  # tritonclient.http: one client per thread
        for seed in seeds:
            answers[seed] = infer(module, client, make(seed))
    except Exception as exc:  # reported by the test thread
        errors.append(exc)


def test_concurrent_http_and_grpc_clients_get_the_in_process_results(server, detector):
    answers, errors = {}, []
    threads = [threading.Thread(target=client_thread, args=(module, port, list(range(base, base + 6)), answers, errors))
               for base, (module, port) in enumerate([(http, server.http), (grpc, server.grpc)] * 3)
               for base in [base * 100]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(answers) == 36
    for seed, answer in answers.items():
        assert_matches(answer, detector.predict(frames_for(seed)))


def metric(server, name: str) -> float:
    text = urllib.request.urlopen(f"http://localhost:{server.metrics}/metrics", timeout=10).read().decode()
    found = re.search(rf'^{name}{{model="mmad_edge",version="1"}} (\S+)$', text, re.MULTILINE)
    assert found, f"{name} missing from the metrics"
    return float(found.group(1))


def test_metrics_show_batches_larger_than_one_under_concurrent_load(server):
    before = metric(server, "nv_inference_exec_count"), metric(server, "nv_inference_count")
    answers, errors = {}, []
    threads = [threading.Thread(target=client_thread, args=(grpc, server.grpc, [1000 + 10 * i + j for j in range(4)],
                                                            answers, errors, same_shape)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    executions = metric(server, "nv_inference_exec_count") - before[0]
    images = metric(server, "nv_inference_count") - before[1]
    assert images == 32
    assert executions < 32, f"{images:g} images in {executions:g} executions: no request was batched with another"


def test_category_input_and_requested_outputs(server):
    client = grpc.InferenceServerClient(f"localhost:{server.grpc}")
    frames = frames_for(7)
    with Detector.load(server.export, category="gravel") as gravel:
        expected = gravel.predict(frames)
    assert_matches(infer(grpc, client, frames, category="gravel"), expected)
    only_scores = infer(grpc, client, frames, outputs=["score", "is_anomaly"])
    assert only_scores.as_numpy("anomaly_map") is None
    assert only_scores.as_numpy("score").shape == (len(frames), 1)


@pytest.mark.parametrize("bad, dtype, message", [
    (np.zeros((1, 32, 32, 3), np.float32), "FP32", "data-type is 'FP32', but model 'mmad_edge' expects 'UINT8'"),
    (np.zeros((1, 32, 32, 4), np.uint8), "UINT8", "unexpected shape for input 'image'"),
    (np.zeros((1, 32, 32), np.uint8), "UINT8", "unexpected shape for input 'image'"),
])
def test_a_malformed_request_gets_an_error_and_the_next_good_one_succeeds(server, detector, bad, dtype, message):
    client = http.InferenceServerClient(f"localhost:{server.http}")
    image = http.InferInput("image", list(bad.shape), dtype)
    image.set_data_from_numpy(bad)
    with pytest.raises(InferenceServerException, match=re.escape(message)):
        client.infer("mmad_edge", [image])
    assert_matches(infer(http, client, frames_for(3)), detector.predict(frames_for(3)))


def test_an_unknown_category_is_named_in_the_error(server, detector):
    client = grpc.InferenceServerClient(f"localhost:{server.grpc}")
    with pytest.raises(InferenceServerException, match="no statistics for category 'nope'.*gravel"):
        infer(grpc, client, frames_for(4), category="nope")
    assert_matches(infer(grpc, client, frames_for(4)), detector.predict(frames_for(4)))


def test_bench_serve_reports_every_concurrency_level(server):
    from mmad_edge.bench.serve_load import ServeLoadOptions, run_serve_load

    report = run_serve_load(str(server.export), ServeLoadOptions(url=f"grpc://localhost:{server.grpc}",
                                                                 clients=(1, 3), duration_s=0.3, warmup=1,
                                                                 progress=False))
    assert [(row["name"], row["clients"], row["batch"]) for row in report["rows"]] == [
        ("serve grpc", 1, 1), ("serve grpc", 3, 1), ("in-process Detector", 1, 1), ("in-process Detector", 1, 8)]
    assert all(row["requests"] > 0 and row["p99_ms"] >= row["p50_ms"] for row in report["rows"])


def test_sigterm_stops_the_server_and_everything_it_started(server):
    process = psutil.Process(server.process.pid)
    children = process.children(recursive=True)
    assert any("tritonserver" in child.name() for child in children)
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=20)
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []
    output = server.process.stdout.read()
    assert server.process.returncode == 0, output
    assert "serving mmad_edge" in output and "stopped:" in output
    summary = json.loads((server.export.parent / "summary.json").read_text())
    assert summary["served"]["largest_batch"] > 1


def test_the_handler_keeps_each_frames_place_across_categories(tmp_path):
    export = export_with_categories(tmp_path / "export")
    frames = np.concatenate([frames_for(11), frames_for(11)[::-1]])
    names = np.array([[b"gravel"] if index % 2 else [b""] for index in range(len(frames))], dtype=object)
    with Detector.load(export) as pooled, Detector.load(export, category="gravel") as gravel:
        handler = InferenceHandler(pooled)
        answers = handler([{"image": frames[:1]}, {"image": frames, "category": names}])
        expected = [(gravel if index % 2 else pooled)(frame) for index, frame in enumerate(frames)]
        for name in ("score", "score_normalized", "is_anomaly"):
            np.testing.assert_array_equal(answers[1][name].reshape(-1), [getattr(r, name) for r in expected])
        np.testing.assert_array_equal(answers[1]["anomaly_map"], np.stack([r.anomaly_map for r in expected]))
        assert answers[0]["score"].reshape(-1).tolist() == [expected[0].score]
        with pytest.raises(ValueError, match="no statistics for category 'nope'"):
            handler([{"image": frames, "category": np.array([[b"nope"]], dtype=object)}])
        with pytest.raises(ValueError, match=r"must be \(N, H, W, 3\)"):
            handler([{"image": frames[0]}])


def test_libpython_directory_goes_first_once():
    if own_libdir() is None:
        pytest.skip("this interpreter has no shared libpython")
    environ = {"LD_LIBRARY_PATH": "/opt/other"}
    assert prefer_own_libpython(environ) == own_libdir()
    assert environ["LD_LIBRARY_PATH"] == f"{own_libdir()}:/opt/other"
    assert prefer_own_libpython(environ) is None
    empty: dict = {}
    prefer_own_libpython(empty)
    assert empty == {"LD_LIBRARY_PATH": own_libdir()}
