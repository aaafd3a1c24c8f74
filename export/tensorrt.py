"""Build a TensorRT engine (+ JSON sidecar) from an exported ONNX, on the device that will run it.

Needs only TensorRT and cuda-python: no torch, no training code, and `onnx` only when it happens
to be installed (metadata then comes from the ONNX itself, otherwise from DIR/metadata.json).
Written against the TensorRT 10.3+ and 11.x Python API. Precision comes from the graph (strongly
typed network), so there are no FP16/INT8 builder flags and no calibrators. The `trt` module and
the GPU query can be injected, which is how the tests drive it without a GPU.
"""

from __future__ import annotations

import importlib
import os
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from mmad_edge.export.metadata import engine_metadata, metadata_for_onnx
from mmad_edge.export.options import EngineOptions
from mmad_edge.fileio import write_bytes_atomic, write_json_atomic
from mmad_edge.runtime.artifact.contract import ENGINE_SUFFIX, INPUT_NAME, tensorrt_version
from mmad_edge.runtime.backends.cuda_memory import CudaCallError, query_gpu
from mmad_edge.runtime.errors import install_hint

MIN_TENSORRT = (10, 3)
TIMING_CACHE_NAME = "tensorrt.timing.cache"

Profile = tuple[int, int, int]
DeviceInfo = Callable[[], tuple[str, str]]


class TensorRTUnavailable(RuntimeError):
    """This machine cannot build engines (no TensorRT builder, too old, or no GPU)."""


class EngineBuildError(RuntimeError):
    """TensorRT rejected the ONNX or failed to build an engine from it."""


def parse_batch(value: str | int | tuple[int, int, int]) -> Profile:
    """`"4"` or 4 -> (4, 4, 4); `"1:8:16"` -> (1, 8, 16); raises ValueError saying how to write it."""
    if isinstance(value, bool):
        raise ValueError(f"batch must be N or MIN:OPT:MAX (e.g. 1:8:16), got {value!r}")
    if isinstance(value, int):
        parts: list[Any] = [value] * 3
    elif isinstance(value, tuple):
        parts = list(value)
    else:
        text = str(value).strip()
        fields = text.split(":")
        if len(fields) not in (1, 3):
            raise ValueError(f"batch {text!r} must be N or MIN:OPT:MAX (e.g. 1:8:16)")
        try:
            parts = [int(field) for field in fields] * (3 if len(fields) == 1 else 1)
        except ValueError:
            raise ValueError(f"batch {text!r} must be whole numbers: N or MIN:OPT:MAX (e.g. 1:8:16)") from None
    if len(parts) != 3 or not all(isinstance(p, int) and not isinstance(p, bool) for p in parts):
        raise ValueError(f"batch must be N or MIN:OPT:MAX (e.g. 1:8:16), got {value!r}")
    low, opt, high = parts
    if low < 1:
        raise ValueError(f"batch sizes must be >= 1, got {low}:{opt}:{high}")
    if not low <= opt <= high:
        raise ValueError(f"batch MIN:OPT:MAX must satisfy MIN <= OPT <= MAX, got {low}:{opt}:{high}")
    return low, opt, high


def format_batch(profile: Profile) -> str:
    """The `--batch` spelling of a profile: `4` when fixed, else `1:8:16`."""
    low, opt, high = profile
    return str(low) if low == opt == high else f"{low}:{opt}:{high}"


def default_engine_path(onnx_path: str | os.PathLike[str]) -> Path:
    """`DIR/model.fp16.onnx` -> `DIR/model.fp16.engine`."""
    return Path(onnx_path).with_suffix(ENGINE_SUFFIX)


