"""`mmad-edge bench`: MiniMaxAD's torch, ONNX Runtime and TensorRT paths and the peers, side by side.

Rows (each named, all in one run, each tagged with its protocol):

- ``torch-eager-trainform``: the training-form network, eager FP32, ``MiniMaxAD.features`` on a
  normalised float input, forward only -- what the reference code runs; the baseline.
- ``torch-reparam``: the same network reparameterised, eager FP32.
- ``onnx-<precision>`` / ``trt-<precision>``: each deployed artifact on ONNX Runtime (CPU) or
  TensorRT (engines; skipped with the reason where TensorRT or the GPU is missing).
- the peers (``bench.peers.PEERS``), random weights.

Protocols: ``paper`` times the network alone, input already prepared where it runs, forward
only (torch rows, peers, and ONNX graphs -- for the FP32 default the float NCHW variant);
``e2e`` times the runtime's ``Detector`` from host uint8 frames to host map and score, with the
per-stage breakdown (artifacts only). ONNX graphs always hold the map and score (the exported
detector), so their paper rows do a little more work than the torch rows. Every MiniMaxAD row
gets a roofline floor counted from the FP32 ONNX graph and this machine's measured peak.

Without artifacts the embedded default (variant n at 256x256) is exported once, with random
weights (speed does not depend on the weights), into ``~/.cache/mmad-edge/bench/<key>`` and
reused. Slow cases are cut to a per-case time budget (never below ``MIN_ITERS`` timed calls);
each row records the warm-up and timed calls it actually ran.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import onnx
import torch

import mmad_edge
from mmad_edge.checkpoint import read_checkpoint
from mmad_edge.config import ModelConfig
from mmad_edge.export.fp16 import convert_fp16
from mmad_edge.export.metadata import (
    METADATA_FILENAME,
    PRECISIONS,
    build_metadata,
    metadata_for_onnx,
    read_metadata_json,
    write_onnx_metadata,
)
from mmad_edge.export.onnx_export import DEFAULT_OPSET, export_onnx
from mmad_edge.export.pipeline import load_for_export, onnx_filename
from mmad_edge.fileio import write_json_atomic
from mmad_edge.model.minimaxad import MiniMaxAD
from mmad_edge.model.reparam import reparameterize
from mmad_edge.runtime.backends import choices as backend_choices
from mmad_edge.runtime.contract import ENGINE_SUFFIX, ONNX_SUFFIX, artifact_name, sidecar_path
from mmad_edge.runtime.backends.onnxruntime import check_micro_batch

from .models import random_model
from .floor import Peak, count_graph_cost, floor_summary, measure_peak
from .machine import machine_info
from .peers import PEERS
from .report import (BASELINE, PROTOCOLS, add_roofline, build_report, format_value, markdown, speedups, write_json,
                     write_plot)
from .runner import (BenchCase, e2e_detector_case, ort_session_case, parse_batches, peer_case, run_case, run_cases,
                     torch_module_case)

BACKENDS = (*backend_choices(), "torch")
DEFAULT_VARIANT = "n"
DEFAULT_IMAGE_SIZE = 256
DEFAULT_BATCH_RANGE = (1, 16, 64)  # dynamic batch of the default ONNX graphs (min, opt, max)
FLOAT_NCHW_NAME = "model.fp32.float_nchw.onnx"  # the paper protocol's graph: normalised float in
DEFAULT_FILES = (onnx_filename("fp32"), onnx_filename("fp16"), FLOAT_NCHW_NAME, METADATA_FILENAME)
REPARAM = "torch-reparam"
MIN_ITERS = 3
DEFAULT_CASE_BUDGET_S = 6.0
E2E_FRAMES = 4
CPU_PROVIDERS = ["CPUExecutionProvider"]

PAPER_IMAGES_PER_S = 906.0
PAPER_BATCH = 16
PAPER_CONTEXT = (
    "about 906 images/s reported (second-hand) for reparameterised variant n, FP32, batch 16, 256x256, "
    "input on the GPU, forward only, on an NVIDIA RTX 4090"
)
E2E_SPEEDUP_TARGET = 2.0
FLOOR_RATIO_TARGET = 1.5
FLOOR_CLAIM_BATCH = 16


class BenchError(ValueError):
    """A benchmark request that cannot run (the message names the fix)."""


@dataclass(frozen=True)
class Artifact:
    """One deployed file to time and what its metadata says about it."""

    path: Path
    precision: str
    model: dict[str, Any]
    batch_range: tuple[int, int]
    paper_graph: Path  # what the paper protocol runs (the float NCHW twin of the FP32 default)

    @property
    def engine(self) -> bool:
        return self.path.suffix == ENGINE_SUFFIX

    @property
    def name(self) -> str:
        return f"{'trt' if self.engine else 'onnx'}-{self.precision}"


@dataclass
class Plan:
    """The cases to run, in order, and the rows that cannot run here with the reason."""

    cases: list[BenchCase] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)

    def skip(self, name: str, backend: str, protocol: str, reason: str, batch: int | None = None) -> None:
        self.skipped.append({"name": name, "backend": backend, "protocol": protocol, "batch": batch, "reason": reason})


def _say(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


def parse_protocols(protocols: str | Sequence[str]) -> list[str]:
    names = [p.strip() for p in (protocols.split(",") if isinstance(protocols, str) else protocols) if p.strip()]
    unknown = [name for name in names if name not in PROTOCOLS]
    if unknown or not names:
        raise BenchError(f"--protocol takes {' and/or '.join(PROTOCOLS)} (comma-separated), got {protocols!r}")
    return list(dict.fromkeys(names))


def default_cache_root() -> Path:
    return Path.home() / ".cache" / "mmad-edge" / "bench"


def cache_key(config: ModelConfig) -> str:
    """What the default graphs depend on: variant, size and the exporter's version."""
    return f"{config.variant}-{config.image_size}px-trained-like-mmad-edge-{mmad_edge.__version__}"


