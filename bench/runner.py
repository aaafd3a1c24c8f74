"""Benchmark cases and the loop that times them into report rows.

A ``BenchCase`` is one row of the report: what runs (name, backend, precision, protocol,
batch) and a ``step`` doing one iteration. Heavy work (building a model, loading an artifact,
moving weights to the GPU) belongs in ``setup`` so cases are cheap to list and each one holds
memory only while it runs. ``setup`` may return row fields learnt only once loaded (e.g. the
backend an "auto" artifact chose). For the e2e protocol ``step`` returns per-stage
milliseconds for that call; the row carries their means over the timed iterations.

Protocols: "paper" times the network alone, input already where the network runs (for the
torch and CPU backend paths host memory is that place), forward only. "e2e" times the deployed
detector from host uint8 frames to host results.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import cycle, islice
from pathlib import Path
from typing import Any

import numpy as np

from mmad_edge.runtime.artifact.contract import PRECISIONS
from mmad_edge.runtime.backends import AUTO, backend_class, runners
from mmad_edge.runtime.backends.base import BackendOptions, compute_precision
from mmad_edge.runtime.flags import BATCH_SIZE
from mmad_edge.runtime.log import say

from .timing import measure

StageTimes = Mapping[str, float]
BACKEND_FACTS = ("inference_precision", "compute_precision", "performance_hint", "infer_requests")  # from describe()
# Precision names -> torch dtype attribute names (torch is imported only by the torch cases).
TORCH_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


@dataclass
class BenchCase:
    """One benchmark row: identity, one-iteration ``step``, optional setup/teardown hooks."""

    name: str
    backend: str
    precision: str
    protocol: str
    batch: int
    step: Callable[[], StageTimes | None]
    setup: Callable[[], Mapping[str, Any] | None] | None = None
    teardown: Callable[[], None] | None = None
    sync: Callable[[], None] | None = None
    device_events: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.name} [{self.backend} {self.precision} {self.protocol} b{self.batch}]"


def run_case(case: BenchCase, warmup: int, iters: int) -> dict[str, Any]:
    """Set up, time (``warmup`` + ``iters`` steps), tear down; the case's report row."""
    overrides = case.setup() if case.setup is not None else None
    stage_log: list[StageTimes] = []

    def call() -> None:
        stages = case.step()
        if stages:
            stage_log.append(stages)

    try:
        timing = measure(call, warmup, iters, sync=case.sync, batch=case.batch, device_events=case.device_events)
    finally:
        if case.teardown is not None:
            case.teardown()
    row: dict[str, Any] = {
        "name": case.name,
        "backend": case.backend,
        "precision": case.precision,
        "protocol": case.protocol,
        **timing.summary(),
        **case.extra,
        **(overrides or {}),
    }
    row["compute_precision"] = row.get("compute_precision") or compute_precision(
        row["precision"], row.get("inference_precision"))
    if case.protocol == "e2e":
        timed = stage_log[-iters:]
        names = list(dict.fromkeys(stage for stages in timed for stage in stages))
        row["stages"] = {name: float(np.mean([s.get(name, 0.0) for s in timed])) for name in names}
    return row


def format_row(row: Mapping[str, Any]) -> str:
    """One-line summary of a row for progress output."""
    return f"p50 {row['p50_ms']:.3f} ms, p99 {row['p99_ms']:.3f} ms, {row['images_per_s']:.1f} images/s"


def run_cases(
    cases: Sequence[BenchCase],
    warmup: int,
    iters: int,
    progress: bool = True,
    skip_failures: bool = False,
    run: Callable[[BenchCase, int, int], dict[str, Any]] = run_case,
    on_failure: Callable[[BenchCase, Exception], str] | None = None,
) -> list[dict[str, Any]]:
    """Run every case in order with ``run`` (``run_case``, or a budgeted variant); one progress
    line per case on stderr.

    With ``skip_failures`` a failing case is left out of the rows and reported on stderr, so one
    broken backend does not lose the others' numbers; ``on_failure(case, exc)`` may record it
    elsewhere and returns the message to print.
    """
    rows = []
    for index, case in enumerate(cases, 1):
        prefix = f"[{index}/{len(cases)}] {case.label}"
        try:
            row = run(case, warmup, iters)
        except Exception as exc:
            if not skip_failures:
                raise
            note = on_failure(case, exc) if on_failure is not None else f"FAILED ({type(exc).__name__}: {exc})"
            say(f"{prefix}: {note}")  # even when quiet: a lost row is news
            continue
        rows.append(row)
        calls = f" ({row['iters']} timed calls)" if "iters" in row else ""
        say(f"{prefix}: {format_row(row)}{calls}", progress)
    return rows


