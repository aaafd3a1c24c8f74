"""`mmad-edge serve`: a real Triton server (PyTriton) in a subprocess, driven by tritonclient.

One server per module (start-up takes seconds); it is started WITHOUT ``LD_LIBRARY_PATH`` so the
libpython fix is exercised, and stopped by SIGTERM in the last test. Its export's batch profile is
1:1:2 (a dynamic batch axis) and it is asked for ``--max-batch 8``. It watches drift with a window of 4 and serves our
metrics; category ``lamp`` is sent only by the drift test, so its monitor sees nothing else. Its
start is watched as a readiness probe would: ``/v2/health/ready`` polled from the moment the
process starts, and one inference sent the moment it answers 200.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from runtime_fixtures import rescale_standin, standin_metadata, write_standin
from typer.testing import CliRunner

from mmad_edge.cli import app
from mmad_edge.runtime import Detector
from mmad_edge.runtime.artifact.batching import batch_contract
from mmad_edge.runtime.artifact.deployment import promote
from mmad_edge.runtime.artifact.metadata import load_contract
from mmad_edge.runtime.errors import ArtifactError
from mmad_edge.runtime.serving.handler import InferenceHandler
from mmad_edge.runtime.serving.libpython import own_libdir, prefer_own_libpython
from mmad_edge.runtime.serving.options import ServeOptions
from mmad_edge.runtime.serving.rejection import REJECTED
from mmad_edge.runtime.serving.selftest import SELF_TEST, self_test_frame
from mmad_edge.runtime.serving.server import check_ports_free
from mmad_edge.runtime.serving.watch import ServeWatch

pytest.importorskip("pytriton")
psutil = pytest.importorskip("psutil")
http = pytest.importorskip("tritonclient.http")
grpc = pytest.importorskip("tritonclient.grpc")
from pytriton.proxy.types import Request  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

pytestmark = pytest.mark.serve
# lamp: normal scores at median 0.5 with std 0.01, so uniform frames of 128 (score 0.502) are
# normal and frames of 200 (0.784) are about 28 std away.
CATEGORIES = {"gravel": {"threshold": 0.3, "normalization": {"low": 0.2, "high": 0.3}},
              "lamp": {"threshold": 0.6, "normalization": {"low": 0.5, "high": 0.6}, "normal_scores": {"std": 0.01}}}
DRIFT_WINDOW = 4
STATISTIC_TOL = 1e-4  # float32 scores (eps ~6e-8 at 0.5) over a std of 0.01


def export_with_categories(folder: Path, size: int = 32, max_batch: int = 2) -> Path:
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


def health(port: int) -> int | None:
    """The status /v2/health/ready answers (None: nothing listens yet)."""
    try:
        return urllib.request.urlopen(f"http://localhost:{port}/v2/health/ready", timeout=2).status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


class Server:
    def __init__(self, process: subprocess.Popen, ports: list, export: Path, log: Path) -> None:
        self.process, self.export, self.log = process, export, log
        self.http, self.grpc, self.metrics, self.app_metrics = ports
        self.events = export.parent / "events.jsonl"
        self.first_answer = None

    def output(self) -> str:
        """What the command printed so far (stdout and stderr)."""
        return self.log.read_text()

    def wait_for_output(self, text: str, timeout_s: float = 30.0) -> str:
        """What the command printed, once it holds ``text`` (or the timeout passed)."""
        deadline = time.monotonic() + timeout_s
        while text not in self.output() and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.output()

    def infer_when_ready(self, timeout_s: float = 120.0) -> None:
        """Poll /v2/health/ready as a probe does; the moment it says 200, infer (and keep the answer)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.output()
            if health(self.http) == 200:
                client = http.InferenceServerClient(f"localhost:{self.http}")
                self.first_answer = infer(http, client, frames_for(99))
                return
            time.sleep(0.02)
        raise AssertionError("mmad-edge serve did not become ready")

    def stop(self) -> None:
        if self.process.poll() is None:
            for child in psutil.Process(self.process.pid).children(recursive=True):
                child.kill()
            self.process.kill()
        self.process.wait(timeout=30)


