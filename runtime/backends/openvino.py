"""Run an exported ONNX artifact with OpenVINO's CPU plugin (``pip install ".[openvino]"`` from the checkout).

The same ``.onnx`` the ONNX Runtime backend runs (uint8 NHWC BGR in, map and score out), read
with ``Core.read_model``. FP32 by default, set explicitly: left alone, the CPU plugin computes in
BF16 on AMX CPUs. ``inference_precision`` "bf16" / "f16" runs the float ops in that type where the
CPU has the units (``OPTIMIZATION_CAPABILITIES``), and is refused in one line elsewhere (the plugin
would emulate bf16 on AVX-512 without the units: same numbers, slower than f32). Under bf16 the
numerically sensitive nodes (norm statistics, the cosine head) are kept in f32 (``openvino_f32``).

Performance hints: "latency" (the default; one infer request runs each batch whole, what ``run``
at batch 1 wants) or "throughput" (the plugin's streams, one infer request each; a batch is split
over them and the parts run concurrently with ``start_async`` / ``wait``, not AsyncInferQueue,
whose callbacks deadlocked on repeated calls). Compiled models are cached in ``cache_dir``
(default ``~/.cache/mmad-edge/openvino``), so a second load skips compilation.

``auto`` never picks OpenVINO from a table: which backend is fastest depends on the CPU, so only
``mmad-edge tune`` (which times and verifies every candidate on the machine, OpenVINO's compute
precisions and hints among them) routes a folder to it; without a tuned choice ``auto`` keeps the
registry's plain ranking, and ``--backend openvino`` asks for it by name.

INT8: the TensorRT-form Q/DQ graph (``--target tensorrt``) runs; the CPU-form QOperator graph
cannot be read by OpenVINO (its per-channel QLinearConv nodes fail to convert) and is refused
with that fix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact.contract import INPUT_NAME, OUTPUT_NAMES, precision_of
from ..artifact.metadata import ArtifactInfo
from ..errors import ArtifactError, BackendUnavailableError, install_hint, one_line
from .base import Backend, BackendOptions, Feed, GraphRun, Variant, compute_precision, option
from .openvino_f32 import keep_f32, sensitive_nodes

DEVICE = "CPU"
DEFAULT_PRECISION = "f32"
# inference_precision -> the CPU capability (OPTIMIZATION_CAPABILITIES) it needs; f32 always runs.
PRECISION_UNITS = {"f32": None, "bf16": "BF16", "f16": "FP16"}
HINTS = ("latency", "throughput")
DEFAULT_HINT = "latency"
INT8_FIX = ("OpenVINO cannot read the CPU-form INT8 graph (its per-channel QLinearConv nodes); export the "
            "TensorRT-form Q/DQ graph for it: mmad-edge export ... --precision int8 --target tensorrt")


def default_cache_dir() -> Path:
    """Where compiled models are cached unless ``BackendOptions.cache_dir`` says otherwise."""
    return Path.home() / ".cache" / "mmad-edge" / "openvino"


def import_openvino() -> Any:
    """The openvino module, or a one-line BackendUnavailableError naming the extra to install."""
    try:
        import openvino
    except ImportError:
        raise BackendUnavailableError(f"the OpenVINO backend needs openvino: {install_hint('openvino')}") from None
    return openvino


def cpu_capabilities(core: Any, device: str = DEVICE) -> list[str]:
    """What the device reports it can compute in, e.g. ['FP32', 'BF16', 'FP16', 'INT8', ...]."""
    return [str(item) for item in core.get_property(device, "OPTIMIZATION_CAPABILITIES")]


def check_inference_precision(precision: str, capabilities: list[str], device: str = DEVICE) -> None:
    """Refuse an unknown precision, or one the device lacks the units for (naming what it has)."""
    _check_precision_name(precision)
    missing = _missing_units(precision, capabilities, device)
    if missing is not None:
        raise BackendUnavailableError(f"{missing}; use --inference-precision f32")


def _missing_units(precision: str, capabilities: list[str], device: str = DEVICE) -> str | None:
    """"inference_precision P: this DEVICE has no U units (it offers ...)", or None where it has them."""
    unit = PRECISION_UNITS[precision]
    if unit is None or unit in capabilities:
        return None
    return f"inference_precision {precision}: this {device} has no {unit} units (it offers {', '.join(capabilities)})"


def check_hint(hint: str) -> None:
    if hint not in HINTS:
        raise ValueError(f"performance_hint must be 'latency' or 'throughput', got {hint!r}")


def _check_precision_name(precision: str | None) -> None:
    if precision is not None and precision not in PRECISION_UNITS:
        raise ValueError(f"inference_precision must be one of {', '.join(PRECISION_UNITS)}, got {precision!r}")


@dataclass(frozen=True)
class OvOptions:
    """OpenVINO's own settings (None: f32, and the latency hint)."""

    inference_precision: str | None = option(None, _check_precision_name)  # "f32" | "bf16" | "f16"
    performance_hint: str | None = option(None, lambda hint: hint is None or check_hint(hint))


