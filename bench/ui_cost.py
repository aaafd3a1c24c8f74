"""What the live page costs the loop: frames per second with and without the page, on this CPU.

    python -m mmad_edge.bench.ui_cost [--out bench/results] [--frames 60] [--rounds 3]

A seeded random variant-n model at 256x256 is exported to ONNX FP32 and its threshold set to the
median score of the frames (``calibrate-threshold --fpr 0.5``), so half the frames are flagged and
the review queue keeps receiving frames: the page's busiest case. Each round scores the same
folder of demo frames twice through ``run_stream`` (what `mmad-edge run` calls), once plain and
once with ``--ui`` and a viewer reading the page's events and fetching every new frame (as an
open browser does), the order alternating between
rounds so a neighbour's load on a shared machine falls on both. The cost is one minus the median
over rounds of (fps with the page / fps without) in the same round.
"""

from __future__ import annotations

import argparse
import http.client
import io
import statistics
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from mmad_edge.bench.line_servers import free_port
from mmad_edge.bench.machine import machine_info
from mmad_edge.bench.models import random_model
from mmad_edge.checkpoint import save_checkpoint
from mmad_edge.config import ModelConfig
from mmad_edge.data.demo import make_demo_dataset
from mmad_edge.export.options import CalibrateOptions, ExportOptions
from mmad_edge.export.pipeline import export_checkpoint
from mmad_edge.export.threshold_apply import MetadataThresholds
from mmad_edge.export.threshold_calibration import calibrate_threshold
from mmad_edge.fileio import write_json
from mmad_edge.runtime import Detector
from mmad_edge.runtime.loop.options import RunOptions
from mmad_edge.runtime.loop.run import run_stream
from mmad_edge.runtime.ui.options import PageOptions
from mmad_edge.runtime.ui.review_store import ReviewStore

BACKEND = "onnxruntime"


class Viewer:
    """An open page: reads the event stream and fetches the frame after every event (connecting as
    soon as the page is up)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.events = self.frames = 0
        self._connections: list[http.client.HTTPConnection] = []
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._stop = threading.Event()

    def start(self) -> Viewer:
        self._thread.start()
        return self

    def _watch(self) -> None:
        events, images = (http.client.HTTPConnection(self.host, self.port, timeout=10) for _ in range(2))
        self._connections = [events, images]
        try:
            while not self._stop.is_set():
                try:
                    events.request("GET", "/api/events")
                    break
                except ConnectionRefusedError:
                    events.close()
                    time.sleep(0.05)
            stream = events.getresponse()
            while not self._stop.is_set():
                line = stream.readline()
                if not line:
                    return
                if line.startswith(b"data:"):
                    self.events += 1
                    images.request("GET", "/api/frame/0.jpg")
                    self.frames += bool(images.getresponse().read())
        except (OSError, AttributeError, http.client.HTTPException):
            if not self._stop.is_set():  # closing the connection under readline ends it this way
                raise

    def stop(self) -> None:
        self._stop.set()
        for connection in self._connections:
            connection.close()
        self._thread.join(5)


def timed_pass(detector: Detector, folder: Path, work: Path | None) -> dict[str, Any]:
    """``run`` over every frame of ``folder`` once; with ``work``, ``--ui`` on and the page viewed."""
    options, viewer = RunOptions(progress_every_s=1e9), None
    if work is not None:
        port = free_port()
        options = replace(options, page=PageOptions(ui=f"127.0.0.1:{port}", review_dir=str(work / "review"),
                                                    hold=False))
        viewer = Viewer("127.0.0.1", port).start()
    try:
        summary = run_stream(detector, str(folder), options, stdout=io.StringIO(), thresholds=MetadataThresholds)
    finally:
        if viewer is not None:
            viewer.stop()
    row = {"ui": work is not None, "frames": summary["frames"], "elapsed_s": summary["elapsed_s"],
           "fps": summary["fps"]}
    if viewer is not None:
        with ReviewStore(work / "review") as store:
            row.update(events=viewer.events, frames_fetched=viewer.frames, review_items=store.usage()["items"])
    return row


def measure(artifact: Path, folder: Path, rounds: int, work: Path) -> dict[str, Any]:
    """``rounds`` pairs of passes, the order alternating; medians and the page's cost in percent."""
    passes = []
    with Detector.load(artifact, BACKEND) as detector:
        timed_pass(detector, folder, None)  # warm-up: first-run allocations count for neither side
        for number in range(rounds):
            order = (False, True) if number % 2 == 0 else (True, False)
            for with_ui in order:
                passes.append(timed_pass(detector, folder, work / f"round{number}" if with_ui else None))
                print(f"round {number + 1}/{rounds} {'with' if with_ui else 'without'} the page: "
                      f"{passes[-1]['fps']:.2f} fps", flush=True)
    plain = statistics.median(row["fps"] for row in passes if not row["ui"])
    page = statistics.median(row["fps"] for row in passes if row["ui"])
    # Each round's two passes ran back to back, so their ratio cancels the slower drift of a shared machine.
    ratios = [passes[i + 1]["fps"] / passes[i]["fps"] if passes[i + 1]["ui"] else passes[i]["fps"] / passes[i + 1]["fps"]
              for i in range(0, len(passes), 2)]
    cost = 100.0 * (1.0 - statistics.median(ratios))
    return {"fps_without_ui": plain, "fps_with_ui": page, "round_ratios": [round(r, 4) for r in ratios],
            "cost_pct": round(cost, 2), "within_5_pct": cost <= 5.0, "passes": passes}