def start_serve(export: Path, *extra: str) -> Server:
    """`mmad-edge serve` in a subprocess (without LD_LIBRARY_PATH), its output in a file beside the export."""
    ports = free_ports(4)
    env = {key: value for key, value in os.environ.items() if key != "LD_LIBRARY_PATH"}
    command = [sys.executable, "-m", "mmad_edge.cli", "serve", str(export), "--port", str(ports[0]),
               "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2]),
               "--log-file", str(export.parent / "triton.log"), *extra]
    log = export.parent / "serve.out"
    with log.open("w") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT, text=True)
    return Server(process, ports, export, log)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    export = export_with_categories(tmp_path_factory.mktemp("serve") / "export")
    app_port = free_ports(1)[0]
    started = start_serve(export, "--max-batch", "8", "--max-queue-delay-us", "50000",
                          "--json", str(export.parent / "summary.json"), "--drift-window", str(DRIFT_WINDOW),
                          "--app-metrics-port", str(app_port), "--events", str(export.parent / "events.jsonl"))
    started.app_metrics = app_port
    try:
        started.infer_when_ready()
        yield started
    finally:
        started.stop()


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


def test_a_client_that_infers_the_moment_health_says_ready_gets_its_result(server, detector, tmp_path):
    assert_matches(server.first_answer, detector.predict(frames_for(99)))
    for attempt in range(2):  # two more starts: the first 200 is never early
        again = start_serve(export_with_categories(tmp_path / f"export{attempt}"), "--max-batch", "8")
        try:
            again.infer_when_ready()
            assert_matches(again.first_answer, detector.predict(frames_for(99)))
            assert "ready: the self-test frame came back as served in process" in again.wait_for_output("ready: ")
        finally:
            again.stop()


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


def test_max_batch_above_the_onnx_profile_batches_under_concurrent_load(server):
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


def test_a_bad_request_under_load_is_answered_400_alone_and_its_batch_mates_are_served(server, detector):
    before = metric(server, "nv_inference_exec_count"), metric(server, "nv_inference_count")
    answers, errors, rejected = {}, [], []
    start = threading.Barrier(8)

    def send(seed: int) -> None:
        client = grpc.InferenceServerClient(f"localhost:{server.grpc}")
        start.wait()
        try:
            answers[seed] = infer(grpc, client, same_shape(seed), category="nope" if seed == 2003 else None)
        except InferenceServerException as exc:
            rejected.append((seed, exc.status(), exc.message()))
        except Exception as exc:  # reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(2000 + index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and sorted(answers) == [2000, 2001, 2002, 2004, 2005, 2006, 2007]
    assert rejected == [(2003, "StatusCode.INVALID_ARGUMENT", "unknown category 'nope'; this model knows gravel, "
                                                              "lamp (send none or an empty name for the pooled threshold)")]
    for seed, answer in answers.items():
        assert_matches(answer, detector.predict(same_shape(seed)))
    executions = metric(server, "nv_inference_exec_count") - before[0]
    assert executions < 8, f"8 requests in {executions:g} executions: none was batched with another"


def test_every_port_of_the_server_listens_on_this_machine_only(server):
    triton = [child for child in psutil.Process(server.process.pid).children(recursive=True)
              if "tritonserver" in child.name()]
    listening = {(conn.laddr.ip, conn.laddr.port) for process in triton for conn in process.net_connections("inet")
                 if conn.status == psutil.CONN_LISTEN}
    assert {port for _, port in listening} >= {server.http, server.grpc, server.metrics}
    addresses = {ipaddress.ip_address(ip) for ip, _ in listening}
    assert {getattr(ip, "ipv4_mapped", None) or ip for ip in addresses} == {ipaddress.ip_address("127.0.0.1")}, listening


def test_with_a_token_every_api_but_health_needs_it(tmp_path, detector):
    token = "s3cret-token-of-the-line-0123"
    (tmp_path / "token").write_text(token + "\n")
    started = start_serve(export_with_categories(tmp_path / "export"), "--max-batch", "4", "--token-file",
                          str(tmp_path / "token"))
    try:
        started.infer_when_ready()  # health: open; the first inference (no header) is refused
        pytest.fail("an inference without the token was served")
    except InferenceServerException as exc:
        assert exc.status() == "403" and "triton-access-token" in exc.message(), exc
    try:
        client = http.InferenceServerClient(f"localhost:{started.http}")
        frames = frames_for(7)
        image = http.InferInput("image", list(frames.shape), "UINT8")
        image.set_data_from_numpy(frames)
        assert_matches(client.infer("mmad_edge", [image], headers={"triton-access-token": token}),
                       detector.predict(frames))
        with pytest.raises(InferenceServerException, match="403|triton-access-token"):
            client.get_model_metadata("mmad_edge")
        assert health(started.http) == 200
        assert "listening on 127.0.0.1, token required: triton-access-token header (health open)" in (
            started.wait_for_output("ready: "))
    finally:
        started.stop()


