"""`mmad-edge bench`: MiniMaxAD's torch, ONNX Runtime and TensorRT paths and the peers, side by side.

Rows (each named, all in one run, each tagged with its protocol):

- ``torch-eager-trainform``: the training-form network, eager FP32, ``MiniMaxAD.features`` on a
  normalised float input, forward only -- what the reference code runs; the baseline.
- ``torch-reparam``: the same network reparameterised, eager FP32.
- ``onnx-<precision>`` / ``trt-<precision>``: each deployed artifact on ONNX Runtime (CPU) or
  TensorRT (engines; skipped with the reason where TensorRT or the GPU is missing).
- ``deployed``: an export folder as ``auto`` loads it where ``mmad-edge tune`` chose for this machine
  (``bench.deployed``), e2e, with the choice's verified accuracy.
- the peers (``bench.peers.PEERS``), random weights: eager PyTorch, and ``onnx-<peer>``: exported
  to ONNX (``bench.peer_export``) and run on ONNX Runtime like ours, so the claims compare like
  with like (PatchCore's bank search stays outside its graph; its row's note says so).

Protocols: ``paper`` times the network alone, input already prepared where it runs, forward
only (torch rows, peers, and ONNX graphs -- for the FP32 default the float NCHW variant);
``e2e`` times the runtime's ``Detector`` from host uint8 frames to host map and score, with the
per-stage breakdown (artifacts only). ONNX graphs always hold the map and score (the exported
detector), so their paper rows do a little more work than the torch rows. Every MiniMaxAD row
gets a roofline floor counted from the FP32 ONNX graph and this machine's measured peak.

On a runtime-only install (``pip install ".[ort]"``: no torch, no onnx) artifacts are benched
all the same: the torch rows and peers are listed as skipped (they need torch), and so is the
floor (counting the graph's FLOPs needs onnx). Without artifacts the built-in default
(``bench.default_export``, needs torch and onnx) is exported once and reused. Slow cases are cut
to a per-case time budget (never below ``MIN_ITERS`` timed calls); each row records the warm-up
and timed calls it actually ran.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

from mmad_edge.config import ModelConfig
from mmad_edge.runtime.backends import AUTO, REGISTRY, backend_class, reference
from mmad_edge.runtime.backends import choices as backend_choices
from mmad_edge.runtime.backends.base import BackendOptions, OptionError
from mmad_edge.runtime.errors import install_hint
from mmad_edge.runtime.log import say

from .artifacts import Artifact, BenchError, find_artifacts, fp32_graph
from .claims import speed_claim
from .machine import LoadWatch, machine_info
from .optional import Missing, optional_import
from .options import BenchOptions
from .peers import PEERS
from .planning import TORCH, Plan, TorchRows, plan_cases
from .row_auroc import attach_accuracy
from .runner import BenchCase, parse_batches, run_case, run_cases
from .tables import PROTOCOLS, add_roofline, build_report

BACKENDS = (*backend_choices(), TORCH)
DEFAULT_VARIANT = "n"
DEFAULT_IMAGE_SIZE = 256
MIN_ITERS = 3
TORCH_ROWS = "mmad_edge.bench.torch_rows"
RANDOM_WEIGHTS = "random (seed 0): speed only, scores meaningless"


def parse_protocols(protocols: str | Sequence[str]) -> list[str]:
    names = [p.strip() for p in (protocols.split(",") if isinstance(protocols, str) else protocols) if p.strip()]
    unknown = [name for name in names if name not in PROTOCOLS]
    if unknown or not names:
        raise BenchError(f"--protocol takes {' and/or '.join(PROTOCOLS)} (comma-separated), got {protocols!r}")
    return list(dict.fromkeys(names))


def _checkpoint_config(checkpoint: Path) -> ModelConfig:
    rows = optional_import(TORCH_ROWS)
    if isinstance(rows, Missing):
        raise BenchError(f"--checkpoint {checkpoint}: reading a checkpoint {rows.reason}; or drop --checkpoint")
    return rows.checkpoint_config(checkpoint)


def model_config(
    artifacts: Sequence[Artifact], checkpoint: Path | None, image_size: int | None,
) -> ModelConfig:
    """The network the torch rows build: the artifacts' model, else the checkpoint's, else the default."""
    ckpt = _checkpoint_config(checkpoint) if checkpoint is not None else None
    if artifacts:
        config = ModelConfig.from_dict(artifacts[0].model)
        if image_size is not None and image_size != config.image_size:
            raise BenchError(f"the artifacts are {config.image_size}x{config.image_size}, not {image_size}; "
                             "drop --image-size (artifacts fix the size) or re-export at that size")
        if ckpt is not None and ckpt.variant != config.variant:
            raise BenchError(f"{checkpoint} holds variant {ckpt.variant!r} but the artifacts are variant "
                             f"{config.variant!r}; pass the checkpoint they were exported from")
        return config
    base = ckpt.to_dict() if ckpt is not None else {"variant": DEFAULT_VARIANT}
    size = image_size or (ckpt.image_size if ckpt is not None else DEFAULT_IMAGE_SIZE)
    return ModelConfig.from_dict({**base, "image_size": size})


def default_folder(config: ModelConfig, cache_dir: str | os.PathLike[str] | None, progress: bool) -> Path:
    """The built-in default export for ``config`` (exported on first use; needs the export extra)."""
    default = optional_import("mmad_edge.bench.default_export")
    if isinstance(default, Missing):
        raise BenchError(f"bench without an artifact exports the built-in default model, which needs {default.package}: "
                         f"{install_hint('export')}, or pass an export folder, a .onnx or a .engine")
    root = Path(cache_dir) if cache_dir is not None else default.default_cache_root()
    return default.default_artifacts(ModelConfig(variant=config.variant, image_size=config.image_size), root, progress)


def torch_side(
    config: ModelConfig, options: BenchOptions, checkpoint: Path | None, protocols: Sequence[str], threads: int,
) -> tuple[TorchRows, AbstractContextManager]:
    """The torch rows to plan (or why they cannot run here), the peers' ONNX graphs when ONNX
    Runtime paper rows are asked for, and the context that sets torch's threads."""
    rows = optional_import(TORCH_ROWS)
    if isinstance(rows, Missing):
        return TorchRows(None, rows.reason, options.peers), nullcontext()
    graphs: dict[str, Path | str] = {}
    if options.peers and options.backend in (AUTO, reference().name) and "paper" in protocols:
        graphs = peer_graphs(config.image_size, options.cache_dir, options.progress)
    model = rows.torch_model(config, checkpoint)
    return TorchRows(model, peers=options.peers, peer_graphs=graphs), rows.torch_threads(threads)