@dataclass(frozen=True)
class TorchInput:
    """A torch row's input: random normalised float (B, 3, S, S) in ``precision`` on ``device``
    (channels-last if asked), or with ``frames`` uint8 (B, S, S, 3) frames for modules that
    preprocess themselves."""

    device: str = "cpu"
    precision: str = "fp32"
    channels_last: bool = False
    frames: bool = False

    def dtype(self) -> Any:
        """The torch dtype of ``precision`` (one-line ValueError for one the device cannot run)."""
        import torch

        if self.precision not in TORCH_DTYPES:
            raise ValueError(f"precision must be one of {', '.join(TORCH_DTYPES)}, got {self.precision!r}")
        if self.precision == "fp16" and not self.device.startswith("cuda"):
            raise ValueError("fp16 convolutions are not supported on the CPU; use precision='fp32' or 'bf16'")
        return getattr(torch, TORCH_DTYPES[self.precision])

    def tensor(self, batch: int, image_size: int) -> Any:
        """The seeded input on the device."""
        import torch

        generator = torch.Generator().manual_seed(0)
        if self.frames:
            x = torch.randint(0, 256, (batch, image_size, image_size, 3), generator=generator, dtype=torch.uint8)
        else:
            x = torch.randn(batch, 3, image_size, image_size, generator=generator).to(dtype=self.dtype())
            x = x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
        return x.to(self.device)


def torch_module_case(
    name: str,
    module: Any,
    batch: int,
    image_size: int,
    given: TorchInput = TorchInput(),
    *,
    wrap: Callable[[Any, Any], Callable[[], Any]] | None = None,
    backend: str = "torch",
) -> BenchCase:
    """Paper-protocol case for a torch module (or a zero-argument factory building one) on the
    ``given`` input. ``wrap(module, input)`` may return the callable to time instead of
    ``module(input)`` (CUDA graph replay, a compiled module). Runs under inference mode.
    """
    import torch

    dtype = given.dtype()
    cuda = given.device.startswith("cuda")
    memory_format = torch.channels_last if given.channels_last else torch.contiguous_format
    state: dict[str, Any] = {}

    def setup() -> None:
        net = module if isinstance(module, torch.nn.Module) else module()
        net = net.eval().to(device=given.device, dtype=dtype, memory_format=memory_format)
        x = given.tensor(batch, image_size)
        with torch.inference_mode():
            state["fn"] = wrap(net, x) if wrap is not None else (lambda: net(x))
        state["refs"] = (net, x)

    def step() -> None:
        with torch.inference_mode():
            state["fn"]()

    def teardown() -> None:
        state.clear()
        if cuda:
            torch.cuda.empty_cache()

    return BenchCase(
        name=name,
        backend=backend,
        precision=given.precision,
        protocol="paper",
        batch=batch,
        step=step,
        setup=setup,
        teardown=teardown,
        sync=(lambda: torch.cuda.synchronize(given.device)) if cuda else None,
        device_events=cuda,
        extra={"device": given.device, "channels_last": given.channels_last},
    )


def peer_case(
    peer: str,
    batch: int,
    image_size: int = 256,
    *,
    device: str = "cpu",
    precision: str = "fp32",
    channels_last: bool = False,
    name: str | None = None,
    **options: Any,
) -> BenchCase:
    """Paper-protocol case for a peer detector (built in setup; ``options`` go to the peer)."""
    from .peers import PEERS, build_peer

    if peer not in PEERS:
        raise ValueError(f"unknown peer {peer!r}; choose one of {', '.join(PEERS)}")
    return torch_module_case(name or peer, lambda: build_peer(peer, image_size, **options), batch, image_size,
                             TorchInput(device, precision, channels_last))


def _numpy_dtype(onnx_type: str) -> np.dtype:
    types = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8,
             "tensor(int8)": np.int8, "tensor(int64)": np.int64, "tensor(int32)": np.int32}
    if onnx_type not in types:
        raise ValueError(f"cannot make a random input of type {onnx_type}; supported: {', '.join(types)}")
    return np.dtype(types[onnx_type])


def parse_batches(batches: str | Sequence[int]) -> list[int]:
    """"1,16" or a sequence -> distinct positive batch sizes in order; ValueError (one line) otherwise."""
    parts = batches.split(",") if isinstance(batches, str) else batches
    try:
        values = [int(part) for part in parts if str(part).strip()]
    except ValueError:
        raise ValueError(f"{BATCH_SIZE.name} must be comma-separated integers like 1,16, got {batches!r}") from None
    if not values or min(values) < 1:
        raise ValueError(f"{BATCH_SIZE.name} needs positive batch sizes like 1,16, got {batches!r}")
    return list(dict.fromkeys(values))


def random_feed(name: str, onnx_type: str, shape: Sequence[Any], batch: int, image_size: int | None) -> np.ndarray:
    """A random input for one session input: leading symbolic dim = batch, others = image size."""
    dims = []
    for index, dim in enumerate(shape):
        if isinstance(dim, int) and dim > 0:
            dims.append(dim)
        elif index == 0:
            dims.append(batch)
        elif image_size is not None:
            dims.append(image_size)
        else:
            raise ValueError(f"input {name!r} has a dynamic dimension {dim!r} at axis {index}; pass image_size")
    rng = np.random.default_rng(0)
    dtype = _numpy_dtype(onnx_type)
    if np.issubdtype(dtype, np.integer):
        high = 256 if dtype == np.uint8 else 100
        return rng.integers(0, high, size=dims).astype(dtype)
    return rng.standard_normal(dims).astype(dtype)


