"""Bench modules that need torch or onnx, imported only where those are installed.

A runtime-only install (``pip install ".[ort]"``) benches artifacts; the rows and the floor that
need the training stack are then listed as skipped with the extra to install, not a traceback.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from mmad_edge.runtime.errors import install_hint

# The heavy packages and the smallest install extra that brings each.
EXTRA_OF = {"torch": "train", "onnx": "export", "onnxsim": "export"}


@dataclass(frozen=True)
class Missing:
    """A heavy package this install lacks, and the extra that brings it."""

    package: str
    extra: str

    @property
    def reason(self) -> str:
        return f"needs {self.package}: {install_hint(self.extra)}"


def optional_import(name: str) -> ModuleType | Missing:
    """``import name``, or what is missing when torch / onnx is not installed (other errors raise)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        package = (exc.name or "").split(".")[0]
        if package not in EXTRA_OF:
            raise
        return Missing(package, EXTRA_OF[package])