def test_serve_ui_shows_what_a_real_client_sent_per_category(tmp_path, detector):
    pytest.importorskip("starlette", reason="the live page needs the ui extra")
    page = free_ports(1)[0]
    started = start_serve(export_with_categories(tmp_path / "export"), "--max-batch", "4", "--ui", f"127.0.0.1:{page}",
                          "--review-dir", str(tmp_path / "review"))
    try:
        started.infer_when_ready()  # one pooled request (frames_for(99)), then three of category gravel
        client = http.InferenceServerClient(f"localhost:{started.http}")
        sent = [frames_for(seed) for seed in (1, 2, 3)]
        for frames in sent:
            infer(http, client, frames, category="gravel")
        with urllib.request.urlopen(f"http://127.0.0.1:{page}/api/state", timeout=10) as answer:
            state = json.loads(answer.read())
    finally:
        started.stop()
    by_category = {source["category"]: source for source in state["sources"]}
    gravel = detector.predict(list(sent[-1]), categories=["gravel"] * len(sent[-1]))[-1]
    assert by_category["gravel"]["frames"] == sum(len(frames) for frames in sent)
    assert by_category["gravel"]["score"] == pytest.approx(gravel.score, rel=1e-6)
    assert by_category["gravel"]["threshold"] == 0.3 and by_category[None]["frames"] == len(frames_for(99))


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


@pytest.mark.parametrize("module", [http, grpc])
def test_an_unknown_category_is_one_line_naming_the_known_ones(server, detector, module):
    client = module.InferenceServerClient(f"localhost:{server.http if module is http else server.grpc}")
    with pytest.raises(InferenceServerException) as raised:
        infer(module, client, frames_for(4), category="nope")
    assert raised.value.status() == ("400" if module is http else "StatusCode.INVALID_ARGUMENT"), raised.value
    assert raised.value.message() == ("unknown category 'nope'; this model knows gravel, lamp (send none or an empty "
                                      "name for the pooled threshold)")
    assert_matches(infer(module, client, frames_for(4)), detector.predict(frames_for(4)))


def test_bench_serve_reports_every_concurrency_level(server):
    from mmad_edge.bench.serve_load import ServeLoadOptions, run_serve_load

    report = run_serve_load(str(server.export), ServeLoadOptions(url=f"grpc://localhost:{server.grpc}",
                                                                 clients=(1, 3), duration_s=0.3, warmup=1,
                                                                 progress=False))
    assert [(row["name"], row["clients"], row["batch"]) for row in report["rows"]] == [
        ("serve grpc", 1, 1), ("serve grpc", 3, 1), ("in-process Detector", 1, 1), ("in-process Detector", 1, 8)]
    assert all(row["requests"] > 0 and row["p99_ms"] >= row["p50_ms"] for row in report["rows"])


# Uniform frames sent as category lamp, one per request: normal, bright, normal again.
LAMP = [128] * 4 + [200] * 4 + [128] * 4


def lamp_statistics() -> list:
    """The stated drift statistic after each lamp frame (None before half a window), with numpy."""
    scores = np.array(LAMP, np.float64) / 255.0  # the stand-in's score of a uniform frame
    return [None if index + 1 < DRIFT_WINDOW // 2 else
            (np.median(scores[max(0, index - DRIFT_WINDOW + 1): index + 1]) - 0.5) / 0.01
            for index in range(len(scores))]


def expected_lamp_events() -> list:
    changes, drifting = [], False
    for index, statistic in enumerate(lamp_statistics()):
        if statistic is not None and ((abs(statistic) > 3.0) if not drifting else (abs(statistic) < 1.5)):
            drifting = not drifting
            changes.append(("drifting" if drifting else "recovered", index))
    return changes


