"""The detector: frames of any size in, scores, decisions and anomaly maps out.

Backends (``runtime.backends.REGISTRY``) are imported only in ``Detector.load``, so importing the
runtime costs nothing on a machine that has just one of them.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from .artifact.batching import batch_contract
from .artifact.deployment import deployed_folder
from .artifact.metadata import ArtifactInfo, load_contract
from .artifact.selection import select_artifact
from .backends import AUTO, backend_class, backend_for, check_backend
from .backends.base import Backend, BackendOptions
from .errors import ArtifactError, DetectorClosedError
from .imageio import to_bgr_uint8
from .preprocess import resize_frame
from .result import Result
from .scoring import check_threshold, normalize_score
from .tuning.choice import load_tuned, read_choice

MAP_SIZES = ("model", "frame")
Frames = np.ndarray | Iterable[np.ndarray]
Scoring = tuple[float | None, tuple[float, float] | None]  # (threshold, normalisation (low, high))


def _backend_options(options: BackendOptions | None, overrides: dict[str, Any]) -> BackendOptions:
    """``options`` (default ``BackendOptions()``) with the keyword ``overrides``; unknown names refused."""
    known = BackendOptions.names()
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise TypeError(f"Detector.load got unknown option(s) {', '.join(unknown)}; backend options are "
                        f"{', '.join(known)}")
    return (options or BackendOptions()).replace(**overrides)


@dataclass(frozen=True)
class _Judging:
    """What a Detector judges frames by: the metadata and its own category's (threshold, normalisation)."""

    info: ArtifactInfo
    threshold: float | None
    normalization: tuple[float, float] | None


def _scoring(info: ArtifactInfo, category: str | None, override: float | None) -> Scoring:
    """(threshold, normalisation) of ``category`` in ``info`` (None: the pooled ones), ``override``
    replacing the threshold; ArtifactError for an unknown category."""
    if category is None:
        default, normalization = info.threshold, info.normalization
    elif category in info.categories:
        default, normalization = info.categories[category]
    else:
        known = ", ".join(sorted(info.categories)) or "none (exported from an older checkpoint)"
        raise ArtifactError(f"the artifact has no statistics for category {category!r}; categories with "
                            f"statistics: {known}. Pass one of them, or a threshold: threshold=T (--threshold T)")
    return (default if override is None else override), normalization


def check_map_size(map_size: str) -> None:
    """"model" (maps at the model's input size) or "frame" (resized to each frame)."""
    if map_size not in MAP_SIZES:
        raise ValueError(f"map_size must be 'model' or 'frame', got {map_size!r}; pass --map-size model or frame")


def _check_frame(frame: Any) -> np.ndarray:
    if frame is None:
        raise ValueError("frame is None: the camera or video read failed; check the source")
    if not isinstance(frame, np.ndarray) or frame.size == 0:
        raise ValueError(f"frame must be a non-empty numpy image (H x W [x C]), got {type(frame).__name__}")
    return to_bgr_uint8(frame, "frame")


