"""Engine building without a GPU: batch parsing, the no-TensorRT path, and every builder choice
made against a fake `tensorrt` module injected into build_engine."""

from __future__ import annotations

import enum
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from fake_tensorrt import SIZE, FakeTRT, orin, tiny_export
from typer.testing import CliRunner

import mmad_edge.export.tensorrt as trt_build
from mmad_edge.cli import app
from mmad_edge.export.metadata import read_metadata_json
from mmad_edge.export.options import EngineOptions
from mmad_edge.export.tensorrt import EngineBuildError, TensorRTUnavailable, build_engine, parse_batch

GIB = 1 << 30


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("text, expected", [
    ("1", (1, 1, 1)), ("1:8:16", (1, 8, 16)), (" 2:2:4 ", (2, 2, 4)), (4, (4, 4, 4)), ((1, 2, 3), (1, 2, 3)),
])
def test_parse_batch(text, expected):
    assert parse_batch(text) == expected


@pytest.mark.parametrize("text, message", [
    ("1:8", "batch '1:8' must be N or MIN:OPT:MAX (e.g. 1:8:16)"),
    ("a:b:c", "batch 'a:b:c' must be whole numbers"),
    ("0", "batch sizes must be >= 1, got 0:0:0"),
    ("8:1:16", "batch MIN:OPT:MAX must satisfy MIN <= OPT <= MAX, got 8:1:16"),
    (True, "batch must be N or MIN:OPT:MAX"),
])
def test_parse_batch_errors(text, message):
    with pytest.raises(ValueError) as caught:
        parse_batch(text)
    assert str(caught.value).startswith(message)


def test_without_tensorrt_builder_the_error_gives_the_device_command(tmp_path, monkeypatch, capsys):
    onnx_path = tiny_export(tmp_path)
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # as here: only tensorrt_lean, no builder
    with pytest.raises(TensorRTUnavailable) as caught:
        build_engine(onnx_path, tmp_path / "model.fp16.engine", EngineOptions(batch="1:8:16", dla_core=0))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("TensorRT") and "not installed here" in message
    assert message.endswith(f"build the engine on the target device with: mmad-edge build-engine {onnx_path} "
                            "--batch 1:8:16 --dla-core 0")

    code, out, err = build_engine_cli(onnx_path, "--batch", "1:8:16", "--version-compatible")
    assert code == 3
    assert err.startswith("error: ") and err.count("\n") == 1
    assert f"mmad-edge build-engine {onnx_path} --batch 1:8:16 --version-compatible" in err
    assert _files(tmp_path) == ["model.fp16.onnx"]


def test_without_a_gpu_the_error_says_so(tmp_path):
    def no_gpu():
        raise TensorRTUnavailable("no CUDA GPU is visible here (cudaGetDeviceCount: cudaErrorNoDevice)")

    onnx_path = tiny_export(tmp_path)
    with pytest.raises(TensorRTUnavailable, match=r"^no CUDA GPU is visible here .*: mmad-edge build-engine .* "
                                                  r"--batch 4$"):
        build_engine(onnx_path, tmp_path / "e.engine", EngineOptions(batch=4), trt=FakeTRT(), device_info=no_gpu)


