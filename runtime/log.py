"""One place that writes operator messages and progress lines to stderr (stdout carries results:
JSON lines, tables), used by the runtime, training, export and the bench alike."""

from __future__ import annotations

import sys


def notice(message: str) -> None:
    """Write one line for the operator to stderr, flushed at once."""
    print(f"mmad-edge: {message}", file=sys.stderr, flush=True)


def say(text: str, enabled: bool = True) -> None:
    """A progress line on stderr, flushed at once; nothing when ``enabled`` is false (--quiet)."""
    if enabled:
        print(text, file=sys.stderr, flush=True)
