"""The artifact contract every room shares: tensor names, layouts, precisions, file names,
the metadata key and schema version, and how TensorRT versions compare.

One definition of each, so a change to the artifact is one edit here (docs/contracts.md).
Torch-, onnx- and backend-free, like the rest of the runtime.
"""

from __future__ import annotations

from pathlib import Path

INPUT_NAME = "image"
INPUT_LAYOUT = "NHWC"
INPUT_DTYPE = "uint8"
CHANNEL_ORDER = "BGR"
OUTPUT_NAMES: tuple[str, str] = ("anomaly_map", "score")
OUTPUT_DTYPE = "float32"

# Serving (Triton: `mmad-edge serve`, `mmad-edge triton-repo`): the model name, the optional
# per-request category input and the decision outputs added beside OUTPUT_NAMES.
SERVING_MODEL = "mmad_edge"
CATEGORY_INPUT = "category"
SCORE_NORMALIZED = "score_normalized"
IS_ANOMALY = "is_anomaly"

PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
GPU_ORDER: tuple[str, ...] = ("fp16", "fp32", "int8")  # fastest first where fp16 is native
CPU_ORDER: tuple[str, ...] = ("fp32", "fp16", "int8")  # fp16 is emulated on CPUs

METADATA_KEY = "mmad_edge.metadata"
SCHEMA_VERSION = 1
METADATA_FILE = "metadata.json"
REPORT_FILE = "report.json"  # the export's verification report, beside its graphs
TUNED_FILE = "tuned.json"  # `mmad-edge tune`'s choice for this machine and its evidence, beside the graphs
ONNX_SUFFIX = ".onnx"
ENGINE_SUFFIX = ".engine"
ARTIFACT_PATTERN = "model.<precision>.onnx"


def artifact_name(precision: str, suffix: str = ONNX_SUFFIX) -> str:
    """``model.<precision><suffix>``: the file an export (or engine build) writes per precision."""
    return f"model.{precision}{suffix}"


def precision_of(path: str | Path) -> str | None:
    """The precision a ``model.<precision>.<suffix>`` file name states (None for other names)."""
    parts = Path(path).name.split(".")
    return parts[1] if len(parts) >= 3 and parts[0] == "model" and parts[1] in PRECISIONS else None


def sidecar_path(engine: str | Path) -> Path:
    """The JSON file that describes an engine: ``model.fp16.engine`` -> ``model.fp16.engine.json``."""
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def output_shapes(height: int, width: int) -> dict:
    """The metadata's ``outputs`` section for an input of ``height`` x ``width``."""
    return {OUTPUT_NAMES[0]: {"shape": ["B", height, width], "dtype": OUTPUT_DTYPE},
            OUTPUT_NAMES[1]: {"shape": ["B"], "dtype": OUTPUT_DTYPE}}


def input_section(height: int, width: int) -> dict:
    """The metadata's ``input`` section for an input of ``height`` x ``width``."""
    return {"name": INPUT_NAME, "layout": INPUT_LAYOUT, "dtype": INPUT_DTYPE, "channel_order": CHANNEL_ORDER,
            "height": height, "width": width}


def tensorrt_version(text: str, parts: int = 3) -> tuple[int, ...]:
    """``"10.3.0.26"`` -> ``(10, 3, 0)`` (``parts`` numbers; missing or non-numeric pieces count 0).

    Engines are tied to a TensorRT release (major.minor.patch); builders check major.minor.
    """
    numbers = []
    pieces = str(text).strip().split(".")
    for index in range(parts):
        digits = "".join(ch for ch in pieces[index] if ch.isdigit()) if index < len(pieces) else ""
        numbers.append(int(digits) if digits else 0)
    return tuple(numbers)
