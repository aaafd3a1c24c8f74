"""`mmad-edge demo`: the whole path on built-in data, in one folder, in minutes on a CPU.

texture dataset -> train -> evaluate -> export FP32 / FP16 / INT8 (verified) -> the lean runtime
over the test images (overlays saved, AUROC per precision) -> bench -> report.md + plots.
Lives in bench/ because bench is the one room allowed to observe every other.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from mmad_edge.app.demo_options import DemoOptions
from mmad_edge.bench.tables import computes
from mmad_edge.data.dataset import build_dataset
from mmad_edge.data.demo import make_demo_dataset
from mmad_edge.runtime import Detector
from mmad_edge.runtime.artifact.contract import PRECISIONS, artifact_name
from mmad_edge.runtime.backends import reference
from mmad_edge.runtime.imageio import read_image
from mmad_edge.runtime.loop.overlay import render_overlay
from mmad_edge.runtime.monitor.compare import auroc


class Steps:
    """Prints numbered steps with their duration to stderr and keeps the durations."""

    def __init__(self, total: int, timings: dict[str, float]) -> None:
        self.total, self.index, self.timings = total, 0, timings

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        self.index += 1
        print(f"[{self.index}/{self.total}] {name} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        value = fn()
        self.timings[name] = round(time.perf_counter() - start, 1)
        print(f"[{self.index}/{self.total}] {name} done in {self.timings[name]:.1f}s", file=sys.stderr, flush=True)
        return value


def _dataset(opts: DemoOptions) -> Path:
    root = opts.out / "data"
    if all((root / c / "train" / "good").is_dir() for c in opts.categories):
        return root
    return make_demo_dataset(root, opts.categories, opts.n_train, opts.n_test_good, opts.n_test_defect,
                             size=256, seed=0, overwrite=True)


def _train(opts: DemoOptions, data: Path) -> Path:
    from mmad_edge.train import TrainOptions, train

    return train(TrainOptions(data=data, out=opts.out / "run", categories=list(opts.categories), variant=opts.variant,
                              image_size=opts.image_size, epochs=opts.epochs, batch_size=opts.batch_size,
                              loss=opts.loss, seed=opts.seed, progress=opts.progress, encoder_init="texture",
                              force=True))


def _evaluate(opts: DemoOptions, checkpoint: Path, data: Path) -> dict[str, Any]:
    from mmad_edge.evaluate import evaluate_checkpoint, format_table

    metrics = evaluate_checkpoint(checkpoint, data, "mvtec", list(opts.categories), progress=opts.progress)
    (opts.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(format_table(metrics), file=sys.stderr)
    return metrics


def _calibration_folder(opts: DemoOptions, data: Path) -> Path:
    """Normal training images of every category in one folder: relative links (the demo folder
    can be moved or copied whole), copies where the filesystem has no links. Links of an earlier
    run (absolute ones included) are made again."""
    folder = opts.out / "calib_images"
    folder.mkdir(parents=True, exist_ok=True)
    for category in opts.categories:
        for image in sorted((data / category / "train" / "good").iterdir()):
            link = folder / f"{category}_{image.name}"
            link.unlink(missing_ok=True)
            try:
                os.symlink(os.path.relpath(image.resolve(), folder.resolve()), link)
            except OSError:
                shutil.copy2(image, link)
    return folder


def _export(opts: DemoOptions, checkpoint: Path, data: Path, calib: Path, target: str, out: Path, precisions) -> dict:
    from mmad_edge.calib.options import Int8Options
    from mmad_edge.export.options import ExportOptions
    from mmad_edge.export.pipeline import export_checkpoint

    return export_checkpoint(checkpoint, out, ExportOptions(
        precisions=precisions, batch="1:8:16", data=data, categories=list(opts.categories), calib_data=calib,
        progress=opts.progress, max_images=24, int8=Int8Options(target=target, count=opts.calib_count, seed=0)))


def _test_images(opts: DemoOptions, data: Path) -> list[tuple[str, int, str]]:
    test = build_dataset(data, "mvtec", list(opts.categories), "test", opts.image_size)
    return [(str(r.image), r.label, r.category) for r in test.records]


def _runtime_pass(opts: DemoOptions, artifact: Path, images, overlays: Path | None) -> dict[str, Any]:
    """Score every test image through the deployed runtime (each texture with its own threshold,
    as a line that makes one product would run it); AUROC per category and mean."""
    scores, flagged = [], []
    with Detector.load(artifact, backend="onnxruntime") as pooled:
        # One session; per texture only the threshold and normalisation differ.
        detectors = {c: Detector(pooled.backend, category=c) for c in opts.categories}
        for path, label, category in images:
            frame = read_image(path)
            result = detectors[category](frame)
            scores.append(result.score)
            flagged.append(bool(result.is_anomaly))
            if overlays is not None:
                verdict = "anomaly" if result.is_anomaly else "normal"
                name = f"{verdict}_{category}_{Path(path).parent.name}_{Path(path).stem}.png"
                cv2.imwrite(str(overlays / name), render_overlay(frame, result, detectors[category].normalization))
    labels = np.array([label for _, label, _ in images])
    cats = np.array([c for _, _, c in images])
    values = np.array(scores)
    per_cat = {c: auroc(labels[cats == c], values[cats == c]) for c in opts.categories}
    defined = [v for v in per_cat.values() if v is not None]
    verdicts = np.array(flagged)
    # The pooled threshold, for comparison: what a unified model's one threshold would decide.
    pooled_flags = values > pooled.threshold if pooled.threshold is not None else np.zeros_like(verdicts)
    counts = {c: {"threshold": detectors[c].threshold,
                  "normal_median": (detectors[c].normalization or (None,))[0],
                  "defects_flagged": int(np.sum(verdicts & (labels == 1) & (cats == c))),
                  "defects": int(np.sum((labels == 1) & (cats == c))),
                  "normals_flagged": int(np.sum(verdicts & (labels == 0) & (cats == c))),
                  "normals": int(np.sum((labels == 0) & (cats == c))),
                  "pooled_threshold": pooled.threshold,
                  "defects_flagged_pooled": int(np.sum(pooled_flags & (labels == 1) & (cats == c))),
                  "normals_flagged_pooled": int(np.sum(pooled_flags & (labels == 0) & (cats == c)))}
              for c in opts.categories}
    return {"categories": per_cat, "mean": float(np.mean(defined)) if defined else None, "verdicts": counts}


def _bench(opts: DemoOptions, export_dirs: list[Path], checkpoint: Path) -> dict[str, Any]:
    from mmad_edge.bench.options import BenchOptions
    from mmad_edge.bench.suite import run_bench
    from mmad_edge.bench.tables import write_markdown, write_plot
    from mmad_edge.fileio import write_json

    report = run_bench([str(d) for d in export_dirs], BenchOptions(
        batches="1,16", protocols="e2e", warmup=3, iters=opts.bench_iters, peers=False, checkpoint=checkpoint,
        progress=opts.progress))
    write_json(opts.out / "bench.json", report)
    write_markdown(opts.out / "bench.md", report)
    write_plot(opts.out / "bench.png", report)
    return report


def model_summary(variant: str, image_size: int = 256) -> dict[str, Any]:
    """Parameters, GMACs at ``image_size`` and the reparameterisation's equivalence error."""
    from mmad_edge.bench.floor import count_module_cost
    from mmad_edge.bench.models import FeaturesOnly, random_model
    from mmad_edge.config import ModelConfig
    from mmad_edge.model.reparam import reparameterize

    model = random_model(ModelConfig(variant=variant, image_size=image_size))  # every folded term non-zero
    deployed = reparameterize(model)
    x = torch.randn(1, 3, image_size, image_size)
    with torch.no_grad():
        enc, dec = model.features(x)
        enc2, dec2 = deployed.features(x)
    error = max(float((a - b).norm() / b.norm()) for a, b in zip(enc2 + dec2, enc + dec))
    cost = count_module_cost(FeaturesOnly(deployed), x)
    params = {part: sum(p.numel() for p in getattr(model, part).parameters())
              for part in ("encoder", "bottleneck", "decoder")}
    summary = {"variant": variant, "image_size": image_size, "parameters": params,
               "deployed_parameters": sum(p.numel() for p in deployed.parameters()),
               "gmac_per_image": round(cost.gflop / 2, 3), "reparam_relative_l2_error": error}
    print(f"variant {variant}: parameters {params} ; {summary['gmac_per_image']} GMAC per {image_size}px image "
          f"(reparameterised); reparameterisation error {error:.1e} (relative L2)", file=sys.stderr)
    return summary


