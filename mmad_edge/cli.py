"""The `mmad-edge` command line: a thin face over the library (nothing imports this module).

Heavy modules are imported inside each command so `mmad-edge run` starts without torch.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import List, Optional

import typer

from mmad_edge import fileio
from mmad_edge.bench.options import BenchOptions
from mmad_edge.calib.options import Int8Options  # these options modules are torch-free: their defaults
from mmad_edge.calib.sensitivity import AccuracyTarget
from mmad_edge.export.options import CalibrateOptions, EngineOptions, ExportOptions, VerifyOptions
from mmad_edge.runtime.backends import choices as backend_choices
from mmad_edge.runtime.monitor.drift import DEFAULT_TOLERANCE, DEFAULT_WINDOW
from mmad_edge.runtime.errors import BackendUnavailableError, SourceError
from mmad_edge.runtime.loop.options import RunOptions
from mmad_edge.runtime.serving.options import RepoOptions, ServeOptions
from mmad_edge.train_options import TrainOptions

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Train MiniMaxAD and deploy it to TensorRT / ONNX Runtime.")


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def write_json(path: Optional[Path], obj: dict) -> None:
    """``--json PATH``: write ``obj`` there (nothing without a path) and say so on stderr."""
    if path is not None:
        typer.echo(f"wrote {fileio.write_json(path, obj)}", err=True)


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


# What each install extra brings (top-level module names): a command that needs one of them says
# which extra to install instead of a traceback on a runtime-only install.
EXTRA_MODULES = {
    "train": frozenset({"torch", "scipy", "sklearn", "skimage", "matplotlib"}),
    "export": frozenset({"torch", "scipy", "sklearn", "skimage", "matplotlib", "onnx", "onnxsim", "onnxruntime"}),
}


def needs(extra: str) -> Callable:
    """Stop with the extra to install when the command's stack is missing (e.g. torch under ".[ort]")."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except ModuleNotFoundError as exc:
                module = (exc.name or "").split(".")[0]
                if module not in EXTRA_MODULES[extra]:
                    raise
                command = fn.__name__.removesuffix("_cmd").replace("_", "-")
                fail(f"mmad-edge {command} needs {module}, which this install lacks; "
                     f'pip install ".[{extra}]" from the mmad-edge checkout')
        return wrapper
    return decorate


# Options shared by several commands: one name, one meaning, one default, one help text.
def variant_option(default: Optional[str] = "a", note: str = "") -> str:
    return typer.Option(default, "--variant", help=f"Model size: a, f, p, n, t or s{note}.")


def image_size_option(default: Optional[int] = 256, note: str = "") -> int:
    return typer.Option(default, "--image-size", help=f"Square input size in pixels, a multiple of 32{note}.")


def category_option(text: str = "Dataset category; repeat for several (default: all).") -> Optional[List[str]]:
    return typer.Option(None, "--category", help=text)


def data_option(required: bool = True) -> Optional[Path]:
    return typer.Option(... if required else None, "--data", help="Dataset root (see --layout).")


def layout_option() -> str:
    return typer.Option("mvtec", "--layout", help="Dataset layout: mvtec, aebad, realiad or folder.")


def device_option() -> str:
    return typer.Option("cpu", "--device", help="PyTorch device: cpu or cuda.")


def batch_size_option(default: int = 16) -> int:
    return typer.Option(default, "--batch-size", help="Images per forward pass.")


def inference_precision_option(note: str) -> Optional[str]:
    return typer.Option(None, "--inference-precision",
                        help=f"OpenVINO compute precision: f32, bf16 or f16 (bf16/f16 need the CPU's units){note}.")


def performance_hint_option(note: str) -> Optional[str]:
    return typer.Option(None, "--performance-hint", help=f"OpenVINO hint: latency or throughput{note}.")


def loss_option(default: Optional[str] = "adc", note: str = "") -> str:
    return typer.Option(default, "--loss", help=f"adc (feature-rich data) or global (feature-poor data){note}.")


def epochs_option(default: Optional[int] = 10, note: str = "") -> int:
    return typer.Option(default, "--epochs", help=f"Training epochs{note}.")


def drift_window_option(per: str) -> int:
    return typer.Option(DEFAULT_WINDOW, "--drift-window", help=f"Scores per {per} in the drift watch's rolling median.")


def drift_tolerance_option() -> float:
    return typer.Option(DEFAULT_TOLERANCE, "--drift-tolerance", help="Warn when the rolling median is this many "
                        "normal std from the normal median (recovered below half).")


