"""Several sources in one run, the drift watch and the Prometheus metrics, on the stand-in ONNX (CPU).

The stand-in's score of a uniform frame of value v is v / 255, so each expected number below is
computed from the pixel values with numpy, not read back from our own writer.
"""

from __future__ import annotations

import io
import json
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from runtime_fixtures import write_export_dir
from typer.testing import CliRunner

from mmad_edge.bench.line_servers import free_port
from mmad_edge.cli import app
from mmad_edge.runtime import ArtifactError, Detector, RunOptions, run_stream
from mmad_edge.runtime.loop.sources import FrameSource, SourceSpec, parse_source
from mmad_edge.runtime.monitor.drift import DriftMonitor, NormalScores

SIZE = 32
LOW, THRESHOLD, STD = 0.3, 0.5, 0.01  # the stand-in metadata's normal median, threshold and normal std


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    return write_export_dir(tmp_path_factory.mktemp("export"), SIZE, threshold=THRESHOLD, low=LOW)


@pytest.fixture(scope="module")
def detector(export_dir):
    with Detector.load(export_dir) as det:
        yield det


def write_video(path: Path, values: list) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (80, 60))
    assert writer.isOpened()
    for value in values:
        frame = np.full((60, 80, 3), value, np.uint8)
        frame[10:20, 10:30] = min(value + 40, 255)
        writer.write(frame)
    writer.release()
    return path


def write_folder(folder: Path, values: list) -> Path:
    folder.mkdir(parents=True)
    for index, value in enumerate(values):
        cv2.imwrite(str(folder / f"{index:03d}.png"), np.full((40, 48, 3), value, np.uint8))
    return folder


@pytest.fixture(scope="module")
def three(tmp_path_factory) -> list:
    root = tmp_path_factory.mktemp("sources")
    return [str(write_video(root / "a.avi", [20 * i for i in range(11)])),
            str(write_video(root / "b.avi", [200 - 15 * i for i in range(7)])),
            str(write_folder(root / "images", [30, 160, 90, 140, 60]))]


def json_lines(text: str) -> list:
    return [json.loads(line) for line in text.splitlines()]


def test_three_sources_each_frame_once_tagged_and_scored_as_alone(detector, three):
    alone = {}
    for source in three:
        out = io.StringIO()
        run_stream(detector, source, RunOptions(jsonl=True), stdout=out)
        alone[source] = json_lines(out.getvalue())
    out = io.StringIO()
    summary = run_stream(detector, three, RunOptions(jsonl=True, batch=4), stdout=out)
    lines = json_lines(out.getvalue())
    assert [line["index"] for line in lines] == list(range(len(lines)))
    assert {line["stream"] for line in lines} == set(three)
    for source in three:
        mine = [line for line in lines if line["stream"] == source]
        where = "frame_index" if source.endswith(".avi") else "source"
        assert [line[where] for line in mine] == [line[where] for line in alone[source]]  # each frame once, in order
        assert [line["score"] for line in mine] == pytest.approx([line["score"] for line in alone[source]], rel=1e-6)
        assert [line["is_anomaly"] for line in mine] == [line["is_anomaly"] for line in alone[source]]
    assert summary["frames"] == len(lines) == 11 + 7 + 5 and summary["dropped"] == 0
    per_source = {entry["source"]: entry for entry in summary["sources"]}
    assert [per_source[source]["frames"] for source in three] == [11, 7, 5]
    for source in three:
        entry = per_source[source]
        assert entry["dropped"] == 0 and entry["fps"] > 0
        assert entry["anomalies"] == sum(line["is_anomaly"] for line in alone[source])
    assert summary["anomalies"] == sum(entry["anomalies"] for entry in summary["sources"])
    assert per_source[three[2]]["skipped"] == 0 and per_source[three[0]]["reopened"] == 0


def test_category_syntax_and_bad_specs(tmp_path):
    assert parse_source("gravel=rtsp://cam/1") == SourceSpec("rtsp://cam/1", "gravel")
    assert parse_source("rtsp://cam/s?user=a") == SourceSpec("rtsp://cam/s?user=a")  # a URL's own '=' is not a category
    assert parse_source("0") == SourceSpec("0") and parse_source("brick=0") == SourceSpec("0", "brick")
    named = tmp_path / "a=b"
    named.mkdir()
    assert parse_source(str(named)) == SourceSpec(str(named))  # an existing path is taken whole
    with pytest.raises(ValueError, match=r"^source 'gravel=' names category 'gravel' but no source after '='; "
                                         r"pass --source gravel=SOURCE"):
        parse_source("gravel=")
    with pytest.raises(ValueError, match=r"^source '=rtsp://cam/1' has an empty category"):
        parse_source("=rtsp://cam/1")


