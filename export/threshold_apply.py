"""Apply from the review page: a threshold a person chose becomes the deployed one, at once.

``MetadataThresholds`` is the page's ``Thresholds`` over running Detectors: Apply writes the
artifact's metadata the way ``calibrate-threshold`` does (atomically, each file's previous
metadata kept as ``<file>.previous.json``) and then swaps every detector's statistics, so the
loop judges the next batch by the new threshold without a restart or a dropped frame.
"""

from __future__ import annotations

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
from mmad_edge.runtime.artifact.metadata import load_contract
from mmad_edge.runtime.ui.page import DetectorThresholds


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
            written = write_statistics(path, merged_statistics(previous, applied, category))
            info = load_contract(path)
            for each in self.detectors:
                each.update_statistics(info)
        files = ", ".join(str(item) for item in written) or "nothing (the metadata already held it)"
        return {"category": category, "threshold": float(threshold), "previous_threshold": section.get("threshold"),
                "written": [str(item) for item in written],
                "message": f"{name}: threshold {section.get('threshold'):.6g} -> {threshold:.6g}, judging frames from "
                           f"the next batch; wrote {files} (previous metadata kept as <file>{BACKUP_SUFFIX})"}
