"""Read and check the export metadata (schema_version 1) that every artifact carries.

The metadata is what ties a deployed artifact to the numbers the export verified: input size,
threshold, score normalisation and batch profile (docs/contracts.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ArtifactError
from ..log import notice
from .contract import ENGINE_SUFFIX, METADATA_FILE, METADATA_KEY, SCHEMA_VERSION, sidecar_path
from .onnx_props import ProtobufError, read_metadata_props
from .schema import ARTIFACT_STATISTICS, DEFAULT_BATCH, MetadataError, check

__all__ = ["ARTIFACT_STATISTICS", "ArtifactInfo", "MetadataError", "Statistics", "load_contract", "load_metadata_text",
           "parse_metadata", "read_metadata_file", "reconcile", "statistics_beside", "validate_metadata"]
# Fields that describe the graph itself: metadata.json may not contradict the graph on these.
STRUCTURAL_FIELDS = ("input", "outputs", "batch", "model")
# metadata.json is shared by the graphs of an export folder; statistics calibrated for one graph on
# the line (``calibrate-threshold``) sit under ARTIFACT_STATISTICS by its file name and win for that graph only.
_ABSENT = "(absent)"
# schema_version n -> a function turning a version-n dict into version n + 1 (none needed yet).
MIGRATIONS: dict[int, Callable[[dict], dict]] = {}


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
    image_size: tuple[int, int]
    threshold: float | None
    normalization: tuple[float, float] | None
    batch_min: int
    batch_max: int
    precision: str
    categories: dict[str, Statistics] = field(default_factory=dict)  # per-category (threshold, normalization)

    @property
    def tensorrt(self) -> dict:
        """The engine sidecar's ``tensorrt`` section ({} for ONNX metadata)."""
        return self.raw.get("tensorrt") or {}


Statistics = tuple[float | None, tuple[float, float] | None]


def _statistics(section: Mapping[str, Any] | None) -> Statistics:
    """(threshold, (low, high)) of a checked statistics section (None where absent or null)."""
    section = section or {}
    threshold, norm = section.get("threshold"), section.get("normalization")
    return (None if threshold is None else float(threshold),
            None if norm is None else (float(norm["low"]), float(norm["high"])))


def parse_metadata(data: Any, source: str) -> ArtifactInfo:
    """Check a metadata dict (or its JSON text) against what the runtime reads (``schema.check``)
    and pull that out."""
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise ArtifactError(f"{source}: metadata is not valid JSON ({exc}); re-export the model") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{source}: metadata must be a JSON object; re-export the model")
    data = migrate(data, source)
    check(data, strict=False, source=source)
    batch, statistics = data.get("batch") or {}, data.get("statistics") or {}
    return ArtifactInfo(
        categories={str(name): _statistics(value) for name, value in (statistics.get("categories") or {}).items()},
        raw=data,
        image_size=(data["input"]["height"], data["input"]["width"]),
        threshold=_statistics(statistics)[0],
        normalization=_statistics(statistics)[1],
        batch_min=batch.get("min", DEFAULT_BATCH),
        batch_max=batch.get("max", DEFAULT_BATCH),
        precision=str(data.get("precision", "unknown")),
    )


def read_metadata_file(path: str | os.PathLike[str]) -> ArtifactInfo:
    """Read ``metadata.json`` or an engine sidecar ``<engine>.json``."""
    name = os.fspath(path)
    try:
        text = Path(name).read_text(encoding="utf-8")
    except OSError as exc:
        raise ArtifactError(f"{name}: cannot read metadata ({exc.strerror}); re-export or copy it next to the model") from None
    return parse_metadata(text, name)


def _differences(ours: Any, theirs: Any, path: str) -> list[tuple[str, Any, Any]]:
    """The leaf paths (``a.b``) at which two JSON values differ, with both values."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        found: list[tuple[str, Any, Any]] = []
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


def _embedded_text(path: Path) -> str | None:
    """The graph's embedded metadata JSON (None when it carries none)."""
    try:
        return read_metadata_props(path).get(METADATA_KEY)
    except ProtobufError:  # worded as ONNX Runtime words it, so both readers fail alike
        raise ArtifactError(f"{path}: not a loadable ONNX model (Protobuf parsing failed.); pass a model.<precision>.onnx "
                            "written by mmad-edge export") from None
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read the model ({exc.strerror}); check the path and permissions") from None


def load_contract(path: str | os.PathLike[str]) -> ArtifactInfo:
    """The parsed metadata of an artifact, read once for every backend.

    Engines: their sidecar ``<engine>.json`` only. ONNX: the copy embedded in the graph,
    reconciled with a ``metadata.json`` beside it (``reconcile``); the JSON file alone (with the
    graph's calibrated statistics, ``statistics_beside``) when the graph carries none.
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
        statistics = statistics_beside(beside.raw, path.name)  # this graph's calibration, when it has one
        return beside if statistics is beside.raw.get("statistics") else parse_metadata(
            {**beside.raw, "statistics": statistics}, str(sibling))
    embedded = parse_metadata(text, f"{path} ({METADATA_KEY})")
    return embedded if beside is None else reconcile(embedded, beside, str(path), path.name)


def describe_encoder_weights(record: Mapping[str, Any] | None) -> str:
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
    """Raise MetadataError naming the first missing or malformed field (the whole schema)."""
    if not isinstance(metadata, Mapping):
        raise MetadataError(f"metadata must be a JSON object, got {type(metadata).__name__}")
    check(metadata, strict=True)


def load_metadata_text(text: str, source: str) -> dict[str, Any]:
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
