"""Export metadata (schema 1): built once per export, embedded in every ONNX, copied next to engines.

Pure Python (no torch, no onnx at import time) so the engine builder on a Jetson can read it
with nothing but TensorRT installed. The schema is fixed in docs/contracts.md.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mmad_edge
from mmad_edge.config import ModelConfig
from mmad_edge.fileio import file_sha256
from mmad_edge.runtime.artifact.contract import (
    INPUT_NAME,
    METADATA_FILE,
    METADATA_KEY,
    ONNX_SUFFIX,
    PRECISIONS,
    SCHEMA_VERSION,
    input_section,
    output_shapes,
    precision_of,
)
from mmad_edge.runtime.artifact.metadata import MetadataError, load_metadata_text, validate_metadata
from mmad_edge.runtime.artifact.onnx_props import ProtobufError, read_metadata_props

METADATA_FILENAME = METADATA_FILE
__all__ = ["INPUT_NAME", "METADATA_KEY", "PRECISIONS", "SCHEMA_VERSION", "MetadataError", "validate_metadata"]


def build_metadata(
    config: Mapping[str, Any],
    precision: str,
    opset: int,
    batch: Mapping[str, int],
    statistics: Mapping[str, Any] | None,
    source_checkpoint: str | os.PathLike[str] | None,
    encoder_weights: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The metadata dict of one exported ONNX; raises MetadataError on bad values.
    ``encoder_weights``: the checkpoint's record of the frozen encoder's weights (None: unrecorded)."""
    try:
        model = ModelConfig.from_dict(dict(config)).to_dict()
    except (TypeError, ValueError) as exc:
        raise MetadataError(f"metadata field 'model' is not a valid model config: {exc}") from None
    size = model["image_size"]
    checkpoint = None
    if source_checkpoint is not None:
        path = Path(source_checkpoint)
        if not path.is_file():
            raise MetadataError(f"source checkpoint {path} not found; pass the checkpoint the model was loaded from")
        checkpoint = {"path": str(path), "sha256": file_sha256(path)}
    metadata = {
        "schema_version": SCHEMA_VERSION,
        "mmad_edge_version": mmad_edge.__version__,
        "precision": precision,
        "opset": opset,
        "model": model,
        "input": input_section(size, size),
        "outputs": output_shapes(size, size),
        "batch": {key: batch.get(key) for key in ("min", "opt", "max")},
        "statistics": copy.deepcopy(dict(statistics)) if statistics is not None else None,
        "source_checkpoint": checkpoint,
        "encoder_weights": copy.deepcopy(dict(encoder_weights)) if encoder_weights is not None else None,
    }
    validate_metadata(metadata)
    return metadata


def engine_metadata(
    base: Mapping[str, Any],
    trt_version: str,
    gpu_name: str,
    compute_capability: str,
    profile: Mapping[str, int] | tuple[int, int, int],
    version_compatible: bool,
    dla_core: int | None,
) -> dict[str, Any]:
    """A copy of the ONNX metadata with the `tensorrt` section an engine sidecar carries."""
    if not isinstance(profile, Mapping):
        profile = dict(zip(("min", "opt", "max"), profile))
    metadata = copy.deepcopy(dict(base))
    metadata["tensorrt"] = {
        "version": trt_version,
        "gpu": gpu_name,
        "compute_capability": compute_capability,
        "profile": {key: profile.get(key) for key in ("min", "opt", "max")},
        "version_compatible": version_compatible,
        "dla_core": dla_core,
    }
    validate_metadata(metadata)
    return metadata


def write_onnx_metadata(model_proto: Any, metadata: Mapping[str, Any]) -> None:
    """Store the metadata as JSON under `metadata_props[METADATA_KEY]`, replacing an older copy."""
    validate_metadata(metadata)
    text = json.dumps(metadata, sort_keys=False)
    props = model_proto.metadata_props
    for index in reversed(range(len(props))):
        if props[index].key == METADATA_KEY:
            del props[index]
    entry = props.add()
    entry.key = METADATA_KEY
    entry.value = text


def read_onnx_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The validated metadata embedded in an ONNX file (read without the `onnx` package)."""
    try:
        text = read_metadata_props(path).get(METADATA_KEY)
    except ProtobufError:
        raise MetadataError(f"{path}: not an ONNX model (it does not parse); pass a model.<precision>.onnx "
                            "written by mmad-edge export") from None
    except OSError as exc:
        raise MetadataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if text is None:
        raise MetadataError(f"{path} carries no {METADATA_KEY!r} metadata; re-export it with `mmad-edge export`")
    return load_metadata_text(text, f"{path} metadata_props[{METADATA_KEY!r}]")


def read_metadata_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The validated metadata of a metadata.json or engine sidecar file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise MetadataError(f"cannot read metadata file {path}: {exc.strerror or exc}") from None
    return load_metadata_text(text, str(path))


def metadata_for_onnx(onnx_path: str | os.PathLike[str]) -> dict[str, Any]:
    """Metadata for an exported ONNX: its embedded copy, else DIR/metadata.json.

    The JSON file is shared by the three precisions of one export, so its `precision` is taken
    from the file name (`model.<precision>.onnx`) when the name says it.
    """
    onnx_path = Path(onnx_path)
    sidecar = onnx_path.parent / METADATA_FILENAME
    try:
        return read_onnx_metadata(onnx_path)
    except MetadataError:
        if not sidecar.is_file():
            raise
    metadata = read_metadata_json(sidecar)
    named = precision_of(onnx_path) if onnx_path.suffix == ONNX_SUFFIX else None
    if named:
        metadata["precision"] = named
    return metadata
