"""The `mmad-edge` command line: a thin face over the library (nothing imports this module).

Heavy modules are imported inside each command so `mmad-edge run` starts without torch.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from mmad_edge.calib.sensitivity import AccuracyTarget  # pure Python: the INT8 target's defaults
from mmad_edge.runtime.errors import BackendUnavailableError, SourceError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Train MiniMaxAD and deploy it to TensorRT / ONNX Runtime.")


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def write_json(path: Optional[Path], obj: dict) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    typer.echo(f"wrote {path}", err=True)


def _one_line(exc: BaseException) -> str:
    """The first line of an error; OS errors name their file (``[Errno 20] ...`` tells a user nothing)."""
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror}; check the path and its permissions"
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def guarded(fn):
    """Turn bad input, unusable files, missing backends and dead sources into one-line exits (code 2)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, OSError, FloatingPointError, BackendUnavailableError, SourceError) as exc:
            fail(_one_line(exc))
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130)
    return wrapper


@app.command("import-checkpoint")
@guarded
def import_checkpoint_cmd(
    out: Path = typer.Option(..., "--out", help="Project checkpoint to write (e.g. RUN_DIR/checkpoint.pt)."),
    variant: str = typer.Option("n", "--variant", help="a, f, p, n, t or s."),
    image_size: int = typer.Option(256, "--image-size"),
    encoder: Optional[Path] = typer.Option(None, "--encoder", help="UniRepLKNet ImageNet weights (.pth)."),
    minimaxad: Optional[Path] = typer.Option(None, "--minimaxad", help='MiniMaxAD run {"bn", "decoder"} (.pth).'),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write what was loaded and ignored as JSON."),
) -> None:
    """Convert UniRepLKNet / MiniMaxAD checkpoints into one project checkpoint."""
    from mmad_edge.checkpoint import import_checkpoint
    from mmad_edge.config import ModelConfig

    path, reports = import_checkpoint(ModelConfig(variant=variant, image_size=image_size), out, encoder, minimaxad)
    for report in reports:
        typer.echo(report.summary())
    typer.echo(f"wrote {path}")
    write_json(json_path, {"checkpoint": str(path), "imports": [vars(r) for r in reports]})


