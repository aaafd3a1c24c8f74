"""Sink URLs, credentials, the per-frame message and the fan-out's bookkeeping (no servers needed)."""

from __future__ import annotations

import hashlib
import threading
import time

import pytest

from mmad_edge.runtime.errors import SinkError
from mmad_edge.runtime.monitor.prometheus import DetectorMetrics
from mmad_edge.runtime.sinks import open_sink
from mmad_edge.runtime.sinks.base import PermanentDeliveryError, Sink
from mmad_edge.runtime.sinks.fanout import SinkSet
from mmad_edge.runtime.sinks.message import model_identity, verdict_message
from mmad_edge.runtime.sinks.target import SinkSettings, check_drain_s, load_credentials, parse_target

pytest.importorskip("paho.mqtt", reason="the sink tests need the line extra: pip install '.[line]' from the checkout")

RECORD = {"source": "cam0", "frame_index": 41, "captured_at": 1700000000.25, "index": 7, "score": 0.8125,
          "score_normalized": 0.6, "is_anomaly": True, "threshold": 0.7, "timings": {"infer_ms": 3.0},
          "stream": "cam0"}


def test_credentials_in_the_url_are_refused_without_echoing_them():
    with pytest.raises(SinkError) as caught:
        parse_target("mqtt://line:s3cret@broker:1883/verdicts")
    message = str(caught.value)
    assert "s3cret" not in message and "line:" not in message
    assert "MMAD_EDGE_<KIND>_USERNAME" in message and "--sink-credentials" in message


@pytest.mark.parametrize("url, problem", [
    ("ftp://host/x", "unknown scheme 'ftp'"),
    ("mqtt:///verdicts", "needs a scheme and a host"),
    ("mqtt://host:1883/line/+", "without wildcards"),
    ("mqtt://host:1883", "without wildcards"),
    ("modbus://plc:502/input/3", "coil/N or register/N"),
    ("modbus://plc:502/coil/70000", "coil/N or register/N"),
    ("modbus://plc:502/coil/1?unit=300", "unit must be a whole number 0-255"),
    ("modbus://plc:502/register/1?pulse_ms=100", "pulse_ms drives a coil"),
    ("opcua://plc:4840", "name the object node"),
    ("mqtt://host:99999/x", "not a valid URL"),
])
def test_bad_sink_urls_fail_in_one_line_naming_the_fix(url, problem, tmp_path):
    with pytest.raises(SinkError, match=problem.replace("+", r"\+")) as caught:
        open_sink(url, SinkSettings(spool_dir=tmp_path))
    assert "\n" not in str(caught.value)


def test_credentials_come_from_the_file_over_the_environment(tmp_path, capsys):
    file = tmp_path / "line.env"
    file.write_text("# broker account\nMMAD_EDGE_MQTT_USERNAME = line\n\nMMAD_EDGE_MQTT_PASSWORD=from-file\n")
    file.chmod(0o600)
    found = load_credentials(file, {"MMAD_EDGE_MQTT_PASSWORD": "from-env", "MMAD_EDGE_WEBHOOK_TOKEN": "tok",
                                    "UNRELATED": "x"})
    assert found == {"MMAD_EDGE_MQTT_USERNAME": "line", "MMAD_EDGE_MQTT_PASSWORD": "from-file",
                     "MMAD_EDGE_WEBHOOK_TOKEN": "tok"}
    assert capsys.readouterr().err == ""
    file.chmod(0o644)
    load_credentials(file, {})
    assert f"chmod 600 {file}" in capsys.readouterr().err


def test_a_credentials_file_with_an_unknown_name_is_refused(tmp_path):
    file = tmp_path / "line.env"
    file.write_text("MQTT_PASSWORD=x\n")
    with pytest.raises(SinkError, match=r"line 1: expected NAME=value with NAME one of MMAD_EDGE_MQTT_USERNAME"):
        load_credentials(file, {})
    with pytest.raises(SinkError, match="cannot read sink credentials"):
        load_credentials(tmp_path / "missing.env", {})


@pytest.mark.parametrize("settings, problem", [
    (dict(queue_size=0), "queue size must be an integer >= 1"),
    (dict(timeout_s=float("nan")), "timeout_s must be a number > 0"),
    (dict(ca_file="/nonexistent/ca.pem"), "CA file /nonexistent/ca.pem does not exist"),
])
def test_bad_sink_settings_are_refused(settings, problem):
    with pytest.raises(SinkError, match=problem):
        SinkSettings(**settings)