def sidecar_path(engine_path: str | os.PathLike[str]) -> Path:
    """`model.fp16.engine` -> `model.fp16.engine.json`."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def build_command(
    onnx_path: str | os.PathLike[str],
    batch: Profile,
    version_compatible: bool = False,
    dla_core: int | None = None,
) -> str:
    """The `mmad-edge build-engine ...` line that repeats this build on the target device."""
    words = ["mmad-edge", "build-engine", str(onnx_path), "--batch", format_batch(batch)]
    if version_compatible:
        words.append("--version-compatible")
    if dla_core is not None:
        words += ["--dla-core", str(dla_core)]
    return shlex.join(words)


def load_tensorrt() -> ModuleType:
    """The full `tensorrt` package (with a builder), or TensorRTUnavailable saying what is missing."""
    try:
        trt = importlib.import_module("tensorrt")
    except ImportError:
        trt = None
    if trt is None or not hasattr(trt, "Builder"):
        if _importable("tensorrt_lean"):
            raise TensorRTUnavailable("TensorRT's builder is not installed here "
                                      "(only tensorrt_lean, which runs engines but cannot build them)")
        raise TensorRTUnavailable("TensorRT is not installed here "
                                  f"({install_hint('trt')}; JetPack ships it on Jetson)")
    found = tensorrt_version(trt.__version__, 2)
    if found < MIN_TENSORRT:
        raise TensorRTUnavailable(
            f"TensorRT {trt.__version__} is too old (need {'.'.join(map(str, MIN_TENSORRT))} or newer)"
        )
    return trt


def cuda_device_info(device: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability "8.7") from the runtime's GPU query, or TensorRTUnavailable."""
    try:
        gpu = query_gpu(device)
    except ImportError:
        raise TensorRTUnavailable("cuda-python is not installed here (pip install cuda-python)") from None
    except CudaCallError as exc:
        raise TensorRTUnavailable(str(exc)) from None
    return gpu.name, gpu.compute_capability


def build_engine(
    onnx_path: str | os.PathLike[str],
    engine_path: str | os.PathLike[str],
    options: EngineOptions = EngineOptions(),
    *,
    trt: Any = None,
    device_info: DeviceInfo | None = None,
) -> dict[str, Any]:
    """Build `engine_path` and its `.json` sidecar from `onnx_path`; returns a summary of the build.

    Nothing is written unless the build succeeds (engine and sidecar go through temp files).
    Raises TensorRTUnavailable (with the command to run on the device), EngineBuildError, and
    ValueError / OSError for bad options and files.
    """
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    profile = parse_batch(options.batch)
    _check_options(onnx_path, options.workspace_gib, options.optimization_level, options.dla_core)
    try:
        trt = trt if trt is not None else load_tensorrt()
        gpu_name, capability = (device_info or cuda_device_info)()
    except TensorRTUnavailable as exc:
        command = build_command(onnx_path, profile, options.version_compatible, options.dla_core)
        raise TensorRTUnavailable(f"{exc}; build the engine on the target device with: {command}") from None
    metadata = metadata_for_onnx(onnx_path)
    started = time.perf_counter()
    plan, cache = _serialized_plan(trt, onnx_path, profile, metadata, options)
    sidecar = engine_metadata(metadata, str(trt.__version__), gpu_name, capability, profile,
                              options.version_compatible, options.dla_core)
    write_bytes_atomic(engine_path, memoryview(plan))
    try:
        write_json_atomic(sidecar_path(engine_path), sidecar)
    except BaseException:
        engine_path.unlink(missing_ok=True)
        raise
    if options.timing_cache is not None:
        write_bytes_atomic(options.timing_cache, memoryview(cache.serialize()))
    return {
        "engine": str(engine_path),
        "sidecar": str(sidecar_path(engine_path)),
        "engine_bytes": engine_path.stat().st_size,
        "build_seconds": round(time.perf_counter() - started, 3),
        "timing_cache": str(options.timing_cache) if options.timing_cache is not None else None,
        "tensorrt": sidecar["tensorrt"],
    }