def default_artifacts(config: ModelConfig, cache_root: Path, progress: bool = True) -> Path:
    """The default export folder (FP32 + FP16 uint8 graphs, FP32 float NCHW graph, metadata).

    Exported once with random weights (seed 0) into ``cache_root/<cache_key>`` through a staging
    folder, so an interrupted export is never mistaken for a finished one; reused afterwards.
    """
    folder = cache_root / cache_key(config)
    if all((folder / name).is_file() for name in DEFAULT_FILES):
        return folder
    _say(progress, f"exporting the default model (variant {config.variant}, {config.image_size}x{config.image_size}, "
                   f"random weights) into {folder}")
    cache_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=cache_root))
    try:
        model = random_model(config)
        fp32 = onnx.load(str(export_onnx(model, staging / onnx_filename("fp32"), DEFAULT_BATCH_RANGE).path))
        export_onnx(model, staging / FLOAT_NCHW_NAME, DEFAULT_BATCH_RANGE, input_format="float_rgb_nchw")
        batch = dict(zip(("min", "opt", "max"), DEFAULT_BATCH_RANGE))
        metadata = build_metadata(config.to_dict(), "fp32", DEFAULT_OPSET, batch, None, None)
        for precision, graph in (("fp16", convert_fp16(fp32)), ("fp32", fp32)):
            write_onnx_metadata(graph, dict(metadata, precision=precision))
            onnx.save(graph, str(staging / onnx_filename(precision)))
        write_json_atomic(staging / METADATA_FILENAME, metadata)
        shutil.rmtree(folder, ignore_errors=True)  # an incomplete folder left by an older version
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def read_artifact(path: Path) -> Artifact:
    """An ``.onnx`` or ``.engine`` with its metadata (embedded, metadata.json or engine sidecar)."""
    if path.suffix == ENGINE_SUFFIX:
        metadata = read_metadata_json(sidecar_path(path))
    elif path.suffix == ONNX_SUFFIX:
        metadata = metadata_for_onnx(path)  # a file that does not parse: one-line MetadataError
    else:
        raise BenchError(f"{path}: not a .onnx, a .engine or an export folder; pass what mmad-edge export wrote")
    twin = path.with_name(FLOAT_NCHW_NAME)
    paper = twin if path.name == onnx_filename("fp32") and twin.is_file() else path
    batch = metadata["batch"]
    return Artifact(path, metadata["precision"], dict(metadata["model"]), (batch["min"], batch["max"]), paper)


