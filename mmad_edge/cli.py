"""The `mmad-edge` command line: a thin face over the library (nothing imports this module).

Each command's flags come from its options dataclass (each field carries its flag and help) and
from the shared declarations; mmad_edge.app.options_cli turns them into typer parameters. Heavy
modules are imported inside each command so `mmad-edge run` starts without torch.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mmad_edge.app.demo_options import DemoOptions
from mmad_edge.app.exits import exit_of_run, guarded, needs
from mmad_edge.app.json_output import report, write_json
from mmad_edge.app.options_cli import Arg, declared
from mmad_edge.app.tune_options import TuneOptions
from mmad_edge.bench.options import BenchOptions
from mmad_edge.export.options import TEST_CATEGORY, CalibrateOptions, EngineOptions, ExportOptions, VerifyOptions
from mmad_edge.flags import DATA, DEVICE, IMAGE_SIZE, JSON, LAYOUT, OUT, VARIANT
from mmad_edge.runtime.artifact.deployment import KEEP
from mmad_edge.runtime.flags import BATCH_SIZE, CATEGORY, SOURCE, Flag
from mmad_edge.runtime.loop.options import RunOptions
from mmad_edge.runtime.serving.options import RepoOptions, ServeOptions
from mmad_edge.runtime.ui.options import DEFAULT_REVIEW_CATEGORY, DEFAULT_REVIEW_DIR, REVIEW_DIR
from mmad_edge.train_options import TrainOptions

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Train MiniMaxAD and deploy it to TensorRT / ONNX Runtime.")

ARTIFACT = Arg("model.<precision>.onnx, model.<precision>.engine, an export folder, or a deployment folder (its "
               "current version: see promote).")
CALIBRATED = Arg("model.<precision>.onnx, model.<precision>.engine or an export folder (not a deployment folder: "
                 "its versions are immutable; calibrate the export, then promote it).")
VERIFY = Flag("--verify", "Dataset root: verify the engine on its labelled test split right after the build (as "
                          "`mmad-edge verify`).")
JsonPath = Path | None


@app.command("import-checkpoint")
@guarded
@needs("train")
@declared
def import_checkpoint_cmd(
    out: Annotated[Path, OUT.about(help="Project checkpoint to write (e.g. RUN_DIR/checkpoint.pt).")],
    variant: Annotated[str, VARIANT.about(" (the one the weights are for)")],
    image_size: Annotated[int, IMAGE_SIZE.about()] = TrainOptions.image_size,
    encoder: Annotated[str | None, Flag("--encoder", "UniRepLKNet ImageNet weights: a name from "
                                                        "`mmad-edge weights` or a .pth file.")] = None,
    minimaxad: Annotated[Path | None, Flag("--minimaxad", 'MiniMaxAD run {"bn", "decoder"} (.pth).')] = None,
    json_path: Annotated[JsonPath, JSON.about("what was loaded and ignored")] = None,
) -> None:
    """Convert UniRepLKNet / MiniMaxAD checkpoints into one project checkpoint."""
    from mmad_edge.app.training_summary import import_and_report
    from mmad_edge.config import ModelConfig

    import_and_report(ModelConfig(variant=variant, image_size=image_size), out, encoder, minimaxad, json_path)


@app.command()
@guarded
@declared
def weights(json_path: Annotated[JsonPath, JSON.about("the list")] = None) -> None:
    """The official UniRepLKNet ImageNet weights for --pretrained NAME: variant, file, whether cached."""
    from mmad_edge.app.weights_table import show_weights

    show_weights(json_path)


@app.command()
@guarded
@needs("train")
@declared
def train(options: TrainOptions, json_path: Annotated[JsonPath, JSON.about("a training summary")] = None) -> None:
    """Train MiniMaxAD (frozen encoder; bottleneck + decoder learn)."""
    from mmad_edge.app.training_summary import report_training
    from mmad_edge.train import train as run_training

    report_training(run_training(options), json_path)


@app.command("eval")
@guarded
@needs("train")
@declared
def eval_cmd(
    checkpoint: Annotated[Path, Arg("RUN_DIR/checkpoint.pt (a training checkpoint, not an export).")],
    data: Annotated[Path, DATA],
    layout: Annotated[str, LAYOUT] = TrainOptions.layout,
    category: Annotated[list[str] | None, CATEGORY] = None,
    batch_size: Annotated[int, BATCH_SIZE.about()] = TrainOptions.batch_size,
    device: Annotated[str, DEVICE] = TrainOptions.device,
    json_path: Annotated[JsonPath, JSON.about("the metrics")] = None,
) -> None:
    """Image and pixel AUROC / AP / F1-max and AUPRO per category, and their mean."""
    from mmad_edge.app.evaluation import evaluate_and_report

    evaluate_and_report(checkpoint, data, layout, category, batch_size, device, json_path)


@app.command()
@guarded
@needs("export")
@declared
def export(
    checkpoint: Annotated[Path, Arg("RUN_DIR/checkpoint.pt")],
    out: Annotated[Path, OUT.about(help="Export folder (written atomically).")],
    options: ExportOptions,
    json_path: Annotated[JsonPath, JSON.about("the report")] = None,
) -> None:
    """Export a checkpoint to verified ONNX (FP32/FP16/INT8) and optionally TensorRT engines."""
    from mmad_edge.app.exporting import export_and_report

    export_and_report(checkpoint, out, options, json_path)


@app.command("build-engine")
@guarded
@declared
def build_engine_cmd(
    onnx_path: Annotated[Path, Arg("DIR/model.<precision>.onnx")],
    options: EngineOptions,
    out: Annotated[Path | None, OUT.about(help="Engine path (default DIR/model.<precision>.engine).")] = None,
    json_path: Annotated[JsonPath, JSON.about("the engine, its size and its sidecar")] = None,
    verify_data: Annotated[Path | None, VERIFY] = None,
    layout: Annotated[str, LAYOUT] = VerifyOptions.layout,
    category: Annotated[list[str] | None, CATEGORY.about(help=TEST_CATEGORY.format(VERIFY.name))] = None,
) -> None:
    """Build a TensorRT engine from an exported ONNX (needs only TensorRT; run it on the target)."""
    from mmad_edge.app.exporting import build_and_report

    verify = (None if verify_data is None
              else VerifyOptions(data=verify_data, layout=layout, categories=category or None))
    build_and_report(onnx_path, out, options, json_path, verify)


@app.command()
@guarded
@declared
def verify(
    artifact: Annotated[Path, ARTIFACT],
    options: VerifyOptions,
    json_path: Annotated[JsonPath, JSON.about("the result")] = None,
) -> None:
    """Accuracy of the deployed artifact on this machine's backend over labelled images, against its reference."""
    from mmad_edge.app.verification import verify_and_report

    verify_and_report(artifact, options, json_path)


