"""One place that writes operator messages to stderr (stdout may carry JSON lines)."""

from __future__ import annotations

import sys


def report(message: str) -> None:
    """Write one line for the operator to stderr, flushed at once."""
    print(f"mmad-edge: {message}", file=sys.stderr, flush=True)