def find_artifacts(paths: Sequence[str | os.PathLike[str]]) -> list[Artifact]:
    """Every model.<precision>.onnx / .engine of each folder, plus the files given; one model only."""
    files: list[Path] = []
    for item in map(Path, paths):
        if item.is_dir():
            found = [item / artifact_name(p, ext) for ext in (ONNX_SUFFIX, ENGINE_SUFFIX) for p in PRECISIONS
                     if (item / artifact_name(p, ext)).is_file()]
            if not found:
                raise BenchError(f"{item}: no model.<fp32|fp16|int8>.onnx or .engine here; "
                                 "point at an mmad-edge export folder")
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise BenchError(f"{item}: no such file or folder; pass an export folder, a .onnx or a .engine")
    artifacts = [read_artifact(path) for path in dict.fromkeys(files)]
    models = sorted({(a.model["variant"], a.model["image_size"]) for a in artifacts})
    if len(models) > 1:
        raise BenchError(f"the artifacts hold different models (variant, size) {models}; benchmark one model at a time")
    return artifacts


def model_config(
    artifacts: Sequence[Artifact], checkpoint: Path | None, image_size: int | None,
) -> ModelConfig:
    """The network the torch rows build: the artifacts' model, else the checkpoint's, else the default."""
    ckpt = ModelConfig.from_dict(dict(read_checkpoint(checkpoint)["config"])) if checkpoint is not None else None
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


def torch_model(config: ModelConfig, checkpoint: Path | None) -> Callable[[], MiniMaxAD]:
    """Zero-argument factory of the training-form model (checkpoint weights, else random), built once."""

    @functools.cache
    def build() -> MiniMaxAD:
        if checkpoint is None:
            return random_model(config)
        return load_for_export(checkpoint, config.image_size, config.variant)[0]

    return build


def _features(net: MiniMaxAD, x: torch.Tensor) -> Callable[[], Any]:
    """The paper's timed forward: encoder + bottleneck + decoder (no map, no score)."""
    return lambda: net.features(x)


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
    model: Callable[[], MiniMaxAD],
    artifacts: Sequence[Artifact],
    backend: str,
    batches: Sequence[int],
    protocols: Sequence[str],
    peers: bool,
    threads: int,
    micro_batch: int | None = None,
) -> Plan:
    """Every row the request asks for, in run order (paper rows, then e2e), or a skip with the reason.

    ``backend`` filters: "torch" keeps the torch rows and the peers, "onnxruntime" the ONNX
    Runtime rows, "tensorrt" the engine rows, "auto" all of them. ``micro_batch``: the ONNX
    Runtime CPU rows' images per run (None: the runtime's automatic choice, 0: whole batches),
    the same for the paper and the e2e protocol.
    """
    plan = Plan()
    wants = {name: backend in ("auto", name) for name in ("torch", "onnxruntime", "tensorrt")}
    named = list(zip(artifacts, _unique_names(artifacts)))
    if "paper" in protocols:
        for batch in batches:
            _plan_paper(plan, config.image_size, model, named, wants, batch, peers, threads, micro_batch)
    if "e2e" in protocols:
        _plan_e2e(plan, config.image_size, named, wants, batches, threads, micro_batch)
    return plan