def test_build_writes_engine_and_sidecar_with_profile_and_strong_typing(tmp_path):
    onnx_path = tiny_export(tmp_path)
    fake = FakeTRT()
    engine = tmp_path / "model.fp16.engine"
    info = build_engine(onnx_path, engine, EngineOptions(batch="1:8:16", workspace_gib=2), trt=fake, device_info=orin)

    assert engine.read_bytes() == b"PLAN-BYTES"
    assert fake.parsed_path == str(onnx_path)
    assert fake.state.network_flags == 1 << 1  # STRONGLY_TYPED on 10.x
    config = fake.state.config
    assert config.flags == set()  # precision comes from the graph: no FP16/INT8 flags
    assert config.pools == {fake.MemoryPoolType.WORKSPACE: 2 * GIB}
    assert config.builder_optimization_level == 3
    assert config.default_device_type == "GPU"
    [profile] = config.profiles
    assert profile.shapes == {"image": ((1, SIZE, SIZE, 3), (8, SIZE, SIZE, 3), (16, SIZE, SIZE, 3))}
    assert fake.state.logger_severity == fake.Logger.WARNING

    sidecar = read_metadata_json(tmp_path / "model.fp16.engine.json")
    assert sidecar["precision"] == "fp16" and sidecar["batch"] == {"min": 1, "opt": 1, "max": 16}
    assert sidecar["tensorrt"] == {"version": "10.3.0", "gpu": "Orin", "compute_capability": "8.7",
                                   "profile": {"min": 1, "opt": 8, "max": 16}, "version_compatible": False,
                                   "dla_core": None}
    assert info["engine"] == str(engine) and info["engine_bytes"] == len(b"PLAN-BYTES")
    assert info["tensorrt"] == sidecar["tensorrt"] and info["timing_cache"] is None
    assert _files(tmp_path) == ["model.fp16.engine", "model.fp16.engine.json", "model.fp16.onnx"]


@pytest.mark.parametrize("version, strongly_typed", [("11.4.0", True), ("10.3.0", False)])
def test_no_strongly_typed_flag_on_11x_or_when_the_attribute_is_missing(tmp_path, version, strongly_typed):
    fake = FakeTRT(version=version, strongly_typed=strongly_typed)
    build_engine(tiny_export(tmp_path), tmp_path / "e.engine", trt=fake, device_info=orin)
    assert fake.state.network_flags == 0
    assert read_metadata_json(tmp_path / "e.engine.json")["tensorrt"]["version"] == version


def test_version_compatible_and_dla_flags(tmp_path):
    fake = FakeTRT(dla_cores=2)
    build_engine(tiny_export(tmp_path), tmp_path / "e.engine",
                 EngineOptions(version_compatible=True, dla_core=1, optimization_level=5, verbose=True), trt=fake,
                 device_info=orin)
    config = fake.state.config
    assert config.flags == {fake.BuilderFlag.VERSION_COMPATIBLE, fake.BuilderFlag.GPU_FALLBACK}
    assert (config.default_device_type, config.DLA_core) == (fake.DeviceType.DLA, 1)
    assert config.builder_optimization_level == 5 and fake.state.logger_severity == fake.Logger.VERBOSE
    section = read_metadata_json(tmp_path / "e.engine.json")["tensorrt"]
    assert (section["version_compatible"], section["dla_core"]) == (True, 1)


def test_dla_core_beyond_the_device_is_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"DLA core 2 requested but this device has 2 DLA core\(s\)"):
        build_engine(tiny_export(tmp_path), tmp_path / "e.engine", EngineOptions(dla_core=2), trt=FakeTRT(dla_cores=2),
                     device_info=orin)
    assert not (tmp_path / "e.engine").exists()


def test_parser_errors_are_listed_on_one_line_and_nothing_is_written(tmp_path):
    fake = FakeTRT(parse_ok=False, errors=[("topk_0", "TopK", "K exceeds\nthe maximum"),
                                           ("mean_1", "ReduceMean", "axes must be an initializer")])
    onnx_path = tiny_export(tmp_path)
    with pytest.raises(EngineBuildError) as caught:
        build_engine(onnx_path, tmp_path / "e.engine", trt=fake, device_info=orin)
    assert str(caught.value) == (f"TensorRT could not parse {onnx_path}: node 'topk_0' (TopK): K exceeds the maximum; "
                                 "node 'mean_1' (ReduceMean): axes must be an initializer")
    assert _files(tmp_path) == ["model.fp16.onnx"]


def test_failed_build_keeps_the_previous_engine_and_leaves_no_partial_files(tmp_path):
    onnx_path = tiny_export(tmp_path)
    engine = tmp_path / "e.engine"
    build_engine(onnx_path, engine, trt=FakeTRT(plan=b"OLD"), device_info=orin)
    with pytest.raises(EngineBuildError, match="TensorRT failed to build an engine from .*--verbose"):
        build_engine(onnx_path, engine, EngineOptions(timing_cache=tmp_path / "t.cache"), trt=FakeTRT(plan=None),
                     device_info=orin)
    assert engine.read_bytes() == b"OLD"
    assert _files(tmp_path) == ["e.engine", "e.engine.json", "model.fp16.onnx"]


