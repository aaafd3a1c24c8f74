"""Pick the artifact to run from an export folder.

Every registered backend offers the files it runs (``model.<p><suffix>`` for each of its
suffixes), in its precision order: fp16, fp32, int8 where it runs on a GPU here, else fp32, fp16,
int8 (fp16 is emulated on CPUs, so fp32 is both faster there and the reference). INT8 comes last
everywhere because it trades accuracy for speed: ask for it with ``precision="int8"``.

A requested backend takes its first file that can run here (a file it cannot run, e.g. an
engine built for another GPU, is an error naming why). ``auto`` takes the best-ranked backend's
first runnable file (the registry's ``rank``: a usable engine before any ONNX); files skipped
on the way are reported on stderr with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..backends import AUTO, REGISTRY, BackendEntry, backend_class, check_backend
from ..backends.base import BackendOptions
from ..errors import ArtifactError
from ..log import notice
from .contract import CPU_ORDER, GPU_ORDER, PRECISIONS, REPORT_FILE, artifact_name


def _order(precision: str | None, default: Sequence[str]) -> Sequence[str]:
    if precision is None:
        return default
    if precision not in PRECISIONS:
        raise ArtifactError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return (precision,)


def _files(folder: Path, entry: BackendEntry, precision: str | None, on_gpu: bool) -> list[Path]:
    """The files of ``folder`` that ``entry`` runs, in its precision order."""
    order = _order(precision, GPU_ORDER if on_gpu else CPU_ORDER)
    return [folder / artifact_name(name, suffix) for suffix in entry.suffixes for name in order
            if (folder / artifact_name(name, suffix)).is_file()]


def _first_runnable(files: list[Path], entry: BackendEntry, skipped: list[str], requested: bool) -> Path | None:
    """The first file ``entry`` can run here; the others go to ``skipped`` with the reason (for a
    ``requested`` backend the first that cannot run is the error)."""
    for path in files:
        problem = entry.problem(path)
        if problem is None:
            return path
        if requested:
            raise ArtifactError(problem)
        skipped.append(f"{path.name}: {problem}")
    return None


def select_artifact(
    folder: Path, backend: str, precision: str | None, options: BackendOptions | None = None,
) -> Path:
    """The file to load from the export folder ``folder`` (see the module docstring; callers resolve a
    deployment folder to its version first, with ``deployed_folder``)."""
    check_backend(backend)
    options = options or BackendOptions()
    entries = list(REGISTRY.values()) if backend == AUTO else [REGISTRY[backend]]
    found: list[tuple[int, int, Path]] = []  # (auto's rank, -registry position, file)
    skipped: list[str] = []
    for position, entry in enumerate(entries):
        impl = backend_class(entry.name)
        files = _files(folder, entry, precision, impl.on_gpu(options))
        if backend != AUTO and not files and impl.missing_hint(folder):
            raise ArtifactError(f"{folder}: no model.<precision>{entry.suffixes[0]} here; {impl.missing_hint(folder)}")
        chosen = _first_runnable(files, entry, skipped, backend != AUTO)
        if chosen is not None:
            rank = entry.rank(chosen) if entry.available() else None
            found.append((-1 if rank is None else rank, -position, chosen))
    if found:
        for line in skipped:
            notice(f"skipping {line}")
        return max(found)[2]
    wanted = artifact_name(precision) if precision else f"model.<{'|'.join(PRECISIONS)}>.onnx or .engine"
    raise ArtifactError(f"{folder}: no {wanted} in this folder; point at an mmad-edge export folder")


def export_report(artifact: Path) -> dict[str, Any]:
    """The export's ``report.json`` beside ``artifact`` ({} when absent, unreadable or not an object):
    what the export recorded (INT8 form and accuracy target, trained weights) for the rooms that read it."""
    try:
        report = json.loads((Path(artifact).parent / REPORT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return report if isinstance(report, dict) else {}