class Detector:
    """Runs an exported artifact; use ``Detector.load`` and close it (or use ``with``).

    Not thread-safe: use it from one thread (``run_stream`` reads frames on another thread
    but detects on the caller's).
    """

    def __init__(
        self, backend: Backend, threshold: float | None = None, max_batch: int | None = None,
        category: str | None = None,
    ) -> None:
        self.backend = backend
        self.category = category
        self._override = check_threshold(threshold)
        self._judging = _Judging(backend.info, *_scoring(backend.info, category, self._override))
        self.closed = False
        spec = backend.input_spec
        self.batch_min = spec.batch_min
        self.batch_max = spec.batch_max if max_batch is None else min(int(max_batch), spec.batch_max)
        if self.batch_max < self.batch_min:
            raise ValueError(f"max_batch {max_batch} is below the artifact's fixed/min batch {self.batch_min}")

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        backend: str = AUTO,
        options: BackendOptions | None = None,
        *,
        threshold: float | None = None,
        precision: str | None = None,
        max_batch: int | None = None,
        category: str | None = None,
        **backend_options: Any,
    ) -> Detector:
        """Load a ``.engine`` (TensorRT), a ``.onnx`` (ONNX Runtime or OpenVINO), an export folder or a
        deployment folder (the version its ``current`` link names, read once here: ``mmad-edge promote``).

        ``backend``: "auto" or a registered backend (``runtime.backends.choices()``). "auto" on a
        folder that ``mmad-edge tune`` chose for on this machine loads its choice (backend, graph
        and settings; options given here kept over the choice's); elsewhere the registry's ranking.
        ``options``: the backend settings as one ``BackendOptions`` (the common cache_dir, device,
        threads and each backend's own, e.g. providers, micro_batch, inference_precision,
        performance_hint, use_cuda_graph); they may also be passed as keywords (``threads=2``),
        which override ``options``.
        ``precision`` picks ``model.<precision>.*`` from a folder. ``threshold`` overrides the
        metadata's. ``max_batch`` caps the frames per backend run (above the profile of an ONNX graph with a
        dynamic batch axis it widens it; above a fixed-batch graph's or an engine's it is an error:
        ``artifact.batching``). ``category``: take the
        threshold and normalisation of this training category (a unified model's score scale
        differs by category) instead of the pooled ones.
        """
        check_backend(backend)
        settings = _backend_options(options, backend_options)
        path = deployed_folder(path)  # a deployment folder: its current version, with that version's tuned choice
        tuned = read_choice(path, precision) if backend == AUTO and path.is_dir() else None
        impl = None if tuned is None else load_tuned(
            tuned, settings, lambda chosen: batch_contract(chosen, load_contract(chosen), max_batch))
        if impl is None:
            if path.is_dir():
                path = select_artifact(path, backend, precision, settings)
            elif not path.exists():
                raise ArtifactError(f"{path}: no such artifact; pass a .onnx, a .engine or an export folder")
            name = backend_for(path, backend)
            impl = backend_class(name)(path, batch_contract(path, load_contract(path), max_batch), settings)
        try:
            return cls(impl, threshold=threshold, max_batch=max_batch, category=category)
        except BaseException:
            impl.close()
            raise

    def scoring(self, category: str | None = None) -> Scoring:
        """(threshold, normalisation) that score frames of ``category``: its training statistics (None:
        the pooled ones), the threshold given at load overriding; ArtifactError for an unknown category."""
        return _scoring(self.info, category, self._override)

    @property
    def info(self) -> ArtifactInfo:
        """The artifact's metadata, as loaded or as last given to ``update_statistics``."""
        return self._judging.info

    @property
    def threshold(self) -> float | None:
        """The threshold of the detector's own category (or the pooled one)."""
        return self._judging.threshold

    @property
    def threshold_fixed(self) -> bool:
        """True when a threshold given at load overrides the metadata's (``update_statistics`` then
        changes normalisation only)."""
        return self._override is not None

    def update_statistics(self, info: ArtifactInfo) -> None:
        """Judge frames from the next ``predict`` on by ``info``'s statistics (a threshold applied from
        the review page, a recalibration), without a reload; safe while another thread predicts: the
        rules are swapped whole, so each batch is judged by one set. ArtifactError when ``info`` lacks
        the detector's category."""
        self._judging = _Judging(info, *_scoring(info, self.category, self._override))

    @property
    def image_size(self) -> tuple[int, int]:
        """Model input (height, width)."""
        return self.info.image_size

    @property
    def normalization(self) -> tuple[float, float] | None:
        """(low, high) for ``normalize_score`` (the category's, when one was chosen); None when the
        export had no statistics."""
        return self._judging.normalization

    def __call__(self, frame: np.ndarray, threshold: float | None = None, map_size: str = "model") -> Result:
        """Score one BGR (or grayscale / BGRA) frame of any size."""
        return self.predict([frame], threshold=threshold, map_size=map_size)[0]

    def predict(self, frames: Frames, threshold: float | None = None, map_size: str = "model",
                categories: Sequence[str | None] | None = None) -> list[Result]:
        """Score a list of frames (mixed sizes allowed) or an (N, H, W, C) array, in order.

        ``categories``: one per frame, each frame judged by its category's threshold and normalisation
        (``scoring``) after one shared backend run, so sources of several categories share a batch;
        None: the detector's own. ``threshold`` overrides every frame's."""
        if self.closed:
            raise DetectorClosedError("this Detector is closed; load it again with Detector.load(...) "
                                      "(or keep using it inside its with-block)")
        check_map_size(map_size)
        if isinstance(frames, np.ndarray):
            if frames.ndim != 4:
                raise ValueError(
                    f"predict takes a list of frames or an (N, H, W, C) array, got shape {frames.shape}; "
                    "use detector(frame) for one frame"
                )
            frames = list(frames)
        frames = list(frames)
        if categories is not None and len(categories) != len(frames):
            raise ValueError(f"{len(categories)} categories for {len(frames)} frames; pass one per frame (None: the "
                             "detector's own)")
        limit = check_threshold(threshold)
        judging = self._judging  # one set of rules for the whole call, whatever update_statistics does meanwhile
        names = [self.category if name is None else name for name in (categories or [None] * len(frames))]
        rules = {name: (judging.threshold, judging.normalization) if name == self.category
                 else _scoring(judging.info, name, self._override) for name in set(names)}
        judged = [rules[name] if limit is None else (limit, rules[name][1]) for name in names]
        results: list[Result] = []
        for start in range(0, len(frames), self.batch_max):
            end = start + self.batch_max
            results.extend(self._run_chunk(frames[start:end], judged[start:end], map_size))
        return results

    def _run_chunk(self, frames: list[Any], judged: list[Scoring], map_size: str) -> list[Result]:
        """One backend run: padded up to the artifact's min batch, padding dropped after."""
        count = len(frames)
        height, width = self.image_size
        started = time.perf_counter()
        batch = np.zeros((max(count, self.batch_min), height, width, 3), dtype=np.uint8)
        shapes = []
        for index, frame in enumerate(frames):
            image = _check_frame(frame)
            shapes.append(image.shape[:2])
            batch[index] = resize_frame(image, (height, width))
        preprocessed = time.perf_counter()
        maps, scores = self.backend.run(batch)
        inferred = time.perf_counter()
        results = [self._result(maps[i], float(scores[i]), shapes[i], judged[i], map_size) for i in range(count)]
        finished = time.perf_counter()
        timings = {
            "preprocess": (preprocessed - started) * 1000.0 / count,
            "inference": (inferred - preprocessed) * 1000.0 / count,
            "postprocess": (finished - inferred) * 1000.0 / count,
        }
        for result in results:
            result.timings = dict(timings)
        return results

    @staticmethod
    def _result(anomaly_map: np.ndarray, score: float, shape: tuple[int, int], judged: Scoring, map_size: str) -> Result:
        threshold, norm = judged
        if map_size == "frame" and anomaly_map.shape != shape:
            anomaly_map = cv2.resize(anomaly_map, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
        return Result(
            score=score,
            score_normalized=None if norm is None else float(normalize_score(score, *norm)),
            # A non-finite score means the graph's output is broken: reject the part rather than pass it.
            is_anomaly=None if threshold is None else bool(score > threshold or not math.isfinite(score)),
            threshold=threshold,
            anomaly_map=np.ascontiguousarray(anomaly_map, dtype=np.float32),
        )

    def close(self) -> None:
        """Free the backend (GPU buffers, sessions); later calls raise DetectorClosedError. Idempotent."""
        if not self.closed:
            self.closed = True
            self.backend.close()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
