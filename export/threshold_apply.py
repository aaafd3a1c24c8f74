"""Apply from the review page: a threshold a person chose becomes the deployed one, at once.

``MetadataThresholds`` is the page's ``Thresholds`` over running Detectors: Apply writes the
artifact's metadata the way ``calibrate-threshold`` does (atomically, each file's previous
metadata kept as ``<file>.previous.json``) and then swaps every detector's statistics, so the
loop judges the next batch by the new threshold without a restart or a dropped frame.

A version of a deployment folder is never changed in place (``rollback`` must find it as it was):
there, Apply promotes a copy of the running version with the new threshold (``NNNN-NAME-applied``),
so ``rollback`` undoes it; a loop that follows the folder then swaps to that copy, which scores
the same.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from mmad_edge.export.threshold_calibration import (
    BACKUP_SUFFIX,
    merged_statistics,
    statistics_section,
    write_statistics,
)
from mmad_edge.runtime import Detector
from mmad_edge.runtime.artifact.deployment import deployment_holding, promote
from mmad_edge.runtime.artifact.metadata import load_contract
from mmad_edge.runtime.ui.page import DetectorThresholds

APPLIED = "-applied"  # the name's tail of a version Apply promoted (NNNN-NAME-applied)


class MetadataThresholds(DetectorThresholds):
    """Thresholds of running detectors (one per serve instance, or the run's one), read and applied."""

    def __init__(self, detectors: Sequence[Detector]) -> None:
        super().__init__(detectors)
        self._lock = threading.Lock()

    def apply(self, category: str | None, threshold: float) -> dict:
        """Make ``threshold`` the category's (None: the pooled one) in the metadata and the detectors;
        the threshold also becomes the normalisation's ``high``, so 0.5 on the normalised scale stays
        the threshold. ValueError (one line) when the run's threshold is fixed or the value unusable."""
        detector = self.detectors[0]
        name = "the pooled threshold" if category is None else f"category {category}"
        if detector.threshold_fixed:
            raise ValueError(f"this run's threshold is fixed by --threshold {detector.threshold:g}; restart without "
                             "--threshold to apply one from the review page")
        with self._lock:
            previous = detector.info.raw.get("statistics")
            section = statistics_section(previous, category)
            if not section or not section.get("normalization"):
                raise ValueError(f"the artifact has no statistics for {name}; run mmad-edge calibrate-threshold first")
            low = float(section["normalization"]["low"])
            if threshold <= low:
                raise ValueError(f"threshold {threshold:.6g} is at or below the normal median {low:.6g} of {name}, so "
                                 "most good parts would be flagged; choose a higher one")
            applied = {**section, "threshold": float(threshold), "normalization": {"low": low, "high": float(threshold)},
                       "threshold_rule": "set on the review page",
                       "review": {"previous_threshold": section.get("threshold"),
                                  "applied_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}}
            path = Path(detector.backend.path)
            statistics = merged_statistics(previous, applied, category)
            deploy = deployment_holding(path)
            if deploy is None:
                written, promoted = write_statistics(path, statistics), None
                info = load_contract(path)
            else:
                promoted = promote_with(path, statistics, deploy)
                written = []
                info = load_contract(Path(promoted["version"]) / path.name)
            for each in self.detectors:
                each.update_statistics(info)
        before = "none" if section.get("threshold") is None else f"{section['threshold']:.6g}"
        change = f"{name}: threshold {before} -> {threshold:.6g}, judging frames from the next batch"
        if promoted is not None:
            where = (f"promoted as {promoted['to']} in {deploy} (its versions are never changed in place; "
                     "mmad-edge rollback undoes it)")
        else:
            files = ", ".join(str(item) for item in written) or "nothing (the metadata already held it)"
            where = f"wrote {files} (previous metadata kept as <file>{BACKUP_SUFFIX})"
        return {"category": category, "threshold": float(threshold), "previous_threshold": section.get("threshold"),
                "written": [str(item) for item in written],
                "promoted": None if promoted is None else promoted["to"], "message": f"{change}; {where}"}


def promote_with(artifact: Path, statistics: dict, deploy: Path) -> dict:
    """Promote a copy of ``artifact``'s version folder with ``statistics`` written into it as a new
    version of ``deploy``; ``promote``'s summary."""
    base = artifact.parent.name.split("-", 1)[-1].removesuffix(APPLIED)
    with tempfile.TemporaryDirectory(prefix="mmad-edge-apply-") as scratch:
        staged = Path(scratch) / f"{base}{APPLIED}"
        shutil.copytree(artifact.parent, staged, symlinks=False)
        write_statistics(staged / artifact.name, statistics)
        for backup in staged.glob(f"*{BACKUP_SUFFIX}"):  # the version it replaces is the backup
            backup.unlink()
        return promote(staged, deploy)
