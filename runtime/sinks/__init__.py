"""Result sinks: where each frame's verdict goes besides the run's own outputs (MQTT, webhooks,
OPC UA and Modbus PLCs).

A sink is one module here defining ``SINK = <its Sink subclass>`` plus one ``register(SinkEntry(...))``
line below; ``--sink URL`` picks it by the URL's scheme. Modules import on first use, so a run
without sinks never imports paho-mqtt, asyncua or pymodbus.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import BackendUnavailableError, SinkError, install_hint
from .target import SinkSettings, parse_target

if TYPE_CHECKING:  # the worker machinery loads with the first sink opened
    from .base import Sink

EXTRA = "line"


@dataclass(frozen=True)
class SinkEntry:
    """One sink: the URL schemes it serves, its module, the importable package it needs (with its
    pip name) and an example URL for error messages."""

    schemes: tuple[str, ...]
    module: str
    package: str | None
    pip_name: str | None
    example: str


REGISTRY: dict[str, SinkEntry] = {}


def register(entry: SinkEntry) -> None:
    """Add (or replace) a sink; its schemes become ``--sink`` URLs."""
    for scheme in entry.schemes:
        REGISTRY[scheme] = entry


def open_sink(url: str, settings: SinkSettings) -> Sink:
    """The (not yet started) sink for ``url``; a bad URL or a missing library fails in one line."""
    target = parse_target(url)
    entry = REGISTRY.get(target.scheme)
    if entry is None:
        examples = dict.fromkeys(known.example for known in REGISTRY.values())
        raise SinkError(f"sink {url}: unknown scheme {target.scheme!r}; write one like " + ", ".join(examples))
    if entry.package is not None and importlib.util.find_spec(entry.package) is None:
        raise BackendUnavailableError(f"sink {url} needs {entry.pip_name}; {install_hint(EXTRA)}")
    return importlib.import_module(entry.module).SINK(target, settings)


register(SinkEntry(("mqtt", "mqtts"), f"{__name__}.mqtt", "paho", "paho-mqtt", "mqtt://HOST:1883/line/verdicts"))
register(SinkEntry(("http", "https"), f"{__name__}.webhook", None, None, "https://HOST/hook"))
register(SinkEntry(("opcua",), f"{__name__}.opcua", "asyncua", "asyncua", "opcua://HOST:4840/ns=2;s=Inspection"))
register(SinkEntry(("modbus",), f"{__name__}.modbus", "pymodbus", "pymodbus", "modbus://HOST:502/coil/0"))
