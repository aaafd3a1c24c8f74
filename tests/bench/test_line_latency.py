"""The line latency bench end to end on a few frames (its numbers are not asserted: a benchmark)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("paho.mqtt", reason="the line bench needs mmad-edge[line]: pip install 'mmad-edge[line]'")

from mmad_edge.bench import line_latency  # noqa: E402
from mmad_edge.bench.line_servers import mosquitto_missing  # noqa: E402


@pytest.mark.skipif(mosquitto_missing() is not None, reason=str(mosquitto_missing()))
def test_every_frame_is_measured_at_each_sink_and_source_count(tmp_path, capsys):
    assert line_latency.main(["--sources", "1,3", "--frames", "4", "--fps", "200", "--out", str(tmp_path),
                              "--note", "test run"]) == 0
    report = json.loads((tmp_path / "line_latency.json").read_text())
    assert [(row["sink"].split()[0], row["sources"], row["messages"], row["expected"], row["sent"], row["dropped"] + row["lost"])
            for row in report["rows"]] == [("mqtt", 1, 4, 4, 4, 0), ("modbus", 1, 4, 4, 4, 0),
                                           ("mqtt", 3, 12, 12, 12, 0), ("modbus", 3, 12, 12, 12, 0)]
    assert all(0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"] for row in report["rows"])
    markdown = (tmp_path / "line_latency.md").read_text()
    assert report["machine"]["cpu_model"] in markdown and "test run" in markdown
    assert "--sources 1,3 --frames 4" in markdown


def test_coil_writes_pair_with_frames_only_when_each_verdict_was_written_once():
    writes = [(10.5, 5, 0, [True]), (11.25, 5, 0, [False])]
    assert line_latency.coil_latencies(writes, [10.0, 11.0], {"dropped": 0, "lost": 0}) == [0.5, 0.25]
    with pytest.raises(RuntimeError, match=r"^modbus coil: 2 writes for 3 frames \(dropped 0, lost 0\), so writes "
                                           r"cannot be paired with frames; rerun with fewer --sources or a lower --fps$"):
        line_latency.coil_latencies(writes, [10.0, 11.0, 12.0], {"dropped": 0, "lost": 0})
    with pytest.raises(RuntimeError, match=r"^modbus coil: 2 writes for 2 frames \(dropped 1, lost 0\)"):
        line_latency.coil_latencies(writes, [10.0, 11.0], {"dropped": 1, "lost": 0})