def scrape(port: int) -> dict:
    """Our metrics, parsed by prometheus_client's own parser: {(sample, category, le): value}."""
    text = urllib.request.urlopen(f"http://localhost:{port}/metrics", timeout=10).read().decode()
    return {(sample.name, sample.labels.get("category"), sample.labels.get("le")): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_a_brightness_change_of_one_category_warns_once_recovers_once_and_shows_in_our_metrics(server):
    client = http.InferenceServerClient(f"localhost:{server.http}")
    seen = []
    for index, value in enumerate(LAMP):
        infer(http, client, np.full((1, 32, 32, 3), value, np.uint8), outputs=["score"], category="lamp")
        if index == 7:
            seen.append(scrape(server.app_metrics))  # after the bright frames
    seen.append(scrape(server.app_metrics))
    expected = expected_lamp_events()
    assert [state for state, _ in expected] == ["drifting", "recovered"]
    records = [json.loads(line) for line in server.events.read_text().splitlines()]
    lamp = [record for record in records if record["category"] == "lamp"]
    assert [(record["event"], record["state"], record["frame"]) for record in lamp] == [
        ("drift", state, index) for state, index in expected]
    assert lamp[0]["statistic"] == pytest.approx(lamp_statistics()[expected[0][1]], abs=STATISTIC_TOL)
    assert lamp[0]["tolerance"] == 3.0 and all(record["category"] in (None, "gravel", "lamp") for record in records)
    lines = server.output().splitlines()
    assert len([line for line in lines if line.startswith(
        f"mmad-edge: drift: category lamp: median of the last {DRIFT_WINDOW} scores is ")]) == 1
    assert len([line for line in lines if line.startswith("mmad-edge: drift recovered: category lamp: ")]) == 1
    during, after = seen
    assert during[("mmad_edge_drifting", "lamp", None)] == 1.0 and after[("mmad_edge_drifting", "lamp", None)] == 0.0
    assert after[("mmad_edge_frames_total", "lamp", None)] == len(LAMP)
    assert after[("mmad_edge_anomalies_total", "lamp", None)] == LAMP.count(200)  # 0.784 > 0.6 > 0.502
    assert after[("mmad_edge_latency_seconds_count", "lamp", None)] == len(LAMP)
    assert after[("mmad_edge_drift_statistic", "lamp", None)] == pytest.approx(lamp_statistics()[-1], abs=STATISTIC_TOL)


def test_sigterm_stops_the_server_and_everything_it_started(server):
    process = psutil.Process(server.process.pid)
    children = process.children(recursive=True)
    assert any("tritonserver" in child.name() for child in children)
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=20)
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []
    output = server.output()
    assert server.process.returncode == 0, output
    assert "NVML" not in output and "Signal (" not in output  # tritonserver's console: in its log
    console = (server.export.parent / "triton.console.log").read_text()  # beside Triton's log
    assert "Signal (2) received." in console
    if not Path("/proc/driver/nvidia").exists():  # printed where no NVIDIA driver answers
        assert "Error: Failed to initialize NVML" in console
    assert "serving mmad_edge" in output and "batch up to 8" in output and f"drift watch on (window {DRIFT_WINDOW}, tolerance 3" in output
    summary = json.loads((server.export.parent / "summary.json").read_text())
    assert summary["served"]["largest_batch"] > 1 and summary["served"]["rejected"] >= 2  # the unknown categories
    events = summary["served"]["drift_events"]
    assert events == len(server.events.read_text().splitlines()) and f", {events} drift events" in output
    assert summary["served"]["drift"]["lamp"] == {"events": 2, "drifting": False, "frames": len(LAMP),
                                                  "statistic": pytest.approx(lamp_statistics()[-1], abs=STATISTIC_TOL)}
    assert "pooled" in summary["served"]["drift"]