def _plan_paper(
    plan: Plan, size: int, model: Callable[[], MiniMaxAD], named: list[tuple[Artifact, str]], wants: dict[str, bool],
    batch: int, peers: bool, threads: int, micro_batch: int | None,
) -> None:
    if wants["torch"]:
        plan.cases.append(_tag(torch_module_case(BASELINE, model, batch, size, wrap=_features), "minimaxad"))
        deployed = torch_module_case(REPARAM, lambda: reparameterize(model()), batch, size, wrap=_features)
        plan.cases.append(_tag(deployed, "minimaxad"))
    for artifact, name in named:
        if artifact.engine and wants["tensorrt"]:
            plan.skip(name, "tensorrt", "paper", "the paper protocol needs the input on the GPU; engines are timed "
                      "e2e here (python -m mmad_edge.bench.gpu_check times the GPU paper rows)", batch)
        elif not artifact.engine and wants["onnxruntime"]:
            low, high = artifact.batch_range
            if low <= batch <= high:
                case = ort_session_case(name, artifact.paper_graph, batch, image_size=size, threads=threads,
                                        precision=artifact.precision, providers=CPU_PROVIDERS, micro_batch=micro_batch)
                plan.cases.append(_tag(case, "minimaxad", graph=artifact.paper_graph.name))
            else:
                limits = f"{artifact.paper_graph.name} takes batch {low}..{high}"
                plan.skip(name, "onnxruntime", "paper", f"{limits}; re-export with --batch 1:{batch}:{batch}", batch)
    if wants["torch"] and peers:
        plan.cases += [_tag(peer_case(peer, batch, size), "peer") for peer in PEERS]


def _plan_e2e(
    plan: Plan, size: int, named: list[tuple[Artifact, str]], wants: dict[str, bool], batches: Sequence[int],
    threads: int, micro_batch: int | None,
) -> None:
    from mmad_edge.runtime.backends.tensorrt import engine_problem

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(E2E_FRAMES)]
    for artifact, name in named:
        if artifact.engine and wants["tensorrt"]:
            problem = engine_problem(artifact.path)
            for batch in batches:
                if problem is None:
                    case = e2e_detector_case(artifact.path, batch, frames, name=name, backend="tensorrt")
                    plan.cases.append(_tag(case, "minimaxad", artifact=str(artifact.path)))
                else:
                    plan.skip(name, "tensorrt", "e2e", problem, batch)
        elif not artifact.engine and wants["onnxruntime"]:
            for batch in batches:
                case = e2e_detector_case(artifact.path, batch, frames, name=name, loader=cpu_detector_loader(threads, micro_batch))
                plan.cases.append(_tag(case, "minimaxad", artifact=str(artifact.path)))


def _unique_names(artifacts: Sequence[Artifact]) -> list[str]:
    """Row names; artifacts of the same kind and precision are told apart by their folder."""
    plain = [a.name for a in artifacts]
    return [name if plain.count(name) == 1 else f"{name}@{a.path.parent.name}" for name, a in zip(plain, artifacts)]


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


def fp32_graph(artifacts: Sequence[Artifact]) -> Path | None:
    """The FP32 uint8 ONNX graph among (or beside) the artifacts: what the floor is counted from."""
    for artifact in artifacts:
        candidate = artifact.path.with_name(onnx_filename("fp32"))
        if candidate.is_file():
            return candidate
    return None


def graph_floor(graph: Path, peak: Peak) -> dict[str, Any]:
    """The report's floor section: per-image work of the FP32 graph against the measured peak."""
    cost = count_graph_cost(onnx.load(str(graph)))
    return {**floor_summary(cost, peak), "graph": str(graph), "uncounted_ops": list(cost.uncounted),
            "peak_measurements": dict(peak.measurements)}


def measure_floors(
    artifacts: Sequence[Artifact], peak: Peak, rows: Sequence[dict[str, Any]], plan: Plan,
) -> tuple[dict[str, Any] | None, dict[str, float]]:
    """The floor section and the per-image floor of each device with rows (a skip entry when none)."""
    graph = fp32_graph(artifacts)
    if graph is None:
        plan.skip("floor", "-", "-", "no model.fp32.onnx among or beside the artifacts to count the floor from; "
                  "pass the export folder")
        return None, {}
    floor = graph_floor(graph, peak)
    floors = {"cpu": floor["floor_ms_per_image"]}
    if any(row["backend"] == "tensorrt" for row in rows) and torch.cuda.is_available():
        floor["cuda"] = graph_floor(graph, measure_peak("cuda"))
        floors["cuda"] = floor["cuda"]["floor_ms_per_image"]
    return floor, floors


def attach_floor(rows: Sequence[dict[str, Any]], floors: dict[str, float]) -> list[dict[str, Any]]:
    """MiniMaxAD rows get ``floor_ms`` (per-image floor of their device x batch) and ``roofline_pct``."""
    out = []
    for row in rows:
        per_image = floors.get("cuda" if row["backend"] == "tensorrt" else "cpu")
        if row.get("family") == "minimaxad" and per_image is not None:
            row = add_roofline(row, per_image * row["batch"])
        out.append(row)
    return out


