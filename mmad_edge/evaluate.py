"""Evaluate a checkpoint on a test split: per-category metrics, mean, a table and JSON."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mmad_edge.checkpoint import load_checkpoint
from mmad_edge.data.dataset import build_dataset
from mmad_edge.inference import Predictions, predict
from mmad_edge.metrics import METRIC_KEYS, evaluate_category, summarize


def metrics_of(predictions: Predictions) -> dict[str, Any]:
    """{"categories": {name: metrics}, "mean": metrics} with None where a metric has no data."""
    per_category = {}
    for category in sorted(set(predictions.categories)):
        p = predictions.select(category)
        per_category[category] = evaluate_category(p.scores, p.labels, p.maps, p.masks, p.has_mask)
    return summarize(per_category)


def evaluate_checkpoint(
    checkpoint: str | Path, data: str | Path, layout: str = "mvtec", categories: Sequence[str] | None = None,
    batch_size: int = 16, device: str = "cpu", workers: int = 0, progress: bool = True,
) -> dict[str, Any]:
    model, ckpt = load_checkpoint(checkpoint)
    dataset = build_dataset(data, layout, categories, "test", model.config.image_size)
    metrics = metrics_of(predict(model, dataset, batch_size, device, workers, progress, desc="eval"))
    return {**metrics, "encoder_weights": ckpt.get("encoder_weights"),
            "thresholds": export_thresholds(ckpt.get("statistics"))}


def export_thresholds(statistics: dict[str, Any] | None) -> dict[str, Any] | None:
    """The thresholds an export of this checkpoint carries (its metadata's ``statistics``): pooled
    and per training category, so a line can check them before deploying; None without statistics."""
    if not statistics:
        return None
    categories = statistics.get("categories") or {}
    return {"pooled": statistics["threshold"],
            "categories": {name: entry["threshold"] for name, entry in sorted(categories.items())}}


def format_table(metrics: dict[str, Any]) -> str:
    """A fixed-width table: one row per category plus the mean; '-' where a metric has no data."""
    short = [k.replace("image_", "img_").replace("pixel_", "px_") for k in METRIC_KEYS]
    rows = [["category", *short]]
    for name, values in [*metrics["categories"].items(), ("mean", metrics["mean"])]:
        rows.append([name, *("-" if values.get(k) is None else f"{100 * values[k]:.1f}" for k in METRIC_KEYS)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    table = "\n".join("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows)
    return table if "thresholds" not in metrics else f"{table}\n{format_thresholds(metrics['thresholds'])}"


def format_thresholds(thresholds: dict[str, Any] | None) -> str:
    """One line: the pooled threshold and each category's, as an export would carry them."""
    if thresholds is None:
        return "thresholds an export would carry: none (the checkpoint has no held-out statistics; pass --threshold to run)"
    named = "".join(f", {name} {value:.4g}" for name, value in thresholds["categories"].items())
    return f"thresholds an export would carry: pooled {thresholds['pooled']:.4g}{named}"