def test_serve_on_a_deployment_folder_swaps_in_a_promoted_version_between_two_executions(tmp_path):
    deploy = tmp_path / "deploy"
    promote(export_with_categories(tmp_path / "first"), deploy)
    second = export_with_categories(tmp_path / "second")
    rescale_standin(second / "model.fp32.onnx", 2.0)  # the same frame scores twice as high
    started = start_serve(deploy, "--max-batch", "4", "--json", str(tmp_path / "summary.json"))
    try:
        started.infer_when_ready()
        client = http.InferenceServerClient(f"localhost:{started.http}")
        frame = np.full((1, 32, 32, 3), 100, np.uint8)
        before = infer(http, client, frame).as_numpy("score").item()
        promote(second, deploy)
        old, deadline = 1, time.monotonic() + 30
        while (score := infer(http, client, frame).as_numpy("score").item()) == before:
            old += 1
            assert time.monotonic() < deadline, started.output()
            time.sleep(0.05)
        assert score == pytest.approx(2 * before, rel=1e-6)
        started.process.send_signal(signal.SIGTERM)
        started.process.wait(timeout=30)
    finally:
        started.stop()
    output = started.output()
    assert started.process.returncode == 0, output
    frame_index = len(frames_for(99)) + old  # images served before the swap (the self-test is not counted)
    assert "deployment " + str(deploy) + ": serving 0001-first, following current" in output
    assert re.search(re.escape(f"mmad-edge: deployment {deploy}: now scoring with 0002-second from frame {frame_index} "
                               "(was 0001-first, promoted at ") + r"\d\d:\d\d:\d\d\)\n", output), output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["deployment"], summary["version"], summary["follow"]) == (str(deploy), "0002-second", True)
    assert [(swap["from"], swap["to"], swap["frame"], swap["how"]) for swap in summary["swaps"]] == [
        ("0001-first", "0002-second", frame_index, "promoted")]
    assert summary["served"]["images"] == frame_index + 1


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
        mixed = handler([{"image": frames[:2]}, {"image": frames[:3], "category": np.array([[b"nope"]], dtype=object)},
                         {"image": frames[:1]}])
        assert set(mixed[1]) == {REJECTED} and mixed[1][REJECTED].tolist() == [
            b"unknown category 'nope'; this model knows gravel, lamp (send none or an empty name for the pooled "
            b"threshold)"]
        assert mixed[0]["score"].reshape(-1).tolist() == [r.score for r in pooled.predict(frames[:2])]  # served
        assert mixed[2]["score"].reshape(-1).tolist() == [expected[0].score]
        served_images = 1 + len(frames) + len(frames[:2]) + 1
        assert (handler.counters.requests, handler.counters.images, handler.counters.rejected) == (4, served_images, 1)
        handler([Request({"image": frames[:1]}, parameters={SELF_TEST: True})])
        assert (handler.counters.requests, handler.counters.executions) == (4, 2)  # the self-test is not served
        assert handler([{"image": frames[0]}])[0][REJECTED][0].decode() == (
            f"input 'image' must be (N, H, W, 3) BGR frames, got shape {frames[0].shape}")
        assert handler.counters.rejected == 2



def test_a_wrong_answer_through_a_real_server_stops_serve_at_its_self_test_in_one_line(tmp_path, monkeypatch):
    from mmad_edge.runtime.serving import handler as handler_module

    served = handler_module.response
    def off_by_one(results, with_map):  # what a broken serving stack would send: not the Detector's answer
        outputs = served(results, with_map)
        return {**outputs, "score": outputs["score"] + 1.0}

    monkeypatch.setattr(handler_module, "response", off_by_one)
    export = export_with_categories(tmp_path / "export")
    with Detector.load(export) as detector:
        frame = self_test_frame(detector.image_size)
        expected = detector.predict(frame)[0].score
    ports = [str(port) for port in free_ports(3)]
    result = CliRunner().invoke(app, ["serve", str(export), "--port", ports[0], "--grpc-port", ports[1],
                                      "--metrics-port", ports[2], "--log-file", str(tmp_path / "triton.log")])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    score = re.search(rf"self-test through http://localhost:{ports[0]} failed: score is (\S+), expected (\S+);",
                      lines[0])
    assert score and float(score.group(1)) == pytest.approx(expected + 1.0, rel=1e-6)
    assert float(score.group(2)) == pytest.approx(expected, rel=1e-6) and "nvidia-pytriton 0." in lines[0]
    assert "ready" not in result.output and "serving mmad_edge" not in result.output
    assert not [child for child in psutil.Process().children(recursive=True) if "tritonserver" in child.name()]
    check_ports_free(ServeOptions(http_port=int(ports[0]), grpc_port=int(ports[1]), metrics_port=int(ports[2])))


