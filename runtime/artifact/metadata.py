"""Read and check the export metadata (schema_version 1) that every artifact carries.

The metadata is what ties a deployed artifact to the numbers the export verified: input size,
threshold, score normalisation and batch profile (docs/contracts.md).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from .contract import (CHANNEL_ORDER, ENGINE_SUFFIX, INPUT_DTYPE, INPUT_LAYOUT, INPUT_NAME, METADATA_FILE, METADATA_KEY,
                       OUTPUT_DTYPE, OUTPUT_NAMES, PRECISIONS, SCHEMA_VERSION, sidecar_path)
from ..errors import ArtifactError
from ..log import notice
from .onnx_props import ProtobufError, read_metadata_props

# Fields that describe the graph itself: metadata.json may not contradict the graph on these.
STRUCTURAL_FIELDS = ("input", "outputs", "batch", "model")
# metadata.json is shared by the graphs of an export folder; statistics calibrated for one graph on
# the line (``calibrate-threshold``) sit under this key by its file name and win for that graph only.
ARTIFACT_STATISTICS = "statistics_by_artifact"
_ABSENT = "(absent)"
_MISSING = object()
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# schema_version n -> a function turning a version-n dict into version n + 1 (none needed yet).
MIGRATIONS: Dict[int, Callable[[dict], dict]] = {}


class MetadataError(ArtifactError):
    """Metadata that is missing, unreadable or does not follow the schema."""


def migrate(data: dict, source: str) -> dict:
    """``data`` brought to ``SCHEMA_VERSION`` through ``MIGRATIONS``; an unknown version fails."""
    version = data.get("schema_version")
    while isinstance(version, int) and not isinstance(version, bool) and version in MIGRATIONS:
        data = MIGRATIONS[version](dict(data))
        version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ArtifactError(
            f"{source}: metadata schema_version {version!r} is not supported (this runtime reads "
            f"{SCHEMA_VERSION}); use the mmad-edge version that exported it or re-export"
        )
    return data


@dataclass(frozen=True)
class ArtifactInfo:
    """The parts of the metadata the runtime acts on, plus the full dict as ``raw``."""

    raw: dict
    image_size: Tuple[int, int]
    threshold: Optional[float]
    normalization: Optional[Tuple[float, float]]
    batch_min: int
    batch_max: int
    precision: str
    categories: Dict[str, "Statistics"] = field(default_factory=dict)  # per-category (threshold, normalization)

    @property
    def tensorrt(self) -> dict:
        """The engine sidecar's ``tensorrt`` section ({} for ONNX metadata)."""
        return self.raw.get("tensorrt") or {}


def _number(value: Any, what: str, source: str) -> float:
    """A finite number: a NaN threshold would call every frame normal, an infinite one likewise."""
    if not _is_number(value):
        raise ArtifactError(f"{source}: metadata {what} must be a finite number, got {value!r}; "
                            "fix it in metadata.json or re-export the model")
    return float(value)


def _integer(value: Any, what: str, source: str) -> int:
    if not _is_int(value):
        raise ArtifactError(f"{source}: metadata {what} must be an integer, got {value!r}; "
                            "fix it in metadata.json or re-export the model")
    return value


Statistics = Tuple[Optional[float], Optional[Tuple[float, float]]]


def _statistics(stats: Any, source: str) -> Statistics:
    if stats is None:
        return None, None
    if not isinstance(stats, dict):
        raise ArtifactError(f"{source}: metadata statistics must be an object or null; re-export the model")
    threshold = stats.get("threshold")
    threshold = None if threshold is None else _number(threshold, "statistics.threshold", source)
    norm = stats.get("normalization")
    if norm is None:
        return threshold, None
    if not isinstance(norm, dict):
        raise ArtifactError(f"{source}: metadata statistics.normalization must be an object "
                            f'{{"low": ..., "high": ...}}, got {norm!r}; fix it in metadata.json or re-export the model')
    low = _number(norm.get("low"), "statistics.normalization.low", source)
    high = _number(norm.get("high"), "statistics.normalization.high", source)
    return threshold, (low, high)


def _category_statistics(stats: Any, source: str) -> Dict[str, Statistics]:
    """``statistics.categories`` (absent in exports of older checkpoints: no entries)."""
    per_category = stats.get("categories") if isinstance(stats, dict) else None
    if per_category is None:
        return {}
    if not isinstance(per_category, dict) or not all(isinstance(v, dict) for v in per_category.values()):
        raise ArtifactError(f"{source}: metadata statistics.categories must map names to objects; re-export the model")
    return {str(name): _statistics(value, f"{source} (category {name})") for name, value in per_category.items()}