def test_the_message_is_the_frame_record_plus_what_the_line_acts_on(tmp_path):
    digest = hashlib.sha256(b"checkpoint").hexdigest()
    metadata = {"model": {"variant": "n"}, "precision": "fp16", "mmad_edge_version": "0.1.0",
                "source_checkpoint": {"path": "ckpt.pt", "sha256": digest}}
    model = model_identity(metadata, tmp_path / "model.fp16.onnx")
    assert model == {"variant": "n", "precision": "fp16", "mmad_edge_version": "0.1.0", "artifact": "model.fp16.onnx",
                     "checkpoint_sha256": digest[:16]}
    assert model_identity({"precision": "fp32"}, None) == {"variant": None, "precision": "fp32", "artifact": None,
                                                          "checkpoint_sha256": None, "mmad_edge_version": None}
    message = verdict_message(RECORD, model, "run-7")
    assert {key: message[key] for key in RECORD} == RECORD  # the JSON-lines record, unchanged
    assert (message["message_id"], message["part_id"], message["timestamp"], message["verdict"]) == (
        "run-7", 41, 1700000000.25, "reject")
    assert message["model"] == model
    assert verdict_message({**RECORD, "part_id": "P-9"}, model, "x")["part_id"] == "P-9"
    from_file = verdict_message({"source": "/d/a.png", "index": 0, "is_anomaly": None}, model, "x", now=5.0)
    assert (from_file["part_id"], from_file["timestamp"], from_file["verdict"]) == ("/d/a.png", 5.0, "unknown")
    assert verdict_message({**RECORD, "is_anomaly": False}, {}, "x")["verdict"] == "pass"


def test_the_fanout_names_each_frame_once_and_refuses_a_repeated_sink(tmp_path):
    url = "mqtt://127.0.0.1:9/verdicts"
    with pytest.raises(SinkError, match="given twice"):
        SinkSet.open([url, url], SinkSettings(spool_dir=tmp_path), {})
    with pytest.raises(SinkError, match="drain seconds must be a number >= 0"):
        check_drain_s(-1)


def test_sink_counts_reach_the_prometheus_counters_as_they_are_at_each_scrape(tmp_path):
    metrics = DetectorMetrics()
    now = [{"sink": "mqtt://b/t", "sent": 3, "dropped": 1, "queued": 5}]
    metrics.watch_sinks(lambda: now)
    value = lambda name: metrics.registry.get_sample_value(name, {"sink": "mqtt://b/t"})  # noqa: E731
    assert (value("mmad_edge_sink_sent_total"), value("mmad_edge_sink_dropped_total"),
            value("mmad_edge_sink_queued")) == (3.0, 1.0, 5.0)
    now[0] = {"sink": "mqtt://b/t", "sent": 10, "dropped": 1, "queued": 0}  # no call in between: read when scraped
    assert (value("mmad_edge_sink_sent_total"), value("mmad_edge_sink_dropped_total"),
            value("mmad_edge_sink_queued")) == (10.0, 1.0, 0.0)
    metrics.dropped_total("cam0", 4)
    metrics.dropped_total("cam0", 6)
    assert metrics.registry.get_sample_value("mmad_edge_dropped_frames_total", {"source": "cam0"}) == 6.0


def test_a_stopped_sink_reports_what_it_still_holds(tmp_path, capsys):
    """Nothing listens on port 9: what was still queued at the stop counts as lost (no spool keeps
    it), the end says so, and none is lost silently."""
    sinks = SinkSet.open(["http://127.0.0.1:9/hook"], SinkSettings(timeout_s=0.5), {"variant": "n"})
    for index in range(3):
        sinks.send({**RECORD, "index": index})
    started = time.monotonic()
    (report,) = sinks.finish(drain_s=0.5)
    assert time.monotonic() - started < 5
    assert (report["sent"], report["dropped"], report["queued"], report["lost"], report["durable"]) == (0, 0, 0, 3, False)
    assert report["failures"] >= 1 and "ConnectionRefusedError" in report["last_error"]
    err = capsys.readouterr().err
    assert err.count("cannot deliver") == 1
    assert "3 messages undelivered after 0.5 s" in err and "they are lost" in err
    assert sinks.undelivered().startswith("3 verdicts reached neither sink http://127.0.0.1:9/hook nor a spool "
                                          "(3 lost at the end, 0 dropped; last error ConnectionRefusedError")


def test_a_full_queue_is_said_even_after_a_refusal_was_counted_as_dropped(capsys):
    """``dropped`` counts refusals too; the queue-full line used to wait for dropped == 1 and so
    was never said once a refusal came first."""
    release, stuck = threading.Event(), threading.Event()

    class RefusingThenStuck(Sink):
        kind = "test"

        def _connect(self) -> None:
            pass

        def _deliver(self, message: dict) -> None:
            if message["index"] == 0:
                raise PermanentDeliveryError("bad message")
            stuck.set()
            release.wait(10)

        def _disconnect(self) -> None:
            pass

    sink = RefusingThenStuck(parse_target("http://127.0.0.1:9/hook"), SinkSettings(queue_size=2)).start()
    sink.submit({"index": 0})
    sink.submit({"index": 1})
    assert stuck.wait(5)  # 0 refused, 1 held by the stuck worker
    for index in range(2, 6):  # 2 and 3 fill the queue, 4 and 5 overflow it
        sink.submit({"index": index})
    release.set()
    report = sink.stop()
    assert (report["refused"], report["dropped"], sink.overflowed) == (1, 3, 2)
    err = capsys.readouterr().err
    assert err.count("refused (bad message)") == 1
    assert err.count("queue full (2 messages); dropping the oldest") == 1