def test_max_batch_past_an_engines_profile_or_a_fixed_batch_is_refused_and_widens_a_dynamic_onnx_one(tmp_path):
    info = load_contract(write_standin(tmp_path / "model.fp32.onnx", 32, metadata=standin_metadata(32, max_batch=2)))
    assert batch_contract(tmp_path / "model.fp32.onnx", info, 8).batch_max == 8
    assert batch_contract(tmp_path / "model.fp32.onnx", info, None) is info
    with pytest.raises(ArtifactError, match=r"model.fp16.engine: max batch 8 is above the engine's batch profile 1..2; "
                                            r"rebuild it from the ONNX with mmad-edge build-engine --batch 1:8:8"):
        batch_contract(tmp_path / "model.fp16.engine", info, 8)
    (tmp_path / "fixed").mkdir()
    fixed = write_standin(tmp_path / "fixed" / "model.fp32.onnx", 32, batch=1)  # as `export --batch 1` writes it
    with pytest.raises(ArtifactError, match=r"^model.fp32.onnx: max batch 8 is above the graph's fixed batch of 1 "
                                            r"\(profile 1:1:1, no dynamic batch axis\); re-export it with mmad-edge "
                                            r"export CHECKPOINT --batch 1:8:8, or ask for at most 1$"):
        Detector.load(fixed, max_batch=8)
    export = export_with_categories(tmp_path / "export")
    with Detector.load(export, max_batch=8) as widened, Detector.load(export) as profile:
        assert (widened.batch_max, profile.batch_max) == (8, 2)
        frames = np.stack([frames_for(5)[0]] * 8)
        np.testing.assert_allclose([r.score for r in widened.predict(frames)],
                                   [r.score for r in profile.predict(frames)], rtol=1e-6)


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


def test_shared_watch_counts_every_instances_frames_and_serves_them(tmp_path):
    export = export_with_categories(tmp_path / "export")
    detectors = [Detector.load(export) for _ in range(3)]
    watch = ServeWatch(detectors[0].info.raw.get("statistics"), ServeOptions(drift_window=8))
    watch.open(0, str(tmp_path / "events.jsonl"))
    try:
        handlers = [InferenceHandler(detector, watch) for detector in detectors]
        frames = np.full((2, 32, 32, 3), 128, np.uint8)
        threads = [threading.Thread(target=lambda h=handler: [h([{"image": frames}]) for _ in range(10)])
                   for handler in handlers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        metrics = scrape(watch.metrics.port)
        assert metrics[("mmad_edge_frames_total", "pooled", None)] == 60
        statistic = pytest.approx((128 / 255 - 0.5) / 0.01, abs=STATISTIC_TOL)
        assert watch.summary() == {"drift_events": 0, "drift": {"pooled": {
            "events": 0, "drifting": False, "frames": 60, "statistic": statistic}}}
    finally:
        watch.close()
        for detector in detectors:
            detector.close()
    assert (tmp_path / "events.jsonl").read_text() == ""


def test_without_normal_scores_the_watch_is_off_and_says_why(tmp_path):
    watch = ServeWatch(None, ServeOptions())
    assert watch.describe().startswith("drift watch off: the artifact has no normal-score statistics")
    export = export_with_categories(tmp_path / "export")
    with Detector.load(export) as detector:
        InferenceHandler(detector, watch)([{"image": frames_for(5)}])
    assert watch.summary() == {"drift_events": 0, "drift": {}}


@pytest.mark.parametrize("extra, message", [
    (["--drift-window", "0"], "error: drift window must be an integer >= 1, got 0; pass e.g. --drift-window 200"),
    (["--drift-tolerance", "-1"], "error: drift tolerance must be a finite number > 0, got -1.0"),
    (["--app-metrics-port", "8002"], "error: --port, --grpc-port, --metrics-port, --app-metrics-port must differ"),
    (["--app-metrics-port", "BUSY"], "(--app-metrics-port) is not free"),
    (["--host", "0.0.0.0"], "error: --host on 0.0.0.0 listens beyond this machine and needs a token: set "
                            "MMAD_EDGE_SERVE_TOKEN or pass --token-file FILE (or listen on 127.0.0.1)"),
    (["--host", "0.0.0.0", "--token-file", "SHORT"], "error: the token (--token-file or MMAD_EDGE_SERVE_TOKEN) is 5 "
                                                     "characters long; use at least 16"),
])
def test_bad_drift_app_metrics_and_listening_options_are_one_line_errors(tmp_path, monkeypatch, extra, message):
    monkeypatch.delenv("MMAD_EDGE_SERVE_TOKEN", raising=False)
    (tmp_path / "short").write_text("abcde\n")
    extra = [str(tmp_path / "short") if arg == "SHORT" else arg for arg in extra]
    export = export_with_categories(tmp_path / "export")
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        result = CliRunner().invoke(app, ["serve", str(export), *[port if arg == "BUSY" else arg for arg in extra]])
    assert result.exit_code == 2 and message in result.output and len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output
