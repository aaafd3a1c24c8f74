"""The recorded GPU run (``record gpu``): MiniMaxAD's PyTorch CUDA paths and the peers, with floors.

Rows (paper protocol: normalised float input already on the GPU, forward only, CUDA events):
MiniMaxAD features (encoder + bottleneck + decoder) in training form FP32 (the baseline
``torch-eager-trainform``), reparameterised FP32, FP16 channels-last, FP16 CUDA graph and
FP16 ``torch.compile`` (time-limited, run last); the full detector (uint8 frames -> map +
score) FP32; each peer FP32 and FP16 channels-last. Every row gets a roofline floor from the
measured peak of its precision. A case that fails or would overrun ``--budget-s`` is listed
under ``skipped``. With the defaults it fits a 10-minute slot.

``--dry-run`` runs the same flow on the CPU (FP32 eager only, tiny peak measurement) so it can
be tested without a GPU. The MiniMaxAD model is imported by name only when needed.
"""

from __future__ import annotations

import _thread
import argparse
import contextlib
import importlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .tables import BASELINE


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise TimeoutError in the main thread after ``seconds`` (a no-op elsewhere).

    A timer thread hands the main thread a simulated SIGALRM (``_thread.interrupt_main``), so no
    real signal reaches the process: with OpenVINO's worker threads loaded, a real SIGALRM from
    ``setitimer`` crashed the process (seen in the test suite). The handler runs between bytecodes,
    so a case stuck in one long native call ends when that call returns.
    """

    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"exceeded the {seconds:.0f} s limit")

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGALRM, expire)
    timer = threading.Timer(seconds, _thread.interrupt_main, args=(signal.SIGALRM,))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        signal.signal(signal.SIGALRM, previous)


def cuda_graph(net: Any, x: Any) -> Callable[[], Any]:
    """Capture ``net(x)`` once (after side-stream warm-up) and return the graph's replay."""
    import torch

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            net(x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        net(x)
    return graph.replay


def compiled(mode: str, timeout_s: float) -> Callable[[Any, Any], Callable[[], Any]]:
    """A ``wrap`` that compiles the module and runs it once (the compilation) under a time limit."""

    def wrap(net: Any, x: Any) -> Callable[[], Any]:
        import torch

        fast = torch.compile(net, mode=mode)
        try:
            with time_limit(timeout_s):
                fast(x)
                torch.cuda.synchronize()
        except BaseException:
            torch._dynamo.reset()
            raise
        return lambda: fast(x)

    return wrap


def minimaxad_factories(variant: str, image_size: int) -> tuple[Callable[[], Any], Callable[[], Any], type]:
    """(training-form factory, reparameterised factory, features-only wrapper class), imported by name."""
    from mmad_edge.config import ModelConfig

    models = importlib.import_module("mmad_edge.bench.models")
    reparam = importlib.import_module("mmad_edge.model.reparam")
    config = ModelConfig(variant=variant, image_size=image_size)

    def trainform() -> Any:
        return models.random_model(config)

    def deployed() -> Any:
        return reparam.reparameterize(trainform())

    return trainform, deployed, models.FeaturesOnly


def plan(args: argparse.Namespace, device: str, model: tuple | None) -> list[tuple[Any, Callable[[], Any], bool]]:
    """(case, module factory for the floor count, frames input?) for every row to run.

    ``model`` is ``minimaxad_factories(...)``, or None to time the peers alone.
    """
    from .peers import build_peer
    from .runner import TorchInput, torch_module_case

    batches = args.batch_size
    size = args.image_size
    gpu = not args.dry_run
    entries: list[tuple[Any, Callable[[], Any], bool]] = []

    def add(name: str, factory: Callable[[], Any], batch: int, precision: str = "fp32",
            channels_last: bool = False, frames: bool = False, wrap: Any = None) -> None:
        case = torch_module_case(name, factory, batch, size, TorchInput(device, precision, channels_last, frames),
                                 wrap=wrap)
        entries.append((case, factory, frames))

    if model is not None:
        trainform, deployed, features = model
        for batch in batches:
            add(BASELINE, lambda: features(trainform()), batch)
            add("torch-eager", lambda: features(deployed()), batch)
            add("torch-full-map", deployed, batch, frames=True)
            if gpu:
                add("torch-eager-fp16-cl", lambda: features(deployed()), batch, "fp16", True)
                add("torch-cudagraph-fp16-cl", lambda: features(deployed()), batch, "fp16", True, wrap=cuda_graph)
    for peer in args.peers:
        options = {"bank_size": args.patchcore_bank} if peer == "patchcore-wrn50" else {}

        def factory(peer: str = peer, options: dict = options) -> Any:
            return build_peer(peer, size, **options)

        for batch in batches:
            add(peer, factory, batch)
            if gpu:
                add(f"{peer}-fp16-cl", factory, batch, "fp16", True)
    if model is not None and gpu and args.compile_mode != "off":  # last: compilation may eat the budget
        for batch in batches:
            add("torch-compile-fp16-cl", lambda: features(deployed()), batch, "fp16", True,
                wrap=compiled(args.compile_mode, args.compile_timeout))
    return entries


def module_cost(factory: Callable[[], Any], shape: tuple[int, ...], frames: bool, device: str,
                precision: str = "fp32") -> Any:
    """Count one call's work in ``precision`` on the meta device (free), else for real on ``device``."""
    import torch

    from .floor import count_module_cost
    from .runner import TORCH_DTYPES

    dtype = getattr(torch, TORCH_DTYPES[precision])
    input_dtype = torch.uint8 if frames else dtype
    try:
        with torch.device("meta"):
            return count_module_cost(factory().to(dtype), torch.empty(shape, dtype=input_dtype))
    except (RuntimeError, NotImplementedError):  # data-dependent ops (.item()) have no meta form
        net = factory().to(device=device, dtype=dtype)
        return count_module_cost(net, torch.zeros(shape, dtype=input_dtype, device=device))


def row_floor(case: Any, factory: Callable[[], Any], size: int, frames: bool, peak: Any, device: str) -> float | None:
    """Roofline floor (ms per call) of one row; None (with a note) if its work cannot be counted."""
    from .floor import floor_ms

    shape = (case.batch, size, size, 3) if frames else (case.batch, 3, size, size)
    try:
        return floor_ms(module_cost(factory, shape, frames, device, case.precision), peak)
    except Exception as exc:  # a row without a floor is still a result
        print(f"  (no floor for this row: {type(exc).__name__}: {exc})", file=sys.stderr)
        return None


def model_floor(factory: Callable[[], Any], size: int, peak: Any, device: str) -> dict[str, Any] | None:
    """The report's floor section for the deployed MiniMaxAD features at batch 1 (FP32 peak)."""
    from .floor import floor_summary

    try:
        return floor_summary(module_cost(factory, (1, 3, size, size), False, device), peak)
    except Exception as exc:
        print(f"no floor section: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None


def measure_peaks(device: str, dry_run: bool) -> dict[str, Any]:
    from .floor import measure_peak

    if dry_run:
        return {"fp32": measure_peak("cpu", size=256, copy_mb=8)}
    return {precision: measure_peak(device, precision) for precision in ("fp32", "tf32", "fp16", "bf16")}


class BudgetSpent(RuntimeError):
    """The script's time budget ran out before this row (it is listed as skipped)."""


def record(args: argparse.Namespace) -> dict[str, Any]:
    """Time every planned row (each with its floor) within ``--budget-s``; the report."""
    started = time.monotonic()
    import torch

    from .machine import machine_info
    from .runner import run_case, run_cases
    from .tables import add_roofline, build_report

    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here; run on the GPU machine, or pass --dry-run to check the flow on the CPU")
    device = "cpu" if args.dry_run else "cuda"
    warmup, iters = (1, 2) if args.dry_run else (args.warmup, args.iters)
    peaks = measure_peaks(device, args.dry_run)
    skipped: list[dict[str, str]] = []
    model = _minimaxad_or_skip(args, skipped)
    entries = plan(args, device, model)
    inputs = {id(case): (factory, frames) for case, factory, frames in entries}

    def run(case: Any, warmup: int, iters: int) -> dict[str, Any]:
        if time.monotonic() - started > args.budget_s:
            raise BudgetSpent(f"time budget of {args.budget_s:.0f} s spent")
        row = run_case(case, warmup, iters)
        factory, frames = inputs[id(case)]
        floor = row_floor(case, factory, args.image_size, frames, peaks.get(case.precision, peaks["fp32"]), device)
        return add_roofline(row, floor) if floor is not None else row

    def failed(case: Any, exc: Exception) -> str:
        budget = isinstance(exc, BudgetSpent)
        skipped.append({"case": case.label, "reason": str(exc) if budget else f"{type(exc).__name__}: {exc}"})
        return "skipped (budget)" if budget else f"FAILED ({type(exc).__name__}: {exc})"

    rows = run_cases([case for case, _, _ in entries], warmup, iters, skip_failures=True, run=run, on_failure=failed)

    floor_section = None
    if model is not None:
        _, deployed, features = model
        floor_section = model_floor(lambda: features(deployed()), args.image_size, peaks["fp32"], device)
    return build_report(
        rows,
        floor_section,
        machine_info(),
        peaks={precision: vars(peak) for precision, peak in peaks.items()},
        skipped=skipped,
        settings={k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        | {"warmup": warmup, "iters": iters, "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32},
    )


def _minimaxad_or_skip(args: Any, skipped: list[dict[str, str]]) -> Any:
    """MiniMaxAD's factories, or None with the reason in ``skipped`` (the peers are timed anyway)."""
    if args.model != "minimaxad":
        return None
    try:
        return minimaxad_factories(args.variant, args.image_size)
    except Exception as exc:  # written in parallel: time the peers even if it does not import
        skipped.append({"case": "minimaxad", "reason": f"import failed: {type(exc).__name__}: {exc}"})
        print(f"MiniMaxAD unavailable ({type(exc).__name__}: {exc}); timing the peers only", file=sys.stderr)
        return None
