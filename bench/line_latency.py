"""Latency a PLC sees: frame acquired -> message at an MQTT subscriber / Modbus coil written.

    python -m mmad_edge.bench.line_latency [--sources 1,4] [--frames 300] [--fps 20]
        [--artifact model.fp32.onnx] [--out bench/results] [--name line_latency]

Each source is a thread that acquires a synthetic frame at ``--fps``, stamps the acquisition
time, scores it (with ``--artifact`` through a real ``Detector``; without, the delivery leg only,
with a seeded random score) and hands the frame's record to a ``SinkSet`` holding an MQTT sink
(a local mosquitto) and a Modbus coil sink (a local pymodbus server), as ``run --sink`` does.
The arrival time is taken where the message lands: the subscriber's receipt (the broker plus one
hop: an upper bound on "at the broker") and the server's handling of the coil write. Both ends
read ``time.time()`` on this machine.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmad_edge.bench.line_servers import ModbusServer, Mosquitto, MqttSubscriber, mosquitto_missing
from mmad_edge.bench.machine import machine_info
from mmad_edge.bench.timing import Timing
from mmad_edge.fileio import write_json
from mmad_edge.runtime.detector import Detector
from mmad_edge.runtime.log import say
from mmad_edge.runtime.loop.outputs import frame_record
from mmad_edge.runtime.loop.sources import FramePosition
from mmad_edge.runtime.result import Result
from mmad_edge.runtime.sinks.fanout import SinkSet
from mmad_edge.runtime.sinks.message import model_identity
from mmad_edge.runtime.sinks.target import SinkSettings

TOPIC = "bench/verdicts"
FRAME_SIDE = 256
THRESHOLD = 0.5
SETTLE_S = 30.0


class LineRun:
    """One row's run: ``sources`` threads feeding one SinkSet; acquisition times in send order."""

    def __init__(self, sinks: SinkSet, detector: Detector | None, sources: int, frames: int, fps: float) -> None:
        self.sinks, self.detector = sinks, detector
        self.sources, self.frames, self.period_s = sources, frames, 1.0 / fps
        self.acquired: list[float] = []  # in the order the sinks got the messages
        self._lock = threading.Lock()
        self._index = 0

    def run(self) -> None:
        threads = [threading.Thread(target=self._source, args=(number,)) for number in range(self.sources)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _source(self, number: int) -> None:
        rng = np.random.default_rng(number)
        frame = rng.integers(0, 256, (FRAME_SIDE, FRAME_SIDE, 3), dtype=np.uint8)
        next_at = time.monotonic()
        for frame_index in range(self.frames):
            next_at += self.period_s
            acquired = time.time()
            result = self._score(frame, rng)
            with self._lock:  # the run loop hands results to the sinks one at a time
                record = frame_record(f"cam{number}", FramePosition(frame_index, captured_at=acquired), self._index,
                                      result)
                self._index += 1
                self.sinks.send(record)
                self.acquired.append(acquired)
            time.sleep(max(0.0, next_at - time.monotonic()))

    def _score(self, frame: np.ndarray, rng: np.random.Generator) -> Result:
        if self.detector is not None:
            with self._lock:
                return self.detector.predict([frame])[0]
        score = float(rng.random())
        return Result(score, score, score > THRESHOLD, THRESHOLD, np.zeros((1, 1), np.float32))


def latency_row(sink: str, sources: int, latencies_s: Sequence[float], expected: int) -> dict[str, Any]:
    timing = Timing(tuple(latency * 1000 for latency in latencies_s))
    return {"sink": sink, "sources": sources, "messages": len(latencies_s), "expected": expected,
            "p50_ms": round(timing.p50_ms, 3), "p99_ms": round(timing.p99_ms, 3), "max_ms": round(max(latencies_s) * 1000, 3)}


def coil_latencies(writes: Sequence[tuple], acquired: Sequence[float], report: dict[str, Any]) -> list[float]:
    """Coil writes carry no message id: they pair with the acquisitions by position, which holds only
    when every verdict was written exactly once."""
    if len(writes) != len(acquired) or report["dropped"] or report["lost"]:
        raise RuntimeError(f"modbus coil: {len(writes)} writes for {len(acquired)} frames (dropped {report['dropped']}, "
                           f"lost {report['lost']}), so writes cannot be paired with frames; rerun with fewer "
                           "--sources or a lower --fps")
    return [at - stamp for (at, *_), stamp in zip(writes, acquired)]


def measure(sources: int, frames: int, fps: float, artifact: Path | None, work: Path) -> list[dict[str, Any]]:
    """The MQTT and the coil row at ``sources`` sources."""
    detector = Detector.load(artifact) if artifact is not None else None
    model = model_identity(detector.info.raw, artifact) if detector is not None else {}
    broker, modbus = Mosquitto(work / f"broker-{sources}").start(), ModbusServer()
    subscriber = MqttSubscriber(broker.port, TOPIC, client_id=f"bench-{sources}")
    try:
        urls = [f"mqtt://127.0.0.1:{broker.port}/{TOPIC}", f"modbus://127.0.0.1:{modbus.port}/coil/0"]
        sinks = SinkSet.open(urls, SinkSettings(spool_dir=work / f"spool-{sources}", queue_size=10_000), model)
        line = LineRun(sinks, detector, sources, frames, fps)
        line.run()
        total = sources * frames
        subscriber.wait_for(total, SETTLE_S)
        modbus.wait_for(total, SETTLE_S)
        reports = sinks.finish(drain_s=SETTLE_S)
        arrived = {}
        for at, body in subscriber.received:
            arrived.setdefault(body["message_id"], at - body["timestamp"])
        coil = coil_latencies(modbus.writes, line.acquired, reports[1])
        rows = [latency_row("mqtt (QoS 1, at the subscriber)", sources, list(arrived.values()), total),
                latency_row("modbus coil (written)", sources, coil, total)]
        for row, report in zip(rows, reports):
            row.update(sent=report["sent"], dropped=report["dropped"], queued=report["queued"], lost=report["lost"])
        return rows
    finally:
        subscriber.close()
        broker.stop()
        modbus.close()
        if detector is not None:
            detector.close()


def markdown(report: dict[str, Any]) -> str:
    lines = [f"Line latency on {report['machine']['cpu_model']} ({report['machine']['logical_cores']} logical cores): "
             f"{report['frames']} frames per source at {report['fps']:g} fps, {report['scoring']}.", "",
             *([report["note"], ""] if report["note"] else []),
             "| sink | sources | messages | p50 ms | p99 ms | max ms | dropped | lost |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in report["rows"]:
        lines.append(f"| {row['sink']} | {row['sources']} | {row['messages']}/{row['expected']} | {row['p50_ms']:.2f} | "
                     f"{row['p99_ms']:.2f} | {row['max_ms']:.2f} | {row['dropped']} | {row['lost']} |")
    lines += ["", f"Command: `{report['command']}`"]
    return "\n".join(lines) + "\n"


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", default="1,4", help="source counts, comma-separated")
    parser.add_argument("--frames", type=int, default=300, help="frames per source")
    parser.add_argument("--fps", type=float, default=20.0, help="frames per second per source")
    parser.add_argument("--artifact", type=Path, help="score frames with this model (default: delivery leg only)")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--name", default="line_latency")
    parser.add_argument("--note", default="", help="a line for the Markdown (e.g. what else loaded the machine)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    missing = mosquitto_missing()
    if missing:
        raise SystemExit(f"line_latency: {missing}")
    counts = [int(count) for count in args.sources.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="mmad-line-") as tmp:
        for sources in counts:
            say(f"line latency: {sources} source(s), {args.frames} frames each at {args.fps:g} fps")
            rows += measure(sources, args.frames, args.fps, args.artifact, Path(tmp))
    report = {"machine": machine_info(), "frames": args.frames, "fps": args.fps,
              "note": args.note, "scoring": f"scored by {args.artifact.name}" if args.artifact else "delivery leg only (no inference)",
              "command": shlex.join(["python", "-m", "mmad_edge.bench.line_latency",
                                     *(sys.argv[1:] if argv is None else argv)]),
              "rows": rows}
    write_json(args.out / f"{args.name}.json", report)
    (args.out / f"{args.name}.md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
