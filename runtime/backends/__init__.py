"""The backend registry: which backends exist, what artifacts each runs and how ``auto`` ranks them.

A backend is one module here defining ``BACKEND = <its Backend subclass>`` plus one
``register(BackendEntry(...))`` line below; the CLI's ``--backend`` choices, ``auto`` and the
backend test matrix all come from ``REGISTRY``. Modules import lazily, so listing the backends
never imports onnxruntime, tensorrt or openvino.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple, Type

from ..artifact.contract import ENGINE_SUFFIX, ONNX_SUFFIX
from ..errors import ArtifactError
from .base import Backend

AUTO = "auto"


@dataclass(frozen=True)
class BackendEntry:
    """One backend: its module (imported on first use), artifact suffixes, availability and rank."""

    name: str
    module: str
    suffixes: Tuple[str, ...]
    available: Callable[[], bool]
    rank: Callable[[Path], Optional[int]]  # auto's preference for this artifact here (higher wins; None = never)


REGISTRY: Dict[str, BackendEntry] = {}


def register(entry: BackendEntry) -> None:
    """Add (or replace) a backend; its name becomes a ``--backend`` choice."""
    REGISTRY[entry.name] = entry


def backend_class(name: str) -> Type[Backend]:
    """The Backend subclass of a registered backend (imports its module)."""
    if name not in REGISTRY:
        raise ArtifactError(f"backend must be one of {', '.join(choices())}, got {name!r}")
    return importlib.import_module(REGISTRY[name].module).BACKEND


def choices() -> Tuple[str, ...]:
    """``auto`` followed by every registered backend: what ``--backend`` accepts."""
    return (AUTO, *REGISTRY)


def _installed(*modules: str) -> Callable[[], bool]:
    """A cheap availability check: one of ``modules`` can be imported (nothing is imported)."""
    return lambda: any(importlib.util.find_spec(name) is not None for name in modules)


def _rank_engine(path: Path) -> Optional[int]:
    from .tensorrt import engine_problem

    return 20 if engine_problem(path) is None else None


def _rank_onnx(path: Path) -> Optional[int]:
    return 10


def _rank_openvino(path: Path) -> Optional[int]:
    from .openvino import auto_rank

    return auto_rank(path)


register(BackendEntry("tensorrt", f"{__name__}.tensorrt", (ENGINE_SUFFIX,),
                      _installed("tensorrt", "tensorrt_lean"), _rank_engine))
register(BackendEntry("onnxruntime", f"{__name__}.onnxruntime", (ONNX_SUFFIX,),
                      _installed("onnxruntime"), _rank_onnx))
register(BackendEntry("openvino", f"{__name__}.openvino", (ONNX_SUFFIX,), _installed("openvino"), _rank_openvino))
