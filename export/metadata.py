"""Export metadata (schema 1): built once per export, embedded in every ONNX, copied next to engines.

Pure Python (no torch, no onnx at import time) so the engine builder on a Jetson can read it
with nothing but TensorRT installed. The schema is fixed in docs/contracts.md.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import mmad_edge
from mmad_edge.config import ModelConfig
from mmad_edge.fileio import file_sha256
from mmad_edge.runtime.contract import (CHANNEL_ORDER, INPUT_DTYPE, INPUT_LAYOUT, INPUT_NAME, METADATA_FILE,
                                        METADATA_KEY, ONNX_SUFFIX, OUTPUT_DTYPE, OUTPUT_NAMES, PRECISIONS,
                                        SCHEMA_VERSION, input_section, output_shapes, precision_of)

METADATA_FILENAME = METADATA_FILE

_MISSING = object()
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class MetadataError(ValueError):
    """Metadata that is missing, unreadable or does not follow the schema."""


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
    """The validated metadata embedded in an ONNX file (needs the `onnx` package)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            return _parse_metadata_text(prop.value, f"{path} metadata_props[{METADATA_KEY!r}]")
    raise MetadataError(f"{path} carries no {METADATA_KEY!r} metadata; re-export it with `mmad-edge export`")


def read_metadata_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The validated metadata of a metadata.json or engine sidecar file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise MetadataError(f"cannot read metadata file {path}: {exc.strerror or exc}") from None
    return _parse_metadata_text(text, str(path))


def metadata_for_onnx(onnx_path: str | os.PathLike[str]) -> dict[str, Any]:
    """Metadata for an exported ONNX: embedded copy if `onnx` is importable, else DIR/metadata.json.

    The JSON file is shared by the three precisions of one export, so its `precision` is taken
    from the file name (`model.<precision>.onnx`) when the name says it.
    """
    onnx_path = Path(onnx_path)
    try:
        import onnx  # noqa: F401  (only probing whether the embedded copy is readable)
    except ImportError:
        pass
    else:
        try:
            return read_onnx_metadata(onnx_path)
        except MetadataError:
            if not (onnx_path.parent / METADATA_FILENAME).is_file():
                raise
    sidecar = onnx_path.parent / METADATA_FILENAME
    if not sidecar.is_file():
        raise MetadataError(
            f"no metadata for {onnx_path}: the onnx package is not installed and {sidecar} does not exist; "
            f"copy {METADATA_FILENAME} from the export folder next to the ONNX"
        )
    metadata = read_metadata_json(sidecar)
    named = precision_of(onnx_path) if onnx_path.suffix == ONNX_SUFFIX else None
    if named:
        metadata["precision"] = named
    return metadata


def validate_metadata(metadata: Mapping[str, Any]) -> None:
    """Raise MetadataError naming the first missing or malformed field."""
    if not isinstance(metadata, Mapping):
        raise MetadataError(f"metadata must be a JSON object, got {type(metadata).__name__}")
    _field(metadata, "schema_version", lambda v: v == SCHEMA_VERSION,
           f"{SCHEMA_VERSION} (this mmad-edge reads schema {SCHEMA_VERSION} only)")
    _field(metadata, "mmad_edge_version", _is_text, "a version string")
    _field(metadata, "precision", lambda v: v in PRECISIONS, f"one of {', '.join(PRECISIONS)}")
    _field(metadata, "opset", _is_positive_int, "a positive integer")
    _field(metadata, "model", _is_mapping, "an object (the model config)")
    size = _field(metadata, "model.image_size", _is_positive_int, "a positive integer")
    _field(metadata, "input", _is_mapping, "an object")
    for key, expected in (("name", INPUT_NAME), ("layout", INPUT_LAYOUT), ("dtype", INPUT_DTYPE),
                          ("channel_order", CHANNEL_ORDER)):
        _field(metadata, f"input.{key}", lambda v, e=expected: v == e, repr(expected))
    for key in ("height", "width"):
        _field(metadata, f"input.{key}", lambda v: v == size, f"{size} (model.image_size)")
    _field(metadata, "outputs", _is_mapping, "an object")
    for name in OUTPUT_NAMES:
        _field(metadata, f"outputs.{name}.shape", lambda v: isinstance(v, list) and bool(v), "a non-empty list")
        _field(metadata, f"outputs.{name}.dtype", lambda v: v == OUTPUT_DTYPE, repr(OUTPUT_DTYPE))
    _check_batch_range(metadata, "batch")
    statistics = _field(metadata, "statistics", lambda v: v is None or _is_mapping(v), "null or an object")
    if statistics is not None:
        _field(metadata, "statistics.threshold", _is_number, "a finite number")
        for key in ("low", "high"):
            _field(metadata, f"statistics.normalization.{key}", _is_number, "a finite number")
    checkpoint = _field(metadata, "source_checkpoint", lambda v: v is None or _is_mapping(v), "null or an object")
    if checkpoint is not None:
        _field(metadata, "source_checkpoint.path", _is_text, "a path string")
        _field(metadata, "source_checkpoint.sha256", lambda v: isinstance(v, str) and bool(_SHA256.match(v)),
               "64 lowercase hex digits")
    if metadata.get("encoder_weights") is not None:  # absent or null in exports made before it was recorded
        _field(metadata, "encoder_weights", _is_mapping, "null or an object")
        _field(metadata, "encoder_weights.kind", _is_text, "a string (imagenet, file, texture or random)")
    if "tensorrt" in metadata:
        _field(metadata, "tensorrt", _is_mapping, "an object")
        for key in ("version", "gpu", "compute_capability"):
            _field(metadata, f"tensorrt.{key}", _is_text, "a non-empty string")
        _check_batch_range(metadata, "tensorrt.profile")
        _field(metadata, "tensorrt.version_compatible", lambda v: isinstance(v, bool), "true or false")
        _field(metadata, "tensorrt.dla_core", lambda v: v is None or _is_int(v) and v >= 0,
               "null or a DLA core number >= 0")


def _parse_metadata_text(text: str, source: str) -> dict[str, Any]:
    try:
        metadata = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MetadataError(
            f"{source} is not valid JSON ({exc.msg} at line {exc.lineno}); re-export the model"
        ) from None
    try:
        validate_metadata(metadata)
    except MetadataError as exc:
        raise MetadataError(f"{source}: {exc}") from None
    return metadata


def _check_batch_range(metadata: Mapping[str, Any], prefix: str) -> None:
    _field(metadata, prefix, _is_mapping, "an object with min, opt, max")
    low = _field(metadata, f"{prefix}.min", _is_positive_int, "a positive integer")
    opt = _field(metadata, f"{prefix}.opt", lambda v: _is_int(v) and v >= low, f"an integer >= {prefix}.min ({low})")
    _field(metadata, f"{prefix}.max", lambda v: _is_int(v) and v >= opt, f"an integer >= {prefix}.opt ({opt})")


def _field(metadata: Mapping[str, Any], dotted: str, check: Callable[[Any], bool], expected: str) -> Any:
    value: Any = metadata
    for part in dotted.split("."):
        value = value.get(part, _MISSING) if isinstance(value, Mapping) else _MISSING
        if value is _MISSING:
            raise MetadataError(f"metadata field {dotted!r} is missing; re-export the model with mmad-edge "
                                f"{mmad_edge.__version__}")
    if not check(value):
        raise MetadataError(f"metadata field {dotted!r} must be {expected}, got {value!r}")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_positive_int(value: Any) -> bool:
    return _is_int(value) and value > 0


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _is_mapping(value: Any) -> bool:
    return isinstance(value, Mapping)