def run_demo(opts: DemoOptions) -> dict[str, Any]:
    """Run every step and write ``opts.out/report.md`` (+ JSON and PNG); returns the summary."""
    opts.out.mkdir(parents=True, exist_ok=True)
    steps = Steps(9, opts.timings)
    model_info = steps.run("model: parameters, GMACs at 256x256, reparameterisation error",
                           lambda: model_summary(opts.variant))
    data = steps.run("build the demo texture dataset", lambda: _dataset(opts))
    checkpoint = steps.run(f"train variant {opts.variant} at {opts.image_size}px for {opts.epochs} epochs",
                           lambda: _train(opts, data))
    metrics = steps.run("evaluate (PyTorch)", lambda: _evaluate(opts, checkpoint, data))
    calib = _calibration_folder(opts, data)
    export_dir, cpu_dir = opts.out / "export", opts.out / "export-int8-cpu"
    exported = steps.run("export FP32 / FP16 / INT8 (TensorRT Q/DQ) and verify",
                         lambda: _export(opts, checkpoint, data, calib, "tensorrt", export_dir, PRECISIONS))
    exported_cpu = steps.run("export INT8 for CPUs (ONNX Runtime) and verify",
                             lambda: _export(opts, checkpoint, data, calib, "cpu", cpu_dir, ("int8",)))
    images = _test_images(opts, data)
    overlays = opts.out / "overlays"
    overlays.mkdir(exist_ok=True)

    def runtime_all() -> dict[str, Any]:
        found = {p: export_dir / artifact_name(p) for p in PRECISIONS}
        found["int8-cpu"] = cpu_dir / artifact_name("int8")
        return {name: _runtime_pass(opts, path, images, overlays if name == "fp32" else None)
                for name, path in found.items()}

    accuracy = steps.run("run the lean runtime over the test images", runtime_all)
    bench = steps.run("bench (end-to-end, batch 1 and 16)", lambda: _bench(opts, [export_dir, cpu_dir], checkpoint))
    summary = {"options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(opts).items() if k != "timings"},
               "model": model_info, "metrics": metrics, "runtime_auroc": accuracy, "export": exported, "export_int8_cpu": exported_cpu,
               "bench": bench, "timings_s": opts.timings}
    steps.run("write the report", lambda: write_report(opts.out, summary))
    return summary


