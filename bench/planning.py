"""Which rows a bench request runs, in order, and which cannot run here (with the reason).

Torch rows (the training form, the reparameterised network, the peers) are planned only when
torch is installed; on a runtime-only install they are listed as skipped with the extra to
install, and the artifact rows run as usual.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from mmad_edge.config import ModelConfig

from .fidelity import accuracy_probe
from .artifacts import Artifact, fp32_graph
from .openvino_rows import OvSettings, openvino_cases, unavailable
from .peers import OUTSIDE_GRAPH, PEERS
from .tables import BASELINE, REPARAM
from .runner import BenchCase, e2e_detector_case, ort_session_case

E2E_FRAMES = 4
CPU_PROVIDERS = ["CPUExecutionProvider"]


@dataclass
class Plan:
    """The cases to run, in order, and the rows that cannot run here with the reason."""

    cases: list[BenchCase] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)

    def skip(self, name: str, backend: str, protocol: str, reason: str, batch: int | None = None) -> None:
        self.skipped.append({"name": name, "backend": backend, "protocol": protocol, "batch": batch, "reason": reason})


@dataclass(frozen=True)
class TorchRows:
    """The torch side of a request: the model factory, or why torch rows cannot run here."""

    model: Callable[[], Any] | None
    missing: str = ""
    peers: bool = True
    peer_graphs: Mapping[str, Path | str] = field(default_factory=dict)  # ONNX graph, or why there is none


@dataclass(frozen=True)
class CpuRows:
    """How the CPU backends' rows run: ONNX Runtime's images per run (None automatic, 0 whole
    batches) and OpenVINO's inference precision (None: f32 and each lower one the CPU has) and hint."""

    micro_batch: int | None = None
    inference_precision: str | None = None
    performance_hint: str | None = None


def cpu_detector_loader(threads: int, micro_batch: int | None = None) -> Callable[[Path], Any]:
    """``Detector.load`` on ONNX Runtime's CPU provider with ``threads`` intra-op threads and the
    runtime's ``micro_batch`` policy (None: automatic, 0: whole batches)."""

    def load(path: Path) -> Any:
        from mmad_edge.runtime.detector import Detector

        return Detector.load(path, backend="onnxruntime", providers=CPU_PROVIDERS, threads=threads,
                             micro_batch=micro_batch)

    return load


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
    cpu: CpuRows = CpuRows(),
) -> Plan:
    """Every row the request asks for, in run order (paper rows, then e2e), or a skip with the reason.

    ``backend`` filters: "torch" keeps the torch rows and the peers, "onnxruntime" the ONNX
    Runtime rows, "openvino" OpenVINO's, "tensorrt" the engine rows, "auto" all of them.
    ``cpu``: ONNX Runtime's micro-batching (the same for the paper and the e2e protocol) and
    OpenVINO's precision and hint (``bench.openvino_rows``).
    """
    plan = Plan()
    wants = {name: backend in ("auto", name) for name in ("torch", "onnxruntime", "tensorrt", "openvino")}
    if wants["openvino"] and unavailable():
        plan.skip("ov-*", "openvino", ",".join(protocols), unavailable() or "")
        wants["openvino"] = False
    named = list(zip(artifacts, _unique_names(artifacts)))
    ov = OvSettings(threads, cpu.inference_precision, cpu.performance_hint) if wants["openvino"] else None
    micro_batch = cpu.micro_batch
    if "paper" in protocols:
        if wants["torch"] and torch_rows.model is None:
            _skip_torch_rows(plan, torch_rows)
        torch_here = wants["torch"] and torch_rows.model is not None
        for batch in batches:
            plan.cases += _torch_cases(torch_rows, batch, config.image_size, peers=False) if torch_here else []
            _plan_paper(plan, config.image_size, named, wants, batch, threads, micro_batch)
            _add_openvino(plan, named, (batch, "paper"), ov, _frames(config.image_size), None)
            plan.cases += _torch_cases(torch_rows, batch, config.image_size, peers=True) if torch_here else []
            if wants["onnxruntime"]:
                _plan_peer_graphs(plan, torch_rows.peer_graphs, batch, config.image_size, threads, micro_batch)
    if "e2e" in protocols:
        probe = accuracy_probe(fp32_graph(artifacts), config.image_size)
        _plan_e2e(plan, config.image_size, named, wants, batches, threads, micro_batch, probe)
        for batch in batches:
            _add_openvino(plan, named, (batch, "e2e"), ov, _frames(config.image_size), probe)
    return plan


def _frames(size: int) -> list[np.ndarray]:
    """The e2e rows' frames: ``E2E_FRAMES`` seeded random uint8 BGR images at the model's size."""
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(E2E_FRAMES)]