def test_timing_cache_is_created_reused_and_replaced_when_stale(tmp_path):
    onnx_path = tiny_export(tmp_path)
    cache = tmp_path / "t.cache"
    first = FakeTRT()
    build_engine(onnx_path, tmp_path / "a.engine", EngineOptions(timing_cache=cache), trt=first, device_info=orin)
    assert first.state.cache_blobs == [b""] and cache.read_bytes() == b"+timings"
    second = FakeTRT()
    build_engine(onnx_path, tmp_path / "b.engine", EngineOptions(batch="1:2:4", timing_cache=cache), trt=second,
                 device_info=orin)
    assert second.state.cache_blobs == [b"+timings"] and cache.read_bytes() == b"+timings+timings"
    cache.write_bytes(b"stale from another GPU")
    third = FakeTRT()
    build_engine(onnx_path, tmp_path / "c.engine", EngineOptions(timing_cache=cache), trt=third, device_info=orin)
    assert third.state.cache_blobs == [b"stale from another GPU", b""] and cache.read_bytes() == b"+timings"


def test_fixed_batch_graph(tmp_path):
    onnx_path = tiny_export(tmp_path)
    fake = FakeTRT(input_shape=(1, SIZE, SIZE, 3))
    with pytest.raises(ValueError, match="has a fixed batch of 1; use --batch 1 or re-export with a dynamic batch"):
        build_engine(onnx_path, tmp_path / "e.engine", EngineOptions(batch="1:8:16"), trt=fake, device_info=orin)
    build_engine(onnx_path, tmp_path / "e.engine", EngineOptions(batch=1), trt=fake, device_info=orin)
    assert fake.state.config.profiles == []  # fully static: no profile needed


def test_dynamic_spatial_dims_take_the_size_from_metadata(tmp_path):
    fake = FakeTRT(input_shape=(-1, -1, -1, 3))
    build_engine(tiny_export(tmp_path), tmp_path / "e.engine", EngineOptions(batch=2), trt=fake, device_info=orin)
    assert fake.state.config.profiles[0].shapes["image"] == ((2, SIZE, SIZE, 3),) * 3


def test_graph_without_image_input_is_rejected(tmp_path):
    with pytest.raises(EngineBuildError, match=r"has no input 'image' \(inputs: 'input'\); export it with"):
        build_engine(tiny_export(tmp_path), tmp_path / "e.engine", trt=FakeTRT(input_name="input"), device_info=orin)


