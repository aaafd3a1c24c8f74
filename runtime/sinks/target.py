"""What a ``--sink URL`` names, and the settings and credentials every sink shares.

Secrets never travel on the command line (shell history, ``ps``): a URL with ``user:pass@`` is
refused, and credentials come from the environment or a credentials file of ``NAME=value`` lines
with the same names (the file wins over the environment).
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import SplitResult, urlsplit

from ..errors import SinkError
from ..log import notice

# Every variable a sink reads; a credentials file may set these names only.
CREDENTIAL_NAMES = (
    "MMAD_EDGE_MQTT_USERNAME", "MMAD_EDGE_MQTT_PASSWORD",
    "MMAD_EDGE_WEBHOOK_TOKEN", "MMAD_EDGE_WEBHOOK_USERNAME", "MMAD_EDGE_WEBHOOK_PASSWORD",
    "MMAD_EDGE_OPCUA_USERNAME", "MMAD_EDGE_OPCUA_PASSWORD",
)
DEFAULT_QUEUE_SIZE = 1000
DEFAULT_DRAIN_S = 10.0


@dataclass(frozen=True)
class SinkSettings:
    """Settings shared by the sinks of a run.

    ``queue_size``: messages a sink holds in memory before the oldest is dropped (counted);
    ``spool_dir``: where MQTT keeps undelivered messages on disk (None: the user cache);
    ``timeout_s``: one connect or delivery attempt; ``backoff_max_s``: the longest wait between
    reconnects; ``ca_file``: the CA bundle that verifies an MQTT broker or HTTPS endpoint;
    ``credentials``: the ``CREDENTIAL_NAMES`` values (``load_credentials``).
    """

    queue_size: int = DEFAULT_QUEUE_SIZE
    spool_dir: Path | None = None
    timeout_s: float = 5.0
    backoff_max_s: float = 10.0
    ca_file: Path | None = None
    credentials: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.queue_size, bool) or not isinstance(self.queue_size, int) or self.queue_size < 1:
            raise SinkError(f"sink queue size must be an integer >= 1, got {self.queue_size!r}")
        for name in ("timeout_s", "backoff_max_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise SinkError(f"sink {name} must be a number > 0, got {value!r}")
        if self.ca_file is not None and not Path(self.ca_file).is_file():
            raise SinkError(f"sink CA file {self.ca_file} does not exist; pass the broker's or server's CA bundle (PEM)")

    def secret(self, name: str) -> str | None:
        """One credential (None when neither the file nor the environment sets it)."""
        return self.credentials.get(name)


@dataclass(frozen=True)
class SinkTarget:
    """A parsed sink URL: ``scheme``, ``host``, ``port``, ``path`` (no leading /) and ``query``."""

    url: str
    scheme: str
    host: str
    port: int | None
    path: str
    query: Mapping[str, str]

    def __str__(self) -> str:
        return self.url


def parse_target(url: str) -> SinkTarget:
    """``url`` split into a SinkTarget; credentials in it, or no host, are refused in one line."""
    try:
        parts: SplitResult = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise SinkError(f"sink {url!r} is not a valid URL ({exc}); write e.g. mqtt://HOST:1883/TOPIC") from None
    if parts.username is not None or parts.password is not None:
        shown = url.replace(parts.netloc, f"***@{parts.hostname or ''}" + (f":{port}" if port else ""))
        raise SinkError(f"sink {shown} carries credentials in the URL; remove them and set them in the "
                        "environment (MMAD_EDGE_<KIND>_USERNAME / _PASSWORD or _TOKEN) or a --sink-credentials file")
    if not parts.scheme or not parts.hostname:
        raise SinkError(f"sink {url!r} needs a scheme and a host; write e.g. mqtt://HOST:1883/TOPIC")
    query = {}
    for item in filter(None, parts.query.split("&")):
        key, _, value = item.partition("=")
        query[key] = value
    return SinkTarget(url, parts.scheme.lower(), parts.hostname, port, parts.path.lstrip("/"), query)


def load_credentials(path: str | os.PathLike[str] | None = None,
                     environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The sink credentials: ``CREDENTIAL_NAMES`` from the environment, overridden by ``path``'s
    ``NAME=value`` lines (blank lines and ``#`` comments allowed). A file others can read is used,
    with one line saying so."""
    environ = os.environ if environ is None else environ
    found = {name: environ[name] for name in CREDENTIAL_NAMES if environ.get(name)}
    if path is None:
        return found
    file = Path(path)
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
        mode = file.stat().st_mode
    except OSError as exc:
        raise SinkError(f"cannot read sink credentials {file} ({exc.strerror}); check the path") from None
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or name not in CREDENTIAL_NAMES:
            raise SinkError(f"{file} line {number}: expected NAME=value with NAME one of {', '.join(CREDENTIAL_NAMES)}")
        found[name] = value.strip()
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        notice(f"{file} holds sink credentials and others can read it; chmod 600 {file}")
    return found


def check_drain_s(drain_s: object) -> float:
    """Seconds to wait for the sinks at the end of a run: a number >= 0."""
    if isinstance(drain_s, bool) or not isinstance(drain_s, (int, float)) or not math.isfinite(drain_s) or drain_s < 0:
        raise SinkError(f"sink drain seconds must be a number >= 0, got {drain_s!r}; pass e.g. --sink-drain-s 10")
    return float(drain_s)
