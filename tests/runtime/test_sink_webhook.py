"""The webhook sink against a real local HTTP(S) server (stdlib http.server in a thread)."""

from __future__ import annotations

import statistics
import time

import pytest

from mmad_edge.bench.line_servers import WebhookReceiver, write_certificates
from mmad_edge.runtime.sinks import open_sink
from mmad_edge.runtime.sinks.fanout import SinkSet
from mmad_edge.runtime.sinks.target import SinkSettings


@pytest.fixture
def receiver():
    server = WebhookReceiver()
    yield server
    server.close()


def message(index: int) -> dict:
    return {"message_id": f"run-{index}", "index": index, "score": index / 4, "verdict": "pass"}


def test_a_slow_webhook_never_slows_the_frames(receiver):
    """While the webhook holds its first request, 200 submits all return and queue in order."""
    receiver.gate.clear()
    sink = open_sink(receiver.url, SinkSettings()).start()
    try:
        took = []
        for index in range(200):
            started = time.perf_counter()
            sink.submit(message(index))
            took.append(time.perf_counter() - started)
        assert receiver.wait_for(1, 10)
        assert len(receiver.received) == 1 and sink.queued == 200  # nothing waited for the webhook
        receiver.gate.set()
        assert receiver.wait_for(200, 30) and sink.wait(time.monotonic() + 10)
    finally:
        report = sink.stop()
    assert [body["index"] for _, body, _ in receiver.received] == list(range(200))
    assert [headers["X-Message-Id"] for _, _, headers in receiver.received] == [f"run-{i}" for i in range(200)]
    assert (report["sent"], report["dropped"], report["queued"]) == (200, 0, 0)
    print(f"submit while the webhook slept: median {statistics.median(took) * 1e6:.1f} us, "
          f"max {max(took) * 1e6:.1f} us over {len(took)} messages")


def test_a_full_queue_drops_the_oldest_and_counts_each(receiver, capsys):
    receiver.gate.clear()
    sink = open_sink(receiver.url, SinkSettings(queue_size=5)).start()
    try:
        sink.submit(message(0))
        assert receiver.wait_for(1, 10)  # message 0 is in the webhook's hands
        for index in range(1, 21):
            sink.submit(message(index))
        assert (sink.report()["dropped"], sink.queued) == (15, 6)
        receiver.gate.set()
        assert receiver.wait_for(6, 10) and sink.wait(time.monotonic() + 10)
    finally:
        report = sink.stop()
    assert [body["index"] for _, body, _ in receiver.received] == [0, 16, 17, 18, 19, 20]
    assert (report["sent"], report["dropped"], report["queued"]) == (6, 15, 0)
    assert capsys.readouterr().err.count("queue full (5 messages); dropping the oldest") == 1


def test_a_refusing_webhook_drops_counted_and_a_failing_one_is_retried(capsys):
    refusing, failing = WebhookReceiver(status=400), WebhookReceiver(status=503)
    try:
        sinks = [open_sink(server.url, SinkSettings(backoff_max_s=0.2)).start() for server in (refusing, failing)]
        for sink in sinks:
            for index in range(3):
                sink.submit(message(index))
        assert refusing.wait_for(3, 10) and sinks[0].wait(time.monotonic() + 10)
        assert failing.wait_for(3, 10)  # message 0, tried again and again
        failing.status = 200
        assert sinks[1].wait(time.monotonic() + 10)
        refused, retried = (sink.stop() for sink in sinks)
    finally:
        refusing.close()
        failing.close()
    assert (refused["sent"], refused["dropped"], refused["refused"]) == (0, 3, 3)
    assert refused["last_error"] == "HTTP 400 Bad Request"
    assert (retried["sent"], retried["dropped"], retried["queued"]) == (3, 0, 0) and retried["failures"] >= 2
    delivered = [body["index"] for _, body, _ in failing.received]
    assert delivered[-3:] == [0, 1, 2] and set(delivered[:-3]) == {0}  # retried in order, none skipped
    err = capsys.readouterr().err
    assert err.count("refused (HTTP 400 Bad Request); dropped (further refusals are counted, not said)") == 1
    assert err.count("cannot deliver (ConnectionError: HTTP 503 Service Unavailable)") == 1


def test_https_with_the_ca_file_and_a_token_from_the_credentials(tmp_path):
    tls = write_certificates(tmp_path)
    server = WebhookReceiver(tls=tls)
    try:
        sinks = SinkSet.open([server.url], SinkSettings(ca_file=tls["ca"], credentials={"MMAD_EDGE_WEBHOOK_TOKEN": "t0k"}),
                             {"variant": "n", "precision": "fp32"})
        sinks.send({"source": "cam0", "frame_index": 3, "index": 12, "score": 0.5, "is_anomaly": False})
        (report,) = sinks.finish(drain_s=10)
    finally:
        server.close()
    assert (report["sent"], report["queued"]) == (1, 0)
    (_, body, headers), = server.received
    assert headers["Authorization"] == "Bearer t0k"
    assert body["message_id"] == f"{sinks.run_id}-12" and body["verdict"] == "pass" and body["part_id"] == 3
    assert body["model"] == {"variant": "n", "precision": "fp32"}


def test_https_refuses_a_server_the_ca_file_does_not_vouch_for(tmp_path):
    server = WebhookReceiver(tls=write_certificates(tmp_path))
    try:
        sink = open_sink(server.url, SinkSettings(timeout_s=1)).start()
        sink.submit(message(0))
        sink.wait(time.monotonic() + 1)
        report = sink.stop()
    finally:
        server.close()
    assert (report["sent"], report["queued"]) == (0, 1) and "CERTIFICATE_VERIFY_FAILED" in report["last_error"]
    assert server.received == []
