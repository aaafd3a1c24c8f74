"""The MQTT sink against a real mosquitto broker started by the test (Debian package mosquitto).

Delivery is at least once: the subscriber may see a message twice across a broker restart and
dedupes on ``message_id``; these tests check that every message id arrives.
"""

from __future__ import annotations

import time

import pytest

pytest.importorskip("paho.mqtt", reason="the MQTT sink needs paho-mqtt: pip install '.[line]' from the checkout")

from mmad_edge.bench.line_servers import Mosquitto, MqttSubscriber, mosquitto_missing, write_certificates  # noqa: E402
from mmad_edge.runtime.sinks import open_sink  # noqa: E402
from mmad_edge.runtime.sinks.target import SinkSettings, load_credentials  # noqa: E402

TOPIC = "line1/verdicts"
pytestmark = pytest.mark.skipif(mosquitto_missing() is not None, reason=str(mosquitto_missing()))


def messages(start: int, stop: int) -> list[dict]:
    return [{"message_id": f"run-{index}", "index": index, "score": index / 8, "verdict": "pass"}
            for index in range(start, stop)]


def ids(subscriber: MqttSubscriber) -> set[str]:
    return {body["message_id"] for _, body in subscriber.received}


@pytest.fixture
def broker(tmp_path):
    server = Mosquitto(tmp_path / "broker")
    yield server
    server.stop()


def settle(sink, timeout_s: float = 20.0) -> bool:
    return sink.wait(time.monotonic() + timeout_s)


def test_broker_down_at_start_and_restarted_mid_run_loses_nothing(broker, tmp_path, capsys):
    broker.start()
    subscriber = MqttSubscriber(broker.port, TOPIC)  # a persistent session: the broker queues for it
    broker.stop()
    sink = open_sink(f"mqtt://127.0.0.1:{broker.port}/{TOPIC}",
                     SinkSettings(spool_dir=tmp_path / "spool", backoff_max_s=0.5)).start()
    try:
        sent = messages(0, 90)
        for message in sent[:30]:
            sink.submit(message)
        time.sleep(0.5)
        down = sink.report()
        assert (down["sent"], down["queued"], down["dropped"]) == (0, 30, 0) and down["failures"] >= 1
        broker.start()
        assert subscriber.wait_for(30, 20), f"{len(ids(subscriber))} of 30 arrived after the broker came up"
        for message in sent[30:60]:
            sink.submit(message)
        broker.stop()  # restarted mid-run, with messages still in flight
        for message in sent[60:]:
            sink.submit(message)
        broker.start()
        assert subscriber.wait_for(90, 30), f"{len(ids(subscriber))} of 90 arrived"
        assert settle(sink)
        report = sink.stop()
    finally:
        sink.stop()
        subscriber.close()
    assert ids(subscriber) == {message["message_id"] for message in sent}
    by_id = {body["message_id"]: body for _, body in subscriber.received}
    assert [by_id[message["message_id"]]["score"] for message in sent] == [message["score"] for message in sent]
    assert (report["sent"], report["dropped"], report["queued"]) == (90, 0, 0)
    err = capsys.readouterr().err
    assert err.count("cannot deliver") >= 1 and "delivering again" in err


def test_undelivered_messages_stay_in_the_spool_for_the_next_run(broker, tmp_path, capsys):
    url, settings = f"mqtt://127.0.0.1:{broker.port}/{TOPIC}", SinkSettings(spool_dir=tmp_path / "spool")
    first = open_sink(url, settings).start()
    for message in messages(0, 5):
        first.submit(message)
    assert not first.wait(time.monotonic() + 0.3)
    report = first.stop()
    assert (report["sent"], report["queued"], report["durable"]) == (0, 5, True)
    broker.start()
    subscriber = MqttSubscriber(broker.port, TOPIC)
    second = open_sink(url, settings).start()
    try:
        assert "5 messages left by an earlier run" in capsys.readouterr().err
        second.submit(messages(5, 6)[0])
        assert subscriber.wait_for(6, 20) and settle(second)
        assert [body["message_id"] for _, body in subscriber.received] == [f"run-{index}" for index in range(6)]
        assert (second.report()["carried"], second.report()["sent"], second.report()["queued"]) == (5, 6, 0)
    finally:
        second.stop()
        subscriber.close()


def test_mqtt_credentials_come_from_the_credentials_file(tmp_path, capsys):
    with Mosquitto(tmp_path / "broker", users={"line": "s3cret"}) as broker:
        url = f"mqtt://127.0.0.1:{broker.port}/{TOPIC}"
        good, bad = tmp_path / "good.env", tmp_path / "bad.env"
        good.write_text("MMAD_EDGE_MQTT_USERNAME=line\nMMAD_EDGE_MQTT_PASSWORD=s3cret\n")
        bad.write_text("MMAD_EDGE_MQTT_USERNAME=line\nMMAD_EDGE_MQTT_PASSWORD=wrong\n")
        results = {}
        for name, file in (("good", good), ("bad", bad)):
            file.chmod(0o600)
            sink = open_sink(url, SinkSettings(spool_dir=tmp_path / name, timeout_s=2,
                                               credentials=load_credentials(file, {}))).start()
            for message in messages(0, 3):
                sink.submit(message)
            sink.wait(time.monotonic() + (10 if name == "good" else 1))
            results[name] = sink.stop()
    assert (results["good"]["sent"], results["good"]["queued"]) == (3, 0)
    assert (results["bad"]["sent"], results["bad"]["queued"]) == (0, 3)
    assert "broker refused the connection: Not authorized" in results["bad"]["last_error"]
    assert "s3cret" not in capsys.readouterr().err


def test_mqtts_verifies_the_broker_with_the_ca_file(tmp_path):
    tls = write_certificates(tmp_path)
    with Mosquitto(tmp_path / "broker", tls=tls) as broker:
        url = f"mqtts://localhost:{broker.port}/{TOPIC}"
        results = {}
        for name, ca in (("trusted", tls["ca"]), ("system CAs", None)):
            sink = open_sink(url, SinkSettings(spool_dir=tmp_path / name.replace(" ", "_"), ca_file=ca,
                                               timeout_s=2)).start()
            sink.submit(messages(0, 1)[0])
            sink.wait(time.monotonic() + (10 if ca else 1))
            results[name] = sink.stop()
    assert (results["trusted"]["sent"], results["trusted"]["queued"]) == (1, 0)
    assert (results["system CAs"]["sent"], results["system CAs"]["queued"]) == (0, 1)
    assert "CERTIFICATE_VERIFY_FAILED" in results["system CAs"]["last_error"]
