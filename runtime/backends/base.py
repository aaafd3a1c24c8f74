"""The one interface every backend implements, and the settings a load hands it.

A backend reads no metadata itself; ``Detector.load`` reads it once through
``runtime.artifact.metadata.load_contract`` and passes the result in, so all backends agree on it.
``BackendOptions`` holds the settings every backend understands plus each backend's own, which
the backend declares in its module (an ``Options`` dataclass) and receives as ``self.settings``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from ..artifact.contract import INPUT_DTYPE, INPUT_LAYOUT, INPUT_NAME
from ..artifact.metadata import ArtifactInfo

CHECK = "check"  # field metadata key: the function that refuses a bad value of a backend option
T = TypeVar("T")
# A backend's lower float compute type (OpenVINO's INFERENCE_PRECISION_HINT) -> the name reports use.
LOWER_FLOAT = {"bf16": "bf16", "f16": "fp16"}


def compute_precision(graph_precision: str, inference_precision: str | None = None) -> str:
    """The precision that actually computes: the graph's, unless the backend runs its float ops in
    a lower type (OpenVINO's bf16 / f16 on an FP32 graph). Every report names this beside the
    graph's precision, so BF16 timings and accuracy are never filed as FP32."""
    return LOWER_FLOAT.get(inference_precision or "", graph_precision)


def precision_label(graph_precision: str, computed: str | None = None) -> str:
    """``fp32``, or ``bf16 (fp32 graph)`` when the computing precision differs from the graph's."""
    computed = computed or graph_precision
    return computed if computed == graph_precision else f"{computed} ({graph_precision} graph)"


def option(default: Any, check: Callable[[Any], None]) -> Any:
    """A backend option field whose values ``check`` refuses with a ValueError naming the option."""
    return field(default=default, metadata={CHECK: check})


class OptionError(ValueError):
    """A backend option with a value its backend refuses; ``name`` is the option."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


@dataclass(frozen=True)
class NoOptions:
    """The settings of a backend that declares none of its own."""


class BackendOptions:
    """Per-load settings: the common ones below, and every registered backend's own by keyword
    (e.g. ``micro_batch``, ``inference_precision``), each routed to the backend that declares it;
    a backend never sees another's settings."""

    COMMON = ("cache_dir", "device", "threads")

    def __init__(self, *, cache_dir: Path | None = None, device: str | None = None,
                 threads: int | None = None, **specific: Any) -> None:
        """``cache_dir``: compiled-model / engine caches; ``device``: the backend's device string
        (e.g. "CPU"); ``threads``: CPU intra-op threads (None: the library's choice)."""
        from . import option_classes

        known = {item.name for cls in option_classes() for item in fields(cls)}
        unknown = sorted(set(specific) - known)
        if unknown:
            raise TypeError(f"unknown backend option(s) {', '.join(unknown)}; backend options are "
                            f"{', '.join(sorted({*self.COMMON, *known}))}")
        self.cache_dir, self.device, self.threads = cache_dir, device, threads
        self.specific: dict[str, Any] = dict(specific)

    @classmethod
    def names(cls) -> list[str]:
        """Every option a load takes: the common ones and each registered backend's."""
        from . import option_classes

        return sorted({*cls.COMMON, *(item.name for c in option_classes() for item in fields(c))})

    def replace(self, **changes: Any) -> BackendOptions:
        """These options with ``changes`` (common or backend-specific names)."""
        current = {name: getattr(self, name) for name in self.COMMON}
        return BackendOptions(**{**current, **self.specific, **changes})

    def given(self) -> dict[str, Any]:
        """The options set (not None), common and backend-specific, by name: what a tuned choice
        records and what a user's load keeps over it."""
        common = {name: getattr(self, name) for name in self.COMMON}
        return {name: value for name, value in {**common, **self.specific}.items() if value is not None}

    def settings(self, cls: type[T]) -> T:
        """A backend's own settings (its ``Options`` dataclass) from these options."""
        return cls(**{item.name: self.specific[item.name] for item in fields(cls) if item.name in self.specific})

    def check(self) -> None:
        """Refuse (OptionError) a backend option that its backend would refuse at load."""
        from . import option_classes

        for cls in option_classes():
            values = self.settings(cls)
            for item in fields(cls):
                if CHECK in item.metadata:
                    try:
                        item.metadata[CHECK](getattr(values, item.name))
                    except ValueError as exc:
                        raise OptionError(item.name, str(exc)) from None

    def __repr__(self) -> str:
        given = {name: getattr(self, name) for name in self.COMMON if getattr(self, name) is not None}
        return f"BackendOptions({', '.join(f'{k}={v!r}' for k, v in {**given, **self.specific}.items())})"


@dataclass(frozen=True)
class InputSpec:
    """What the backend's graph takes: one uint8 NHWC BGR batch within [batch_min, batch_max]."""

    name: str
    image_size: tuple[int, int]
    batch_min: int
    batch_max: int
    dtype: str = INPUT_DTYPE
    layout: str = INPUT_LAYOUT


@dataclass(frozen=True)
class Variant:
    """One bench row of an artifact on a backend: its name suffix, the options it loads with, and
    why it cannot run here (None when it can)."""

    suffix: str
    options: BackendOptions
    problem: str | None = None


Feed = Callable[[str, str, Sequence[Any]], np.ndarray]  # (input name, ONNX type "tensor(float)", shape) -> array
GraphRun = tuple[Callable[[], None], dict[str, Any]]  # (one timed call, row facts)


class Backend(abc.ABC):
    """One loaded artifact that runs batches of frames.

    Subclasses set ``image_size``, ``batch_min`` and ``batch_max`` while loading; ``settings`` is
    their own ``Options``. The class methods answer for the backend before anything is loaded.
    """

    name: ClassVar[str]
    Options: ClassVar[type] = NoOptions
    image_size: tuple[int, int]
    batch_min: int
    batch_max: int

    def __init__(self, path: Path, contract: ArtifactInfo, options: BackendOptions) -> None:
        self.path = Path(path)
        self.info = contract
        self.settings: Any = options.settings(self.Options)

    @property
    def input_spec(self) -> InputSpec:
        """The input the artifact takes (size from the contract, batch limits from the artifact)."""
        return InputSpec(INPUT_NAME, self.image_size, self.batch_min, self.batch_max)

    @abc.abstractmethod
    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (B, H, W, 3) BGR -> (maps (B, H, W) float32, scores (B,) float32)."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """{"backend", "library_version", "device", "precision" (the graph's), "compute_precision"
        (``compute_precision``: what the arithmetic runs in), ...} for summaries and reports."""

    @abc.abstractmethod
    def close(self) -> None:
        """Free sessions and buffers; idempotent."""

    @classmethod
    def library(cls) -> Any:
        """The library this backend runs on, or a one-line BackendUnavailableError naming the install."""
        return None

    @classmethod
    def on_gpu(cls, options: BackendOptions) -> bool:
        """Whether a load with ``options`` runs on a GPU here (picks the GPU precision order)."""
        return False

    @classmethod
    def missing_hint(cls, folder: Path) -> str | None:
        """How to make the file this backend runs when ``folder`` has none (None: the export's)."""
        return None

    @classmethod
    def on_cpu(cls, options: BackendOptions) -> BackendOptions:
        """``options`` kept to the CPU (the bench's CPU rows and the reference)."""
        return options

    @classmethod
    def variants(cls, precision: str, options: BackendOptions, batch: int) -> list[Variant]:
        """The bench rows an artifact of ``precision`` gets at ``batch``: one with ``options``."""
        return [Variant("", options)]

    @classmethod
    def tuning_variants(cls, precision: str, options: BackendOptions, batch: int) -> list[Variant]:
        """What ``mmad-edge tune`` tries of an artifact of ``precision`` at ``batch``: every setting
        that may be faster here (default: the bench's ``variants``)."""
        return cls.variants(precision, options, batch)

    @classmethod
    def time_graph(cls, graph: Path | bytes, batch: int, options: BackendOptions, feed: Feed,
                   image_size: int | None) -> GraphRun | None:
        """A call running the bare ``graph`` on random host inputs (the bench's paper protocol) and
        its row facts; None where this backend only runs whole artifacts."""
        return None

    @classmethod
    def bench_settings(cls, options: BackendOptions) -> Mapping[str, Any]:
        """What the bench report's ``settings`` records about this backend's rows."""
        return {}

    @classmethod
    def bench_machine(cls, options: BackendOptions) -> Mapping[str, Any]:
        """What the bench report's ``machine`` records about this backend here."""
        return {}
