"""What `mmad-edge serve` was asked to do, as one value: built once by the CLI, passed whole.

The defaults here are the only ones; each field carries its flag and help (plain metadata), from
which the CLI builds the commands.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, fields
from pathlib import Path

from ..flags import (
    BACKEND,
    DRIFT_TOLERANCE,
    DRIFT_WINDOW,
    FOLLOW,
    INSTANCES,
    MAX_BATCH,
    MAX_QUEUE_DELAY_US,
    METRICS_PORT,
    PRECISION,
    Flag,
    nested,
)
from ..monitor.drift import DEFAULT_TOLERANCE, DEFAULT_WINDOW, check_drift_options
from ..ui.options import PageOptions
from ..ui.security import DEFAULT_HOST, TokenSource

HOST = Flag("--host", "Address HTTP and gRPC listen on (default 127.0.0.1: this machine only; any other needs a "
                     "token; docs/serving.md).")
TOKEN_FILE = Flag("--token-file", "File holding the token clients send as the triton-access-token header (default: "
                                  "the MMAD_EDGE_SERVE_TOKEN environment variable); needed for any --host but "
                                  "loopback.")
TOKEN = TokenSource(address_flag=HOST.name, file_flag=TOKEN_FILE.name, env="MMAD_EDGE_SERVE_TOKEN")

PORTS = ("http_port", "grpc_port", "metrics_port", "app_metrics_port")


@dataclass(frozen=True)
class ServeOptions:
    """Options of ``serve``.

    Ports are Triton's (HTTP/REST and gRPC speak the KServe v2 protocol; metrics are Prometheus
    text). ``host``: where HTTP and gRPC listen (this machine only by default; any other address
    needs the token of ``token_file`` or ``MMAD_EDGE_SERVE_TOKEN``, which clients then send as the
    ``triton-access-token`` header; health stays open for probes). Metrics stay on 127.0.0.1.
    ``max_batch`` is the dynamic batcher's limit (``artifact.batching``: above the profile of an
    ONNX graph with a dynamic batch axis it widens it; past a fixed batch or an engine's profile it
    is refused);
    ``max_queue_delay_us`` is how long a request may wait for others to fill a batch;
    ``instances`` model instances each run their own Detector (own session), so that many batches
    run at once. ``backend`` / ``precision`` / ``threads`` pick and set up the artifact as
    ``Detector.load`` does. ``exit_timeout_s``: how long a stop waits for requests in flight. ``log_file``:
    tritonserver's log (its start-up tables); its console lines (NVML notes, the stop signal) go to
    ``triton_console()`` beside it; neither reaches our output.
    ``drift_window`` / ``drift_tolerance``: the drift watch per category, as for ``run``.
    ``app_metrics_port``: our own metrics (frames, anomalies, latency, drift per category), apart
    from Triton's on ``metrics_port`` (None: not served). ``events_path``: drift events appended
    there as JSON lines. ``follow``: with a deployment folder, swap in the version its ``current``
    comes to name between two executions (``follow``).
    """

    host: str = HOST.field(DEFAULT_HOST)
    token_file: str | None = TOKEN_FILE.field(None, cli_type=Path, parse=str)
    http_port: int = Flag("--port", "HTTP/REST port (KServe v2).").field(8000)
    grpc_port: int = Flag("--grpc-port", "gRPC port (KServe v2).").field(8001)
    metrics_port: int = METRICS_PORT.field(8002)
    max_batch: int | None = MAX_BATCH.field(None)
    max_queue_delay_us: int = MAX_QUEUE_DELAY_US.field(500)
    instances: int = INSTANCES.field(1, detail=", each its own Detector (batches run side by side)")
    backend: str = BACKEND.field("auto")
    precision: str | None = PRECISION.field(None)
    threads: int | None = Flag("--threads", "ONNX Runtime CPU threads per instance.").field(None)
    exit_timeout_s: int = 3
    log_file: str | None = Flag("--log-file", "tritonserver's log (default: the temp folder, named in the "
                                                 "summary).").field(None, cli_type=Path, parse=str)
    drift_window: int = DRIFT_WINDOW.field(DEFAULT_WINDOW, detail="category")
    drift_tolerance: float = DRIFT_TOLERANCE.field(DEFAULT_TOLERANCE)
    app_metrics_port: int | None = Flag(
        "--app-metrics-port", "Serve our metrics (frames, anomalies, latency, drift per category) at "
                              "http://127.0.0.1:PORT/metrics, apart from Triton's --metrics-port.").field(None)
    events_path: str | None = Flag("--events", "Append each drift event to this file as a JSON line.").field(
        None, cli_type=Path, parse=str)
    follow: bool = FOLLOW.field(True, detail="executions")
    page: PageOptions = nested(PageOptions)

    def ports(self) -> dict:
        """Each port in use, by the flag that sets it (the app metrics' only when served)."""
        flags = {f.name: f.metadata["flag"] for f in fields(self) if f.name in PORTS}
        return {flags[name]: getattr(self, name) for name in PORTS if getattr(self, name) is not None}

    def triton_log(self) -> Path:
        """Where tritonserver's own log goes (default: a file per HTTP port in the temp folder)."""
        return Path(self.log_file or Path(tempfile.gettempdir()) / f"mmad-edge-triton-{self.http_port}.log")

    def triton_console(self) -> Path:
        """Where tritonserver's console lines go: beside its log, not into it (tritonserver writes
        its log at its own offset, over anything appended by another writer)."""
        log = self.triton_log()
        return log.with_name(f"{log.stem}.console{log.suffix or '.log'}")

    def check(self) -> None:
        """Refuse values Triton would reject later with a less clear message."""
        ports = self.ports()
        for flag, port in ports.items():
            if not 0 < port < 65536:
                raise ValueError(f"{flag} must be a TCP port (1-65535), got {port}")
        if len(set(ports.values())) != len(ports):
            raise ValueError(f"{', '.join(ports)} must differ, got {', '.join(map(str, ports.values()))}")
        check_drift_options(self.drift_window, self.drift_tolerance)
        if self.instances < 1:
            raise ValueError(f"--instances must be >= 1, got {self.instances}")
        if self.max_batch is not None and self.max_batch < 1:
            raise ValueError(f"--max-batch must be >= 1, got {self.max_batch}")
        if self.max_queue_delay_us < 0:
            raise ValueError(f"--max-queue-delay-us must be >= 0, got {self.max_queue_delay_us}")


@dataclass(frozen=True)
class RepoOptions:
    """Options of ``write_model_repository`` (`mmad-edge triton-repo`): which artifact of a folder
    (``precision``, ``backend``: picked as `serve` picks on this machine) and the model config's
    batching and instance count (KIND_GPU for engines, KIND_AUTO for ONNX)."""

    precision: str | None = PRECISION.field(None)
    backend: str = BACKEND.field(
        "auto", help="From a folder: pick as serve would on this machine (auto: the fastest here).")
    max_batch: int | None = MAX_BATCH.field(None)
    max_queue_delay_us: int = MAX_QUEUE_DELAY_US.field(500)
    instances: int = INSTANCES.field(1, detail=" (instance_group count)")
