"""The rows every registered backend adds to a bench, on the artifacts it runs.

Each backend (``runtime.backends.REGISTRY``) times each artifact of a suffix it runs, as its
``variants`` say (e.g. OpenVINO: the FP32 graph in f32 and each lower precision the CPU has
units for, none for FP16), kept to the CPU where it can be (``on_cpu``). Rows are named
``<label>-<precision>[@folder][-variant]``. Paper rows time the bare paper graph (the float NCHW
twin of FP32) on random host inputs, so a backend that runs on the GPU gets skips there (its
GPU paper rows are ``python -m mmad_edge.bench.record gpu``'s); e2e rows time
``Detector.load(<backend>)``. A row that cannot run here is a skip with the reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmad_edge.runtime.backends import BackendEntry, backend_class, why_not
from mmad_edge.runtime.backends.base import BackendOptions

from .artifacts import Artifact
from .runner import BenchCase, e2e_detector_case, graph_case

GPU_PAPER = ("the paper protocol needs the input on the GPU; this backend is timed e2e here "
             "(python -m mmad_edge.bench.record gpu times the GPU paper rows)")
Probe = Callable[[Any], dict[str, Any]]


@dataclass
class Plan:
    """The cases to run, in order, and the rows that cannot run here with the reason."""

    cases: list[BenchCase] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)

    def skip(self, name: str, backend: str, protocol: str, reason: str, batch: int | None = None) -> None:
        self.skipped.append({"name": name, "backend": backend, "protocol": protocol, "batch": batch, "reason": reason})


def row_tags(artifacts: Sequence[Artifact]) -> list[str]:
    """Each artifact's part of its row names: the precision, plus ``@folder`` where artifacts of
    the same suffix and precision must be told apart."""
    counts = Counter((a.path.suffix, a.precision) for a in artifacts)
    return [a.precision if counts[(a.path.suffix, a.precision)] == 1 else f"{a.precision}@{a.path.parent.name}"
            for a in artifacts]


def detector_loader(backend: str, options: BackendOptions) -> Callable[[Path], Any]:
    """``Detector.load`` of a file on ``backend`` with ``options``."""

    def load(path: Path) -> Any:
        from mmad_edge.runtime.detector import Detector

        return Detector.load(path, backend, options)

    return load


@dataclass
class BackendRows:
    """The backends asked for, the artifacts (with their row tags), the options of the rows and
    the plan they go to."""

    entries: Sequence[BackendEntry]
    named: Sequence[tuple[Artifact, str]]
    options: BackendOptions
    image_size: int
    plan: Plan

    def _pairs(self) -> list[tuple[BackendEntry, Artifact, str]]:
        """(backend, artifact, base row name) for every artifact each backend runs, backend by backend."""
        return [(entry, artifact, f"{entry.row_label}-{tag}") for entry in self.entries
                for artifact, tag in self.named if artifact.path.suffix in entry.suffixes]

    def paper(self, batch: int) -> None:
        """Every backend's paper rows at ``batch``."""
        for entry, artifact, base in self._pairs():
            impl = backend_class(entry.name)
            options = impl.on_cpu(self.options)
            problem = GPU_PAPER if impl.on_gpu(options) else why_not(entry.name, artifact.path)
            if problem is not None:
                self.plan.skip(base, entry.name, "paper", problem, batch)
                continue
            low, high = artifact.batch_range
            for variant in impl.variants(artifact.precision, options, batch):
                name = base + variant.suffix
                if variant.problem is not None:
                    self.plan.skip(name, entry.name, "paper", variant.problem, batch)
                elif not low <= batch <= high:
                    self.plan.skip(name, entry.name, "paper", f"{artifact.paper_graph.name} takes batch {low}..{high}; "
                              f"re-export with --batch 1:{batch}:{batch}", batch)
                else:
                    case = graph_case(entry.name, name, artifact.paper_graph, batch, variant.options,
                                      image_size=self.image_size, precision=artifact.precision)
                    case.extra.update(family="minimaxad", graph=artifact.paper_graph.name, artifact=str(artifact.path),
                                      **artifact.facts)
                    self.plan.cases.append(case)

    def e2e(self, batches: Sequence[int], frames: Sequence[np.ndarray], probe: Probe | None) -> None:
        """Every backend's e2e rows, artifact by artifact, each batch."""
        for entry, artifact, base in self._pairs():
            impl = backend_class(entry.name)
            problem = why_not(entry.name, artifact.path)
            for batch in batches:
                if problem is not None:
                    self.plan.skip(base, entry.name, "e2e", problem, batch)
                    continue
                for variant in impl.variants(artifact.precision, impl.on_cpu(self.options), batch):
                    name = base + variant.suffix
                    if variant.problem is not None:
                        self.plan.skip(name, entry.name, "e2e", variant.problem, batch)
                        continue
                    case = e2e_detector_case(artifact.path, batch, frames, name=name, probe=probe,
                                             loader=detector_loader(entry.name, variant.options))
                    case.backend = entry.name
                    case.extra.update(family="minimaxad", artifact=str(artifact.path), **artifact.facts)
                    self.plan.cases.append(case)