def _artifact_key(row: dict[str, Any]) -> str:
    """The runtime pass a bench row's artifact belongs to (``int8-cpu``: the CPU-form INT8 export)."""
    return "int8-cpu" if row["precision"] == "int8" and "cpu" in row["name"] else row["precision"]


def latency_lines(runtime: dict[str, Any], bench: dict[str, Any]) -> tuple[list[str], list[float]]:
    """The report's accuracy/latency table: each artifact's accuracy (measured on the reference
    backend) beside that backend's e2e latency, then every other backend's e2e rows, each naming
    the backend and the precision that computes (an FP32 graph run in BF16 is BF16, not FP32).
    Also the batch-1 p50s of the first table, for the plot."""
    cpu = reference().name
    e2e = [row for row in bench.get("results", []) if row.get("protocol") == "e2e"]
    ours = {(_artifact_key(row), row["batch"]): row for row in e2e if row["backend"] == cpu}
    lines = [f"## Accuracy and latency per precision ({cpu}, this CPU)", "",
             "| precision | backend | computes in | image AUROC (runtime) | e2e batch-1 p50 ms | batch-16 images/s |",
             "|---|---|---|---|---|---|"]
    latencies = []
    for name, result in runtime.items():
        b1, b16 = ours.get((name, 1), {}), ours.get((name, 16), {})
        computed = computes(b1) if b1 else name.split("-")[0]
        latencies.append(b1.get("p50_ms", float("nan")))
        lines.append(f"| {name} | {cpu} | {computed} | {result['mean']:.3f} | {b1.get('p50_ms', float('nan')):.1f} | "
                     f"{b16.get('images_per_s', float('nan')):.1f} |")
    others: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for row in e2e:
        if row["backend"] != cpu:
            others.setdefault((row["name"], row["backend"]), {})[row["batch"]] = row
    if others:
        lines += ["", "Other backends on this CPU (latency only; accuracy above is the reference backend's):", "",
                  "| row | backend | graph | computes in | e2e batch-1 p50 ms | batch-16 images/s |",
                  "|---|---|---|---|---|---|"]
        for (name, backend), by_batch in others.items():
            first = next(iter(by_batch.values()))
            b1, b16 = by_batch.get(1, {}), by_batch.get(16, {})
            lines.append(f"| {name} | {backend} | {first['precision']} | {computes(first)} | "
                         f"{b1.get('p50_ms', float('nan')):.1f} | {b16.get('images_per_s', float('nan')):.1f} |")
    return lines, latencies


