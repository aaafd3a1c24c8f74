"""The backend registry: which backends exist, what artifacts each runs and how ``auto`` ranks them.

A backend is one module here defining ``BACKEND = <its Backend subclass>`` (with its own
``Options`` and class methods: GPU or CPU, bench variants, bare-graph timing) plus one
``register(BackendEntry(...))`` line below; the CLI's ``--backend`` choices, ``auto``, folder
selection, the bench rows and the backend test matrix all come from ``REGISTRY``, and no other
module names a backend. Backend modules import their libraries lazily, so listing the backends
never imports onnxruntime, tensorrt or openvino.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..artifact.contract import ENGINE_SUFFIX, ONNX_SUFFIX
from ..errors import ArtifactError, BackendUnavailableError
from .base import Backend

AUTO = "auto"


def _runs_anywhere(path: Path) -> str | None:
    return None


@dataclass(frozen=True)
class BackendEntry:
    """One backend: its module (imported on first use), artifact suffixes, availability and rank."""

    name: str
    module: str
    suffixes: tuple[str, ...]
    available: Callable[[], bool]
    rank: Callable[[Path], int | None]  # auto's preference without a tuned choice (higher wins; None = never)
    label: str = ""  # bench row names: "<label>-<precision>" (default: the name)
    reference: bool = False  # the CPU reference other backends' accuracy and speed are judged against
    problem: Callable[[Path], str | None] = _runs_anywhere  # why this artifact cannot run here (None: it can)

    @property
    def row_label(self) -> str:
        return self.label or self.name


REGISTRY: dict[str, BackendEntry] = {}


def register(entry: BackendEntry) -> None:
    """Add (or replace) a backend; its name becomes a ``--backend`` choice."""
    REGISTRY[entry.name] = entry


def backend_class(name: str) -> type[Backend]:
    """The Backend subclass of a registered backend (imports its module)."""
    if name not in REGISTRY:
        raise ArtifactError(f"no registered backend {name!r}; registered: {', '.join(REGISTRY)}")
    return importlib.import_module(REGISTRY[name].module).BACKEND


def choices() -> tuple[str, ...]:
    """``auto`` followed by every registered backend: what ``--backend`` accepts."""
    return (AUTO, *REGISTRY)


def check_backend(name: str, label: str = "backend") -> str:
    """``name`` if it is one of ``choices()``; else an ArtifactError naming what set it: ``label`` is
    the keyword (Python) or the flag the user typed (the CLI passes ``--backend``)."""
    if name not in choices():
        raise ArtifactError(f"{label} must be one of {', '.join(choices())}, got {name!r}")
    return name


def option_classes() -> list[type]:
    """Every registered backend's own ``Options`` dataclass (each once)."""
    return list(dict.fromkeys(backend_class(name).Options for name in REGISTRY))


def runners(path: Path) -> list[BackendEntry]:
    """The registered backends that run a file of ``path``'s suffix, in registry order."""
    return [entry for entry in REGISTRY.values() if Path(path).suffix in entry.suffixes]


def reference() -> BackendEntry:
    """The reference backend (the CPU baseline of accuracy probes and speed claims)."""
    return next(entry for entry in REGISTRY.values() if entry.reference)


def why_not(name: str, path: Path) -> str | None:
    """Why backend ``name`` cannot run ``path`` here: the artifact's problem, else its missing library."""
    problem = REGISTRY[name].problem(path)
    if problem is not None:
        return problem
    try:
        backend_class(name).library()
    except BackendUnavailableError as exc:
        return str(exc)
    return None


def backend_for(path: Path, requested: str) -> str:
    """The registered backend that runs ``path``: the one asked for, or auto's best-ranked one."""
    runs = runners(path)
    if not runs:
        suffixes = sorted({suffix for entry in REGISTRY.values() for suffix in entry.suffixes})
        raise ArtifactError(f"{path}: expected a {', a '.join(suffixes)} file or an export folder")
    if requested != AUTO:
        if requested not in [entry.name for entry in runs]:
            wanted = " or ".join(REGISTRY[requested].suffixes)
            raise ArtifactError(f"{path}: backend={requested!r} runs {wanted} files, not {path.suffix}; "
                                f"pass one of those or --backend {runs[0].name}")
        return requested
    ranked = [(rank, entry.name) for entry in runs if entry.available() and (rank := entry.rank(path)) is not None]
    return max(ranked)[1] if ranked else runs[0].name


def _installed(*modules: str) -> Callable[[], bool]:
    """A cheap availability check: one of ``modules`` can be imported (nothing is imported)."""
    return lambda: any(importlib.util.find_spec(name) is not None for name in modules)


def _engine_problem(path: Path) -> str | None:
    from .tensorrt import engine_problem

    return engine_problem(path)


def _rank_engine(path: Path) -> int | None:
    return 20 if _engine_problem(path) is None else None


def _rank_onnx(path: Path) -> int | None:
    return 10


def _never_auto(path: Path) -> int | None:
    """Auto picks this backend only through a tuned choice (``runtime.tuning``), never by rank."""
    return None


register(BackendEntry("tensorrt", f"{__name__}.tensorrt", (ENGINE_SUFFIX,), _installed("tensorrt", "tensorrt_lean"),
                      _rank_engine, label="trt", problem=_engine_problem))
register(BackendEntry("onnxruntime", f"{__name__}.onnxruntime", (ONNX_SUFFIX,), _installed("onnxruntime"), _rank_onnx,
                      label="onnx", reference=True))
register(BackendEntry("openvino", f"{__name__}.openvino", (ONNX_SUFFIX,), _installed("openvino"), _never_auto,
                      label="ov"))