def profile_option() -> str:
    return typer.Option(ExportOptions.batch, "--batch", help="Batch profile of the graph or engine: N (fixed) or MIN:OPT:MAX (dynamic).")


DEMO_PRESET = " (default: the demo's preset, {})"


def refuse_export(checkpoint: Path) -> None:
    """`eval` scores a PyTorch checkpoint; an export folder or graph is scored by `run`."""
    if checkpoint.is_dir() or checkpoint.suffix in (".onnx", ".engine"):
        fail(f"{checkpoint}: eval takes a training checkpoint (RUN_DIR/checkpoint.pt), not an export; "
             f"score an export with 'mmad-edge run {checkpoint} --source TEST_IMAGES --jsonl' "
             "(its report.json holds the export's accuracy)")


@app.command("import-checkpoint")
@guarded
@needs("train")
def import_checkpoint_cmd(
    out: Path = typer.Option(..., "--out", help="Project checkpoint to write (e.g. RUN_DIR/checkpoint.pt)."),
    variant: str = typer.Option(..., "--variant", help="Model size: a, f, p, n, t or s (the one the weights are for)."),
    image_size: int = image_size_option(),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="UniRepLKNet ImageNet weights: a name from "
                                                                  "`mmad-edge weights` or a .pth file."),
    minimaxad: Optional[Path] = typer.Option(None, "--minimaxad", help='MiniMaxAD run {"bn", "decoder"} (.pth).'),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write what was loaded and ignored as JSON."),
) -> None:
    """Convert UniRepLKNet / MiniMaxAD checkpoints into one project checkpoint."""
    from mmad_edge.checkpoint import import_checkpoint
    from mmad_edge.config import ModelConfig
    from mmad_edge.runtime.artifact.metadata import describe_encoder_weights as describe

    path, reports, record = import_checkpoint(ModelConfig(variant=variant, image_size=image_size), out, encoder,
                                              minimaxad)
    for report in reports:
        typer.echo(report.summary())
    typer.echo(f"encoder weights: {describe(record)}")
    typer.echo(f"wrote {path}")
    write_json(json_path, {"checkpoint": str(path), "imports": [vars(r) for r in reports], "encoder_weights": record})


