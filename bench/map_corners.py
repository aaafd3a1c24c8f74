"""Where the anomaly map peaks on normal images: the hot top-left corner and its fix (docs/maps.md).

    python -m mmad_edge.bench.map_corners [--work /tmp/map_corners] [--out bench/results]
        [--categories brick gravel] [--epochs 2] [--paddings zeros reflect]

Builds the demo data in ``--work`` (if absent), trains the demo's recipe once per encoder padding
(texture encoder, variant a, 128 px, global loss, seed 111; ``ModelConfig.encoder_padding``) and
measures each model on the good test images: in how many the map's maximum lies in each corner's
BLOCK x BLOCK pixels, the same with the image turned 180 degrees (a peak that stays in the
network's top-left is the network's, not the image's), the 1/4-scale ``1 - cosine`` at the
top-left pixel over its median, the normal-score spread and the image / pixel AUROC. Writes
``map_corners.json`` and ``.md`` in ``--out`` and prints the table.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# The demo's preset (app/demo_options.py; bench may not import app): training and test images.
RECIPE = {"variant": "a", "image_size": 128, "batch_size": 16, "loss": "global", "seed": 111}
IMAGES = {"n_train": 200, "n_test_good": 60, "n_test_defect": 120}
CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")
COLUMNS = ("padding", "category", "top-left peaks", "turned: top-left", "other corners", "1/4 corner / median",
           "normal std", "normal std/mean", "image AUROC", "pixel AUROC")


def corner_counts(maps: np.ndarray, block: int) -> dict[str, int]:
    """How many (N, H, W) maps have their maximum in each corner's ``block`` x ``block`` pixels."""
    n, h, w = maps.shape
    peak = maps.reshape(n, -1).argmax(1)
    ys, xs = peak // w, peak % w
    top, left, bottom, right = ys < block, xs < block, ys >= h - block, xs >= w - block
    masks = (top & left, top & right, bottom & left, bottom & right)
    return {name: int(mask.sum()) for name, mask in zip(CORNERS, masks)}


def measure(model: Any, data: Path, categories: Sequence[str], block: int) -> dict[str, dict[str, Any]]:
    """Per category: corner counts (plain and turned input), the 1/4-scale corner ratio, the
    normal-score mean/std and the image / pixel AUROC of ``model`` on the test split."""
    import torch

    from mmad_edge.data.dataset import build_dataset
    from mmad_edge.evaluate import metrics_of
    from mmad_edge.inference import predict
    from mmad_edge.model.anomaly_map import cosine_distance

    size = model.config.image_size
    dataset = build_dataset(data, "mvtec", list(categories), "test", size)
    predictions = predict(model.eval(), dataset, batch_size=16, progress=False)
    metrics = metrics_of(predictions)["categories"]
    results = {}
    for category in categories:
        chosen = predictions.select(category)
        good = chosen.labels == 0
        normal = [i for i, r in enumerate(dataset.records) if r.category == category and r.label == 0]
        frames = torch.stack([dataset[i]["image"] for i in normal])
        with torch.inference_mode():
            turned, _ = model(frames.flip(1, 2))  # the maps in the network's frame
            enc, dec = model.features(model.preprocess(frames))
        fine = cosine_distance(enc[0], dec[0])
        ratio = (fine[:, 0, 0] / fine.flatten(1).median(1).values).mean()
        scores = chosen.scores[good]
        results[category] = {
            "normal_images": int(good.sum()),
            "peaks": corner_counts(chosen.maps[good], block),
            "turned_peaks": corner_counts(turned.numpy(), block),
            "quarter_scale_corner_over_median": round(float(ratio), 3),
            "normal_score_mean": round(float(scores.mean()), 5),
            "normal_score_std": round(float(scores.std()), 5),
            "image_auroc": metrics[category]["image_auroc"],
            "pixel_auroc": metrics[category]["pixel_auroc"],
        }
    return results


def train_demo(data: Path, out: Path, categories: Sequence[str], padding: str, epochs: int) -> Path:
    """The demo's training recipe (``RECIPE``) with the encoder padding given; a run already
    completed in ``out`` with that padding and epoch count is reused (measuring again costs seconds, training minutes)."""
    from mmad_edge.checkpoint import read_checkpoint
    from mmad_edge.config import ModelConfig
    from mmad_edge.train import TrainOptions, train

    done = out / "checkpoint.pt"
    if done.is_file():
        ckpt = read_checkpoint(done)
        training = ckpt.get("training") or {}
        same = (training.get("options", {}).get("epochs") == epochs
                and ModelConfig.from_dict(ckpt["config"]).encoder_padding == padding)
        if training.get("completed") and same:
            return done

    return train(TrainOptions(data=data, out=out, categories=list(categories), epochs=epochs, encoder_init="texture",
                              force=True, model_options={"encoder_padding": padding}, **RECIPE))


def table_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for padding, categories in report["runs"].items():
        for category, r in categories.items():
            n = r["normal_images"]
            others = sum(r["peaks"][c] for c in CORNERS[1:])
            rows.append([padding, category, f"{r['peaks']['top_left']}/{n}", f"{r['turned_peaks']['top_left']}/{n}",
                         f"{others}/{n}", f"{r['quarter_scale_corner_over_median']:.2f}",
                         f"{r['normal_score_std']:.4f}", f"{r['normal_score_std'] / r['normal_score_mean']:.3f}",
                         f"{r['image_auroc']:.3f}", f"{r['pixel_auroc']:.3f}"])
    return rows


def markdown(report: dict[str, Any]) -> str:
    rows = table_rows(report)
    lines = [f"# Map corners ({report['command']})", "",
             f"Peaks: good test images whose map maximum lies in the {report['block']}x{report['block']} pixel corner "
             f"block; turned: the image rotated 180 degrees, counted in the network's frame.", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mmad_edge.bench.map_corners", description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/map_corners"), help="data and runs (default %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="folder for map_corners.json/.md")
    parser.add_argument("--categories", nargs="+", default=["brick", "gravel"])
    parser.add_argument("--epochs", type=int, default=2, help="training epochs per model (default %(default)s)")
    parser.add_argument("--paddings", nargs="+", default=["zeros", "reflect"], choices=["zeros", "reflect"])
    parser.add_argument("--block", type=int, default=4, help="corner block side in pixels (default %(default)s)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from mmad_edge.checkpoint import load_checkpoint
    from mmad_edge.data.demo import make_demo_dataset
    from mmad_edge.fileio import write_json

    data = args.work / "data"
    if not all((data / c / "train" / "good").is_dir() for c in args.categories):
        make_demo_dataset(data, args.categories, **IMAGES, overwrite=True)
    report: dict[str, Any] = {"command": "python -m mmad_edge.bench.map_corners " + " ".join(argv or sys.argv[1:]),
                              "block": args.block, "epochs": args.epochs, "runs": {}}
    for padding in args.paddings:
        checkpoint = train_demo(data, args.work / f"run_{padding}", args.categories, padding, args.epochs)
        model, _ = load_checkpoint(checkpoint)
        report["runs"][padding] = measure(model, data, args.categories, args.block)
    write_json(args.out / "map_corners.json", report)
    (args.out / "map_corners.md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
