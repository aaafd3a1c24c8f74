"""`mmad-edge bench ARTIFACT --serve URL`: load a running `mmad-edge serve` with 1, 4 and 16
concurrent clients, next to the in-process Detector on the same artifact, in one run.

Each client is a thread with its own tritonclient connection sending one frame per request and
waiting for the answer (closed loop), so the server's dynamic batcher sees as many requests at
once as there are clients. Rows report throughput (frames answered per second of wall time, all
clients together) and per-request latency p50 / p99. ``http://host:port`` (or ``host:port``) uses
HTTP, ``grpc://host:port`` gRPC.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmad_edge.fileio import write_bytes_atomic, write_json
from mmad_edge.runtime.artifact.contract import INPUT_NAME, IS_ANOMALY, OUTPUT_NAMES, SERVING_MODEL
from mmad_edge.runtime.detector import Detector
from mmad_edge.runtime.errors import install_hint
from mmad_edge.runtime.log import say

from .timing import Timing


@dataclass(frozen=True)
class ServeLoadOptions:
    """``clients``: concurrency levels; ``duration_s``: timed seconds per row (after ``warmup``
    requests per client); ``frame_size``: (height, width) of the frames sent (default: the model's)."""

    url: str
    clients: tuple[int, ...] = (1, 4, 16)
    duration_s: float = 6.0
    warmup: int = 3
    frame_size: tuple[int, int] | None = None
    progress: bool = True


def protocol_of(url: str) -> tuple[str, str]:
    """("http" | "grpc", "host:port") from a URL."""
    for scheme in ("http", "grpc"):
        if url.startswith(f"{scheme}://"):
            return scheme, url[len(scheme) + 3:].rstrip("/")
    if "://" in url:
        raise ValueError(f"--serve takes http://HOST:PORT or grpc://HOST:PORT, got {url!r}")
    return "http", url.rstrip("/")


def client_call(url: str) -> Callable[[np.ndarray], Any]:
    """A function that sends one batch of frames to the server and returns the scores."""
    scheme, address = protocol_of(url)
    try:
        client_module = importlib.import_module(f"tritonclient.{scheme}")
    except ImportError:
        raise ModuleNotFoundError(f"bench --serve needs tritonclient; {install_hint('serve')}") from None
    client = client_module.InferenceServerClient(address)
    try:
        ready = client.is_model_ready(SERVING_MODEL)
    except Exception as exc:  # tritonclient raises its own types (and socket errors) for a dead address
        raise ConnectionError(f"no server answers at {url} ({str(exc).splitlines()[0]}); start one with "
                              "mmad-edge serve EXPORT or pass its --port") from None
    if not ready:
        raise ConnectionError(f"the server at {url} has no ready model {SERVING_MODEL!r}; is it mmad-edge serve?")
    outputs = [client_module.InferRequestedOutput(OUTPUT_NAMES[1]), client_module.InferRequestedOutput(IS_ANOMALY)]

    def call(frames: np.ndarray) -> Any:
        image = client_module.InferInput(INPUT_NAME, list(frames.shape), "UINT8")
        image.set_data_from_numpy(frames)
        return client.infer(SERVING_MODEL, [image], outputs=outputs).as_numpy(OUTPUT_NAMES[1])

    return call


def server_max_batch(url: str) -> int:
    """The served model's ``max_batch_size`` (the in-process rows use the same limit)."""
    scheme, address = protocol_of(url)
    client_call(url)  # says clearly when nothing answers there
    client = importlib.import_module(f"tritonclient.{scheme}").InferenceServerClient(address)
    config = client.get_model_config(SERVING_MODEL, **({"as_json": True} if scheme == "grpc" else {}))
    return int(config.get("config", config).get("max_batch_size", 1)) or 1


def closed_loop(call: Callable[[], Any], deadline: float, latencies: list[float]) -> None:
    """Call until ``deadline``, appending each call's milliseconds."""
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        call()
        latencies.append((time.perf_counter() - started) * 1000.0)


class LoadClient(threading.Thread):
    """One client thread: connects and warms up in its own thread (tritonclient.http's gevent
    connections belong to the thread that made them), then waits for the others at ``start``."""

    def __init__(self, url: str, batch: np.ndarray, start: threading.Barrier, options: ServeLoadOptions) -> None:
        super().__init__(daemon=True)
        self.url, self.batch, self.start_line, self.options = url, batch, start, options
        self.samples: list[float] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            call = client_call(self.url)
            for _ in range(self.options.warmup):
                call(self.batch)
        except BaseException as exc:  # reported by the main thread
            self.error = exc
            self.start_line.abort()
            return
        try:
            self.start_line.wait()
        except threading.BrokenBarrierError:
            return
        closed_loop(lambda: call(self.batch), time.perf_counter() + self.options.duration_s, self.samples)


def load_row(url: str, frame: np.ndarray, clients: int, options: ServeLoadOptions) -> dict[str, Any]:
    """One concurrency level against the server."""
    start = threading.Barrier(clients + 1)
    threads = [LoadClient(url, frame[None], start, options) for _ in range(clients)]
    for thread in threads:
        thread.start()
    try:
        start.wait()
    except threading.BrokenBarrierError:
        pass
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    for thread in threads:
        if thread.error is not None:
            raise thread.error
    samples = [ms for thread in threads for ms in thread.samples]
    return row(f"serve {protocol_of(url)[0]}", clients, 1, Timing(tuple(samples)), len(samples) / wall)


def row(name: str, clients: int, batch: int, timing: Timing, images_per_s: float) -> dict[str, Any]:
    return {"name": name, "clients": clients, "batch": batch, "requests": len(timing.samples_ms),
            "images_per_s": images_per_s, "p50_ms": timing.p50_ms, "p99_ms": timing.p99_ms}


def in_process_rows(detector: Detector, frame: np.ndarray, options: ServeLoadOptions) -> list[dict[str, Any]]:
    """The Detector in this process: one frame per call, and full batches of the profile's maximum."""
    rows = []
    for batch in sorted({1, detector.batch_max}):
        frames = [frame] * batch
        for _ in range(options.warmup):
            detector.predict(frames)
        samples: list[float] = []
        closed_loop(lambda: detector.predict(frames), time.perf_counter() + options.duration_s, samples)
        timing = Timing(tuple(samples), batch=batch)
        rows.append(row("in-process Detector", 1, batch, timing, timing.images_per_s))
    return rows


def run_serve_load(artifact: str, options: ServeLoadOptions) -> dict[str, Any]:
    """Every row, the server's at each concurrency level and the in-process ones; the report dict."""
    with Detector.load(artifact, max_batch=server_max_batch(options.url)) as detector:
        height, width = options.frame_size or detector.image_size
        frame = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
        rows = []
        for clients in options.clients:
            say(f"serve load: {clients} client(s) for {options.duration_s:g} s", options.progress)
            rows.append(load_row(options.url, frame, clients, options))
        say("in-process Detector", options.progress)
        rows.extend(in_process_rows(detector, frame, options))
        described = detector.backend.describe()
    return {"url": options.url, "artifact": str(detector.backend.path), "backend": described.get("backend"),
            "device": described.get("device"), "precision": detector.info.precision,
            "image_size": list(detector.image_size), "frame_size": [height, width],
            "duration_s": options.duration_s, "rows": rows}


def format_rows(report: dict[str, Any]) -> str:
    """The rows as a plain-text table."""
    lines = [["row", "clients", "batch", "requests", "images/s", "p50 ms", "p99 ms"]]
    for entry in report["rows"]:
        lines.append([entry["name"], str(entry["clients"]), str(entry["batch"]), str(entry["requests"]),
                      f"{entry['images_per_s']:.1f}", f"{entry['p50_ms']:.2f}", f"{entry['p99_ms']:.2f}"])
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines)