@app.command()
@guarded
def weights(
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the list as JSON."),
) -> None:
    """The official UniRepLKNet ImageNet weights for --pretrained NAME: variant, file, whether cached."""
    from mmad_edge.weights import REPO_ID, listing, local_dir

    rows = listing()
    table = [("name", "variant", "file", "pretraining", "cached")] + [
        (r["name"], r["variant"], r["file"], r["pretraining"], r["cached"] or "no") for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        typer.echo("  ".join([*(c.ljust(w) for c, w in zip(row, widths)), row[-1]]))
    typer.echo(f"downloaded from the Hugging Face repo {REPO_ID} on first use; offline, put the file in {local_dir()}/")
    write_json(json_path, {"weights": rows})


@app.command()
@guarded
@needs("train")
def train(
    data: Path = data_option(),
    out: Path = typer.Option(..., "--out", help="Run folder; RUN_DIR/checkpoint.pt is written each epoch."),
    layout: str = layout_option(),
    category: Optional[List[str]] = category_option("Dataset category; repeat for one unified model (default: all)."),
    variant: str = variant_option(TrainOptions.variant),
    image_size: int = image_size_option(TrainOptions.image_size),
    epochs: int = epochs_option(TrainOptions.epochs),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many optimiser steps."),
    batch_size: int = batch_size_option(TrainOptions.batch_size),
    loss: str = loss_option(TrainOptions.loss),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", help="UniRepLKNet ImageNet weights for the encoder: "
                                             "a name from `mmad-edge weights` (downloaded once) or a .pth file. "
                                             "Default: the variant's ImageNet-1K weights."),
    device: str = device_option(),
    seed: int = typer.Option(TrainOptions.seed, "--seed", help="Seed of the weights, data order and hold-out split."),
    resume: bool = typer.Option(TrainOptions.resume, "--resume/--no-resume",
                                help="Continue from RUN_DIR/checkpoint.pt (which must exist)."),
    force: bool = typer.Option(TrainOptions.force, "--force/--no-force", help="Overwrite the run already in --out."),
    lr: float = typer.Option(TrainOptions.lr, "--lr", help="AdamW learning rate."),
    holdout: float = typer.Option(TrainOptions.holdout, "--holdout",
                                  help="Fraction of good train images kept for score statistics."),
    threshold_rule: str = typer.Option(TrainOptions.threshold_rule, "--threshold-rule",
                                       help="mean+Kstd or quantile:Q."),
    augment: bool = typer.Option(TrainOptions.augment, "--augment/--no-augment",
                                 help="Random resized crop + flip (AeBAD-S recipe)."),
    workers: int = typer.Option(TrainOptions.workers, "--workers",
                                help="Data-loading processes (0: in the main process)."),
    score: str = typer.Option("top_percent", "--score", help="top_percent (mean of top 1%) or max."),
    encoder_init: str = typer.Option(TrainOptions.encoder_init, "--encoder-init",
                                     help="imagenet (default: --pretrained, else the variant's official weights), "
                                          "texture (statistics fitted on the training images; the offline choice) "
                                          "or random."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write a training summary as JSON."),
) -> None:
    """Train MiniMaxAD (frozen encoder; bottleneck + decoder learn)."""
    from mmad_edge.train import train as run_training

    opts = TrainOptions(
        data=data, out=out, layout=layout, categories=category or None, variant=variant, image_size=image_size,
        epochs=epochs, max_steps=max_steps, batch_size=batch_size, loss=loss, pretrained=pretrained, device=device,
        seed=seed, resume=resume, force=force, lr=lr, holdout=holdout, threshold_rule=threshold_rule, augment=augment,
        workers=workers, model_options={"score_mode": score}, encoder_init=encoder_init,
    )
    path = run_training(opts)
    from mmad_edge.checkpoint import read_checkpoint
    from mmad_edge.runtime.artifact.metadata import describe_encoder_weights as describe

    ckpt = read_checkpoint(path)
    training, stats = ckpt["training"], ckpt["statistics"]
    last = training["history"][-1]["loss"] if training.get("history") else None
    threshold = f", threshold {stats['threshold']:.4f}" if stats else ", no held-out statistics"
    typer.echo(f"wrote {path}: {training['epoch']} epochs, {training['step']} steps, final loss "
               f"{'-' if last is None else f'{last:.4f}'}{threshold}; encoder weights: "
               f"{describe(ckpt.get('encoder_weights'))}")
    write_json(json_path, {"checkpoint": str(path), "config": ckpt["config"], "training": training, "statistics": stats,
                           "encoder_weights": ckpt.get("encoder_weights")})


@app.command("eval")
@guarded
@needs("train")
def eval_cmd(
    checkpoint: Path = typer.Argument(..., help="RUN_DIR/checkpoint.pt (a training checkpoint, not an export)."),
    data: Path = data_option(),
    layout: str = layout_option(),
    category: Optional[List[str]] = category_option(),
    batch_size: int = batch_size_option(),
    device: str = device_option(),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the metrics as JSON."),
) -> None:
    """Image and pixel AUROC / AP / F1-max and AUPRO per category, and their mean."""
    refuse_export(checkpoint)
    from mmad_edge.evaluate import evaluate_checkpoint, format_table
    from mmad_edge.runtime.artifact.metadata import describe_encoder_weights as describe

    metrics = evaluate_checkpoint(checkpoint, data, layout, category or None, batch_size, device)
    typer.echo(format_table(metrics))
    typer.echo(f"encoder weights: {describe(metrics['encoder_weights'])}")
    write_json(json_path, metrics)


@app.command()
@guarded
@needs("export")
def export(
    checkpoint: Path = typer.Argument(..., help="RUN_DIR/checkpoint.pt"),
    out: Path = typer.Option(..., "--out", help="Export folder (written atomically)."),
    precision: str = typer.Option(ExportOptions.precisions, "--precision", help="Comma list of fp32, fp16, int8."),
    calib_data: Optional[Path] = typer.Option(None, "--calib-data", help="Folder of normal images for INT8."),
    batch: str = profile_option(),
    engine: bool = typer.Option(ExportOptions.engine, "--engine/--no-engine",
                                help="Also build TensorRT engines (needs TensorRT + GPU)."),
    data: Optional[Path] = data_option(required=False),
    layout: str = layout_option(),
    category: Optional[List[str]] = category_option("Test category of --data for the verification report; "
                                                    "repeat for several (default: all)."),
    opset: int = typer.Option(ExportOptions.opset, "--opset",
                              help="ONNX opset (20: native Gelu; TensorRT 10.3+ parses up to 20)."),
    image_size: Optional[int] = image_size_option(None, " (default: the checkpoint's)"),
    variant: Optional[str] = variant_option(None, " (default: the checkpoint's; given, the checkpoint must match)"),
    input_format: str = typer.Option(ExportOptions.input_format, "--input-format",
                                     help="uint8_bgr_nhwc or float_rgb_nchw."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the report here."),
    target: str = typer.Option(Int8Options.target, "--target",
                               help="INT8 form: tensorrt (symmetric Q/DQ) or cpu (ONNX Runtime VNNI)."),
    calib_method: str = typer.Option(Int8Options.method, "--calib-method", help="minmax, entropy or percentile."),
    calib_count: int = typer.Option(Int8Options.count, "--calib-count", help="Calibration images (random, seeded)."),
    calib_seed: int = typer.Option(Int8Options.seed, "--calib-seed", help="Seed of the calibration image draw."),
    int8_spearman: float = typer.Option(AccuracyTarget.spearman_min, "--int8-spearman",
                                        help="INT8 target: score rank correlation vs FP32."),
    int8_auroc_drop: float = typer.Option(AccuracyTarget.auroc_drop_max, "--int8-auroc-drop",
                                          help="INT8 target: max image-AUROC drop."),
    int8_score_error: float = typer.Option(AccuracyTarget.score_error_max, "--int8-score-error",
                                           help="INT8 target: max RMS score shift, in units of the FP32 scores' spread."),
) -> None:
    """Export a checkpoint to verified ONNX (FP32/FP16/INT8) and optionally TensorRT engines."""
    from mmad_edge.export.pipeline import ExportFailed, VerificationFailed, export_checkpoint
    from mmad_edge.fileio import write_json_atomic

    int8 = Int8Options(target=target, method=calib_method, count=calib_count, seed=calib_seed,
                       accuracy=AccuracyTarget(int8_spearman, int8_auroc_drop, int8_score_error))
    options = ExportOptions(precisions=precision, batch=batch, opset=opset, image_size=image_size, variant=variant,
                            input_format=input_format, engine=engine, data=data, layout=layout,
                            categories=category or None, calib_data=calib_data, int8=int8)
    code = 0
    try:
        report = export_checkpoint(checkpoint, out, options)
    except ExportFailed as exc:  # this run's report still goes to --json, never an older one
        typer.echo(f"error: {exc}", err=True)
        report = exc.report
        code = 1 if isinstance(exc, VerificationFailed) else build_exit_code(exc.__cause__)
    if json_path is not None:
        write_json_atomic(json_path, report)
    raise typer.Exit(code)


def build_exit_code(exc: BaseException | None) -> int:
    """The exit code of a failed engine build: 3 no TensorRT / GPU, 1 the build failed, 2 bad input."""
    from mmad_edge.export.tensorrt import EngineBuildError, TensorRTUnavailable

    if isinstance(exc, TensorRTUnavailable):
        return 3
    return 1 if isinstance(exc, EngineBuildError) else 2


@app.command("build-engine")
@guarded
def build_engine_cmd(
    onnx_path: Path = typer.Argument(..., help="DIR/model.<precision>.onnx"),
    batch: str = profile_option(),
    version_compatible: bool = typer.Option(
        EngineOptions.version_compatible, "--version-compatible/--no-version-compatible",
        help="Plan runnable by newer TensorRT / the lean runtime."),
    dla_core: Optional[int] = typer.Option(None, "--dla-core", help="Jetson DLA core (GPU fallback on)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Engine path (default DIR/model.<precision>.engine)."),
    workspace_gib: float = typer.Option(EngineOptions.workspace_gib, "--workspace-gib",
                                        help="Builder workspace limit (GiB)."),
    timing_cache: Optional[Path] = typer.Option(None, "--timing-cache", help="Timing cache file, read and updated "
                                                "(default DIR/tensorrt.timing.cache)."),
    optimization_level: int = typer.Option(EngineOptions.optimization_level, "--optimization-level",
                                           help="Builder optimisation level, 0-5."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the engine, its size and its sidecar as JSON."),
    verify_data: Optional[Path] = typer.Option(None, "--verify", help="Dataset root: verify the engine on its labelled "
                                               "test split right after the build (as `mmad-edge verify`)."),
    layout: str = layout_option(),
    category: Optional[List[str]] = category_option("Test category of --verify; repeat for several (default: all)."),
) -> None:
    """Build a TensorRT engine from an exported ONNX (needs only TensorRT; run it on the target)."""
    from mmad_edge.export import tensorrt as trt_build
    from mmad_edge.fileio import write_json_atomic

    options = EngineOptions(batch=batch, workspace_gib=workspace_gib, optimization_level=optimization_level,
                            timing_cache=timing_cache or onnx_path.parent / trt_build.TIMING_CACHE_NAME,
                            version_compatible=version_compatible, dla_core=dla_core)
    try:
        info = trt_build.build_engine(onnx_path, out or trt_build.default_engine_path(onnx_path), options)
    except (trt_build.TensorRTUnavailable, trt_build.EngineBuildError) as exc:
        fail(str(exc), build_exit_code(exc))
    typer.echo(trt_build.build_summary(info))
    if json_path is not None:
        write_json_atomic(json_path, {**info, "metadata": json.loads(Path(info["sidecar"]).read_text())})
    if verify_data is not None:
        verify_and_report(Path(info["engine"]), VerifyOptions(data=verify_data, layout=layout, categories=category or None))


def verify_and_report(artifact: Path, options: VerifyOptions, json_path: Optional[Path] = None) -> None:
    """Run ``verify_artifact``, print its summary, exit 1 naming the failed metrics."""
    from mmad_edge.export.device_verification import summary_text, verify_artifact, verify_path

    result = verify_artifact(artifact, options)
    typer.echo(summary_text(result))
    typer.echo(f"wrote {verify_path(result['artifact'])}", err=True)
    write_json(json_path, result)
    if result["passed"] is False:
        fail(f"verification failed: {'; '.join(result['failed'])}", 1)


@app.command()
@guarded
def verify(
    artifact: Path = typer.Argument(..., help="model.<precision>.onnx, model.<precision>.engine, or an export folder."),
    data: Path = data_option(),
    layout: str = layout_option(),
    category: Optional[List[str]] = category_option("Test category of --data; repeat for several (default: all)."),
    against: Optional[Path] = typer.Option(None, "--against", help="Reference: a model.fp32.onnx or a checkpoint.pt "
                                           "(needs torch); default: the folder's model.fp32.onnx."),
    backend: str = typer.Option(VerifyOptions.backend, "--backend", help=f"{', '.join(backend_choices())}."),
    precision: Optional[str] = typer.Option(None, "--precision", help="Pick fp32/fp16/int8 from an export folder."),
    max_images: Optional[int] = typer.Option(None, "--max-images", help="Test images at most (evenly spread)."),
    batch_size: int = batch_size_option(VerifyOptions.batch_size),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the result here."),
) -> None:
    """Accuracy of the deployed artifact on this machine's backend over labelled images, against its reference."""
    verify_and_report(artifact, VerifyOptions(data=data, layout=layout, categories=category or None, against=against,
                                              backend=backend, precision=precision, max_images=max_images,
                                              batch_size=batch_size), json_path)


@app.command("calibrate-threshold")
@guarded
def calibrate_threshold_cmd(
    artifact: Path = typer.Argument(..., help="model.<precision>.onnx, model.<precision>.engine, or an export folder."),
    good: Path = typer.Option(..., "--good", help="Folder of normal images of the line."),
    bad: Optional[Path] = typer.Option(None, "--bad", help="Folder of defective images: recall and F1 are reported."),
    category: Optional[str] = typer.Option(None, "--category", help="Set this training category's threshold (unified models)."),
    fpr: Optional[float] = typer.Option(None, "--fpr", help="Target false-positive rate F on good images: threshold = "
                                        "the (1 - F) quantile of their scores."),
    rule: Optional[str] = typer.Option(None, "--rule", help="mean+Kstd or quantile:Q (default mean+3std)."),
    backend: str = typer.Option(CalibrateOptions.backend, "--backend", help=f"{', '.join(backend_choices())}."),
    precision: Optional[str] = typer.Option(None, "--precision", help="Pick fp32/fp16/int8 from an export folder."),
    batch_size: int = batch_size_option(CalibrateOptions.batch_size),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the result here."),
) -> None:
    """Recompute the threshold from the deployed backend's scores of good images; update the artifact's metadata."""
    from mmad_edge.export.threshold_calibration import calibrate_threshold, summary_text

    result = calibrate_threshold(artifact, CalibrateOptions(good=good, bad=bad, category=category, fpr=fpr, rule=rule,
                                                            backend=backend, precision=precision, batch_size=batch_size))
    typer.echo(summary_text(result))
    write_json(json_path, result)


@app.command()
@guarded
def run(
    artifact: Path = typer.Argument(..., help="model.<precision>.onnx, model.<precision>.engine, or an export folder."),
    source: List[str] = typer.Option(
        ..., "--source", help="Camera index (0), rtsp://..., video file or image folder; repeat for several sources "
                              "(batched together); NAME=SOURCE scores one with category NAME's threshold."),
    show: bool = typer.Option(RunOptions.show, "--show/--no-show",
                              help="Window with heat-map overlay and score (needs opencv-python, not -headless)."),
    save: Optional[Path] = typer.Option(
        None, "--save", help="Folder that keeps the anomalous frames only: each as frame, overlay and map PNGs plus a "
                             "line in results.jsonl (maps at model size; at frame size with --map-size frame)."),
    map_size: str = typer.Option(RunOptions.map_size, "--map-size",
                                 help="Anomaly maps at the model's size or each frame's: model or frame."),
    jsonl: bool = typer.Option(RunOptions.jsonl, "--jsonl/--no-jsonl",
                               help="One strict-JSON object per frame on stdout."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Override the artifact's threshold (finite)."),
    backend: str = typer.Option(RunOptions.backend, "--backend", help=f"{', '.join(backend_choices())}."),
    batch_size: int = batch_size_option(RunOptions.batch),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", help="Stop after N >= 1 frames (default: until the source ends)."),
    retry_seconds: Optional[float] = typer.Option(
        None, "--retry-seconds", help="How long to keep reopening a camera, stream or video that gives no frames "
                                      "(default 15; 0: fail at once)."),
    precision: Optional[str] = typer.Option(None, "--precision", help="Pick fp32/fp16/int8 from an export folder."),
    category: Optional[str] = typer.Option(None, "--category", help="Threshold of this training category (unified models)."),
    drift_window: int = drift_window_option("source"),
    drift_tolerance: float = drift_tolerance_option(),
    metrics_port: Optional[int] = typer.Option(
        None, "--metrics-port", help="Serve Prometheus metrics at http://0.0.0.0:PORT/metrics during the run."),
    inference_precision: Optional[str] = inference_precision_option(" (default f32)"),
    performance_hint: Optional[str] = performance_hint_option(" (default: latency at --batch-size 1, else throughput)"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the run summary as JSON."),
) -> None:
    """Score every frame of cameras, streams, videos or folders (no torch needed); one summary line at the end."""
    from mmad_edge.runtime.loop.run import run_stream

    options = RunOptions(show=show, save_dir=save, jsonl=jsonl, threshold=threshold, backend=backend, batch=batch_size,
                         max_frames=max_frames, precision=precision, category=category, retry_s=retry_seconds,
                         map_size=map_size, drift_window=drift_window, drift_tolerance=drift_tolerance,
                         metrics_port=metrics_port, inference_precision=inference_precision,
                         performance_hint=performance_hint)
    summary = run_stream(str(artifact), source, options)
    write_json(json_path, summary)
    if summary.get("interrupted"):
        raise typer.Exit(130)


@app.command()
@guarded
def serve(
    artifact: Path = typer.Argument(..., help="model.<precision>.onnx, model.<precision>.engine, or an export folder."),
    port: int = typer.Option(ServeOptions.http_port, "--port", help="HTTP/REST port (KServe v2)."),
    grpc_port: int = typer.Option(ServeOptions.grpc_port, "--grpc-port", help="gRPC port (KServe v2)."),
    metrics_port: int = typer.Option(ServeOptions.metrics_port, "--metrics-port", help="Prometheus metrics port."),
    max_batch: Optional[int] = typer.Option(None, "--max-batch",
                                            help="Largest dynamic batch (default: the artifact's profile maximum)."),
    max_queue_delay_us: int = typer.Option(ServeOptions.max_queue_delay_us, "--max-queue-delay-us",
                                           help="Microseconds a request may wait for others to fill a batch."),
    instances: int = typer.Option(ServeOptions.instances, "--instances",
                                  help="Model instances, each its own Detector (batches run side by side)."),
    backend: str = typer.Option(ServeOptions.backend, "--backend", help=f"{', '.join(backend_choices())}."),
    precision: Optional[str] = typer.Option(None, "--precision", help="Pick fp32/fp16/int8 from an export folder."),
    threads: Optional[int] = typer.Option(None, "--threads", help="ONNX Runtime CPU threads per instance."),
    log_file: Optional[Path] = typer.Option(None, "--log-file",
                                            help="tritonserver's log (default: the temp folder, named in the summary)."),
    drift_window: int = drift_window_option("category"),
    drift_tolerance: float = drift_tolerance_option(),
    app_metrics_port: Optional[int] = typer.Option(
        None, "--app-metrics-port", help="Serve our metrics (frames, anomalies, latency, drift per category) at "
                                         "http://0.0.0.0:PORT/metrics, apart from Triton's --metrics-port."),
    events: Optional[Path] = typer.Option(None, "--events", help="Append each drift event to this file as a JSON line."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the summary (and what was served) at stop."),
) -> None:
    """Serve the detector on Triton Inference Server (HTTP, gRPC, metrics) until Ctrl-C or SIGTERM."""
    from mmad_edge.runtime.serving.server import serve as run_server

    options = ServeOptions(http_port=port, grpc_port=grpc_port, metrics_port=metrics_port, max_batch=max_batch,
                           max_queue_delay_us=max_queue_delay_us, instances=instances, backend=backend,
                           precision=precision, threads=threads, log_file=None if log_file is None else str(log_file),
                           drift_window=drift_window, drift_tolerance=drift_tolerance,
                           app_metrics_port=app_metrics_port, events_path=None if events is None else str(events))
    summary = run_server(str(artifact), options, announce=lambda line: typer.echo(line))
    write_json(json_path, summary)


@app.command("triton-repo")
@guarded
def triton_repo(
    artifact: Path = typer.Argument(..., help="model.<precision>.onnx, model.<precision>.engine, or an export folder."),
    out: Path = typer.Argument(..., help="Model repository folder (DIR/mmad_edge/... is written, the rest kept)."),
    precision: Optional[str] = typer.Option(None, "--precision", help="Pick fp32/fp16/int8 from an export folder."),
    backend: str = typer.Option(RepoOptions.backend, "--backend",
                                help="From a folder: auto (an engine if there is one), tensorrt or onnxruntime."),
    max_batch: Optional[int] = typer.Option(None, "--max-batch",
                                            help="Largest dynamic batch (default: the artifact's profile maximum)."),
    max_queue_delay_us: int = typer.Option(RepoOptions.max_queue_delay_us, "--max-queue-delay-us",
                                           help="Microseconds a request may wait for others to fill a batch."),
    instances: int = typer.Option(RepoOptions.instances, "--instances", help="Model instances (instance_group count)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write what was written as JSON."),
) -> None:
    """Write a Triton model repository (model + config.pbtxt) for the NGC tritonserver container."""
    from mmad_edge.runtime.serving.repo import repo_summary, write_model_repository

    options = RepoOptions(precision=precision, backend=backend, max_batch=max_batch,
                          max_queue_delay_us=max_queue_delay_us, instances=instances)
    written = write_model_repository(artifact, out, options)
    typer.echo(repo_summary(written))
    write_json(json_path, written)


def bench_serve(url: str, artifacts: List[Path], seconds: float, quiet: bool, json_path: Optional[Path],
                markdown_path: Optional[Path]) -> None:
    """`bench --serve`: the server under load next to the in-process Detector on the same artifact."""
    from mmad_edge.bench.serve_load import ServeLoadOptions, run_serve_load, summary_text, write_serve_load

    if len(artifacts) != 1:
        fail(f"bench --serve takes the one artifact the server serves (to time it in process too), got {len(artifacts)}; "
             "pass it: mmad-edge bench EXPORT --serve URL")
    report = run_serve_load(str(artifacts[0]), ServeLoadOptions(url=url, duration_s=seconds, progress=not quiet))
    typer.echo(summary_text(report))
    for path in write_serve_load(report, json_path, markdown_path):
        typer.echo(f"wrote {path}", err=True)


@app.command()
@guarded
@needs("export")
def bench(
    artifacts: Optional[List[Path]] = typer.Argument(
        None, help="Export folders or .onnx/.engine files (without torch / onnx installed the torch rows and the floor "
                   "are listed as skipped); none: the built-in default (needs the export extra)."),
    backend: str = typer.Option(BenchOptions.backend, "--backend", help=f"{', '.join(backend_choices())} or torch."),
    batch_size: str = typer.Option(BenchOptions.batches, "--batch-size",
                                   help="Images per forward pass; a comma list times each."),
    protocol: str = typer.Option(BenchOptions.protocols, "--protocol", help="Comma list of paper and/or e2e."),
    warmup: int = typer.Option(BenchOptions.warmup, "--warmup", help="Untimed calls per row (cut to the case budget)."),
    iters: int = typer.Option(BenchOptions.iters, "--iters", help="Timed calls per row (cut to the case budget)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the report as JSON."),
    markdown_path: Optional[Path] = typer.Option(None, "--markdown", help="Write the table and claims as Markdown."),
    plot_path: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG plot (log axes, floor drawn; needs matplotlib)."),
    peers: bool = typer.Option(BenchOptions.peers, "--peers/--no-peers",
                               help="Time EfficientAD, RD4AD and PatchCore too (eager and exported to ONNX)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Weights for the PyTorch rows."),
    image_size: Optional[int] = image_size_option(None, " (default: the checkpoint's, else 256; artifacts fix it)"),
    case_budget: float = typer.Option(BenchOptions.case_budget_s, "--case-budget",
                                      help="Seconds of timing per row before iterations are cut."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Where the default export is kept."),
    quiet: bool = typer.Option(not BenchOptions.progress, "--quiet/--no-quiet", help="No progress lines on stderr."),
    micro_batch: Optional[int] = typer.Option(
        None, "--micro-batch", help="Images per ONNX Runtime CPU run of a batch (default: the runtime's "
                                    "cache-sized choice; 0: one run per batch)."),
    serve: Optional[str] = typer.Option(
        None, "--serve", help="URL of a running `mmad-edge serve` (http://HOST:PORT or grpc://HOST:PORT) serving the "
                              "one ARTIFACT given: load it with 1, 4 and 16 clients (--case-budget seconds each)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Labelled dataset root: each MiniMaxAD row's image AUROC "
                                        "on its test split, beside the latency."),
    layout: str = layout_option(),
    category: Optional[List[str]] = category_option("Test category of --data; repeat for several (default: all)."),
    inference_precision: Optional[str] = inference_precision_option(
        " (default: a row each for f32 and every lower precision the CPU has units for)"),
    performance_hint: Optional[str] = performance_hint_option(" (default: latency at batch 1, else throughput)"),
) -> None:
    """Latency and throughput side by side (PyTorch, ONNX Runtime, TensorRT, peers) with the hardware floor;
    with --serve, a running `mmad-edge serve` under 1, 4 and 16 clients next to the in-process Detector."""
    if serve is not None:
        bench_serve(serve, artifacts or [], case_budget, quiet, json_path, markdown_path)
        return
    from mmad_edge.bench.console import summary_text, write_outputs
    from mmad_edge.bench.suite import run_bench

    options = BenchOptions(backend=backend, batches=batch_size, protocols=protocol, warmup=warmup, iters=iters,
                           peers=peers, checkpoint=checkpoint, cache_dir=cache_dir, image_size=image_size,
                           progress=not quiet, case_budget_s=case_budget, micro_batch=micro_batch, data=data,
                           layout=layout, categories=category or None, inference_precision=inference_precision,
                           performance_hint=performance_hint)
    report = run_bench(artifacts or [], options)
    typer.echo(summary_text(report))
    for path in write_outputs(report, json_path, markdown_path, plot_path):
        typer.echo(f"wrote {path}", err=True)
    raise typer.Exit(0 if report["results"] else 1)


@app.command()
@guarded
@needs("export")
def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", help="Folder for data, run, exports, overlays and the report."),
    epochs: Optional[int] = epochs_option(None, DEMO_PRESET.format(4)),
    image_size: Optional[int] = image_size_option(None, DEMO_PRESET.format(128)),
    variant: Optional[str] = variant_option(None, DEMO_PRESET.format("a")),
    loss: Optional[str] = loss_option(None, DEMO_PRESET.format("global: textures are feature-poor")),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the summary here."),
) -> None:
    """The whole path on built-in textures: data, train, eval, export, runtime, bench, report."""
    from mmad_edge.app.demo import DemoOptions, run_demo

    given = {"epochs": epochs, "image_size": image_size, "variant": variant, "loss": loss}
    summary = run_demo(DemoOptions(out=out, **{name: value for name, value in given.items() if value is not None}))
    write_json(json_path, summary)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