@app.command()
@guarded
def train(
    data: Path = typer.Option(..., "--data", help="Dataset root."),
    out: Path = typer.Option(..., "--out", help="Run folder; RUN_DIR/checkpoint.pt is written each epoch."),
    layout: str = typer.Option("mvtec", "--layout", help="mvtec, aebad, realiad or folder."),
    category: Optional[List[str]] = typer.Option(None, "--category", help="Repeat for unified training; default: all."),
    variant: str = typer.Option("a", "--variant"),
    image_size: int = typer.Option(256, "--image-size"),
    epochs: int = typer.Option(10, "--epochs"),
    max_steps: Optional[int] = typer.Option(None, "--max-steps"),
    batch_size: int = typer.Option(16, "--batch-size"),
    loss: str = typer.Option("adc", "--loss", help="adc (feature-rich data) or global (feature-poor)."),
    pretrained: Optional[Path] = typer.Option(None, "--pretrained", help="UniRepLKNet ImageNet weights for the encoder."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    seed: int = typer.Option(111, "--seed"),
    resume: bool = typer.Option(False, "--resume", help="Continue from RUN_DIR/checkpoint.pt (which must exist)."),
    force: bool = typer.Option(False, "--force", help="Overwrite the run already in --out."),
    lr: float = typer.Option(5e-3, "--lr"),
    holdout: float = typer.Option(0.1, "--holdout", help="Fraction of good train images kept for score statistics."),
    threshold_rule: str = typer.Option("mean+3std", "--threshold-rule", help="mean+Kstd or quantile:Q."),
    augment: bool = typer.Option(False, "--augment", help="Random resized crop + flip (AeBAD-S recipe)."),
    workers: int = typer.Option(0, "--workers"),
    score: str = typer.Option("top_percent", "--score", help="top_percent (mean of top 1%) or max."),
    encoder_init: str = typer.Option("texture", "--encoder-init", help="Without --pretrained: texture (statistics fitted on the training images) or random."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write a training summary as JSON."),
) -> None:
    """Train MiniMaxAD (frozen encoder; bottleneck + decoder learn)."""
    from mmad_edge.train import TrainOptions, train as run_training

    opts = TrainOptions(
        data=data, out=out, layout=layout, categories=category or None, variant=variant, image_size=image_size,
        epochs=epochs, max_steps=max_steps, batch_size=batch_size, loss=loss, pretrained=pretrained, device=device,
        seed=seed, resume=resume, force=force, lr=lr, holdout=holdout, threshold_rule=threshold_rule, augment=augment,
        workers=workers, model_options={"score_mode": score}, encoder_init=encoder_init,
    )
    path = run_training(opts)
    from mmad_edge.checkpoint import read_checkpoint

    ckpt = read_checkpoint(path)
    training, stats = ckpt["training"], ckpt["statistics"]
    last = training["history"][-1]["loss"] if training.get("history") else None
    threshold = f", threshold {stats['threshold']:.4f}" if stats else ", no held-out statistics"
    typer.echo(f"wrote {path}: {training['epoch']} epochs, {training['step']} steps, final loss "
               f"{'-' if last is None else f'{last:.4f}'}{threshold}")
    write_json(json_path, {"checkpoint": str(path), "config": ckpt["config"], "training": training, "statistics": stats})


@app.command("eval")
@guarded
def eval_cmd(
    checkpoint: Path = typer.Argument(..., help="RUN_DIR/checkpoint.pt"),
    data: Path = typer.Option(..., "--data"),
    layout: str = typer.Option("mvtec", "--layout"),
    category: Optional[List[str]] = typer.Option(None, "--category"),
    batch_size: int = typer.Option(16, "--batch-size"),
    device: str = typer.Option("cpu", "--device"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the metrics as JSON."),
) -> None:
    """Image and pixel AUROC / AP / F1-max and AUPRO per category, and their mean."""
    from mmad_edge.evaluate import evaluate_checkpoint, format_table

    metrics = evaluate_checkpoint(checkpoint, data, layout, category or None, batch_size, device)
    typer.echo(format_table(metrics))
    write_json(json_path, metrics)


@app.command()
def export(
    checkpoint: Path = typer.Argument(..., help="RUN_DIR/checkpoint.pt"),
    out: Path = typer.Option(..., "--out", help="Export folder (written atomically)."),
    precision: str = typer.Option("fp32,fp16", "--precision", help="Comma list of fp32, fp16, int8."),
    calib_data: Optional[Path] = typer.Option(None, "--calib-data", help="Folder of normal images for INT8."),
    batch: str = typer.Option("1", "--batch", help="N (fixed) or MIN:OPT:MAX (dynamic)."),
    engine: bool = typer.Option(False, "--engine", help="Also build TensorRT engines (needs TensorRT + GPU)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Dataset root for the verification report."),
    layout: str = typer.Option("mvtec", "--layout"),
    category: Optional[str] = typer.Option(None, "--category"),
    opset: int = typer.Option(20, "--opset", help="ONNX opset (20: native Gelu; TensorRT 10.3+ parses up to 20)."),
    image_size: Optional[int] = typer.Option(None, "--image-size"),
    variant: Optional[str] = typer.Option(None, "--variant", help="Fail unless the checkpoint is this variant."),
    input_format: str = typer.Option("uint8_bgr_nhwc", "--input-format", help="uint8_bgr_nhwc or float_rgb_nchw."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the report here."),
    target: str = typer.Option("tensorrt", "--target", help="INT8 form: tensorrt (symmetric Q/DQ) or cpu (ONNX Runtime VNNI)."),
    calib_method: str = typer.Option("minmax", "--calib-method", help="minmax, entropy or percentile."),
    calib_count: int = typer.Option(200, "--calib-count", help="Calibration images (random, seeded)."),
    calib_seed: int = typer.Option(0, "--calib-seed"),
    int8_spearman: float = typer.Option(AccuracyTarget.spearman_min, "--int8-spearman",
                                        help="INT8 target: score rank correlation vs FP32."),
    int8_auroc_drop: float = typer.Option(AccuracyTarget.auroc_drop_max, "--int8-auroc-drop",
                                          help="INT8 target: max image-AUROC drop."),
    int8_score_error: float = typer.Option(AccuracyTarget.score_error_max, "--int8-score-error",
                                           help="INT8 target: max RMS score shift, in units of the FP32 scores' spread."),
) -> None:
    """Export a checkpoint to verified ONNX (FP32/FP16/INT8) and optionally TensorRT engines."""
    from mmad_edge.export.pipeline import export_cli

    raise typer.Exit(export_cli(checkpoint, out, precision, calib_data, batch, engine, data, layout, category,
                                opset, image_size, input_format, json_path, variant,
                                {"target": target, "method": calib_method, "count": calib_count, "seed": calib_seed,
                                 "spearman_min": int8_spearman, "auroc_drop_max": int8_auroc_drop,
                                 "score_error_max": int8_score_error}))


@app.command("build-engine")
@guarded
def build_engine_cmd(
    onnx_path: Path = typer.Argument(..., help="DIR/model.<precision>.onnx"),
    batch: str = typer.Option("1", "--batch", help="N or MIN:OPT:MAX."),
    version_compatible: bool = typer.Option(False, "--version-compatible", help="Plan runnable by newer TensorRT / the lean runtime."),
    dla_core: Optional[int] = typer.Option(None, "--dla-core", help="Jetson DLA core (GPU fallback on)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Engine path (default DIR/model.<precision>.engine)."),
    workspace_gib: float = typer.Option(4.0, "--workspace-gib"),
    timing_cache: Optional[Path] = typer.Option(None, "--timing-cache"),
    optimization_level: int = typer.Option(3, "--optimization-level"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the engine, its size and its sidecar as JSON."),
) -> None:
    """Build a TensorRT engine from an exported ONNX (needs only TensorRT; run it on the target)."""
    from mmad_edge.export.tensorrt import build_engine_cli

    raise typer.Exit(build_engine_cli(onnx_path, batch, version_compatible, dla_core, workspace_gib, out, timing_cache,
                                      optimization_level, json_path))


@app.command()
@guarded
def run(
    artifact: Path = typer.Argument(..., help="model.<precision>.onnx, model.<precision>.engine, or an export folder."),
    source: str = typer.Option(..., "--source", help="Camera index (0), rtsp://..., video file or image folder."),
    show: bool = typer.Option(False, "--show", help="Window with heat-map overlay and score."),
    save: Optional[Path] = typer.Option(None, "--save", help="Folder for anomalous frames, maps and results.jsonl."),
    jsonl: bool = typer.Option(False, "--jsonl", help="One JSON object per frame on stdout."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Override the artifact's threshold."),
    backend: str = typer.Option("auto", "--backend", help="auto, tensorrt or onnxruntime."),
    batch: int = typer.Option(1, "--batch"),
    max_frames: Optional[int] = typer.Option(None, "--max-frames"),
    precision: Optional[str] = typer.Option(None, "--precision", help="Pick fp32/fp16/int8 from an export folder."),
    category: Optional[str] = typer.Option(None, "--category", help="Threshold of this training category (unified models)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the run summary as JSON."),
) -> None:
    """Score every frame of a camera, stream, video or folder (no torch needed)."""
    from mmad_edge.runtime.run import run_stream

    summary = run_stream(str(artifact), source, show=show, save_dir=save, jsonl=jsonl, threshold=threshold,
                         backend=backend, batch=batch, max_frames=max_frames, precision=precision, category=category)
    typer.echo(
        f"{summary['frames']} frames, {summary['anomalies']} anomalous, {summary.get('dropped', 0)} dropped, "
        f"{summary['fps']:.1f} FPS ({summary['backend']})", err=True,
    )
    write_json(json_path, summary)
    if summary.get("interrupted"):
        raise typer.Exit(130)


@app.command()
@guarded
def bench(
    artifacts: Optional[List[Path]] = typer.Argument(None, help="Export folders or .onnx/.engine files; none: the built-in default."),
    backend: str = typer.Option("auto", "--backend", help="auto, tensorrt, onnxruntime or torch."),
    batch: str = typer.Option("1,16", "--batch", help="Comma list of batch sizes."),
    protocol: str = typer.Option("paper,e2e", "--protocol", help="paper, e2e or both."),
    warmup: int = typer.Option(10, "--warmup"),
    iters: int = typer.Option(50, "--iters"),
    json_path: Optional[Path] = typer.Option(None, "--json"),
    markdown_path: Optional[Path] = typer.Option(None, "--markdown"),
    plot_path: Optional[Path] = typer.Option(None, "--plot"),
    peers: bool = typer.Option(True, "--peers/--no-peers", help="Time EfficientAD, RD4AD and PatchCore too."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Weights for the PyTorch rows."),
    image_size: Optional[int] = typer.Option(None, "--image-size"),
    case_budget: float = typer.Option(6.0, "--case-budget", help="Seconds of timing per row before iterations are cut."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Where the default export is kept."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress lines on stderr."),
    micro_batch: Optional[int] = typer.Option(
        None, "--micro-batch", help="Images per ONNX Runtime CPU run of a batch (default: the runtime's "
                                    "cache-sized choice; 0: one run per batch)."),
) -> None:
    """Latency and throughput side by side (PyTorch, ONNX Runtime, TensorRT, peers) with the hardware floor."""
    from mmad_edge.bench.suite import bench_cli

    raise typer.Exit(bench_cli(artifacts or [], backend, batch, protocol, warmup, iters, json_path, markdown_path,
                               plot_path, peers, checkpoint, cache_dir, image_size, not quiet, case_budget,
                               micro_batch))


@app.command()
@guarded
def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", help="Folder for data, run, exports, overlays and the report."),
    epochs: int = typer.Option(4, "--epochs"),
    image_size: int = typer.Option(128, "--image-size"),
    variant: str = typer.Option("a", "--variant"),
    loss: str = typer.Option("global", "--loss", help="global (default here: textures are "
                                                      "feature-poor data) or adc."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the summary here."),
) -> None:
    """The whole path on built-in textures: data, train, eval, export, runtime, bench, report."""
    from mmad_edge.bench.demo import DemoOptions, run_demo

    summary = run_demo(DemoOptions(out=out, epochs=epochs, image_size=image_size, variant=variant, loss=loss))
    write_json(json_path, summary)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