def peer_graphs(image_size: int, cache_dir: str | os.PathLike[str] | None, progress: bool) -> dict[str, Path | str]:
    """Every peer's ONNX graph in the bench cache (exported on first use), or why it has none."""
    export = optional_import("mmad_edge.bench.peer_export")
    if isinstance(export, Missing):
        return {peer: f"exporting the peer {export.reason}" for peer in PEERS}
    if cache_dir is None:  # the default export's cache root (peer_export needs what default_export does)
        from .default_export import default_cache_root

        cache_dir = default_cache_root()
    return export.peer_graphs(PEERS, image_size, Path(cache_dir), progress)


def _timed_call(case: BenchCase) -> float:
    start = time.perf_counter()
    case.step()
    if case.sync is not None:
        case.sync()
    return time.perf_counter() - start


def run_budgeted(case: BenchCase, warmup: int, iters: int, budget_s: float) -> dict[str, Any]:
    """``run_case`` with the counts cut so the timed calls fit ``budget_s`` (at least MIN_ITERS).

    The first call after setup is timed as a probe and counts as warm-up; when it was cheap and
    warm-up allows, a second probe (past one-time initialisation) sets the count instead. The
    row records the ``warmup`` and ``iters`` that actually ran.
    """
    overrides = dict(case.setup() or {}) if case.setup is not None else {}
    try:
        probe_s, probes = _timed_call(case), 1
        if warmup >= 2 and probe_s < budget_s / (MIN_ITERS + 1):
            probe_s, probes = _timed_call(case), 2
    except BaseException:
        if case.teardown is not None:
            case.teardown()
        raise
    fits = max(MIN_ITERS, int(budget_s / max(probe_s, 1e-9)))
    timed = min(iters, fits)
    more_warmup = min(max(warmup - probes, 0), fits - timed)
    counts = {"warmup": probes + more_warmup, "iters": timed}
    prepared = replace(case, setup=None, extra={**case.extra, **overrides, **counts})
    return run_case(prepared, more_warmup, timed)