def _verdict_lines(runtime: dict[str, Any]) -> list[str]:
    """The verdicts of each precision, each texture judged against its own threshold (the one
    the artifact carries), as a line making one product would run it."""
    lines = ["## Verdicts per precision (each texture with its own threshold)", "",
             "The last two columns judge the same scores against the pooled threshold of all textures, "
             "which is what a unified model decides without `--category`.", "",
             "| precision | category | normal median | threshold | defects flagged | normals flagged "
             "| pooled threshold | defects flagged (pooled) | normals flagged (pooled) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, result in runtime.items():
        for category, v in result["verdicts"].items():
            lines.append(f"| {name} | {category} | {_number(v.get('normal_median'))} | {_number(v['threshold'])} | "
                         f"{v['defects_flagged']} of {v['defects']} | {v['normals_flagged']} of {v['normals']} | "
                         f"{_number(v.get('pooled_threshold'))} | {v.get('defects_flagged_pooled', '-')} of "
                         f"{v['defects']} | {v.get('normals_flagged_pooled', '-')} of {v['normals']} |")
    return [*lines, ""]


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def write_report(out: Path, summary: dict[str, Any]) -> Path:
    """report.md (accuracy next to latency per precision), summary.json and accuracy_latency.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    names = list(summary["runtime_auroc"])
    table, latencies = latency_lines(summary["runtime_auroc"], summary["bench"])
    aurocs = [summary["runtime_auroc"][name]["mean"] or 0.0 for name in names]
    lines = [
        "# mmad-edge demo report", "",
        f"Variant {summary['options']['variant']} at {summary['options']['image_size']} px, "
        f"{summary['options']['epochs']} epochs on the built-in textures ({', '.join(summary['options']['categories'])}).",
        "", *table,
    ]
    lines += ["", "`int8` is the TensorRT form (symmetric Q/DQ on convolution inputs only): TensorRT fuses it, "
              "ONNX Runtime on a CPU only emulates it. `int8-cpu` is the form made for ONNX Runtime on CPUs.", ""]
    lines += _verdict_lines(summary["runtime_auroc"])
    mean, info = summary["metrics"]["mean"], summary["model"]
    lines += ["", "## Model", "",
              f"- parameters: {info['parameters']} (deployed form: {info['deployed_parameters']})",
              f"- {info['gmac_per_image']} GMAC per {info['image_size']}x{info['image_size']} image (reparameterised)",
              f"- reparameterisation error: {info['reparam_relative_l2_error']:.1e} relative L2 (float32)",
              "", "## PyTorch evaluation (mean over categories)", "",
              *(f"- {k}: {'-' if v is None else f'{v:.3f}'}" for k, v in mean.items()),
              "", "## Step durations (s)", "", *(f"- {k}: {v}" for k, v in summary["timings_s"].items()),
              "", "Overlays of every test frame (FP32 runtime; file names start with the verdict) are in `overlays/`; "
              "the export reports in `export/report.json` and `export-int8-cpu/report.json`; "
              "the bench in `bench.md`.", ""]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax1.bar(names, aurocs, color="tab:blue")
    ax1.set_ylim(0, 1)
    ax1.set_title("image AUROC (runtime)")
    ax2.bar(names, latencies, color="tab:orange")
    ax2.set_title(f"e2e latency, batch 1 (ms, {reference().name})")
    fig.tight_layout()
    fig.savefig(out / "accuracy_latency.png", dpi=100)
    plt.close(fig)
    lines.insert(4, "![accuracy and latency](accuracy_latency.png)\n")
    path = out / "report.md"
    path.write_text("\n".join(lines))
    print("\n".join(table), file=sys.stderr)
    print(f"report: {path}", file=sys.stderr)
    return path