def precision_from_name(path: str | Path, default: str = "fp32") -> str:
    """``model.fp16.onnx`` -> "fp16": the export folder's naming, else ``default``."""
    parts = Path(path).name.split(".")
    known = (*PRECISIONS, "bf16")
    return next((part for part in parts[1:-1] if part in known), default)


def graph_case(
    backend: str,
    name: str,
    model: str | Path | bytes,
    batch: int,
    options: BackendOptions,
    *,
    image_size: int | None = None,
    precision: str | None = None,
) -> BenchCase:
    """Paper-protocol case: the bare ONNX ``model`` run by ``backend`` on random host inputs
    (``Backend.time_graph``; every input gets random data of its declared type, a dynamic leading
    dim becomes ``batch``, other dynamic dims ``image_size``). The row records the facts the
    backend reports (e.g. ONNX Runtime's images per run, OpenVINO's precision and hint)."""
    options.check()
    state: dict[str, Any] = {}

    def feed(input_name: str, onnx_type: str, shape: Sequence[Any]) -> np.ndarray:
        return random_feed(input_name, onnx_type, shape, batch, image_size)

    def setup() -> dict[str, Any]:
        timed = backend_class(backend).time_graph(model, batch, options, feed, image_size)
        if timed is None:
            raise ValueError(f"backend {backend!r} cannot time a bare graph; time its artifacts e2e")
        state["run"], facts = timed
        return dict(facts)

    def step() -> None:
        state["run"]()

    return BenchCase(
        name=name,
        backend=backend,
        precision=precision or (precision_from_name(model) if not isinstance(model, bytes) else "fp32"),
        protocol="paper",
        batch=batch,
        step=step,
        setup=setup,
        teardown=state.clear,
    )


def _load_detector(path: str | Path, **kwargs: Any) -> Any:
    from mmad_edge.runtime.detector import Detector

    return Detector.load(path, **kwargs)


def _detector_facts(detector: Any, batch: int) -> dict[str, Any]:
    """What a loaded detector says about its row: backend, precision, images per run of a batch."""
    found: dict[str, Any] = {}
    backend = getattr(detector, "backend", None)
    backend_name = getattr(backend, "name", None)
    precision = getattr(getattr(detector, "info", None), "precision", None)
    if backend_name:
        found["backend"] = backend_name
    if precision:
        found["precision"] = precision
    if hasattr(backend, "micro_batch"):
        found["micro_batch"] = min(backend.micro_batch or batch, batch)
    described = backend.describe() if callable(getattr(backend, "describe", None)) else {}
    found.update({key: described[key] for key in BACKEND_FACTS if key in described})
    return found


def e2e_detector_case(
    path: str | Path,
    batch: int,
    frames: Sequence[np.ndarray],
    *,
    name: str | None = None,
    loader: Callable[..., Any] | None = None,
    probe: Callable[[Any], Mapping[str, Any]] | None = None,
    **load_kwargs: Any,
) -> BenchCase:
    """End-to-end case: ``detector.predict`` on ``batch`` host frames per call.

    ``frames`` (uint8 BGR, any size) are cycled to fill the batch. ``loader(path,
    **load_kwargs)`` defaults to ``Detector.load`` (e.g. ``backend=<a registered name>``). ``probe(detector)``
    may add row fields once loaded, untimed (e.g. accuracy against a reference). Each result's
    ``timings`` are per-frame shares of the batch stages, so a call's stage time is their sum;
    the row's ``stages`` are means per call, like its latencies.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if not frames:
        raise ValueError("no frames to run; pass at least one uint8 BGR image")
    batch_frames = list(islice(cycle(frames), batch))
    load = loader or _load_detector
    state: dict[str, Any] = {}

    def setup() -> dict[str, Any]:
        state["detector"] = load(path, **load_kwargs)
        facts = _detector_facts(state["detector"], batch)
        return {**facts, **(probe(state["detector"]) if probe is not None else {})}

    def step() -> dict[str, float]:
        results = state["detector"].predict(batch_frames)
        stages: dict[str, float] = {}
        for result in results:
            for stage, ms in result.timings.items():
                stages[stage] = stages.get(stage, 0.0) + ms
        return stages

    def teardown() -> None:
        detector = state.pop("detector", None)
        if detector is not None and hasattr(detector, "close"):
            detector.close()

    requested = load_kwargs.get("backend", AUTO)
    runs = [entry.name for entry in runners(Path(path))]
    return BenchCase(
        name=name or Path(path).stem,
        backend=requested if requested != AUTO or not runs else runs[0],
        precision=precision_from_name(path, "unknown"),
        protocol="e2e",
        batch=batch,
        step=step,
        setup=setup,
        teardown=teardown,
    )
