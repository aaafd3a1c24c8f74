"""Error types the runtime raises, so callers can tell a bad artifact from a missing GPU."""

from __future__ import annotations


def install_hint(extra: str) -> str:
    """How to add an optional extra: from the checkout, since mmad-edge is not on the public index."""
    return f'pip install ".[{extra}]" from the mmad-edge checkout'


def one_line(exc: BaseException) -> str:
    """The first line of an error, for a one-line message (libraries raise many-line texts); OS
    errors name their file (``[Errno 20] ...`` tells a user nothing)."""
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror}; check the path and its permissions"
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class ArtifactError(ValueError):
    """An artifact (ONNX, engine, sidecar, metadata) that is missing, malformed or mismatched."""


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run here (package, driver or GPU missing)."""


class SourceError(RuntimeError):
    """A frame source (camera, URL, video, folder) that cannot be opened or keeps failing."""


class DetectorClosedError(ValueError):
    """A Detector used after ``close()`` (like Python's closed files, a ValueError)."""


class MetricsPortError(ValueError):
    """A metrics port that cannot be served (out of range, in use or not allowed)."""


class SinkError(ValueError):
    """A result sink (MQTT, webhook, OPC UA, Modbus) given a bad URL, credentials or settings."""