def parse_metadata(data: Any, source: str) -> ArtifactInfo:
    """Check a metadata dict (or its JSON text) and pull out what the runtime needs."""
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise ArtifactError(f"{source}: metadata is not valid JSON ({exc}); re-export the model") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{source}: metadata must be a JSON object; re-export the model")
    data = migrate(data, source)
    spec = data.get("input") or {}
    try:
        size = (int(spec["height"]), int(spec["width"]))
    except (KeyError, TypeError, ValueError):
        raise ArtifactError(f"{source}: metadata lacks input.height/input.width; re-export the model") from None
    batch = data.get("batch") or {}
    if not isinstance(batch, dict):
        raise ArtifactError(f"{source}: metadata batch must be an object with min/opt/max, got {batch!r}; re-export the model")
    batch_min, batch_max = (_integer(batch.get(key, 1), f"batch.{key}", source) for key in ("min", "max"))
    if not 1 <= batch_min <= batch_max:
        raise ArtifactError(f"{source}: metadata batch min {batch_min} / max {batch_max} is invalid; re-export")
    threshold, normalization = _statistics(data.get("statistics"), source)
    calibrated = data.get(ARTIFACT_STATISTICS) or {}
    if not isinstance(calibrated, dict):
        raise ArtifactError(f"{source}: metadata {ARTIFACT_STATISTICS} must map graph file names to statistics; "
                            "fix it in metadata.json or re-export the model")
    for name, section in calibrated.items():
        _statistics(section, f"{source} ({ARTIFACT_STATISTICS} {name})")
    return ArtifactInfo(
        categories=_category_statistics(data.get("statistics"), source),
        raw=data,
        image_size=size,
        threshold=threshold,
        normalization=normalization,
        batch_min=batch_min,
        batch_max=batch_max,
        precision=str(data.get("precision", "unknown")),
    )


def read_metadata_file(path: "str | os.PathLike[str]") -> ArtifactInfo:
    """Read ``metadata.json`` or an engine sidecar ``<engine>.json``."""
    name = os.fspath(path)
    try:
        text = Path(name).read_text(encoding="utf-8")
    except OSError as exc:
        raise ArtifactError(f"{name}: cannot read metadata ({exc.strerror}); re-export or copy it next to the model") from None
    return parse_metadata(text, name)


def _differences(ours: Any, theirs: Any, path: str) -> List[Tuple[str, Any, Any]]:
    """The leaf paths (``a.b``) at which two JSON values differ, with both values."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        found: List[Tuple[str, Any, Any]] = []
        for key in [*ours, *(k for k in theirs if k not in ours)]:
            found += _differences(ours.get(key, _ABSENT), theirs.get(key, _ABSENT), f"{path}.{key}" if path else str(key))
        return found
    return [] if ours == theirs else [(path, ours, theirs)]


def _show(value: Any) -> str:
    return value if value is _ABSENT else json.dumps(value)


def statistics_beside(beside: Mapping[str, Any], artifact: str) -> Any:
    """The statistics a ``metadata.json`` gives the graph named ``artifact``: its own calibrated entry
    under ``ARTIFACT_STATISTICS`` when there is one, else the folder's ``statistics``."""
    calibrated = beside.get(ARTIFACT_STATISTICS) or {}
    return calibrated[artifact] if artifact in calibrated else beside.get("statistics")


def reconcile(graph: ArtifactInfo, beside: ArtifactInfo, source: str, artifact: str = "") -> ArtifactInfo:
    """The graph's metadata, with the statistics of the ``metadata.json`` beside it (team decision).

    Users edit metadata.json (the threshold, above all), so its statistics win and the change is
    reported in one line; structural fields (input, outputs, batch profile, model settings) describe
    the graph itself, so a disagreement there means the file belongs to another export and fails.
    ``artifact``: the graph's file name, whose calibrated entry (``statistics_beside``) wins.
    """
    for name in STRUCTURAL_FIELDS:
        for path, ours, theirs in _differences(graph.raw.get(name), beside.raw.get(name), name)[:1]:
            raise ArtifactError(
                f"{source}: {METADATA_FILE} beside it disagrees with the graph's metadata on {path} (graph "
                f"{_show(ours)}, {METADATA_FILE} {_show(theirs)}); restore {METADATA_FILE} from the export or re-export"
            )
    statistics = statistics_beside(beside.raw, artifact)
    changes = _differences(graph.raw.get("statistics"), statistics, "")
    if not changes:
        return graph
    shown = ", ".join(f"{path or 'statistics'} {_show(ours)} -> {_show(theirs)}" for path, ours, theirs in changes[:3])
    more = f" and {len(changes) - 3} more" if len(changes) > 3 else ""
    notice(f"{METADATA_FILE} overrides the graph's statistics: {shown}{more}")
    return parse_metadata({**graph.raw, "statistics": statistics}, source)


