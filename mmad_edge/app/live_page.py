"""What the CLI adds to the live page of `run --ui` / `serve --ui`: Apply that writes the metadata."""

from __future__ import annotations

from mmad_edge.runtime.ui.options import PageOptions
from mmad_edge.runtime.ui.page import ThresholdsFor


def page_thresholds(page: PageOptions) -> ThresholdsFor | None:
    """``MetadataThresholds`` when a page is asked for (imported only then: `run` starts light)."""
    if page.ui is None:
        return None
    from mmad_edge.export.threshold_apply import MetadataThresholds

    return MetadataThresholds
