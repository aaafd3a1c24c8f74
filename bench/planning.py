"""Which rows a bench request runs, in order, and which cannot run here (with the reason).

Torch rows (the training form, the reparameterised network, the peers) are planned only when
torch is installed; on a runtime-only install they are listed as skipped with the extra to
install, and the artifact rows run as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmad_edge.config import ModelConfig
from mmad_edge.runtime.backends import AUTO, REGISTRY, backend_class, reference
from mmad_edge.runtime.backends.base import BackendOptions

from .artifacts import Artifact, fp32_graph
from .backend_rows import BackendRows, Plan, row_tags
from .deployed import deployed_cases
from .fidelity import accuracy_probe
from .peers import OUTSIDE_GRAPH, PEERS
from .runner import BenchCase, graph_case
from .tables import BASELINE, REPARAM

E2E_FRAMES = 4
TORCH = "torch"  # the --backend choice of the torch rows and the peers


@dataclass(frozen=True)
class TorchRows:
    """The torch side of a request: the model factory, or why torch rows cannot run here."""

    model: Callable[[], Any] | None
    missing: str = ""
    peers: bool = True
    peer_graphs: Mapping[str, Path | str] = field(default_factory=dict)  # ONNX graph, or why there is none


def _tag(case: BenchCase, family: str, **extra: Any) -> BenchCase:
    case.extra.update(family=family, **extra)
    return case


def plan_cases(
    config: ModelConfig,
    torch_rows: TorchRows,
    artifacts: Sequence[Artifact],
    backend: str,
    batches: Sequence[int],
    protocols: Sequence[str],
    threads: int,
    options: BackendOptions | None = None,
) -> Plan:
    """Every row the request asks for, in run order (paper rows, then e2e), or a skip with the reason.

    ``backend`` filters: "torch" keeps the torch rows and the peers, a registered backend its
    rows (``bench.backend_rows``), "auto" all of them. ``options``: the backends' own settings
    (e.g. ONNX Runtime's micro-batching, the same for both protocols; OpenVINO's precision and
    hint); every backend row runs ``threads`` CPU threads.
    """
    plan = Plan()
    settings = (options or BackendOptions()).replace(threads=threads)
    entries = [entry for entry in REGISTRY.values() if backend in (AUTO, entry.name)]
    rows = BackendRows(entries, list(zip(artifacts, row_tags(artifacts))), settings, config.image_size, plan)
    wants_torch = backend in (AUTO, TORCH)
    if "paper" in protocols:
        if wants_torch and torch_rows.model is None:
            _skip_torch_rows(plan, torch_rows)
        torch_here = wants_torch and torch_rows.model is not None
        for batch in batches:
            plan.cases += _torch_cases(torch_rows, batch, config.image_size, peers=False) if torch_here else []
            rows.paper(batch)
            plan.cases += _torch_cases(torch_rows, batch, config.image_size, peers=True) if torch_here else []
            if backend in (AUTO, reference().name):
                _plan_peer_graphs(plan, torch_rows.peer_graphs, batch, config.image_size, settings)
    if "e2e" in protocols:
        frames, probe = _frames(config.image_size), accuracy_probe(fp32_graph(artifacts), config.image_size)
        rows.e2e(batches, frames, probe)
        plan.cases += deployed_cases(artifacts, batches, frames, probe) if backend == AUTO else []
    return plan


def _frames(size: int) -> list[np.ndarray]:
    """The e2e rows' frames: ``E2E_FRAMES`` seeded random uint8 BGR images at the model's size."""
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(E2E_FRAMES)]


def _skip_torch_rows(plan: Plan, torch_rows: TorchRows) -> None:
    """One skip entry per torch row (every batch) on an install without torch."""
    for name in (BASELINE, REPARAM, *(PEERS if torch_rows.peers else ())):
        plan.skip(name, TORCH, "paper", torch_rows.missing)


def _torch_cases(torch_rows: TorchRows, batch: int, size: int, peers: bool) -> list[BenchCase]:
    """The MiniMaxAD torch rows (``peers=False``) or the peers (when asked for) at one batch."""
    from .torch_rows import minimaxad_cases, peer_cases

    if not peers:
        return [_tag(case, "minimaxad") for case in minimaxad_cases(torch_rows.model, batch, size)]
    return [_tag(case, "peer") for case in peer_cases(batch, size)] if torch_rows.peers else []


def _plan_peer_graphs(plan: Plan, graphs: Mapping[str, Path | str], batch: int, size: int,
                      options: BackendOptions) -> None:
    """The peers' exported graphs on the reference backend, paper protocol, beside MiniMaxAD's (like with like)."""
    entry = reference()
    options = backend_class(entry.name).on_cpu(options)
    for peer, graph in graphs.items():
        name = f"{entry.row_label}-{peer}"
        if isinstance(graph, str):
            plan.skip(name, entry.name, "paper", graph, batch)
            continue
        case = graph_case(entry.name, name, graph, batch, options, image_size=size, precision="fp32")
        extra = {"note": OUTSIDE_GRAPH[peer]} if peer in OUTSIDE_GRAPH else {}
        plan.cases.append(_tag(case, "peer", graph=graph.name, **extra))
