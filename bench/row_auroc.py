"""`bench --data`: each row's image AUROC (detection quality on labelled images) beside its latency.

All rows score the same labelled test split; ``bench.fidelity`` is the other check: agreement
with ONNX Runtime FP32 on random frames, no labels.

Artifact rows score the test split through the runtime's ``Detector`` on the row's backend (as
``mmad-edge verify`` does); the MiniMaxAD torch rows through their own PyTorch network. Peers have
random weights and get none. One scoring per artifact and backend serves every batch and protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mmad_edge.data.catalog import labelled_split
from mmad_edge.export.device_verification import score_frames
from mmad_edge.runtime import Detector
from mmad_edge.runtime.backends import AUTO
from mmad_edge.runtime.log import say
from mmad_edge.runtime.monitor.compare import auroc

from .options import BenchOptions
from .tables import ACCURACY_KEY


def attach_accuracy(
    rows: Sequence[dict[str, Any]], options: BenchOptions, image_size: int, torch_scores: Callable[[Any], dict] | None,
) -> list[dict[str, Any]]:
    """``rows`` with ``image_auroc`` on every MiniMaxAD row (None where it could not be scored).
    ``torch_scores``: frames -> {torch row name: scores} (None without torch)."""
    split = labelled_split(options.data, options.layout, options.categories, image_size)
    say(f"accuracy: {len(split.labels)} test images of {options.layout}:{options.data}", options.progress)
    found: dict[tuple[str, str], float | None] = {}
    for row in rows:
        if row.get("family") != "minimaxad":
            continue
        key = (row.get("artifact") or row["name"], row["backend"])
        if key not in found:
            found.update(_scored(key, row, split, torch_scores))
    return [{**row, ACCURACY_KEY: found.get((row.get("artifact") or row["name"], row["backend"]))}
            if row.get("family") == "minimaxad" else row for row in rows]


def _scored(key: tuple[str, str], row: dict[str, Any], split: Any, torch_scores: Callable[[Any], dict] | None) -> dict:
    """The AUROC of one artifact on one backend, or of every torch row at once."""
    if row.get("artifact") is None:
        if torch_scores is None or row["backend"] != "torch":
            return {key: None}
        return {(name, "torch"): auroc(split.labels, scores) for name, scores in torch_scores(split.frames).items()}
    deployed = Path(row["artifact"]).is_dir()  # the deployed row: the folder as auto loads it (its tuned choice)
    with Detector.load(row["artifact"], backend=AUTO if deployed else row["backend"]) as detector:
        return {key: auroc(split.labels, score_frames(detector, split.frames, 8, None, "").scores)}
