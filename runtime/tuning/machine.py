"""What a tuned choice is tied to: the CPU model, and the chosen backend's device and library version.

A choice timed on one machine says nothing about another (a different CPU, GPU or library release
reorders the candidates), so ``tuned.json`` records these and a load elsewhere ignores it.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from typing import Any

FINGERPRINT_KEYS = ("cpu", "device", "library_version")


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's marketing name from ``cpuinfo``, else what ``platform`` knows."""
    try:
        with open(cpuinfo, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fingerprint(described: Mapping[str, Any]) -> dict[str, Any]:
    """This machine as a choice records it: the CPU model and a loaded backend's ``describe()``
    device and library version (the GPU's name on a GPU backend)."""
    return {"cpu": cpu_model(), "device": described.get("device"), "library_version": described.get("library_version")}


def differences(recorded: Mapping[str, Any], here: Mapping[str, Any]) -> list[str]:
    """``key: recorded -> here`` for each fingerprint entry that differs (empty: the same machine)."""
    return [f"{key} {recorded.get(key)!r} -> {here.get(key)!r}" for key in FINGERPRINT_KEYS
            if key in here and recorded.get(key) != here.get(key)]