def _find(rows: Sequence[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    return next((row for row in rows if all(row.get(key) == value for key, value in match.items())), None)


def speed_claim(
    rows: Sequence[dict[str, Any]], floor: dict[str, Any] | None, machine: dict[str, Any], model: ModelConfig,
) -> dict[str, Any]:
    """The paper's figure as context, and this machine's three checkable claims (true/false + numbers).

    A claim whose rows are missing has ``passed: None`` and the reason.
    """
    return {
        "paper": _paper_context(rows, machine, model),
        "e2e_onnx_fp32_vs_trainform": _e2e_claim(rows),
        "batch16_within_floor": _floor_claim(rows, floor),
        "int8_faster_than_fp32": _int8_claim(rows),
    }


def _paper_context(rows: Sequence[dict[str, Any]], machine: dict[str, Any], model: ModelConfig) -> dict[str, Any]:
    gpu = (machine.get("gpu") or {}).get("name")
    device = f"GPU {gpu}" if gpu else f"CPU {machine.get('cpu_model', '?')} ({machine.get('logical_cores', '?')} cores)"
    candidates = [r for r in rows if r.get("family") == "minimaxad" and r["protocol"] == "paper"
                  and r["precision"] == "fp32" and r["batch"] == PAPER_BATCH and r["name"] != BASELINE]
    best = max(candidates, key=lambda r: r["images_per_s"], default=None)
    return {
        "reported_images_per_s": PAPER_IMAGES_PER_S,
        "reported": PAPER_CONTEXT,
        "this_device": device,
        "this_model": f"variant {model.variant}, {model.image_size}x{model.image_size}",
        "measured_row": None if best is None else best["name"],
        "measured_images_per_s": None if best is None else best["images_per_s"],
        "ratio_to_reported": None if best is None else best["images_per_s"] / PAPER_IMAGES_PER_S,
        "note": "different device (and maybe model) and a second-hand figure: context only, not a pass/fail",
    }


def _e2e_claim(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    claim = f"e2e ONNX FP32 batch-1 latency at least {E2E_SPEEDUP_TARGET:g}x lower than {BASELINE} (p50)"
    onnx_row = _find(rows, backend="onnxruntime", precision="fp32", protocol="e2e", batch=1)
    baseline = _find(rows, name=BASELINE, batch=1)
    if onnx_row is None or baseline is None:
        missing = "the e2e onnxruntime fp32 batch-1 row" if onnx_row is None else f"the {BASELINE} batch-1 row"
        return {"claim": claim, "passed": None, "reason": f"{missing} did not run"}
    speedup = baseline["p50_ms"] / onnx_row["p50_ms"]
    return {"claim": claim, "passed": speedup >= E2E_SPEEDUP_TARGET, "speedup": speedup,
            "onnx_p50_ms": onnx_row["p50_ms"], "baseline_p50_ms": baseline["p50_ms"], "row": onnx_row["name"]}


def _floor_claim(rows: Sequence[dict[str, Any]], floor: dict[str, Any] | None) -> dict[str, Any]:
    claim = f"batch-{FLOOR_CLAIM_BATCH} throughput within {FLOOR_RATIO_TARGET:g}x of the roofline floor"
    # The floor is FP32 work at the FP32 peak: only FP32 rows are judged against it.
    candidates = [r for r in rows if r["batch"] == FLOOR_CLAIM_BATCH and r.get("floor_ms") and r["precision"] == "fp32"]
    if floor is None or not candidates:
        reason = "no floor was counted" if floor is None else f"no batch-{FLOOR_CLAIM_BATCH} MiniMaxAD row ran"
        return {"claim": claim, "passed": None, "reason": reason}
    best = max(candidates, key=lambda r: r["images_per_s"])
    ms_per_image = 1000.0 / best["images_per_s"]
    floor_per_image = best["floor_ms"] / best["batch"]
    ratio = ms_per_image / floor_per_image
    return {"claim": claim, "passed": ratio <= FLOOR_RATIO_TARGET, "ratio": ratio, "row": best["name"],
            "protocol": best["protocol"], "ms_per_image": ms_per_image, "floor_ms_per_image": floor_per_image}


def _int8_claim(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    claim = "INT8 on the CPU (ONNX Runtime) has higher throughput than FP32 at the same batch and protocol"
    pairs = []
    for int8 in (r for r in rows if r["backend"] == "onnxruntime" and r["precision"] == "int8"):
        fp32 = _find(rows, backend="onnxruntime", precision="fp32", protocol=int8["protocol"], batch=int8["batch"])
        if fp32 is not None:
            pairs.append({"protocol": int8["protocol"], "batch": int8["batch"],
                          "int8_images_per_s": int8["images_per_s"], "fp32_images_per_s": fp32["images_per_s"],
                          "speedup": int8["images_per_s"] / fp32["images_per_s"]})
    if not pairs:
        return {"claim": claim, "passed": None, "reason": "no int8 artifact (with a matching fp32 row) was timed"}
    return {"claim": claim, "passed": all(p["speedup"] > 1.0 for p in pairs), "comparisons": pairs}


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Plain-text results table with the speed-up over the baseline at the same batch."""
    header = ["name", "backend", "precision", "protocol", "batch", "p50 ms", "images/s", "floor ms", "% roofline",
              f"vs {BASELINE}"]
    lines = [header]
    for row, speedup in zip(rows, speedups(list(rows))):
        lines.append([row["name"], row["backend"], row["precision"], row["protocol"], str(row["batch"]),
                      format_value(row["p50_ms"], 2), format_value(row["images_per_s"], 1),
                      format_value(row.get("floor_ms"), 2), format_value(row.get("roofline_pct"), 1),
                      "-" if speedup is None else f"{speedup:.2f}x"])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines)


def format_claims(claims: dict[str, Any]) -> str:
    """One line per claim: PASS / FAIL / n/a and its numbers; the paper figure as context."""
    paper = claims["paper"]
    lines = [f"paper: {paper['reported']}; this run ({paper['this_model']}, {paper['this_device']}): "
             f"{format_value(paper['measured_images_per_s'], 1)} images/s ({paper['note']})"]
    for key, claim in claims.items():
        if key == "paper":
            continue
        verdict = {True: "PASS", False: "FAIL", None: "n/a"}[claim["passed"]]
        numbers = ", ".join(f"{k} {v:.3g}" for k, v in claim.items() if isinstance(v, float))
        lines.append(f"{verdict}: {claim['claim']}" + (f" ({numbers})" if numbers else f" ({claim.get('reason', '')})"))
    return "\n".join(lines)


def run_bench(
    artifacts: Sequence[str | os.PathLike[str]] = (),
    backend: str = "auto",
    batches: str | Sequence[int] = "1,16",
    protocols: str | Sequence[str] = "paper,e2e",
    warmup: int = 10,
    iters: int = 50,
    peers: bool = True,
    checkpoint: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    image_size: int | None = None,
    progress: bool = True,
    case_budget_s: float = DEFAULT_CASE_BUDGET_S,
    micro_batch: int | None = None,
) -> dict[str, Any]:
    """Plan, run and assemble the report dict (``report.build_report`` layout + speed_claim).

    ``image_size``: the checkpoint's, else 256 (artifacts fix their own). ``cache_dir``: where
    the default export is kept (default ~/.cache/mmad-edge/bench). ``micro_batch``: images per
    ONNX Runtime CPU run (None: the runtime's automatic choice, 0: whole batches). Raises
    BenchError (and the checkpoint / metadata ValueErrors) with a one-line message for bad input.
    """
    if backend not in BACKENDS:
        raise BenchError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if warmup < 0 or iters < 1 or case_budget_s <= 0:
        raise BenchError(f"need --warmup >= 0, --iters >= 1 and a positive case budget; "
                         f"got {warmup}, {iters}, {case_budget_s}")
    try:
        check_micro_batch(micro_batch)
    except ValueError as exc:
        raise BenchError(f"--micro-batch: {exc}") from None
    try:
        batch_list = parse_batches(batches)
    except ValueError as exc:
        raise BenchError(str(exc)) from None
    protocol_list = parse_protocols(protocols)
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    found = find_artifacts(artifacts)
    config = model_config(found, checkpoint, image_size)
    default_folder = None
    if not found:
        root = Path(cache_dir) if cache_dir is not None else default_cache_root()
        default_config = ModelConfig(variant=config.variant, image_size=config.image_size)
        default_folder = default_artifacts(default_config, root, progress)
        found = find_artifacts([default_folder])
    threads = os.cpu_count() or 1
    model = torch_model(config, checkpoint)
    plan = plan_cases(config, model, found, backend, batch_list, protocol_list, peers, threads, micro_batch)
    if not plan.cases:
        reasons = "; ".join(f"{s['name']} {s['protocol']}: {s['reason']}" for s in plan.skipped[:3])
        raise BenchError(f"nothing to run for --backend {backend} --protocol {','.join(protocol_list)}"
                         + (f" ({reasons})" if reasons else "; torch rows and peers run under the paper protocol only"))
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        peak = measure_peak("cpu")
        _say(progress, f"peak: {peak.gflops:.0f} GFLOP/s, {peak.gb_per_s:.1f} GB/s ({peak.source})")
        rows = run_plan(plan, warmup, iters, case_budget_s, progress)
        floor, floors = measure_floors(found, peak, rows, plan)
    finally:
        torch.set_num_threads(previous_threads)
    rows = attach_floor(rows, floors)
    machine = {**machine_info(), "torch_threads": threads, "ort_intra_op_threads": threads,
               "onnxruntime_providers": CPU_PROVIDERS}
    random_weights = "random (seed 0): speed only, scores meaningless"
    settings = {"backend": backend, "batches": batch_list, "protocols": protocol_list, "warmup": warmup,
                "iters": iters, "case_budget_s": case_budget_s, "min_iters": MIN_ITERS, "peers": peers,
                "micro_batch": "auto" if micro_batch is None else micro_batch,
                "artifacts": [str(a.path) for a in found], "default_artifacts": default_folder,
                "model": config.to_dict(),
                "weights": {"torch": str(checkpoint) if checkpoint else random_weights,
                            "artifacts": random_weights if default_folder else "as exported"}}
    return build_report(rows, floor, machine, speed_claim=speed_claim(rows, floor, machine, config),
                        skipped=plan.skipped, settings=settings)


def bench_cli(
    artifacts: Sequence[Path] = (),
    backend: str = "auto",
    batches: str = "1,16",
    protocols: str = "paper,e2e",
    warmup: int = 10,
    iters: int = 50,
    json_path: Path | None = None,
    markdown_path: Path | None = None,
    plot_path: Path | None = None,
    peers: bool = True,
    checkpoint: Path | None = None,
    cache_dir: Path | None = None,
    image_size: int | None = None,
    progress: bool = True,
    case_budget_s: float = DEFAULT_CASE_BUDGET_S,
    micro_batch: int | None = None,
) -> int:
    """`mmad-edge bench`: run, print the table and the claims (stdout), write the files asked for.

    Returns 0 when at least one row was timed, 1 when every case failed.
    """
    report = run_bench(artifacts, backend, batches, protocols, warmup, iters, peers, checkpoint, cache_dir,
                       image_size, progress, case_budget_s, micro_batch)
    rows = report["results"]
    print(format_table(rows))
    for skipped in report["skipped"]:
        print(f"skipped {skipped['name']} ({skipped['backend']} {skipped['protocol']}"
              f"{'' if skipped['batch'] is None else ' b' + str(skipped['batch'])}): {skipped['reason']}")
    print(format_claims(report["speed_claim"]))
    if json_path is not None:
        _say(True, f"wrote {write_json(json_path, report)}")
    if markdown_path is not None:
        path = Path(markdown_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(markdown(report) + "\nSpeed claims:\n\n" + "\n".join(
            f"- {line}" for line in format_claims(report["speed_claim"]).splitlines()) + "\n", encoding="utf-8")
        _say(True, f"wrote {path}")
    if plot_path is not None and rows:
        _say(True, f"wrote {write_plot(plot_path, report)}")
    return 0 if rows else 1
