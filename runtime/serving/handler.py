"""One Triton model instance: requests of frames in, per-frame decisions out (no PyTriton import).

PyTriton hands the callable every request of one dynamically-batched execution; the frames of
all of them go through the Detector in one run (each frame judged by its category's threshold and
normalisation: a category changes those, not the graph) and the results go back to their requests. A shared
``ServeWatch`` (optional) sees every score: drift per category and the app metrics; `serve`'s
self-test request (parameter ``SELF_TEST``) is neither counted nor watched.

A bad request (wrong input, unknown category) is answered alone, with one line and HTTP 400
(``rejection``); the other requests of its batch are served as if it had not been there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..artifact.contract import CATEGORY_INPUT, INPUT_DTYPE, INPUT_NAME, IS_ANOMALY, OUTPUT_NAMES, SCORE_NORMALIZED
from ..detector import Detector
from ..errors import ArtifactError
from ..result import Result
from .rejection import rejected
from .selftest import SELF_TEST
from .watch import ServeWatch, line_name

if TYPE_CHECKING:
    from ..ui.page import LivePage

MAP_NAME, SCORE_NAME = OUTPUT_NAMES


class RequestError(ValueError):
    """A client's mistake in one request, told to that client in one line."""


@dataclass
class Counters:
    """What an instance served, for the summary at stop."""

    requests: int = 0
    images: int = 0
    executions: int = 0
    largest_batch: int = 0
    rejected: int = 0

    def add(self, requests: int, images: int) -> None:
        self.requests += requests
        self.images += images
        self.executions += 1
        self.largest_batch = max(self.largest_batch, images)


def request_images(request: Any) -> np.ndarray:
    """The request's ``image`` batch, checked: uint8 (N, H, W, 3) with N, H, W >= 1."""
    images = np.asarray(request[INPUT_NAME])
    if images.dtype != np.dtype(INPUT_DTYPE):
        raise RequestError(f"input '{INPUT_NAME}' must be {INPUT_DTYPE}, got {images.dtype}; send BGR frames as UINT8")
    if images.ndim != 4 or images.shape[-1] != 3 or 0 in images.shape:
        raise RequestError(f"input '{INPUT_NAME}' must be (N, H, W, 3) BGR frames, got shape {images.shape}")
    return images


def request_categories(request: Any, count: int) -> list[str | None]:
    """Each frame's category: the optional BYTES input (one per frame, or one for all); None (the
    pooled threshold) without it or for an empty name."""
    if CATEGORY_INPUT not in request.keys():
        return [None] * count
    values = np.asarray(request[CATEGORY_INPUT]).reshape(-1)
    if values.size not in (1, count):
        raise RequestError(f"input '{CATEGORY_INPUT}' must hold one name per frame ({count}) or one, got {values.size}")
    names = [(value.decode("utf-8") if isinstance(value, bytes) else str(value)) or None for value in values]
    return names * count if len(names) == 1 else names


def check_categories(detector: Detector, categories: list[str | None]) -> None:
    """RequestError naming an unknown category and the known ones, before any work."""
    for name in dict.fromkeys(categories):
        try:
            detector.scoring(name)
        except ArtifactError:
            known = ", ".join(sorted(detector.info.categories)) or "none"
            raise RequestError(f"unknown category {name!r}; this model knows {known} (send none or an empty "
                               "name for the pooled threshold)") from None


def is_self_test(request: Any) -> bool:
    """Whether ``request`` is `serve`'s own self-test."""
    return bool((getattr(request, "parameters", None) or {}).get(SELF_TEST))


def wants_map(request: Any) -> bool:
    """Whether the client asked for the anomaly map (Triton fills in every output when it named none)."""
    names = getattr(request, "requested_output_names", None)
    return names is None or MAP_NAME in names


def response(results: Sequence[Result], with_map: bool) -> dict[str, np.ndarray]:
    """Outputs of one request: ``(n, 1)`` score columns (NaN / False without statistics), maps if asked."""
    column = lambda values, dtype: np.asarray(values, dtype=dtype).reshape(-1, 1)  # noqa: E731
    outputs = {
        SCORE_NAME: column([r.score for r in results], np.float32),
        SCORE_NORMALIZED: column([np.nan if r.score_normalized is None else r.score_normalized for r in results],
                                 np.float32),
        IS_ANOMALY: column([bool(r.is_anomaly) for r in results], np.bool_),
    }
    if with_map:
        outputs[MAP_NAME] = np.stack([r.anomaly_map for r in results]).astype(np.float32, copy=False)
    return outputs


class InferenceHandler:
    """PyTriton's inference callable for one instance: owns a Detector; ``watch`` (one for all
    instances) gets each category's results with the execution's time, ``page`` (one for all, the
    live page of ``serve --ui``) each frame, a category standing for a source. ``lock`` is held
    through each execution: a swap of ``detector`` (``serving.follow``) waits for the one in flight."""

    def __init__(self, detector: Detector, watch: ServeWatch | None = None, page: LivePage | None = None) -> None:
        self.detector = detector
        self.watch = watch
        self.page = page
        self.counters = Counters()
        self.lock = threading.Lock()

    def __call__(self, requests: Sequence[Any]) -> list[dict[str, np.ndarray]]:
        """One backend run over the frames of every good request (``Detector.predict`` judges each
        frame by its category), results back per request; a bad request gets its one line instead."""
        with self.lock:
            return self._execute(requests)

    def _execute(self, requests: Sequence[Any]) -> list[dict[str, np.ndarray]]:
        images: list[np.ndarray] = []
        categories: list[str | None] = []
        spans: list[slice] = []
        problems: dict[int, str] = {}
        for index, request in enumerate(requests):
            try:
                batch = request_images(request)
                names = request_categories(request, len(batch))
                check_categories(self.detector, names)
            except RequestError as exc:
                problems[index] = str(exc)
                batch, names = [], []
            spans.append(slice(len(images), len(images) + len(batch)))
            images.extend(batch)
            categories.extend(names)
        start = time.perf_counter()
        results = self.detector.predict(images, categories=categories) if images else []
        latency_s = time.perf_counter() - start
        served = [index for index, request in enumerate(requests) if index not in problems and not is_self_test(request)]
        kept = [i for index in served for i in range(len(images))[spans[index]]]
        for category in dict.fromkeys(categories[i] for i in kept):  # after the run succeeded: a failed execution returns no scores
            chosen = [i for i in kept if categories[i] == category]
            statistic = None if self.watch is None else self.watch.observe(
                category, [results[i] for i in chosen], latency_s)
            if self.page is not None:
                self.page.slot(category, line_name(category), category)
                for index in chosen:
                    self.page.offer(category, images[index], results[index], statistic)
        if served:
            self.counters.add(len(served), len(kept))
        self.counters.rejected += sum(not is_self_test(requests[index]) for index in problems)
        return [rejected(problems[index]) if index in problems else response(results[spans[index]], wants_map(request))
                for index, request in enumerate(requests)]

    def close(self) -> None:
        """Close the detector."""
        self.detector.close()