def read_onnx(core: Any, path: Path, precision: str | None = None) -> Any:
    """``core.read_model`` of an ONNX file (also for the bench), or a one-line ArtifactError; an
    INT8 graph OpenVINO cannot read is the CPU-form QOperator one: the error names the fix."""
    if not Path(path).is_file():
        raise ArtifactError(f"{path}: no such ONNX file; export one with mmad-edge export")
    try:
        return core.read_model(str(path))
    except Exception as exc:  # noqa: BLE001 -- OpenVINO raises RuntimeError with multi-line texts
        if precision == "int8" or "QLinear" in str(exc):
            raise ArtifactError(f"{path}: {INT8_FIX}") from None
        reason = one_line(exc)
        raise ArtifactError(f"{path}: OpenVINO cannot read this ONNX ({reason}); "
                            "pass a model.<precision>.onnx written by mmad-edge export") from None


def for_precision(core: Any, model: Any, precision: str) -> Any:
    """The model to compile: under bf16 with its sensitive nodes marked to stay f32."""
    return keep_f32(core, model, sensitive_nodes(model)) if precision == "bf16" else model


def request_count(compiled: Any, hint: str) -> int:
    """Infer requests for ``hint``: one under latency, the plugin's optimal number under throughput."""
    return 1 if hint == "latency" else max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))


def _precision_problem(precision: str) -> str | None:
    """Why this CPU cannot compute in ``precision``, or None: the reason a variant the bench or tune
    enumerated is skipped (no remedy to name: the variant was not asked for)."""
    core = import_openvino().Core()
    try:
        _check_precision_name(precision)
        return _missing_units(precision, cpu_capabilities(core))
    except (ValueError, RuntimeError) as exc:
        return str(exc)


def _onnx_type(port: Any) -> str:
    """A port's element type spelled as ONNX types are (``tensor(float)``), what a bench feed reads."""
    names = {"f32": "tensor(float)", "f16": "tensor(float16)", "u8": "tensor(uint8)", "i8": "tensor(int8)",
             "i64": "tensor(int64)", "i32": "tensor(int32)"}
    return names.get(port.get_element_type().get_type_name(), port.get_element_type().get_type_name())


def compile_config(precision: str, hint: str, cache_dir: Path | None, threads: int | None) -> dict[str, Any]:
    """The CPU plugin's settings: precision set explicitly (the plugin would pick BF16 on AMX)."""
    check_hint(hint)
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": hint.upper()}
    if cache_dir is not None:
        config["CACHE_DIR"] = str(cache_dir)
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return config