@app.command()
@guarded
@declared
def tune(
    folder: Annotated[Path, Arg("Export folder (model.<precision>.onnx / .engine and model.fp32.onnx).")],
    options: TuneOptions,
    json_path: Annotated[JsonPath, JSON.about("the choice and its evidence")] = None,
) -> None:
    """Time and verify every backend, graph and setting of an export here; auto then loads the fastest faithful one."""
    from mmad_edge.app.tuning import tune_and_report

    tune_and_report(folder, options, json_path)


@app.command("calibrate-threshold")
@guarded
@declared
def calibrate_threshold_cmd(
    artifact: Annotated[Path, CALIBRATED],
    options: CalibrateOptions,
    json_path: Annotated[JsonPath, JSON.about("the result")] = None,
) -> None:
    """Recompute the threshold from the deployed backend's scores of good images; update the artifact's metadata."""
    from mmad_edge.export.threshold_calibration import calibrate_threshold, summary_text

    result = calibrate_threshold(artifact, options)
    report(result, summary_text(result), json_path)


@app.command()
@guarded
@declared
def run(
    artifact: Annotated[Path, ARTIFACT],
    source: Annotated[list[str], SOURCE.about("; repeat for several sources (batched together); NAME=SOURCE scores "
                                              "one with category NAME's threshold")],
    options: RunOptions,
    json_path: Annotated[JsonPath, JSON.about("the run summary")] = None,
) -> None:
    """Score every frame of cameras, streams, videos or folders (no torch needed); one summary line at the end."""
    from mmad_edge.app.live_page import page_thresholds
    from mmad_edge.runtime.loop.run import run_stream

    summary = run_stream(str(artifact), source, options, thresholds=page_thresholds(options.page),
                         on_summary=lambda summary: write_json(json_path, summary))
    exit_of_run(summary)


@app.command()
@guarded
@declared
def promote(
    export: Annotated[Path, Arg("Export folder to deploy (or a deployment folder: its current version).")],
    to: Annotated[Path, Flag("--to", "Deployment folder (created when missing): the export is copied into "
                                     "versions/NNNN-NAME/, then the current link points at it.")],
    keep: Annotated[int, Flag("--keep", "Versions kept on disk (at least 2: the current one and the one rollback "
                                        "returns to); older ones are deleted after the switch.")] = KEEP,
    json_path: Annotated[JsonPath, JSON.about("what moved and what was pruned")] = None,
) -> None:
    """Deploy an export atomically: a new version of the deployment folder, made current in one step."""
    from mmad_edge.runtime.artifact.deployment import promote as promote_export
    from mmad_edge.runtime.artifact.deployment import summary_line

    moved = promote_export(export, to, keep)
    report(moved, summary_line(moved), json_path)