def summary_text(report: dict[str, Any]) -> str:
    size = "x".join(str(side) for side in report["image_size"])
    return (f"{report['artifact']} ({report['backend']}, {report['device']}, {report['precision']}, {size}) "
            f"served at {report['url']}, {report['duration_s']:g} s per row\n{format_rows(report)}")


def markdown(report: dict[str, Any]) -> str:
    lines = ["| row | clients | batch | requests | images/s | p50 ms | p99 ms |", "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['name']} | {r['clients']} | {r['batch']} | {r['requests']} | {r['images_per_s']:.1f} | "
              f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} |" for r in report["rows"]]
    size = "x".join(str(side) for side in report["image_size"])
    return (f"Serving load: {report['artifact']} ({report['backend']}, {report['device']}, {report['precision']}, "
            f"{size}) at {report['url']}, {report['duration_s']:g} s per row.\n\n" + "\n".join(lines) + "\n")


def write_serve_load(report: dict[str, Any], json_path: Any = None, markdown_path: Any = None) -> list[Path]:
    """Write the files asked for; their paths."""
    written = []
    if json_path is not None:
        written.append(write_json(json_path, report))
    if markdown_path is not None:
        Path(markdown_path).parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(markdown_path, markdown(report).encode("utf-8"))
        written.append(Path(markdown_path))
    return written
