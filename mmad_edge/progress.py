"""Progress bars that suit both a terminal and a log file.

On a terminal tqdm redraws in place; in a log (stderr redirected, systemd, CI) every redraw
would be a new line, so there the bar updates at most every ``LOG_INTERVAL_S`` seconds.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
LOG_INTERVAL_S = 30.0


def progress_bar(iterable: Iterable[T], desc: str, enabled: bool = True) -> tqdm[T]:
    """A transient bar on stderr; disabled when ``enabled`` is false."""
    interactive = sys.stderr.isatty()
    return tqdm(iterable, desc=desc, disable=not enabled, leave=False, file=sys.stderr,
                mininterval=0.1 if interactive else LOG_INTERVAL_S, dynamic_ncols=interactive)
