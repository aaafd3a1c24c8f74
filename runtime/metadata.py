"""Read and check the export metadata (schema_version 1) that every artifact carries.

The metadata is what ties a deployed artifact to the numbers the export verified: input size,
threshold, score normalisation and batch profile (docs/contracts.md).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from .errors import ArtifactError

METADATA_KEY = "mmad_edge.metadata"
SCHEMA_VERSION = 1
METADATA_FILE = "metadata.json"


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
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArtifactError(f"{source}: metadata {what} must be a number, got {value!r}; re-export the model")
    return float(value)


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
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ArtifactError(
            f"{source}: metadata schema_version {version!r} is not supported (this runtime reads "
            f"{SCHEMA_VERSION}); use the mmad-edge version that exported it or re-export"
        )
    spec = data.get("input") or {}
    try:
        size = (int(spec["height"]), int(spec["width"]))
    except (KeyError, TypeError, ValueError):
        raise ArtifactError(f"{source}: metadata lacks input.height/input.width; re-export the model") from None
    batch = data.get("batch") or {}
    batch_min, batch_max = int(batch.get("min", 1)), int(batch.get("max", 1))
    if not 1 <= batch_min <= batch_max:
        raise ArtifactError(f"{source}: metadata batch min {batch_min} / max {batch_max} is invalid; re-export")
    threshold, normalization = _statistics(data.get("statistics"), source)
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


def sidecar_path(engine: "str | os.PathLike[str]") -> Path:
    """The JSON file that describes an engine: ``model.fp16.engine`` -> ``model.fp16.engine.json``."""
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")