@pytest.fixture(scope="module")
def categorised(tmp_path_factory) -> Path:
    """An export whose metadata.json has per-category statistics: dark (low scores) and bright."""
    folder = write_export_dir(tmp_path_factory.mktemp("unified"), SIZE, threshold=THRESHOLD, low=LOW)
    meta = json.loads((folder / "metadata.json").read_text())
    meta["statistics"]["categories"] = {
        "dark": {"threshold": 0.3, "normalization": {"low": 0.1, "high": 0.3}, "normal_scores": {"std": 0.05}},
        "bright": {"threshold": 0.9, "normalization": {"low": 0.7, "high": 0.9}, "normal_scores": {"std": 0.05}},
    }
    (folder / "metadata.json").write_text(json.dumps(meta))
    return folder


def test_sources_of_two_categories_share_batches_each_judged_by_its_own(categorised, tmp_path):
    values = [128, 64, 200, 240]
    dark = write_folder(tmp_path / "dark", values)
    bright = write_folder(tmp_path / "bright", values)
    out = io.StringIO()
    summary = run_stream(categorised, [f"dark={dark}", SourceSpec(str(bright), "bright")], RunOptions(jsonl=True, batch=4),
                         stdout=out)
    lines = json_lines(out.getvalue())
    scores = np.array(values, np.float64) / 255.0
    for name, (threshold, low) in {"dark": (0.3, 0.1), "bright": (0.9, 0.7)}.items():
        mine = [line for line in lines if line["category"] == name]
        assert [line["score"] for line in mine] == pytest.approx(scores.tolist(), rel=1e-6)
        assert [line["threshold"] for line in mine] == [threshold] * 4
        assert [line["is_anomaly"] for line in mine] == (scores > threshold).tolist()
        expected = np.clip(0.5 + 0.5 * (scores - threshold) / (threshold - low), 0, 1)
        assert [line["score_normalized"] for line in mine] == pytest.approx(expected.tolist(), rel=1e-5)
    assert [entry["category"] for entry in summary["sources"]] == ["dark", "bright"]
    with Detector.load(categorised) as det:  # the Python API: one backend run, each frame judged by its category
        runs = []
        backend_run = det.backend.run
        det.backend.run = lambda images: runs.append(len(images)) or backend_run(images)
        frames = [np.full((40, 40, 3), 120, np.uint8)] * 3  # score 0.47
        results = det.predict(frames, categories=["dark", "bright", None])
        assert runs == [3] and [r.threshold for r in results] == [0.3, 0.9, THRESHOLD]
        assert [r.is_anomaly for r in results] == [True, False, False]
        assert [r.threshold for r in det.predict(frames, threshold=0.45, categories=["dark", "bright", None])] == [0.45] * 3
    with pytest.raises(ArtifactError, match="no statistics for category 'gravel'; categories with statistics: bright, dark"):
        run_stream(categorised, [str(dark), f"gravel={bright}"], stdout=io.StringIO())


