"""Reproduce bench/results/cpu.*: variant n at 256x256 on this CPU, every row in one run.

    python -m mmad_edge.bench.record_cpu [--out bench/results] [--iters 30]

Random trained-like weights (``bench.models.random_model``; speed does not depend on their values): a
variant-n checkpoint is exported to ONNX FP32, FP16 and INT8 for CPUs (calibrated on the demo
textures, accuracy search off: random weights have no accuracy to keep), and to the TensorRT-form
INT8 Q/DQ graph too (``--target tensorrt``, in ``export-trt-int8``: the one OpenVINO runs). Then
`run_bench` times the PyTorch rows, the artifacts on ONNX Runtime and OpenVINO (paper and e2e
protocols, e2e rows with their accuracy against ONNX Runtime FP32) and the peers, with the floor,
and writes JSON, Markdown and a plot. ``--variant`` / ``--image-size`` / ``--batch-size`` give a
quick smaller run (the recorded one uses the defaults).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from mmad_edge.bench.console import summary_text, write_outputs
from mmad_edge.bench.models import random_model
from mmad_edge.bench.options import BenchOptions
from mmad_edge.bench.suite import run_bench
from mmad_edge.calib.options import Int8Options
from mmad_edge.checkpoint import save_checkpoint
from mmad_edge.config import ModelConfig
from mmad_edge.data.demo import make_demo_dataset
from mmad_edge.export.options import ExportOptions
from mmad_edge.export.pipeline import export_checkpoint
from mmad_edge.runtime.artifact.contract import PRECISIONS

CALIBRATION_IMAGES = 64


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--name", default="cpu")
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--variant", default="n")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", default="1,16")
    return parser.parse_args()


def _export(checkpoint: Path, folder: Path, calib: Path, precisions: tuple[str, ...], target: str, top: int) -> Path:
    """One export folder: ``precisions`` with the INT8 graph in ``target``'s form."""
    export_checkpoint(checkpoint, folder, ExportOptions(
        precisions=precisions, batch=f"1:{top}:{top}", calib_data=calib,
        int8=Int8Options(target=target, count=CALIBRATION_IMAGES, sensitivity=False)))
    return folder


def main() -> None:
    args = _arguments()
    top = max(int(b) for b in args.batch_size.split(","))
    with tempfile.TemporaryDirectory(prefix="mmad-bench-") as tmp:
        work = Path(tmp)
        model = random_model(ModelConfig(variant=args.variant, image_size=args.image_size))
        checkpoint = save_checkpoint(work / "checkpoint.pt", model)
        data = make_demo_dataset(work / "data", ("brick",), n_train=CALIBRATION_IMAGES, n_test_good=2, n_test_defect=2)
        calib = data / "brick" / "train" / "good"
        folders = [_export(checkpoint, work / "export", calib, PRECISIONS, "cpu", top),
                   _export(checkpoint, work / "export-trt-int8", calib, ("int8",), "tensorrt", top)]
        report = run_bench(folders, BenchOptions(
            batches=args.batch_size, protocols="paper,e2e", warmup=args.warmup, iters=args.iters,
            peers=not args.no_peers, checkpoint=checkpoint))
        print(summary_text(report))
        write_outputs(report, args.out / f"{args.name}.json", args.out / f"{args.name}.md",
                      args.out / f"{args.name}.png")


if __name__ == "__main__":
    main()
