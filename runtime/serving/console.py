"""tritonserver's console lines go to a file beside its log, not to `serve`'s stdout.

PyTriton prints everything tritonserver writes to its console (``print`` from the thread that reads
the process's output). With ``--log-file`` set, what is left there is noise on a CPU machine:
``Error: Failed to initialize NVML`` (no NVIDIA driver, so no GPU metrics) and ``Signal (2)
received.`` (PyTriton stopping it with SIGINT). Those lines are appended to a console file beside
Triton's log instead (not to the log itself: tritonserver writes it at its own offset, over lines
appended by anyone else);
what the serving thread prints (the start, ready and stop lines) still reaches stdout.

tritonserver's stdout is a pipe, so its console lines arrive in blocks, often only when it exits
(flushed at exit); PyTriton's reader threads relay them after the process is gone. So on leaving,
the threads started while serving get a moment to finish before stdout is given back: late
lines still land in the log, never on stdout.
"""

from __future__ import annotations

import sys
import threading
import time
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


DRAIN_S = 5.0  # the longest a stop waits for the relaying threads


def join_new_threads(before: set[threading.Thread], timeout_s: float) -> None:
    """Wait up to ``timeout_s`` in all for the threads not in ``before`` to end."""
    deadline = time.monotonic() + timeout_s
    for thread in set(threading.enumerate()) - before:
        thread.join(max(0.0, deadline - time.monotonic()))


@contextmanager
def tritonserver_console_to(log: Path) -> Iterator[None]:
    """While serving, other threads' prints (tritonserver's console, relayed by PyTriton) go to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    previous = sys.stdout
    before = set(threading.enumerate())
    sys.stdout = ThreadConsole(previous, log, threading.current_thread())
    try:
        yield
    finally:
        join_new_threads(before, DRAIN_S)
        sys.stdout = previous