def test_cli_runs_several_sources_with_per_source_lines_and_json(export_dir, three, tmp_path):
    report = tmp_path / "run.json"
    args = ["run", str(export_dir), "--source", three[0], "--source", three[1], "--source", three[2],
            "--batch-size", "4", "--json", str(report)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(report.read_text())
    assert [(entry["source"], entry["frames"], entry["dropped"]) for entry in summary["sources"]] == [
        (three[0], 11, 0), (three[1], 7, 0), (three[2], 5, 0)]
    for source, count in zip(three, (11, 7, 5)):
        assert any(line.startswith(f"mmad-edge:   {source}: {count} processed, ") for line in result.output.splitlines())
    bad = CliRunner().invoke(app, ["run", str(export_dir), "--source", three[0], "--source", "gravel="])
    assert bad.exit_code == 2 and "error: source 'gravel=' names category 'gravel' but no source" in bad.output
    twice = CliRunner().invoke(app, ["run", str(export_dir), "--source", three[0], "--source", three[0]])
    assert twice.exit_code == 2 and f"error: source '{three[0]}' is given twice; pass each --source once" in twice.output


# A brightness ramp up and back down over uniform frames: scores v / 255 from 0.298 to 0.373.
RAMP = [76] * 10 + list(range(76, 96)) + list(range(95, 75, -1)) + [76] * 10
WINDOW, TOLERANCE = 10, 3.0


def expected_drift() -> list:
    """(state, frame) of each change, from the stated test computed here with numpy."""
    scores = np.array(RAMP, np.float64) / 255.0
    changes, drifting = [], False
    for index in range(WINDOW // 2 - 1, len(scores)):
        statistic = (np.median(scores[max(0, index - WINDOW + 1): index + 1]) - LOW) / STD
        if (abs(statistic) > TOLERANCE) if not drifting else (abs(statistic) < TOLERANCE / 2):
            drifting = not drifting
            changes.append(("drifting" if drifting else "recovered", index))
    return changes


def test_brightness_ramp_warns_once_and_recovers_once(detector, tmp_path, capsys):
    folder = write_folder(tmp_path / "ramp", RAMP)
    out = io.StringIO()
    options = RunOptions(jsonl=True, drift_window=WINDOW, drift_tolerance=TOLERANCE, threshold=2.0)
    summary = run_stream(detector, str(folder), options, stdout=out)
    events = [line for line in json_lines(out.getvalue()) if "event" in line]
    assert [(event["state"], event["frame"]) for event in events] == expected_drift()
    assert len(events) == 2 and events[0]["frame"] > 10
    assert events[0]["statistic"] > TOLERANCE and abs(events[1]["statistic"]) < TOLERANCE / 2
    assert all(event["event"] == "drift" and event["source"] == str(folder) and event["tolerance"] == TOLERANCE
               for event in events)
    err = capsys.readouterr().err.splitlines()
    assert len([line for line in err if line.startswith(f"mmad-edge: drift: {folder}: median of the last 10 scores")]) == 1
    assert len([line for line in err if line.startswith(f"mmad-edge: drift recovered: {folder}: ")]) == 1
    assert summary["drift_events"] == 2 and summary["sources"][0]["drift"]["drifting"] is False


def test_no_statistics_turns_drift_off_with_one_notice(tmp_path, capsys):
    bare = write_export_dir(tmp_path / "bare", SIZE, statistics=False)
    summary = run_stream(bare, str(write_folder(tmp_path / "ramp", RAMP)), RunOptions(drift_window=WINDOW),
                         stdout=io.StringIO())
    err = capsys.readouterr().err
    assert err.count("drift watch off: the artifact has no normal-score statistics") == 1
    assert summary["drift_events"] == 0 and summary["sources"][0]["drift"] is None
    with pytest.raises(ValueError, match=r"^drift window must be an integer >= 1, got 0; pass e.g. --drift-window 200"):
        run_stream(bare, str(tmp_path / "ramp"), RunOptions(drift_window=0))
    with pytest.raises(ValueError, match=r"^drift tolerance must be a finite number > 0, got nan"):
        run_stream(bare, str(tmp_path / "ramp"), RunOptions(drift_tolerance=float("nan")))


def test_drift_hysteresis_and_spread():
    monitor = DriftMonitor(NormalScores(0.0, 1.0), window=1, tolerance=3.0)
    states = [[event.state for event in monitor.update([score])] for score in (0.0, 3.5, 2.0, 3.5, 1.4, 2.0, -4.0)]
    assert states == [[], ["drifting"], [], [], ["recovered"], [], ["drifting"]]
    assert monitor.update([float("nan")]) == [] and monitor.count == 7  # a broken output is left out
    stats = {"normalization": {"low": 0.3, "high": 0.6}, "normal_scores": {"std": 0.0},
             "categories": {"a": {"normalization": {"low": 1.0, "high": 2.0}, "normal_scores": {"std": 0.2}}}}
    assert NormalScores.from_statistics(stats) == NormalScores(0.3, pytest.approx(0.1))  # std 0: (high - low) / 3
    assert NormalScores.from_statistics(stats, "a") == NormalScores(1.0, 0.2)
    assert NormalScores.from_statistics(None) is None


class GatedSource(FrameSource):
    """Uniform frames, then waits at the end until ``gate`` opens (so the run is scraped while alive)."""

    def __init__(self, values, gate):
        self.values, self.gate, self.name = values, gate, "gated"

    def frames(self):
        for index, value in enumerate(self.values):
            yield str(index), np.full((24, 24, 3), value, np.uint8)
        self.gate.wait(30)


def scrape(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(sample.name, sample.labels.get("source"), sample.labels.get("le")): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_metrics_are_served_over_http_with_the_run_numbers(detector):
    values = [76] * 6 + [200, 220] + [95] * 6  # two anomalies; the median climbs past the tolerance
    gate, port, done = threading.Event(), free_port(), {}
    options = RunOptions(jsonl=True, metrics_port=port, drift_window=4, drift_tolerance=TOLERANCE)
    worker = threading.Thread(target=lambda: done.update(
        summary=run_stream(detector, GatedSource(values, gate), options, stdout=io.StringIO())))
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                metrics = scrape(port)
                if metrics.get(("mmad_edge_frames_total", "gated", None)) == len(values):
                    break
            except urllib.error.URLError:
                pass
            assert time.monotonic() < deadline, "metrics never reached the frame count"
            time.sleep(0.05)
    finally:
        gate.set()
        worker.join(30)
    summary = done["summary"]
    assert metrics[("mmad_edge_anomalies_total", "gated", None)] == summary["anomalies"] == 2
    assert metrics[("mmad_edge_dropped_frames_total", "gated", None)] == summary["dropped"] == 0
    assert metrics[("mmad_edge_latency_seconds_count", "gated", None)] == len(values)
    assert metrics[("mmad_edge_latency_seconds_bucket", "gated", "+Inf")] == len(values)
    expected = (np.median(np.array(values[-4:], np.float64) / 255.0) - LOW) / STD
    assert metrics[("mmad_edge_drift_statistic", "gated", None)] == pytest.approx(expected, rel=1e-5)
    assert metrics[("mmad_edge_drifting", "gated", None)] == 1.0 and summary["drift_events"] == 1
    with pytest.raises(urllib.error.URLError):  # the server stops with the run
        scrape(port)


def test_a_busy_metrics_port_is_one_clear_error(export_dir, three, tmp_path):
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(app, ["run", str(export_dir), "--source", three[2], "--metrics-port", str(port),
                                          "--save", str(tmp_path / "saved")])
    assert result.exit_code == 2 and f"error: cannot serve metrics on port {port} (" in result.output
    assert "pick a free one with --metrics-port" in result.output and not (tmp_path / "saved").exists()


def test_copied_folder_sources_are_told_apart(detector, three, tmp_path):
    copy = shutil.copytree(three[2], tmp_path / "copy")
    out = io.StringIO()
    run_stream(detector, [three[2], str(copy)], RunOptions(jsonl=True, batch=3), stdout=out)
    lines = json_lines(out.getvalue())
    assert sorted(line["stream"] for line in lines) == sorted([three[2]] * 5 + [str(copy)] * 5)
    assert all(line["source"].startswith(line["stream"]) for line in lines)


class LiveCounter(FrameSource):
    """A live source that produces ``count`` frames as fast as it can (far faster than inference)."""

    live = True

    def __init__(self, name, count):
        self.name, self.count = name, count

    def frames(self):
        for index in range(self.count):
            yield str(index), np.full((24, 24, 3), index % 256, np.uint8)


def test_live_sources_drop_stale_frames_and_count_them_per_source(detector):
    out = io.StringIO()
    summary = run_stream(detector, [LiveCounter("cam1", 300), LiveCounter("cam2", 200)], RunOptions(jsonl=True, batch=2),
                         stdout=out)
    per_source = {entry["source"]: entry for entry in summary["sources"]}
    lines = json_lines(out.getvalue())
    for name, count in (("cam1", 300), ("cam2", 200)):
        entry = per_source[name]
        assert entry["frames"] + entry["dropped"] == count  # every frame read is either scored or counted as dropped
        indices = [int(line["source"]) for line in lines if line["stream"] == name]
        assert indices == sorted(set(indices)) and len(indices) == entry["frames"]
    assert summary["dropped"] == sum(entry["dropped"] for entry in summary["sources"])
