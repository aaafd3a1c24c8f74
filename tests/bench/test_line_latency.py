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
