"""The message a sink sends for one frame: the frame's JSON-lines record (``loop.outputs.frame_record``,
so its score is the one ``run --jsonl`` writes) plus what a line needs to act on it.

Added to the record: ``message_id`` (unique per run and frame; receivers dedupe on it, since
MQTT delivers at least once), ``part_id`` (the source's part ID, else the frame index, else the
image file), ``timestamp`` (Unix seconds the frame was acquired, else when it was scored),
``verdict`` (``reject`` / ``pass`` / ``unknown`` without a threshold) and ``model`` (which model
judged it: variant, precision, artifact file, checkpoint hash).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..artifact.contract import IS_ANOMALY

VERDICTS = {True: "reject", False: "pass", None: "unknown"}
# The number a Modbus register or an integer OPC UA variable gets for each verdict.
VERDICT_CODES = {"pass": 0, "reject": 1, "unknown": 2}
HASH_CHARS = 16


def model_identity(metadata: Mapping[str, Any], artifact: Path | None) -> dict:
    """Which model judges: from the export metadata (``ArtifactInfo.raw``) and the artifact's file
    name; ``checkpoint_sha256`` (the exported checkpoint's hash, a prefix) tells two trainings apart."""
    model = metadata.get("model") or {}
    checkpoint = metadata.get("source_checkpoint") or {}
    return {"variant": model.get("variant"), "precision": metadata.get("precision"),
            "artifact": None if artifact is None else Path(artifact).name,
            "checkpoint_sha256": (checkpoint.get("sha256") or "")[:HASH_CHARS] or None,
            "mmad_edge_version": metadata.get("mmad_edge_version")}


def verdict_message(record: Mapping[str, Any], model: Mapping[str, Any], message_id: str,
                    now: float | None = None) -> dict:
    """The message for one frame's ``record``."""
    part_id = record.get("part_id", record.get("frame_index", record.get("source")))
    timestamp = record.get("captured_at")
    return {"message_id": message_id, "part_id": part_id,
            "timestamp": timestamp if timestamp is not None else (time.time() if now is None else now),
            "verdict": VERDICTS[record.get(IS_ANOMALY)], **record, "model": dict(model)}
