"""The deployed files a bench times, found and described through the runtime (no torch, no onnx).

Metadata comes from where the runtime reads it (``load_contract``): an ONNX's embedded copy,
reconciled with the ``metadata.json`` beside it, or an engine's sidecar ``model.<p>.engine.json``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmad_edge.runtime.artifact.contract import ENGINE_SUFFIX, ONNX_SUFFIX, PRECISIONS, artifact_name
from mmad_edge.runtime.artifact.metadata import load_contract
from mmad_edge.runtime.artifact.selection import export_report

FLOAT_NCHW_NAME = "model.fp32.float_nchw.onnx"  # the paper protocol's graph: normalised float in
FP32_GRAPH = artifact_name("fp32")  # what the floor is counted from


class BenchError(ValueError):
    """A benchmark request that cannot run (the message names the fix)."""


@dataclass(frozen=True)
class Artifact:
    """One deployed file to time and what its metadata says about it."""

    path: Path
    precision: str
    model: dict[str, Any]
    batch_range: tuple[int, int]
    paper_graph: Path  # what the paper protocol runs (the float NCHW twin of the FP32 default)
    int8_target: str | None = None  # INT8 graphs: "tensorrt" (symmetric Q/DQ) or "cpu", from the export's report

    @property
    def facts(self) -> dict[str, Any]:
        """Row fields every backend's row of this artifact carries (the INT8 form, when known)."""
        return {"int8_target": self.int8_target} if self.int8_target else {}


def read_artifact(path: Path) -> Artifact:
    """An ``.onnx`` or ``.engine`` with its metadata (embedded + metadata.json, or engine sidecar)."""
    if path.suffix not in (ONNX_SUFFIX, ENGINE_SUFFIX):
        raise BenchError(f"{path}: not a .onnx, a .engine or an export folder; pass what mmad-edge export wrote")
    info = load_contract(path)
    twin = path.with_name(FLOAT_NCHW_NAME)
    paper = twin if path.name == FP32_GRAPH and twin.is_file() else path
    return Artifact(path, info.precision, dict(info.raw.get("model") or {}), (info.batch_min, info.batch_max), paper,
                    _int8_target(path) if info.precision == "int8" else None)


def _int8_target(path: Path) -> str | None:
    """The INT8 form the export's ``report.json`` beside ``path`` records, or None without one."""
    section = export_report(path).get("int8")
    return section.get("target") if isinstance(section, dict) else None


def find_artifacts(paths: Sequence[str | os.PathLike[str]]) -> list[Artifact]:
    """Every model.<precision>.onnx / .engine of each folder, plus the files given; one model only."""
    files: list[Path] = []
    for item in map(Path, paths):
        if item.is_dir():
            found = [item / artifact_name(p, ext) for ext in (ONNX_SUFFIX, ENGINE_SUFFIX) for p in PRECISIONS
                     if (item / artifact_name(p, ext)).is_file()]
            if not found:
                raise BenchError(f"{item}: no model.<fp32|fp16|int8>.onnx or .engine here; "
                                 "point at an mmad-edge export folder")
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise BenchError(f"{item}: no such file or folder; pass an export folder, a .onnx or a .engine")
    artifacts = [read_artifact(path) for path in dict.fromkeys(files)]
    models = sorted({(a.model.get("variant"), a.model.get("image_size")) for a in artifacts}, key=str)
    if len(models) > 1:
        raise BenchError(f"the artifacts hold different models (variant, size) {models}; benchmark one model at a time")
    return artifacts


def fp32_graph(artifacts: Sequence[Artifact]) -> Path | None:
    """The FP32 uint8 ONNX graph among (or beside) the artifacts: what the floor is counted from."""
    for artifact in artifacts:
        candidate = artifact.path.with_name(FP32_GRAPH)
        if candidate.is_file():
            return candidate
    return None
