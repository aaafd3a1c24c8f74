"""What `run --sink` was asked to do, declared once with its flags (docs/line.md)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..flags import Flag
from .target import (
    CREDENTIAL_NAMES,
    DEFAULT_DRAIN_S,
    DEFAULT_QUEUE_SIZE,
    SinkSettings,
    check_drain_s,
    load_credentials,
)

PathLike = str | os.PathLike


@dataclass(frozen=True)
class SinkOptions:
    """The result sinks of a run and how they deliver."""

    urls: Sequence[str] = Flag(
        "--sink", "Send each frame's verdict to mqtt://HOST:PORT/TOPIC (mqtts:// for TLS), http(s)://... (a webhook "
                  "POST), opcua://HOST:PORT/NODEID or modbus://HOST:PORT/coil/N (or register/N); repeat for several. "
                  "No user:password in the URL: see --sink-credentials.").field(())
    drain_s: float = Flag("--sink-drain-s", "Seconds to wait at the end for the sinks to deliver what they hold "
                                            "(what stays is reported; MQTT keeps it on disk).").field(DEFAULT_DRAIN_S)
    credentials: PathLike | None = Flag(
        "--sink-credentials", f"File of NAME=value lines ({', '.join(CREDENTIAL_NAMES[:3])}, ...); the environment "
                              "gives those the file lacks.").field(None)
    ca_file: PathLike | None = Flag("--sink-ca-file", "CA bundle (PEM) that verifies an mqtts:// broker or https:// "
                                                      "webhook (default: the system's).").field(None)
    spool_dir: PathLike | None = Flag(
        "--sink-spool", "Folder where MQTT keeps undelivered messages across broker restarts and runs (default "
                        "~/.cache/mmad-edge/spool).").field(None)
    queue_size: int = Flag("--sink-queue", "Messages each sink holds in memory before it drops the oldest "
                                           "(counted).").field(DEFAULT_QUEUE_SIZE)

    def __post_init__(self) -> None:
        check_drain_s(self.drain_s)

    def settings(self) -> SinkSettings:
        """The sinks' settings, credentials read from the file and the environment."""
        return SinkSettings(queue_size=self.queue_size, ca_file=None if self.ca_file is None else Path(self.ca_file),
                            spool_dir=None if self.spool_dir is None else Path(self.spool_dir),
                            credentials=load_credentials(self.credentials))
