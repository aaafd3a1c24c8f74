"""tritonserver's console lines go to its log file, not to `serve`'s stdout.

PyTriton prints everything tritonserver writes to its console (``print`` from the thread that reads
the process's output). With ``--log-file`` set, what is left there is noise on a CPU machine:
``Error: Failed to initialize NVML`` (no NVIDIA driver, so no GPU metrics) and ``Signal (2)
received.`` (PyTriton stopping it with SIGINT). Those lines are appended to Triton's log instead;
what the serving thread prints (the start, ready and stop lines) still reaches stdout.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO


class ThreadConsole:
    """A stdout that keeps ``owner``'s writes and appends every other thread's to ``log``."""

    def __init__(self, stdout: TextIO, log: Path, owner: threading.Thread) -> None:
        self.stdout, self.log, self.owner = stdout, log, owner
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        if threading.current_thread() is self.owner:
            return self.stdout.write(text)
        with self._lock, self.log.open("a", encoding="utf-8") as sink:
            return sink.write(text)

    def flush(self) -> None:
        self.stdout.flush()

    def __getattr__(self, name: str):  # isatty, encoding, fileno ...: the real stdout's
        return getattr(self.stdout, name)


@contextmanager
def tritonserver_console_to(log: Path) -> Iterator[None]:
    """While serving, other threads' prints (tritonserver's console, relayed by PyTriton) go to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    previous = sys.stdout
    sys.stdout = ThreadConsole(previous, log, threading.current_thread())
    try:
        yield
    finally:
        sys.stdout = previous
