"""`run --sink` end to end on the stand-in model: one message per frame on MQTT (a real mosquitto)
and a webhook, each with the score `run --jsonl` writes, and the per-sink counts in the summary."""

from __future__ import annotations

import io
import json
import threading
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from runtime_fixtures import write_export_dir
from typer.testing import CliRunner

pytest.importorskip("paho.mqtt", reason="the MQTT sink needs paho-mqtt: pip install '.[line]' from the checkout")

from mmad_edge.bench.line_servers import (  # noqa: E402
    Mosquitto,
    MqttSubscriber,
    WebhookReceiver,
    free_port,
    mosquitto_missing,
)
from mmad_edge.cli import app  # noqa: E402
from mmad_edge.runtime.loop.options import RunOptions  # noqa: E402
from mmad_edge.runtime.loop.run import run_stream  # noqa: E402
from mmad_edge.runtime.sinks.options import SinkOptions  # noqa: E402

SIZE, FRAMES, TOPIC = 32, 12, "line/verdicts"


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("sink-run")
    frames = root / "frames"
    frames.mkdir()
    rng = np.random.default_rng(3)
    for index in range(FRAMES):
        cv2.imwrite(str(frames / f"{index:02d}.png"), rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    return {"frames": frames, "export": write_export_dir(root / "export", SIZE, threshold=0.5, low=0.3)}


@pytest.mark.skipif(mosquitto_missing() is not None, reason=str(mosquitto_missing()))
def test_each_frame_reaches_mqtt_and_the_webhook_with_its_jsonl_score(setup, tmp_path, capsys):
    with Mosquitto(tmp_path / "broker") as broker:
        subscriber, webhook = MqttSubscriber(broker.port, TOPIC), WebhookReceiver()
        try:
            options = RunOptions(jsonl=True, sinks=SinkOptions(
                urls=(f"mqtt://127.0.0.1:{broker.port}/{TOPIC}", webhook.url), spool_dir=tmp_path / "spool"))
            out = io.StringIO()
            summary = run_stream(str(setup["export"]), str(setup["frames"]), options, stdout=out)
            assert subscriber.wait_for(FRAMES, 10)
        finally:
            subscriber.close()
            webhook.close()
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(records) == FRAMES
    for received in ([body for _, body in subscriber.received], [body for _, body, _ in webhook.received]):
        assert len(received) == FRAMES  # one message per frame
        by_index = {message["index"]: message for message in received}
        for record in records:
            message = by_index[record["index"]]
            assert message["score"] == record["score"] and message["source"] == record["source"]
            assert message["verdict"] == ("reject" if record["is_anomaly"] else "pass")
            assert message["part_id"] == record["source"]
            assert message["model"] == {"variant": "standin", "precision": "fp32", "artifact": "model.fp32.onnx",
                                        "checkpoint_sha256": None, "mmad_edge_version": "0.1.0"}
        assert len({message["message_id"] for message in received}) == FRAMES
    assert [(entry["kind"], entry["sent"], entry["queued"], entry["lost"], entry["dropped"])
            for entry in summary["sinks"]] == [("mqtt", FRAMES, 0, 0, 0), ("webhook", FRAMES, 0, 0, 0)]
    assert summary["error"] is None
    err = capsys.readouterr().err
    assert f"sink {webhook.url}: {FRAMES} sent, 0 lost, 0 dropped" in err


def sink_samples(port: int, url: str) -> dict:
    """The /metrics samples labelled with sink ``url``, by name."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {sample.name: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.labels.get("sink") == url}


def test_a_dead_sink_never_stops_the_run_and_its_messages_are_counted(setup, capsys):
    """Nothing listens: every frame is still scored, the run waits --sink-drain-s, the served
    metrics say all are queued meanwhile, and the summary that all were lost."""
    url, port, done = f"http://127.0.0.1:{free_port()}/hook", free_port(), {}
    options = RunOptions(metrics_port=port, sinks=SinkOptions(urls=(url,), drain_s=3))
    worker = threading.Thread(target=lambda: done.update(
        summary=run_stream(str(setup["export"]), str(setup["frames"]), options, stdout=io.StringIO())))
    worker.start()
    try:
        deadline, samples = time.monotonic() + 30, {}
        while samples.get("mmad_edge_sink_queued") != FRAMES:
            assert time.monotonic() < deadline, f"the sink metrics never showed {FRAMES} queued: {samples}"
            try:
                samples = sink_samples(port, url)
            except urllib.error.URLError:
                pass
            time.sleep(0.05)
    finally:
        worker.join(30)
    assert (samples["mmad_edge_sink_sent_total"], samples["mmad_edge_sink_dropped_total"]) == (0, 0)
    summary = done["summary"]
    assert summary["frames"] == FRAMES
    (entry,) = summary["sinks"]
    assert (entry["sent"], entry["queued"], entry["lost"], entry["dropped"]) == (0, 0, FRAMES, 0)
    assert summary["error"].startswith(f"{FRAMES} verdicts reached neither sink {url} nor a spool")
    err = capsys.readouterr().err
    assert err.count("cannot deliver") == 1
    assert f"{FRAMES} messages undelivered after 3 s" in err and "they are lost" in err


def test_verdicts_no_sink_got_fail_the_run_unless_a_spool_keeps_them(setup, tmp_path):
    """A webhook where nothing listens: exit 1, the counts say lost and the error says why; an MQTT
    broker that is down: the spool keeps them, exit 0, the line says where."""
    url = f"http://127.0.0.1:{free_port()}/hook"
    lost = CliRunner().invoke(app, ["run", str(setup["export"]), "--source", str(setup["frames"]), "--max-frames",
                                    "3", "--sink", url, "--sink-drain-s", "0.5", "--json", str(tmp_path / "lost.json")])
    assert lost.exit_code == 1, lost.output
    assert f"sink {url}: 0 sent, 3 lost, 0 dropped" in lost.output and "queued" not in lost.output
    assert lost.output.strip().splitlines()[-1].startswith(
        f"error: 3 verdicts reached neither sink {url} nor a spool (3 lost at the end, 0 dropped; last error "
        "ConnectionRefusedError")
    assert lost.output.strip().endswith("; check that the sink is up and accepts them")
    assert json.loads((tmp_path / "lost.json").read_text())["error"].startswith("3 verdicts reached neither")
    mqtt = f"mqtt://127.0.0.1:{free_port()}/{TOPIC}"
    kept = CliRunner().invoke(app, ["run", str(setup["export"]), "--source", str(setup["frames"]), "--max-frames",
                                    "3", "--sink", mqtt, "--sink-spool", str(tmp_path / "spool"), "--sink-drain-s",
                                    "0.5", "--json", str(tmp_path / "kept.json")])
    assert kept.exit_code == 0, kept.output
    (spool,) = (tmp_path / "spool").iterdir()
    assert f"sink {mqtt}: 0 sent, 3 spooled to {spool}, 0 dropped" in kept.output and "error" not in kept.output
    summary = json.loads((tmp_path / "kept.json").read_text())
    assert (summary["error"], summary["sinks"][0]["queued"], summary["sinks"][0]["lost"]) == (None, 3, 0)


@pytest.mark.parametrize("args, message", [
    (["--sink", "mqtt://line:s3cret@127.0.0.1:1883/t"], "carries credentials in the URL; remove them"),
    (["--sink", "ftp://host/x"], "unknown scheme 'ftp'; write one like mqtt://HOST:1883/line/verdicts"),
    (["--sink", "http://127.0.0.1:9/a", "--sink-drain-s", "-1"], "sink drain seconds must be a number >= 0"),
    (["--sink", "http://127.0.0.1:9/a", "--sink-ca-file", "/nonexistent.pem"], "sink CA file /nonexistent.pem"),
])
def test_bad_sink_options_are_one_line_exit_2(setup, tmp_path, args, message):
    result = CliRunner().invoke(app, ["run", str(setup["export"]), "--source", str(setup["frames"]), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output and "s3cret" not in result.output


def test_the_summary_json_carries_each_sinks_counts_and_credentials_come_from_the_file(setup, tmp_path):
    webhook, credentials = WebhookReceiver(), tmp_path / "line.env"
    credentials.write_text("MMAD_EDGE_WEBHOOK_TOKEN=t0k\n")
    credentials.chmod(0o600)
    try:
        result = CliRunner().invoke(app, ["run", str(setup["export"]), "--source", str(setup["frames"]),
                                          "--sink", webhook.url, "--sink-credentials", str(credentials),
                                          "--json", str(tmp_path / "summary.json")])
    finally:
        webhook.close()
    assert result.exit_code == 0, result.output
    (entry,) = json.loads((tmp_path / "summary.json").read_text())["sinks"]
    assert (entry["sink"], entry["sent"], entry["queued"], entry["dropped"]) == (webhook.url, FRAMES, 0, 0)
    assert {headers["Authorization"] for _, _, headers in webhook.received} == {"Bearer t0k"}