@app.command()
@guarded
@declared
def rollback(
    deploy_dir: Annotated[Path, Arg("Deployment folder (the --to of promote).")],
    json_path: Annotated[JsonPath, JSON.about("what moved")] = None,
) -> None:
    """Point a deployment folder back at the version deployed before the current one."""
    from mmad_edge.runtime.artifact.deployment import rollback as roll_back
    from mmad_edge.runtime.artifact.deployment import summary_line

    moved = roll_back(deploy_dir)
    report(moved, summary_line(moved), json_path)


@app.command()
@guarded
@declared
def serve(
    artifact: Annotated[Path, ARTIFACT],
    options: ServeOptions,
    json_path: Annotated[JsonPath, JSON.about("the summary at stop (and what was served)")] = None,
) -> None:
    """Serve the detector on Triton Inference Server (HTTP, gRPC, metrics) until Ctrl-C or SIGTERM."""
    from mmad_edge.app.live_page import page_thresholds
    from mmad_edge.runtime.serving.server import serve as run_server

    write_json(json_path, run_server(str(artifact), options, announce=lambda line: typer.echo(line),
                                      thresholds=page_thresholds(options.page)))


review_app = typer.Typer(no_args_is_help=True, help="The review queue of `run --ui` / `serve --ui`.")
app.add_typer(review_app, name="review")


@review_app.command("export")
@guarded
@declared
def review_export(
    out: Annotated[Path, Arg("Dataset folder to write (new or empty): <category>/train/good, test/good, "
                             "test/defect.")],
    review_dir: Annotated[Path, REVIEW_DIR.about()] = Path(DEFAULT_REVIEW_DIR),
    category: Annotated[str, CATEGORY.about(help="Folder for frames scored without a category.")] = DEFAULT_REVIEW_CATEGORY,
    json_path: Annotated[JsonPath, JSON.about("what was written")] = None,
) -> None:
    """Write the frames marked on the page as an MVTec-layout dataset that train, eval, verify and
    calibrate-threshold read."""
    from mmad_edge.data.review_dataset import export_review, export_summary

    result = export_review(review_dir, out, category)
    report(result, export_summary(result), json_path)


@app.command("triton-repo")
@guarded
@declared
def triton_repo(
    artifact: Annotated[Path, ARTIFACT],
    out: Annotated[Path, Arg("Model repository folder (DIR/mmad_edge/... is written, the rest kept).")],
    options: RepoOptions,
    json_path: Annotated[JsonPath, JSON.about("what was written")] = None,
) -> None:
    """Write a Triton model repository (model + config.pbtxt) for the NGC tritonserver container."""
    from mmad_edge.runtime.serving.repo import repo_summary, write_model_repository

    written = write_model_repository(artifact, out, options)
    report(written, repo_summary(written), json_path)


@app.command()
@guarded
@needs("export")
@declared
def bench(
    artifacts: Annotated[list[Path] | None, Arg(
        "Export folders or .onnx/.engine files (without torch / onnx installed the torch rows and the floor are "
        "listed as skipped); none: the built-in default (needs the export extra).")] = None,
    *,
    options: BenchOptions,
    json_path: Annotated[JsonPath, JSON.about("the report")] = None,
    markdown_path: Annotated[Path | None, Flag("--markdown", "Write the table and claims as Markdown.")] = None,
    plot_path: Annotated[Path | None, Flag("--plot", "Write a PNG plot (log axes, floor drawn; needs "
                                                        "matplotlib).")] = None,
    serve: Annotated[str | None, Flag(
        "--serve", "URL of a running `mmad-edge serve` (http://HOST:PORT or grpc://HOST:PORT) serving the one ARTIFACT "
                   "given: load it with 1, 4 and 16 clients (--case-budget seconds each).")] = None,
) -> None:
    """Latency and throughput side by side (PyTorch, ONNX Runtime, TensorRT, peers) with the hardware floor;
    with --serve, a running `mmad-edge serve` under 1, 4 and 16 clients next to the in-process Detector."""
    from mmad_edge.app.benchmark import bench_and_report, bench_serve

    if serve is not None:
        bench_serve(serve, artifacts or [], options, json_path, markdown_path)
    else:
        bench_and_report(artifacts or [], options, json_path, markdown_path, plot_path)


@app.command()
@guarded
@needs("export")
@declared
def demo(options: DemoOptions, json_path: Annotated[JsonPath, JSON.about("the summary")] = None) -> None:
    """The whole path on built-in textures: data, train, eval, export, runtime, bench, report."""
    from mmad_edge.app.demo import run_demo

    write_json(json_path, run_demo(options))


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