def _serialized_plan(trt: Any, onnx_path: Path, profile: Profile, metadata: dict[str, Any],
                     options: EngineOptions) -> tuple[Any, Any]:
    """Parse the ONNX and build the plan as ``options`` say: (plan, timing cache)."""
    logger = trt.Logger(trt.Logger.VERBOSE if options.verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        raise EngineBuildError(f"TensorRT could not parse {onnx_path}: {_parser_errors(parser)}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_gib * (1 << 30)))
    config.builder_optimization_level = options.optimization_level
    _add_profile(builder, network, config, profile, metadata, onnx_path)
    if options.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if options.dla_core is not None:
        _use_dla(trt, builder, config, options.dla_core)
    cache = _attach_timing_cache(config, options.timing_cache)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineBuildError(
            f"TensorRT failed to build an engine from {onnx_path}; "
            "rerun with verbose=True (--verbose) for the builder log"
        )
    return plan, cache


def build_summary(info: dict[str, Any]) -> str:
    """The one line `mmad-edge build-engine` prints for a built engine."""
    section = info["tensorrt"]
    profile = section["profile"]
    return (f"wrote {info['engine']} ({info['engine_bytes'] / 1e6:.1f} MB; TensorRT {section['version']} on "
            f"{section['gpu']} (sm {section['compute_capability']}); batch "
            f"{format_batch((profile['min'], profile['opt'], profile['max']))}) in {info['build_seconds']:.1f} s")


def _check_options(onnx_path: Path, workspace_gib: float, optimization_level: int, dla_core: int | None) -> None:
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX file {onnx_path} not found; export one first with `mmad-edge export`")
    if not workspace_gib > 0:
        raise ValueError(f"workspace must be > 0 GiB, got {workspace_gib}")
    if isinstance(optimization_level, bool) or optimization_level not in range(6):
        raise ValueError(f"optimization level must be 0..5 (TensorRT's builder levels; 3 is the default), "
                         f"got {optimization_level!r}")
    if dla_core is not None and (isinstance(dla_core, bool) or not isinstance(dla_core, int) or dla_core < 0):
        raise ValueError(f"DLA core must be a core number >= 0, got {dla_core!r}")


def _network_flags(trt: Any) -> int:
    """STRONGLY_TYPED on 10.x; 11.x networks are always strongly typed and the flag is deprecated."""
    flags = getattr(trt, "NetworkDefinitionCreationFlag", None)
    strongly_typed = getattr(flags, "STRONGLY_TYPED", None)
    if strongly_typed is None or tensorrt_version(trt.__version__, 2) >= (11, 0):
        return 0
    return 1 << int(strongly_typed)


def _parser_errors(parser: Any) -> str:
    """All parser errors on one line, each naming its node (name and op) where TensorRT says."""
    messages = []
    for index in range(parser.num_errors):
        error = parser.get_error(index)
        name = _optional_call(error, "node_name")
        op = _optional_call(error, "node_operator")
        node = _optional_call(error, "node")
        if name or op:
            where = f"node {name!r}" + (f" ({op})" if op else "")
        elif isinstance(node, int) and node >= 0:
            where = f"node #{node}"
        else:
            where = "model"
        messages.append(f"{where}: {' '.join(str(error.desc()).split())}")
    return "; ".join(messages) or "no details from the parser; rerun with --verbose"


def _optional_call(obj: Any, method: str) -> Any:
    """ParserError gained node_name()/node_operator() in TensorRT 10; tolerate their absence."""
    function = getattr(obj, method, None)
    return function() if callable(function) else None


def _add_profile(builder: Any, network: Any, config: Any, profile: Profile, metadata: dict[str, Any],
                 onnx_path: Path) -> None:
    """One optimisation profile over the batch dim of `image` (B, S, S, 3); static graphs need none."""
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    image = next((tensor for tensor in inputs if tensor.name == INPUT_NAME), None)
    if image is None:
        names = ", ".join(repr(tensor.name) for tensor in inputs) or "none"
        raise EngineBuildError(f"{onnx_path} has no input {INPUT_NAME!r} (inputs: {names}); "
                               "export it with `mmad-edge export`")
    dims = list(image.shape)
    if len(dims) != 4:
        raise EngineBuildError(f"{onnx_path} input {INPUT_NAME!r} has shape {dims}; expected (B, S, S, 3) NHWC")
    height = dims[1] if dims[1] > 0 else metadata["input"]["height"]
    width = dims[2] if dims[2] > 0 else metadata["input"]["width"]
    channels = dims[3] if dims[3] > 0 else 3
    if dims[0] > 0:
        if profile != (dims[0],) * 3:
            raise ValueError(f"{onnx_path} has a fixed batch of {dims[0]}; use --batch {dims[0]} "
                             f"or re-export with a dynamic batch (mmad-edge export --batch {format_batch(profile)})")
        if all(d > 0 for d in dims):
            return
    shapes = [(size, height, width, channels) for size in profile]
    optimization_profile = builder.create_optimization_profile()
    optimization_profile.set_shape(INPUT_NAME, *shapes)
    config.add_optimization_profile(optimization_profile)


def _use_dla(trt: Any, builder: Any, config: Any, dla_core: int) -> None:
    """Run on DLA core N by default, with layers DLA cannot run falling back to the GPU."""
    available = int(getattr(builder, "num_DLA_cores", 0))
    if dla_core >= available:
        raise ValueError(f"DLA core {dla_core} requested but this device has {available} DLA core(s); "
                         "drop --dla-core or pick a core below that number")
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = dla_core
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)


def _attach_timing_cache(config: Any, path: str | os.PathLike[str] | None) -> Any:
    """Reuse a timing cache from earlier builds; a cache from another GPU/TensorRT is replaced."""
    blob = Path(path).read_bytes() if path is not None and Path(path).is_file() else b""
    cache = config.create_timing_cache(blob)
    if cache is None or not config.set_timing_cache(cache, False):
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    return cache


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True
