"""What the live page of `run --ui` / `serve --ui` was asked for, one value shared by both commands.

The defaults here are the only ones; each field carries its flag and help (plain metadata).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..flags import Flag
from .review_store import DEFAULT_MAX_BYTES, DEFAULT_MAX_ITEMS
from .state import REVIEW_PER_S

MB = 1024 * 1024
DEFAULT_REVIEW_DIR = "mmad-edge-review"
DEFAULT_REVIEW_CATEGORY = "line"  # review export's folder for frames scored without a category
REVIEW_DIR = Flag("--review-dir", "Folder of the page's review queue (frames + SQLite index), kept across runs.")


@dataclass(frozen=True)
class PageOptions:
    """``ui``: [HOST:]PORT of the page (None: no page); ``token_file``: its token (else the
    ``MMAD_EDGE_UI_TOKEN`` environment variable), required for any host but loopback;
    ``review_dir`` / ``review_max_mb`` / ``review_max_items``: the review queue's folder and caps;
    ``hold``: keep the page up after the sources end until Ctrl-C / SIGTERM (library users and the
    bench may say False); ``review_per_s``: review candidates kept per source per second."""

    ui: str | None = Flag(
        "--ui", "Serve the live page and review queue at [HOST:]PORT (host 127.0.0.1 unless given; any other host "
                "needs a token; docs/ui.md).").field(None)
    token_file: str | None = Flag(
        "--ui-token-file", "File holding the page's token (default: the MMAD_EDGE_UI_TOKEN environment "
                           "variable).").field(None, cli_type=Path, parse=str)
    review_dir: str = REVIEW_DIR.field(DEFAULT_REVIEW_DIR, cli_type=Path, parse=str)
    review_max_mb: int = Flag("--review-max-mb", "Size cap of the review folder in MB (the oldest unmarked frames "
                                                 "go first).").field(DEFAULT_MAX_BYTES // MB)
    review_max_items: int = Flag("--review-max-items", "Frame cap of the review folder.").field(DEFAULT_MAX_ITEMS)
    hold: bool = True
    review_per_s: float = REVIEW_PER_S
