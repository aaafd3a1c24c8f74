"""The PLC sinks against real servers: pymodbus's Modbus TCP server and asyncua's OPC UA server."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("pymodbus", reason="the Modbus sink needs pymodbus: pip install '.[line]' from the checkout")
pytest.importorskip("asyncua", reason="the OPC UA sink needs asyncua: pip install '.[line]' from the checkout")

from mmad_edge.bench.line_servers import ModbusServer, OpcUaServer, free_port  # noqa: E402
from mmad_edge.runtime.errors import SinkError  # noqa: E402
from mmad_edge.runtime.sinks import open_sink  # noqa: E402
from mmad_edge.runtime.sinks.target import SinkSettings  # noqa: E402

WRITE_COIL, WRITE_REGISTER = 5, 6
VERDICTS = ["reject", "pass", "reject", "unknown", "pass"]


def verdicts(*names: str) -> list[dict]:
    anomaly = {"reject": True, "pass": False, "unknown": None}
    return [{"message_id": f"run-{index}", "part_id": f"P{index}", "score": 0.25 + index, "verdict": name,
             "is_anomaly": anomaly[name]} for index, name in enumerate(names)]


def deliver(url: str, messages: list[dict], timeout_s: float = 10.0) -> dict:
    sink = open_sink(url, SinkSettings(timeout_s=2, backoff_max_s=0.2)).start()
    for message in messages:
        sink.submit(message)
    sink.wait(time.monotonic() + timeout_s)
    return sink.stop()


@pytest.fixture(scope="module")
def modbus():
    server = ModbusServer()
    yield server
    server.close()


def test_a_coil_follows_each_verdict(modbus, capsys):
    modbus.writes.clear()
    report = deliver(f"modbus://127.0.0.1:{modbus.port}/coil/3", verdicts(*VERDICTS))
    assert [(code, address, values) for _, code, address, values in modbus.writes] == [
        (WRITE_COIL, 3, [True]), (WRITE_COIL, 3, [False]), (WRITE_COIL, 3, [True]), (WRITE_COIL, 3, [False])]
    assert (report["sent"], report["dropped"], report["refused"], report["queued"]) == (4, 1, 1, 0)
    assert "refused (no verdict without a threshold; pass --threshold)" in capsys.readouterr().err


def test_a_pulsed_coil_goes_on_for_each_reject_only(modbus):
    modbus.writes.clear()
    report = deliver(f"modbus://127.0.0.1:{modbus.port}/coil/5?pulse_ms=50", verdicts("reject", "pass", "reject"))
    writes = [(address, values) for _, _, address, values in modbus.writes]
    assert writes == [(5, [True]), (5, [False])] * 2 and report["sent"] == 3
    on_times = [at for at, _, _, values in modbus.writes if values == [True]]
    off_times = [at for at, _, _, values in modbus.writes if values == [False]]
    assert all(off - on >= 0.045 for on, off in zip(on_times, off_times))


def test_a_register_gets_the_verdict_code(modbus):
    modbus.writes.clear()
    report = deliver(f"modbus://127.0.0.1:{modbus.port}/register/7?unit=1", verdicts(*VERDICTS))
    assert [(code, address, values) for _, code, address, values in modbus.writes] == [
        (WRITE_REGISTER, 7, [code]) for code in (1, 0, 1, 2, 0)]
    assert (report["sent"], report["dropped"]) == (5, 0)


def test_a_device_that_refuses_the_write_is_counted_once_said(modbus, capsys):
    report = deliver(f"modbus://127.0.0.1:{modbus.port}/coil/3?unit=9", verdicts("reject", "pass"))
    assert (report["sent"], report["dropped"], report["refused"]) == (0, 2, 2)
    assert capsys.readouterr().err.count("the device refused the write") == 1


@pytest.mark.parametrize("scheme, path", [("modbus", "coil/0"), ("opcua", "ns=2;s=Inspection")])
def test_an_unreachable_plc_is_one_line_and_counted(scheme, path, capsys):
    report = deliver(f"{scheme}://127.0.0.1:{free_port()}/{path}", verdicts("reject", "pass", "reject"), timeout_s=1.5)
    assert (report["sent"], report["dropped"], report["queued"]) == (0, 0, 3)
    assert report["failures"] >= 2  # retried with backoff
    err = capsys.readouterr().err
    assert err.count("cannot deliver") == 1 and "retrying with backoff" in err


def test_opcua_writes_verdict_score_and_part_in_each_variables_type():
    server = OpcUaServer({"Verdict": "Boolean", "Score": "Double", "PartId": "String", "MessageId": "String"})
    coded = OpcUaServer({"Verdict": "Int32", "ScoreNormalized": "Float"})
    try:
        last = verdicts("pass", "reject")[-1]
        report = deliver(f"opcua://127.0.0.1:{server.port}/{server.node}", verdicts("pass", "reject"), timeout_s=20)
        values = server.values()
        coded_report = deliver(f"opcua://127.0.0.1:{coded.port}/{coded.node}",
                               [{**message, "score_normalized": 0.75} for message in verdicts("reject", "unknown")],
                               timeout_s=20)
        coded_values = coded.values()
    finally:
        server.close()
        coded.close()
    assert (report["sent"], report["queued"]) == (2, 0)
    assert values == {"Verdict": True, "Score": last["score"], "PartId": "P1", "MessageId": "run-1"}
    assert (coded_report["sent"], coded_values) == (2, {"Verdict": 2, "ScoreNormalized": 0.75})


def test_opcua_names_the_missing_variables_or_node_once_and_drops_instead_of_retrying(capsys):
    server = OpcUaServer({"Other": "Double"})
    try:
        report = deliver(f"opcua://127.0.0.1:{server.port}/{server.node}", verdicts("reject", "pass"), timeout_s=10)
        nowhere = deliver(f"opcua://127.0.0.1:{server.port}/ns=2;s=Nowhere", verdicts("reject"), timeout_s=10)
    finally:
        server.close()
    assert (report["sent"], report["queued"], report["refused"], report["failures"]) == (0, 0, 2, 0)
    assert "has no Verdict, Score, ScoreNormalized, PartId or MessageId variable" in report["last_error"]
    assert (nowhere["sent"], nowhere["queued"], nowhere["refused"]) == (0, 0, 1)
    assert nowhere["last_error"].startswith("node ns=2;s=Nowhere has no Verdict, Score")
    assert capsys.readouterr().err.count("refused") == 2  # one line per sink, not one per message


def test_opcua_writes_the_verdict_code_to_a_float_verdict():
    server = OpcUaServer({"Verdict": "Double", "Score": "Float"})
    try:
        report = deliver(f"opcua://127.0.0.1:{server.port}/{server.node}", verdicts("unknown", "reject"), timeout_s=20)
        values = server.values()
    finally:
        server.close()
    assert (report["sent"], report["refused"], report["queued"]) == (2, 0, 0)
    assert values == {"Verdict": 1.0, "Score": 1.25}


def test_opcua_refuses_a_node_id_it_cannot_parse_at_open():
    with pytest.raises(SinkError, match=r"'ns=2;x=1' is not an OPC UA node id; pass one such as ns=2;s=Inspection"):
        open_sink("opcua://127.0.0.1:4840/ns=2;x=1", SinkSettings())


def test_opcua_refuses_a_value_its_variable_cannot_hold_instead_of_retrying():
    server = OpcUaServer({"PartId": "Double"})
    try:
        report = deliver(f"opcua://127.0.0.1:{server.port}/{server.node}", verdicts("reject"), timeout_s=10)
    finally:
        server.close()
    assert (report["sent"], report["queued"], report["refused"], report["failures"]) == (0, 0, 1, 0)
    assert report["last_error"] == ("part_id 'P0' cannot be written to a Double variable (ValueError: could not "
                                    "convert string to float: 'P0')")