@pytest.mark.parametrize("options, message", [
    ({"workspace_gib": 0}, "workspace must be > 0 GiB"),
    ({"optimization_level": 6}, "optimization level must be 0..5"),
    ({"dla_core": -1}, "DLA core must be a core number >= 0"),
])
def test_bad_options_are_rejected(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        build_engine(tiny_export(tmp_path), tmp_path / "e.engine", EngineOptions(**options), trt=FakeTRT(), device_info=orin)


def test_cli_builds_next_to_the_onnx_with_a_shared_timing_cache(tmp_path, monkeypatch, capsys):
    onnx_path = tiny_export(tmp_path)
    monkeypatch.setattr(trt_build, "load_tensorrt", lambda: FakeTRT())
    monkeypatch.setattr(trt_build, "cuda_device_info", orin)
    code, out, _ = build_engine_cli(onnx_path, "--batch", "1:8:16")
    assert code == 0 and out.startswith(f"wrote {tmp_path / 'model.fp16.engine'} ") and out.count("\n") == 1
    assert "; batch 1:8:16) in " in out
    assert _files(tmp_path) == ["model.fp16.engine", "model.fp16.engine.json", "model.fp16.onnx",
                                "tensorrt.timing.cache"]
    out = tmp_path / "engines" / "custom.engine"
    assert build_engine_cli(onnx_path, "--out", str(out), "--timing-cache", str(tmp_path / "my.cache"))[0] == 0
    assert json.loads((tmp_path / "engines" / "custom.engine.json").read_text())["tensorrt"]["profile"]["max"] == 1
    assert (tmp_path / "my.cache").is_file()


def test_cli_exit_codes_for_bad_input_and_failed_builds(tmp_path, monkeypatch, capsys):
    onnx_path = tiny_export(tmp_path)
    assert build_engine_cli(onnx_path, "--batch", "8:1") == (2, "", "error: batch '8:1' must be N or MIN:OPT:MAX "
                                                                    "(e.g. 1:8:16)\n")
    code, _, err = build_engine_cli(tmp_path / "missing.onnx")
    assert code == 2 and "missing.onnx not found; export one first" in err and err.count("\n") == 1
    monkeypatch.setattr(trt_build, "load_tensorrt", lambda: FakeTRT(plan=None))
    monkeypatch.setattr(trt_build, "cuda_device_info", orin)
    code, _, err = build_engine_cli(onnx_path)
    assert code == 1 and err.startswith("error: TensorRT failed to build") and "Traceback" not in err


def build_engine_cli(onnx_path, *args: str) -> tuple[int, str, str]:
    """`mmad-edge build-engine ONNX ARGS...`: (exit code, stdout, stderr)."""
    result = CliRunner().invoke(app, ["build-engine", str(onnx_path), *args])
    return result.exit_code, result.stdout, result.stderr


def _fake_cudart(count_error="cudaSuccess", count=1):
    errors = enum.Enum("cudaError_t", "cudaSuccess cudaErrorNoDevice")
    props = SimpleNamespace(name=b"Orin\0garbage", major=8, minor=7)
    return SimpleNamespace(cudaError_t=errors,
                           cudaGetDeviceCount=lambda: (errors[count_error], count),
                           cudaGetDeviceProperties=lambda device: (errors.cudaSuccess, props))


@pytest.mark.parametrize("cudart, expected", [
    (_fake_cudart(), ("Orin", "8.7")),
    (_fake_cudart("cudaErrorNoDevice", None), "no CUDA GPU is visible here (cudaGetDeviceCount: cudaErrorNoDevice)"),
    (_fake_cudart(count=0), "no CUDA GPU is visible here (cudaGetDeviceCount: 0 devices)"),
])
def test_cuda_device_info(monkeypatch, cudart, expected):
    bindings = pytest.importorskip("cuda.bindings")
    monkeypatch.setattr(bindings, "runtime", cudart, raising=False)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cudart)
    if isinstance(expected, tuple):
        assert trt_build.cuda_device_info() == expected
    else:
        with pytest.raises(TensorRTUnavailable) as caught:
            trt_build.cuda_device_info()
        assert str(caught.value) == expected


def test_cli_module_needs_neither_torch_nor_onnx():
    code = ("import sys; import mmad_edge.export.tensorrt; "
            "bad = {'torch', 'onnx'} & set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_builder_and_runtime_share_one_gpu_query(monkeypatch):
    """The engine builder's and the TensorRT backend's GPU come from one query (the same name
    parsing: NUL padding cut), and the runtime's failure names the backend's fallback."""
    from mmad_edge.runtime.backends import cuda_memory
    from mmad_edge.runtime.errors import BackendUnavailableError

    bindings = pytest.importorskip("cuda.bindings")
    for cudart, ok in ((_fake_cudart(), True), (_fake_cudart(count=0), False)):
        monkeypatch.setattr(bindings, "runtime", cudart, raising=False)
        monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cudart)
        if ok:
            assert cuda_memory.gpu_info() == cuda_memory.GpuInfo(*trt_build.cuda_device_info()) \
                == cuda_memory.GpuInfo("Orin", "8.7")
        else:
            with pytest.raises(BackendUnavailableError, match=r"needs an NVIDIA GPU with a driver: no CUDA GPU is "
                               r"visible here \(cudaGetDeviceCount: 0 devices\); use the .onnx"):
                cuda_memory.gpu_info()