def _embedded_text(path: Path) -> Optional[str]:
    """The graph's embedded metadata JSON (None when it carries none)."""
    try:
        return read_metadata_props(path).get(METADATA_KEY)
    except ProtobufError:  # worded as ONNX Runtime words it, so both readers fail alike
        raise ArtifactError(f"{path}: not a loadable ONNX model (Protobuf parsing failed.); pass a model.<precision>.onnx "
                            "written by mmad-edge export") from None
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read the model ({exc.strerror}); check the path and permissions") from None


def load_contract(path: "str | os.PathLike[str]") -> ArtifactInfo:
    """The parsed metadata of an artifact, read once for every backend.

    Engines: their sidecar ``<engine>.json`` only. ONNX: the copy embedded in the graph,
    reconciled with a ``metadata.json`` beside it (``reconcile``); the JSON file alone when the
    graph carries none.
    """
    path = Path(path)
    if path.suffix == ENGINE_SUFFIX:
        return read_metadata_file(sidecar_path(path))
    text = _embedded_text(path)
    sibling = path.parent / METADATA_FILE
    beside = read_metadata_file(sibling) if sibling.is_file() else None
    if text is None:
        if beside is None:
            raise ArtifactError(
                f"{path}: no '{METADATA_KEY}' metadata and no {METADATA_FILE} beside it; export with mmad-edge export"
            )
        return beside
    embedded = parse_metadata(text, f"{path} ({METADATA_KEY})")
    return embedded if beside is None else reconcile(embedded, beside, str(path), path.name)


def describe_encoder_weights(record: Optional[Mapping[str, Any]]) -> str:
    """One phrase for summaries: which encoder weights a checkpoint or an export holds."""
    if not record:
        return "not recorded (saved before mmad-edge recorded encoder weights)"
    digest = f"sha256 {record['sha256'][:12]}" if record.get("sha256") else ""
    if record.get("kind") == "imagenet":
        return f"ImageNet {record.get('name')} ({record.get('file')}, {digest})"
    if record.get("kind") == "file":
        return f"{record.get('file')} ({digest})"
    if record.get("kind") == "texture":
        return "texture statistics (the offline fallback, no ImageNet weights)"
    if record.get("kind") == "random":
        return "random (no ImageNet weights)"
    return f"unknown kind {record.get('kind')!r}"


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
    _check_statistics(_field(metadata, "statistics", lambda v: True, ""), "statistics")
    if metadata.get(ARTIFACT_STATISTICS) is not None:
        calibrated = _field(metadata, ARTIFACT_STATISTICS, _is_mapping, "null or an object of file name -> statistics")
        for name, section in calibrated.items():
            _check_statistics(section, f"{ARTIFACT_STATISTICS}[{name!r}]")
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


def load_metadata_text(text: str, source: str) -> Dict[str, Any]:
    """The metadata in JSON ``text``, migrated to this schema and fully validated (MetadataError)."""
    try:
        metadata = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MetadataError(
            f"{source} is not valid JSON ({exc.msg} at line {exc.lineno}); re-export the model"
        ) from None
    try:
        metadata = migrate(metadata, source)
        validate_metadata(metadata)
    except MetadataError as exc:
        raise MetadataError(f"{source}: {exc}") from None
    return metadata


def _check_statistics(section: Any, label: str) -> None:
    """A statistics section: null, or an object with a finite threshold and normalisation."""
    if section is None:
        return
    if not _is_mapping(section):
        raise MetadataError(f"metadata field {label!r} must be null or an object, got {section!r}")
    for dotted in ("threshold", "normalization.low", "normalization.high"):
        _field(section, dotted, _is_number, "a finite number", f"{label}.{dotted}")


def _check_batch_range(metadata: Mapping[str, Any], prefix: str) -> None:
    _field(metadata, prefix, _is_mapping, "an object with min, opt, max")
    low = _field(metadata, f"{prefix}.min", _is_positive_int, "a positive integer")
    opt = _field(metadata, f"{prefix}.opt", lambda v: _is_int(v) and v >= low, f"an integer >= {prefix}.min ({low})")
    _field(metadata, f"{prefix}.max", lambda v: _is_int(v) and v >= opt, f"an integer >= {prefix}.opt ({opt})")


def _field(metadata: Mapping[str, Any], dotted: str, check: Callable[[Any], bool], expected: str,
           label: Optional[str] = None) -> Any:
    """The value at ``dotted``, checked; errors name ``label`` (default ``dotted``)."""
    value: Any = metadata
    label = label or dotted
    for part in dotted.split("."):
        value = value.get(part, _MISSING) if isinstance(value, Mapping) else _MISSING
        if value is _MISSING:
            raise MetadataError(f"metadata field {label!r} is missing; re-export the model with mmad-edge export")
    if not check(value):
        raise MetadataError(f"metadata field {label!r} must be {expected}, got {value!r}")
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
