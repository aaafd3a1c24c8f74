"""The page as the loop (`run`) and the server (`serve`) see it: open it, hand it results, keep it up.

``LivePage.open`` checks the address and token, opens the review store and starts the server (a
one-line UiConfigError when any of it cannot be had, before any frame is read). ``offer`` is the
loop's whole cost per frame. ``hold`` keeps the page up after a finite source ended, until Ctrl-C,
SIGTERM or the run's stop event. ``DetectorThresholds`` reads the running detectors' thresholds;
Apply needs a writer of metadata, which the runtime does not have (the CLI passes
``mmad_edge.export.threshold_apply.MetadataThresholds``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np

from ..detector import Detector
from ..errors import ArtifactError
from ..log import notice
from ..loop.shadow import DisagreementSink, ShadowFrame
from ..result import Result
from .options import MB, PageOptions
from .review_store import ReviewStore, ReviewStoreError
from .security import TOKEN_ENV, UiConfigError, parse_bind, resolve_token
from .state import LiveState


class DetectorThresholds:
    """The page's thresholds over running detectors (one per serve instance, or the run's one);
    ``apply`` here only says how to get one that writes metadata."""

    def __init__(self, detectors: Sequence[Detector]) -> None:
        if not detectors:
            raise ValueError("no detector to read thresholds from")
        self.detectors = list(detectors)

    def scoring(self, category: str | None) -> tuple[float | None, tuple[float, float] | None]:
        """(threshold, normalisation) of ``category`` now; (None, None) for one the artifact lacks."""
        try:
            return self.detectors[0].scoring(category)
        except ArtifactError:
            return None, None

    def use(self, detectors: Sequence[Detector]) -> None:
        """Read (and apply to) ``detectors`` from now on: the run swapped in a newly deployed version."""
        self.detectors = list(detectors)

    def apply(self, category: str | None, threshold: float) -> dict:
        raise ValueError("this page cannot write thresholds: pass thresholds=MetadataThresholds "
                         "(mmad_edge.export.threshold_apply) to run_stream / serve, as `mmad-edge run` does")


ThresholdsFor = Callable[[Sequence[Detector]], DetectorThresholds]


class LivePage:
    """A started page over its state and review store; sources are registered by a key of the caller's."""

    def __init__(self, server, state: LiveState, store: ReviewStore, drift_tolerance: float | None) -> None:
        self.server, self.state, self.store = server, state, store
        self.drift_tolerance = drift_tolerance
        self._slots: dict[object, int] = {}
        self._by_name: dict[str, int] = {}  # the shadow names a source by name (names are unique in a run)
        self._unknown: set[str] = set()
        self._lock = threading.Lock()

    @classmethod
    def open(cls, options: PageOptions, detectors: Sequence[Detector], title: str,
             thresholds_for: ThresholdsFor | None = None, drift_tolerance: float | None = None) -> LivePage:
        """Check the address and token, open the store, start serving; says where in one line."""
        host, port = parse_bind(options.ui)
        token = resolve_token(host, options.token_file)
        from .server import UiServer  # starlette / uvicorn only when a page is asked for

        try:
            store = ReviewStore(options.review_dir, options.review_max_mb * MB, options.review_max_items)
        except ReviewStoreError as exc:
            raise UiConfigError(f"--review-dir: {exc}") from None
        state = LiveState(review_per_s=options.review_per_s)
        try:
            server = UiServer(host, port, state, store, (thresholds_for or DetectorThresholds)(detectors), token,
                              title).start()
        except BaseException:
            store.close()
            raise
        how = f" (token required: open it once with ?token=<{TOKEN_ENV} or the token file>)" if token else ""
        notice(f"live page at {server.url}{how}; review queue in {store.folder}")
        return cls(server, state, store, drift_tolerance)

    def slot(self, key: object, name: str, category: str | None) -> int:
        """The state's index of the source ``key`` (registered on first use)."""
        with self._lock:
            if key not in self._slots:
                self._slots[key] = self._by_name[name] = self.state.add_source(name, category, self.drift_tolerance)
            return self._slots[key]

    def offer(self, key: object, frame: np.ndarray, result: Result, drift_statistic: float | None = None) -> None:
        """Hand one result to the page (a registered source's ``key``)."""
        self.state.offer(self._slots[key], frame, result, drift_statistic)

    def use(self, detectors: Sequence[Detector]) -> None:
        """Thresholds shown and applied are ``detectors``' from now on (``run`` or ``serve`` swapped in
        a new deployed version; an Apply made before stays in the old version's metadata)."""
        self.server.thresholds.use(detectors)

    def review(self, name: str, frame: np.ndarray, result: Result, reason: str) -> None:
        """Put a frame of the source called ``name`` into the review queue (why: ``reason``); a name
        no source was registered under is said once and its frames are not queued."""
        with self._lock:
            index = self._by_name.get(name)
            first = index is None and name not in self._unknown
            if index is None:
                self._unknown.add(name)
        if first:
            notice(f"live page: no source called {name!r} is on the page; its review candidates are not queued")
        if index is not None:
            self.state.propose(index, frame, result, reason)

    def disagreements(self, log: DisagreementSink | None = None) -> ReviewDisagreements:
        """The shadow's sink: disagreements into the review queue (and on to ``log``, --shadow-log)."""
        return ReviewDisagreements(self, log)

    def hold(self, stop_event: threading.Event | None = None) -> None:
        """The sources ended: keep the page up until Ctrl-C, SIGTERM or ``stop_event``."""
        from .server import hold_until_stopped

        self.state.end()
        notice(f"sources ended; the page stays at {self.server.url} until Ctrl-C or SIGTERM")
        hold_until_stopped(stop_event)

    def close(self) -> None:
        self.server.close()
        self.store.close()


class ReviewDisagreements:
    """A shadow candidate's disagreements as review items: the deployed result kept, the reason
    naming what the candidate said; passed on to ``log`` (``--shadow-log``) too when given."""

    def __init__(self, page: LivePage, log: DisagreementSink | None = None) -> None:
        self.page, self.log = page, log

    def on_disagreement(self, frame: ShadowFrame, deployed: Result, candidate: Result) -> None:
        verdict = "flags" if candidate.is_anomaly else "passes"
        self.page.review(frame.source, frame.image, deployed,
                         f"shadow: candidate {verdict} it (score {candidate.score:.4g})")
        if self.log is not None:
            self.log.on_disagreement(frame, deployed, candidate)

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