def run_plan(plan: Plan, warmup: int, iters: int, budget_s: float, progress: bool) -> list[dict[str, Any]]:
    """Run every case within its budget; a failing case becomes a skip with its reason."""

    def skip(case: BenchCase, exc: Exception) -> str:
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if isinstance(exc, ImportError):
            reason = f"needs an optional package ({exc}); install it to time this row"
        plan.skip(case.name, case.backend, case.protocol, reason, case.batch)
        return f"skipped ({reason})"

    return run_cases(plan.cases, warmup, iters, progress, skip_failures=True,
                     run=lambda case, w, i: run_budgeted(case, w, i, budget_s), on_failure=skip)


def floor_module(plan: Plan) -> ModuleType | None:
    """``bench.floor`` (it counts the graph with onnx), or None with the floor listed as skipped."""
    floor = optional_import("mmad_edge.bench.floor")
    if isinstance(floor, Missing):
        plan.skip("floor", "-", "-", f"{floor.reason} (the roofline floor counts the FP32 graph's FLOPs and bytes "
                  "with onnx); the rows are timed without it")
        return None
    return floor


def measure_floors(
    floor: ModuleType, artifacts: Sequence[Artifact], peak: Any, rows: Sequence[dict[str, Any]], plan: Plan,
) -> tuple[dict[str, Any] | None, dict[str, float]]:
    """The floor section and the per-image floor of each device with rows (a skip entry when none)."""
    graph = fp32_graph(artifacts)
    if graph is None:
        plan.skip("floor", "-", "-", "no model.fp32.onnx among or beside the artifacts to count the floor from; "
                  "pass the export folder")
        return None, {}
    section = floor.graph_floor(graph, peak)
    floors = {"cpu": section["floor_ms_per_image"]}
    torch = sys.modules.get("torch")  # the GPU peak is measured with torch, loaded only for torch rows
    if any(_on_gpu(row) for row in rows) and torch is not None and torch.cuda.is_available():
        section["cuda"] = floor.graph_floor(graph, floor.measure_peak("cuda"))
        floors["cuda"] = section["cuda"]["floor_ms_per_image"]
    return section, floors


def _on_gpu(row: dict[str, Any]) -> bool:
    """Whether a row's backend ran on the GPU (a registered backend's CPU rows ask it)."""
    name = row["backend"]
    return name in REGISTRY and backend_class(name).on_gpu(backend_class(name).on_cpu(BackendOptions()))


def attach_floor(rows: Sequence[dict[str, Any]], floors: dict[str, float]) -> list[dict[str, Any]]:
    """MiniMaxAD rows get ``floor_ms`` (per-image floor of their device x batch) and ``roofline_pct``."""
    out = []
    for row in rows:
        per_image = floors.get("cuda" if _on_gpu(row) else "cpu")
        if row.get("family") == "minimaxad" and per_image is not None:
            row = add_roofline(row, per_image * row["batch"])
        out.append(row)
    return out


def _torch_scorer(torch_rows: TorchRows) -> Callable[[Any], dict[str, Any]] | None:
    """frames -> {torch row: scores} for ``bench --data`` (None on an install without torch)."""
    if torch_rows.model is None:
        return None
    return functools.partial(optional_import(TORCH_ROWS).row_outputs, torch_rows.model)


def _check_request(options: BenchOptions) -> list[int]:
    """One-line BenchErrors for bad options (before any timing); the batch sizes."""
    if options.data is not None and not Path(options.data).is_dir():
        raise BenchError(f"--data {options.data}: dataset root not found; pass the folder of a labelled test split")
    if options.backend not in BACKENDS:
        raise BenchError(f"--backend must be one of {', '.join(BACKENDS)}, got {options.backend!r}")
    if options.warmup < 0 or options.iters < 1 or options.case_budget_s <= 0:
        raise BenchError(f"need --warmup >= 0, --iters >= 1 and a positive case budget; "
                         f"got {options.warmup}, {options.iters}, {options.case_budget_s}")
    try:
        backend_options(options).check()
    except OptionError as exc:
        raise BenchError(f"--{exc.name.replace('_', '-')}: {exc}") from None
    try:
        return parse_batches(options.batches)
    except ValueError as exc:
        raise BenchError(str(exc)) from None