def _add_openvino(plan: Plan, named: list[tuple[Artifact, str]], where: tuple[int, str], ov: OvSettings | None,
                  frames: list[np.ndarray], probe: Callable[[Any], dict[str, Any]] | None) -> None:
    """OpenVINO's rows at one (batch, protocol), when asked for and installed."""
    if ov is None:
        return
    cases, skipped = openvino_cases(named, where[0], where[1], ov, frames, probe)
    plan.cases += cases
    plan.skipped += skipped


def _skip_torch_rows(plan: Plan, torch_rows: TorchRows) -> None:
    """One skip entry per torch row (every batch) on an install without torch."""
    for name in (BASELINE, REPARAM, *(PEERS if torch_rows.peers else ())):
        plan.skip(name, "torch", "paper", torch_rows.missing)


def _torch_cases(torch_rows: TorchRows, batch: int, size: int, peers: bool) -> list[BenchCase]:
    """The MiniMaxAD torch rows (``peers=False``) or the peers (when asked for) at one batch."""
    from .torch_rows import minimaxad_cases, peer_cases

    if not peers:
        return [_tag(case, "minimaxad") for case in minimaxad_cases(torch_rows.model, batch, size)]
    return [_tag(case, "peer") for case in peer_cases(batch, size)] if torch_rows.peers else []


def _plan_peer_graphs(
    plan: Plan, graphs: Mapping[str, Path | str], batch: int, size: int, threads: int, micro_batch: int | None,
) -> None:
    """The peers' exported graphs on ONNX Runtime, paper protocol, beside MiniMaxAD's (like with like)."""
    for peer, graph in graphs.items():
        name = f"onnx-{peer}"
        if isinstance(graph, str):
            plan.skip(name, "onnxruntime", "paper", graph, batch)
            continue
        case = ort_session_case(name, graph, batch, image_size=size, threads=threads, precision="fp32",
                                providers=CPU_PROVIDERS, micro_batch=micro_batch)
        extra = {"note": OUTSIDE_GRAPH[peer]} if peer in OUTSIDE_GRAPH else {}
        plan.cases.append(_tag(case, "peer", graph=graph.name, **extra))


def _plan_paper(
    plan: Plan, size: int, named: list[tuple[Artifact, str]], wants: dict[str, bool], batch: int, threads: int,
    micro_batch: int | None,
) -> None:
    for artifact, name in named:
        if artifact.engine and wants["tensorrt"]:
            plan.skip(name, "tensorrt", "paper", "the paper protocol needs the input on the GPU; engines are timed "
                      "e2e here (python -m mmad_edge.bench.gpu_check times the GPU paper rows)", batch)
        elif not artifact.engine and wants["onnxruntime"]:
            low, high = artifact.batch_range
            if low <= batch <= high:
                case = ort_session_case(name, artifact.paper_graph, batch, image_size=size, threads=threads,
                                        precision=artifact.precision, providers=CPU_PROVIDERS, micro_batch=micro_batch)
                plan.cases.append(_tag(case, "minimaxad", graph=artifact.paper_graph.name,
                                       artifact=str(artifact.path), **artifact.facts))
            else:
                limits = f"{artifact.paper_graph.name} takes batch {low}..{high}"
                plan.skip(name, "onnxruntime", "paper", f"{limits}; re-export with --batch 1:{batch}:{batch}", batch)


def _plan_e2e(
    plan: Plan, size: int, named: list[tuple[Artifact, str]], wants: dict[str, bool], batches: Sequence[int],
    threads: int, micro_batch: int | None, probe: Callable[[Any], dict[str, Any]] | None = None,
) -> None:
    from mmad_edge.runtime.backends.tensorrt import engine_problem

    frames = _frames(size)
    for artifact, name in named:
        if artifact.engine and wants["tensorrt"]:
            problem = engine_problem(artifact.path)
            for batch in batches:
                if problem is None:
                    case = e2e_detector_case(artifact.path, batch, frames, name=name, backend="tensorrt", probe=probe)
                    plan.cases.append(_tag(case, "minimaxad", artifact=str(artifact.path), **artifact.facts))
                else:
                    plan.skip(name, "tensorrt", "e2e", problem, batch)
        elif not artifact.engine and wants["onnxruntime"]:
            for batch in batches:
                case = e2e_detector_case(artifact.path, batch, frames, name=name, probe=probe,
                                         loader=cpu_detector_loader(threads, micro_batch))
                plan.cases.append(_tag(case, "minimaxad", artifact=str(artifact.path), **artifact.facts))


def _unique_names(artifacts: Sequence[Artifact]) -> list[str]:
    """Row names; artifacts of the same kind and precision are told apart by their folder."""
    plain = [a.name for a in artifacts]
    return [name if plain.count(name) == 1 else f"{name}@{a.path.parent.name}" for name, a in zip(plain, artifacts)]