class OpenVinoBackend(Backend):
    """One compiled model and a pool of infer requests (one for the latency hint)."""

    name = "openvino"
    Options = OvOptions

    def __init__(self, path: Path, contract: ArtifactInfo, options: BackendOptions) -> None:
        """``options``: ``inference_precision`` (default f32), ``performance_hint`` (default
        latency), ``cache_dir``, ``device`` (default CPU), ``threads`` (INFERENCE_NUM_THREADS)."""
        super().__init__(path, contract, options)
        ov = import_openvino()
        self._version = ov.get_version().split("-")[0]
        self.hint = self.settings.performance_hint or DEFAULT_HINT
        check_hint(self.hint)  # before anything is read or created
        device = options.device or DEVICE
        core = ov.Core()
        precision = self.settings.inference_precision or DEFAULT_PRECISION
        check_inference_precision(precision, cpu_capabilities(core, device), device)
        model = self._read(core)
        self.image_size = contract.image_size
        self.batch_min, self.batch_max = self._fit_batch(ov, model)
        self.cache_dir = Path(options.cache_dir) if options.cache_dir is not None else default_cache_dir()
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        config = compile_config(precision, self.hint, self.cache_dir, options.threads)
        self._compiled = core.compile_model(for_precision(core, model, precision), device, config)
        self._requests = [self._compiled.create_infer_request() for _ in range(request_count(self._compiled, self.hint))]
        self._outputs = [self._compiled.output(name) for name in OUTPUT_NAMES]
        self._device_name = core.get_property(device, "FULL_DEVICE_NAME")

    @classmethod
    def library(cls) -> Any:
        return import_openvino()

    @classmethod
    def variants(cls, precision: str, options: BackendOptions, batch: int) -> list[Variant]:
        """The FP32 graph computed in f32 and in each lower precision the CPU has units for (or the
        one asked for), the INT8 graph in f32; none for FP16 (on CPUs the f16 hint on FP32 is that
        path). Hint: the one asked for, else latency at batch 1 and throughput above."""
        if precision == "fp16":
            return []
        settings = options.settings(OvOptions)
        asked = (settings.inference_precision,) if settings.inference_precision else tuple(PRECISION_UNITS)
        hint = settings.performance_hint or ("latency" if batch == 1 else "throughput")
        return [Variant("" if name == DEFAULT_PRECISION else f"-{name}",
                        options.replace(inference_precision=name, performance_hint=hint), _precision_problem(name))
                for name in (asked if precision == "fp32" else (DEFAULT_PRECISION,))]

    @classmethod
    def tuning_variants(cls, precision: str, options: BackendOptions, batch: int) -> list[Variant]:
        """Each of ``variants``' compute precisions under each performance hint (tune tries both:
        which is faster at a batch depends on the CPU)."""
        return [Variant(f"{variant.suffix}-{hint}", variant.options.replace(performance_hint=hint), variant.problem)
                for hint in HINTS for variant in cls.variants(precision, options.replace(performance_hint=hint), batch)]

    @classmethod
    def time_graph(cls, graph: Path | bytes, batch: int, options: BackendOptions, feed: Feed,
                   image_size: int | None) -> GraphRun | None:
        """The graph compiled for the CPU; under the throughput hint the batch is split over the
        plugin's infer requests and the parts run concurrently, as ``run`` does."""
        settings = options.settings(OvOptions)
        precision, hint = settings.inference_precision or DEFAULT_PRECISION, settings.performance_hint or DEFAULT_HINT
        core = import_openvino().Core()
        check_inference_precision(precision, cpu_capabilities(core))
        model = for_precision(core, read_onnx(core, Path(graph), precision_of(graph)), precision)
        compiled = core.compile_model(model, DEVICE, compile_config(precision, hint, None, options.threads))
        shapes = [[d.get_length() if d.is_static else None for d in port.get_partial_shape()] for port in compiled.inputs]
        fixed = any(shape and shape[0] is not None for shape in shapes)
        parts = 1 if fixed else max(1, min(request_count(compiled, hint), batch))
        feeds = [feed(port.get_any_name(), _onnx_type(port), shape) for port, shape in zip(compiled.inputs, shapes)]
        step_size = -(-batch // parts)
        requests = [compiled.create_infer_request() for _ in range(parts)]
        chunks = [[item[start:start + step_size] for item in feeds] for start in range(0, batch, step_size)]

        def run() -> None:
            for request, chunk in zip(requests, chunks):
                request.start_async(chunk, share_inputs=True)
            for request in requests[:len(chunks)]:
                request.wait()

        return run, {"inference_precision": precision, "performance_hint": hint, "infer_requests": len(chunks)}

    @classmethod
    def bench_settings(cls, options: BackendOptions) -> Mapping[str, Any]:
        settings = options.settings(OvOptions)
        return {"openvino": {"inference_precision": settings.inference_precision or "f32 + what the CPU has units for",
                             "performance_hint": settings.performance_hint or "latency at batch 1, else throughput"}}

    def _read(self, core: Any) -> Any:
        """The ONNX as an ov.Model with our input and outputs, or a one-line ArtifactError."""
        model = read_onnx(core, self.path, self.info.precision)
        inputs = [port.get_any_name() for port in model.inputs]
        outputs = {name for port in model.outputs for name in port.get_names()}
        if inputs != [INPUT_NAME] or not set(OUTPUT_NAMES) <= outputs:
            raise ArtifactError(f"{self.path}: expected input '{INPUT_NAME}' and outputs {list(OUTPUT_NAMES)}, got "
                                f"{inputs} -> {sorted(outputs)}; export with mmad-edge export")
        if model.input(0).get_element_type().get_type_name() != "u8":
            raise ArtifactError(f"{self.path}: input must be uint8 NHWC BGR, got "
                                f"{model.input(0).get_element_type().get_type_name()}; re-export")
        return model

    def _fit_batch(self, ov: Any, model: Any) -> tuple[int, int]:
        """The batch range; a dynamic batch is bounded to the metadata profile (H, W fixed)."""
        shape = model.input(0).get_partial_shape()
        height, width = self.image_size
        for axis, size in ((1, height), (2, width)):
            if shape[axis].is_static and shape[axis].get_length() != size:
                raise ArtifactError(f"{self.path}: input is {shape[1]}x{shape[2]} but metadata says "
                                    f"{self.image_size}; re-export")
        if shape[0].is_static:
            fixed = shape[0].get_length()
            return fixed, fixed
        low, high = 1, self.info.batch_max
        model.reshape({INPUT_NAME: ov.PartialShape([ov.Dimension(low, high), height, width, 3])})
        return low, high

    def describe(self) -> dict[str, Any]:
        """Backend, version, CPU, the artifact's precision, the compute precision used, hint and requests."""
        used = self._compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        return {"backend": self.name, "library_version": self._version, "device": self._device_name,
                "precision": self.info.precision, "inference_precision": used,
                "compute_precision": compute_precision(self.info.precision, used),
                "performance_hint": self.hint, "infer_requests": len(self._requests),
                "loaded_from_cache": bool(self._compiled.get_property("LOADED_FROM_CACHE"))}

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Maps (B, S, S) and scores (B,); under the throughput hint split over the infer requests."""
        images = np.ascontiguousarray(images)
        fixed = self.batch_min == self.batch_max
        parts = 1 if fixed else min(len(self._requests), len(images))
        step = math.ceil(len(images) / parts)
        chunks = [images[start:start + step] for start in range(0, len(images), step)]
        busy = self._requests[:len(chunks)]
        for request, chunk in zip(busy, chunks):
            request.start_async({INPUT_NAME: chunk}, share_inputs=True)
        results = []
        for request in busy:
            request.wait()
            results.append([np.array(request.get_tensor(port).data, copy=True) for port in self._outputs])
        if len(results) == 1:
            return results[0][0], results[0][1]
        return np.concatenate([r[0] for r in results]), np.concatenate([r[1] for r in results])

    def close(self) -> None:
        """Drop the requests and the compiled model (OpenVINO frees its memory with them)."""
        self._requests = []
        self._compiled = None


BACKEND = OpenVinoBackend
