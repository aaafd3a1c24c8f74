"""Run a PyTorch MiniMaxAD over a dataset: maps, scores and the ground truth beside them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mmad_edge.model.minimaxad import MiniMaxAD
from mmad_edge.progress import progress_bar


@dataclass
class Predictions:
    """Per-image outputs of one pass; maps are float32 (N, S, S)."""

    scores: np.ndarray
    maps: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    has_mask: np.ndarray
    categories: list[str]

    def select(self, category: str) -> Predictions:
        idx = np.array([c == category for c in self.categories])
        return Predictions(
            self.scores[idx], self.maps[idx], self.labels[idx], self.masks[idx], self.has_mask[idx],
            [c for c, k in zip(self.categories, idx) if k],
        )


@torch.inference_mode()
def predict(
    model: MiniMaxAD, dataset: Dataset, batch_size: int = 16, device: str = "cpu", workers: int = 0,
    progress: bool = True, desc: str = "predict",
) -> Predictions:
    """Anomaly maps and scores of every item, in dataset order."""
    model = model.to(device).eval()
    out: dict[str, list] = {k: [] for k in ("scores", "maps", "labels", "masks", "has_mask", "categories")}
    batches = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    for batch in progress_bar(batches, desc, progress):
        maps, scores = model(batch["image"].to(device))
        out["scores"].append(scores.float().cpu().numpy())
        out["maps"].append(maps.float().cpu().numpy())
        out["labels"].append(np.asarray(batch["label"]))
        out["masks"].append(batch["mask"].numpy())
        out["has_mask"].append(np.asarray(batch["has_mask"], dtype=bool))
        out["categories"] += list(batch["category"])
    if not out["scores"]:
        raise ValueError("nothing to predict: the dataset is empty")
    return Predictions(
        np.concatenate(out["scores"]), np.concatenate(out["maps"]), np.concatenate(out["labels"]),
        np.concatenate(out["masks"]), np.concatenate(out["has_mask"]), out["categories"],
    )