def prepare(work: Path, frames: int) -> tuple[Path, Path]:
    """The export (threshold at the frames' median score) and the folder of frames; kept in ``work``
    and reused by a later run given the same ``--work``."""
    artifact, folder = work / "export" / "model.fp32.onnx", work / "data" / "brick" / "train" / "good"
    if artifact.is_file() and len(list(folder.iterdir())) == frames:
        return artifact, folder
    data = make_demo_dataset(work / "data", ("brick",), n_train=frames, n_test_good=1, n_test_defect=1,
                             overwrite=True)
    folder = data / "brick" / "train" / "good"
    checkpoint = save_checkpoint(work / "checkpoint.pt", random_model(ModelConfig(variant="n", image_size=256)))
    export_checkpoint(checkpoint, work / "export", ExportOptions(precisions=("fp32",)))
    calibrate_threshold(artifact, CalibrateOptions(good=folder, fpr=0.5, backend=BACKEND))
    return artifact, folder


def markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    lines = [f"Cost of the live page (`run --ui`) on {machine['cpu_model']} ({machine['logical_cores']} logical CPUs, "
             f"shared), {report['model']}, {report['frames']} frames per pass, {BACKEND}.", "",
             f"- fps without the page (median): {report['fps_without_ui']:.2f}",
             f"- fps with the page open and viewed (median): {report['fps_with_ui']:.2f}",
             f"- cost: {report['cost_pct']:.2f} % ({'within' if report['within_5_pct'] else 'NOT within'} 5 %): one "
             "minus the median over rounds of fps with / fps without, the two passes of a round back to back "
             f"(ratios {', '.join(f'{r:.3f}' for r in report['round_ratios'])})", "",
             "| pass | page | frames | s | fps | events | frames fetched | review items |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for number, row in enumerate(report["passes"], 1):
        extra = [str(row.get(key, "-")) for key in ("events", "frames_fetched", "review_items")]
        lines.append(f"| {number} | {'yes' if row['ui'] else 'no'} | {row['frames']} | {row['elapsed_s']:.2f} | "
                     f"{row['fps']:.2f} | {' | '.join(extra)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None, help="keep the export and frames here (reused)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mmad-ui-cost-") as tmp:
        work = args.work or Path(tmp)
        artifact, folder = prepare(work, args.frames)
        report = {"model": "variant n, 256x256, ONNX FP32 (random trained-like weights)", "frames": args.frames,
                  **measure(artifact, folder, args.rounds, Path(tmp)), "machine": machine_info()}
    write_json(args.out / "ui_cost.json", report)
    (args.out / "ui_cost.md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))


if __name__ == "__main__":
    main()
