"""A fake `tensorrt` module and a tiny ONNX export to build from, for engine builds without a GPU."""

from __future__ import annotations

import enum
from pathlib import Path
from types import SimpleNamespace

import onnx
from onnx import TensorProto, helper

from mmad_edge.config import ModelConfig
from mmad_edge.export.metadata import build_metadata, write_onnx_metadata

SIZE = 256


class FakeTRT(SimpleNamespace):
    """The slice of the TensorRT Python API build_engine uses; records what it was asked to do."""

    def __init__(self, version="10.3.0", input_shape=(-1, SIZE, SIZE, 3), input_name="image", parse_ok=True,
                 errors=(), plan=b"PLAN-BYTES", dla_cores=0, strongly_typed=True):
        fake = self
        state = SimpleNamespace(network_flags=None, logger_severity=None, config=None, cache_blobs=[])
        flag_members = {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1} if strongly_typed else {"EXPLICIT_BATCH": 0}

        class Logger:
            VERBOSE, WARNING = 4, 2

            def __init__(self, severity):
                state.logger_severity = severity

        class Cache:
            def __init__(self, blob):
                self.blob = bytes(blob)

            def serialize(self):
                return self.blob + b"+timings"

        class Config:
            def __init__(self):
                self.flags, self.pools, self.profiles = set(), {}, []
                self.builder_optimization_level = None
                self.default_device_type = "GPU"
                self.DLA_core = -1
                self.cache = None
                state.config = self

            def set_memory_pool_limit(self, pool, size):
                self.pools[pool] = size

            def set_flag(self, flag):
                self.flags.add(flag)

            def add_optimization_profile(self, profile):
                self.profiles.append(profile)

            def create_timing_cache(self, blob):
                state.cache_blobs.append(bytes(blob))
                return Cache(blob)

            def set_timing_cache(self, cache, ignore_mismatch):
                if cache.blob.startswith(b"stale"):
                    return False
                self.cache = cache
                return True

        class Profile:
            def __init__(self):
                self.shapes = {}

            def set_shape(self, name, low, opt, high):
                self.shapes[name] = (low, opt, high)

        class Builder:
            num_DLA_cores = dla_cores

            def __init__(self, logger):
                pass

            def create_network(self, flags):
                state.network_flags = flags
                tensor = SimpleNamespace(name=input_name, shape=input_shape)
                return SimpleNamespace(num_inputs=1, get_input=lambda i: tensor)

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                return plan

        class ParserError:
            def __init__(self, name, op, desc):
                self._name, self._op, self._desc = name, op, desc

            def node_name(self):
                return self._name

            def node_operator(self):
                return self._op

            def node(self):
                return 3

            def desc(self):
                return self._desc

        class OnnxParser:
            def __init__(self, network, logger):
                self.num_errors = 0 if parse_ok else len(errors)

            def parse_from_file(self, path):
                fake.parsed_path = path
                return parse_ok

            def get_error(self, index):
                return ParserError(*errors[index])

        super().__init__(
            __version__=version, Logger=Logger, Builder=Builder, OnnxParser=OnnxParser, state=state,
            NetworkDefinitionCreationFlag=enum.IntEnum("NetworkDefinitionCreationFlag", flag_members),
            BuilderFlag=enum.Enum("BuilderFlag", "FP16 INT8 GPU_FALLBACK VERSION_COMPATIBLE"),
            MemoryPoolType=enum.Enum("MemoryPoolType", "WORKSPACE"),
            DeviceType=enum.Enum("DeviceType", "GPU DLA"),
        )


def orin() -> tuple[str, str]:
    """A Jetson Orin's answer to the CUDA device query: name and compute capability."""
    return "Orin", "8.7"


def tiny_export(folder: Path, precision: str = "fp16") -> Path:
    """An export folder with model.<precision>.onnx carrying its metadata."""
    image = helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", SIZE, SIZE, 3])
    out = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", SIZE, SIZE, 3])
    graph = helper.make_graph([helper.make_node("Cast", ["image"], ["x"], to=TensorProto.FLOAT)], "g", [image], [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    metadata = build_metadata(ModelConfig(image_size=SIZE).to_dict(), precision, 17,
                              {"min": 1, "opt": 1, "max": 16}, None, None)
    write_onnx_metadata(model, metadata)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"model.{precision}.onnx"
    onnx.save(model, str(path))
    return path