def backend_options(options: BenchOptions) -> BackendOptions:
    """The backends' own settings a bench request gives (ONNX Runtime's micro-batching, OpenVINO's
    precision and hint)."""
    return BackendOptions(micro_batch=options.micro_batch, inference_precision=options.inference_precision,
                          performance_hint=options.performance_hint)


def _nothing_to_run(plan: Plan, backend: str, protocols: Sequence[str]) -> BenchError:
    reasons = "; ".join(f"{s['name']} {s['protocol']}: {s['reason']}" for s in plan.skipped[:3])
    return BenchError(f"nothing to run for --backend {backend} --protocol {','.join(protocols)}"
                      + (f" ({reasons})" if reasons else "; torch rows and peers run under the paper protocol only"))


def _backend_sections(hook: str, options: BackendOptions) -> dict[str, Any]:
    """What every registered backend adds to the report's ``machine`` or ``settings`` section."""
    found: dict[str, Any] = {}
    for name in REGISTRY:
        impl = backend_class(name)
        found.update(getattr(impl, hook)(impl.on_cpu(options)))
    return found


def run_bench(
    artifacts: Sequence[str | os.PathLike[str]] = (), options: BenchOptions = BenchOptions(),
) -> dict[str, Any]:
    """Plan, run and assemble the report dict (``report.build_report`` layout + speed_claim).

    Raises BenchError (and the checkpoint / metadata ValueErrors) with a one-line message for bad input.
    """
    batch_list = _check_request(options)
    protocol_list = parse_protocols(options.protocols)
    checkpoint = Path(options.checkpoint) if options.checkpoint is not None else None
    found = find_artifacts(artifacts)
    config = model_config(found, checkpoint, options.image_size)
    default = None if found else default_folder(config, options.cache_dir, options.progress)
    found = found or find_artifacts([default])
    threads = os.cpu_count() or 1
    torch_rows, torch_threads = torch_side(config, options, checkpoint, protocol_list, threads)
    backend_settings = backend_options(options)
    plan = plan_cases(config, torch_rows, found, options.backend, batch_list, protocol_list, threads, backend_settings)
    if not plan.cases:
        raise _nothing_to_run(plan, options.backend, protocol_list)
    floor = floor_module(plan)
    watch = LoadWatch()
    with torch_threads:
        peak = floor.measure_peak("cpu") if floor is not None else None
        if peak is not None:
            say(f"peak: {peak.gflops:.0f} GFLOP/s, {peak.gb_per_s:.1f} GB/s ({peak.source})", options.progress)
        rows = run_plan(plan, options.warmup, options.iters, options.case_budget_s, options.progress)
        section, floors = measure_floors(floor, found, peak, rows, plan) if floor is not None else (None, {})
        rows = attach_floor(rows, floors)
        if options.data is not None:
            rows = attach_accuracy(rows, options, config.image_size, _torch_scorer(torch_rows))
    threaded = backend_settings.replace(threads=threads)
    machine = {**machine_info(), "load": watch.finish(), "torch_threads": threads if torch_rows.model is not None else None,
               **_backend_sections("bench_machine", threaded)}
    settings = {"backend": options.backend, "batches": batch_list, "protocols": protocol_list,
                "warmup": options.warmup, "iters": options.iters, "case_budget_s": options.case_budget_s,
                "min_iters": MIN_ITERS, "peers": options.peers, **_backend_sections("bench_settings", threaded),
                "artifacts": [str(a.path) for a in found], "default_artifacts": default, "model": config.to_dict(),
                "data": None if options.data is None else f"{options.layout}:{options.data}",
                "weights": {"torch": str(checkpoint) if checkpoint else RANDOM_WEIGHTS,
                            "artifacts": RANDOM_WEIGHTS if default else "as exported"}}
    return build_report(rows, section, machine, speed_claim=speed_claim(rows, section, machine, config),
                        skipped=plan.skipped, settings=settings)
