"""What `mmad-edge serve` was asked to do, as one value: built once by the CLI, passed whole.

The defaults here are the only ones: the CLI reads them for its typer options.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..monitor.drift import DEFAULT_TOLERANCE, DEFAULT_WINDOW, check_drift_options


@dataclass(frozen=True)
class ServeOptions:
    """Options of ``serve``.

    Ports are Triton's (HTTP/REST and gRPC speak the KServe v2 protocol; metrics are Prometheus
    text). ``max_batch`` lowers the artifact's batch profile as the dynamic batcher's limit;
    ``max_queue_delay_us`` is how long a request may wait for others to fill a batch;
    ``instances`` model instances each run their own Detector (own session), so that many batches
    run at once. ``backend`` / ``precision`` / ``threads`` pick and set up the artifact as
    ``Detector.load`` does. ``exit_timeout_s``: how long a stop waits for requests in flight. ``log_file``:
    tritonserver's log (its start-up tables and CUDA/NVML notes stay out of the console).
    ``drift_window`` / ``drift_tolerance``: the drift watch per category, as for ``run``.
    ``app_metrics_port``: our own metrics (frames, anomalies, latency, drift per category), apart
    from Triton's on ``metrics_port`` (None: not served). ``events_path``: drift events appended
    there as JSON lines.
    """

    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    max_batch: Optional[int] = None
    max_queue_delay_us: int = 500
    instances: int = 1
    backend: str = "auto"
    precision: Optional[str] = None
    threads: Optional[int] = None
    exit_timeout_s: int = 3
    log_file: Optional[str] = None
    drift_window: int = DEFAULT_WINDOW
    drift_tolerance: float = DEFAULT_TOLERANCE
    app_metrics_port: Optional[int] = None
    events_path: Optional[str] = None

    def ports(self) -> dict:
        """Each port in use, by the flag that sets it (the app metrics' only when served)."""
        ports = {"--port": self.http_port, "--grpc-port": self.grpc_port, "--metrics-port": self.metrics_port}
        if self.app_metrics_port is not None:
            ports["--app-metrics-port"] = self.app_metrics_port
        return ports

    def triton_log(self) -> Path:
        """Where tritonserver's own log goes (default: a file per HTTP port in the temp folder)."""
        return Path(self.log_file or Path(tempfile.gettempdir()) / f"mmad-edge-triton-{self.http_port}.log")

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
    (``precision``, ``backend``: auto takes an engine when there is one) and the model config's
    batching and instance count (KIND_GPU for engines, KIND_AUTO for ONNX)."""

    precision: Optional[str] = None
    backend: str = "auto"
    max_batch: Optional[int] = None
    max_queue_delay_us: int = 500
    instances: int = 1
