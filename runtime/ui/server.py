"""Serve the page from a background thread while the loop runs, and keep it up after.

``UiServer`` binds the socket itself (a taken port fails at once, in one line), runs uvicorn on a
daemon thread, and a second thread moves review candidates from the ``LiveState`` into the
``ReviewStore`` (overlay drawn and images encoded there, never on the loop's thread).
``hold_until_stopped`` keeps the process (and the page) alive after a finite source ends, until
Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable

from ..errors import install_hint
from ..log import notice
from .app import Thresholds, UiApp, display_overlay
from .review_store import ReviewStore
from .security import Guard, UiConfigError, check_bind
from .state import LiveState

INSTALL = install_hint("ui")
START_TIMEOUT_S = 10.0
UI_NICE = 10  # the page's threads yield the CPU to the loop (Linux: a per-thread nice value)
REVIEW_THREAD = "mmad-edge-ui-review"


class UiServer:
    """The page at ``url`` over ``state``, ``store`` and ``thresholds``; ``start`` then ``close``."""

    def __init__(self, host: str, port: int, state: LiveState, store: ReviewStore, thresholds: Thresholds,
                 token: str | None, title: str = "") -> None:
        check_bind(host, token)
        self.host, self.port, self.state, self.store, self.thresholds = host, port, state, store, thresholds
        self.guard = Guard(token, port)
        self.title = title
        self._server = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> UiServer:
        """Bind, serve and start the review worker; UiConfigError when the port cannot be had."""
        try:
            import uvicorn
        except ImportError as exc:
            raise UiConfigError(f"--ui needs starlette and uvicorn ({exc.name} is missing); {INSTALL}") from None
        sock = self._bind()
        self.port = sock.getsockname()[1]
        self.guard = Guard(self.guard.token, self.port, self.guard.csrf)
        self._app = UiApp(self.state, self.store, self.thresholds, self.guard, self.title)
        config = uvicorn.Config(self._app.asgi, log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._threads = [threading.Thread(target=_yielding, args=(self._server.run,), kwargs={"sockets": [sock]},
                                          name="mmad-edge-ui", daemon=True),
                         threading.Thread(target=_yielding, args=(self._review_worker,), name=REVIEW_THREAD,
                                          daemon=True)]
        for thread in self._threads:
            thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started and self._threads[0].is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self._server.started:
            self.close()
            raise UiConfigError(f"the page did not start on {self.url} within {START_TIMEOUT_S:g} s; see the "
                                "messages above")
        return self

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise UiConfigError(f"--ui {self.host}:{self.port}: cannot listen there ({exc.strerror}); pass a free "
                                "port, e.g. --ui 127.0.0.1:8080") from None
        return sock

    def _review_worker(self) -> None:
        """Candidates from the loop into the store: overlay drawn, images encoded and written here."""
        while not self._stop.is_set():
            candidate = self.state.take_review(0.2)
            if candidate is None:
                continue
            source = self.state.sources[candidate.source]
            threshold, normalization = self.thresholds.scoring(source.category)
            result = candidate.result
            try:
                self.store.add(candidate.frame, display_overlay(candidate.frame, result, normalization),
                               source=source.name, category=source.category, score=result.score,
                               threshold=result.threshold if result.threshold is not None else threshold,
                               reason=candidate.reason)
            except (OSError, ValueError) as exc:  # a full disk must not stop the loop; say it and go on
                notice(f"review store: could not keep a frame of {source.name} ({exc})")

    def close(self) -> None:
        """Stop serving and the worker (idempotent); the store stays open for its owner to close, which
        is safe once this returns: the review worker is joined to the end (a wait for a candidate is
        0.2 s, an add at most SQLite's busy timeout), so it never adds to a closed store."""
        self._stop.set()
        if self._server is not None:
            self._app.stopping.set()
            self._server.should_exit = True
        for thread in self._threads:
            thread.join(None if thread.name == REVIEW_THREAD else 5.0)
        self._threads = []


def _yielding(work: Callable[..., object], **kwargs: object) -> None:
    """Run ``work`` on this thread at a lower CPU priority (``UI_NICE``; threads it starts, such as
    the server's worker pool, inherit it), so under contention the loop's inference goes first."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), UI_NICE)
    except (AttributeError, OSError):  # not Linux, or not allowed: run at the normal priority
        pass
    work(**kwargs)


def hold_until_stopped(stop: threading.Event | None = None) -> None:
    """Block until Ctrl-C, SIGTERM or ``stop`` (the page stays up meanwhile)."""
    stop = stop or threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
