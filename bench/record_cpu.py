"""The recorded CPU run (``record cpu``): variant n at 256x256 on this CPU, every row in one run.

Random trained-like weights (``bench.models.random_model``; speed does not depend on their values): a
variant-n checkpoint is exported to ONNX FP32, FP16 and INT8 for CPUs (calibrated on the demo
textures, accuracy search off: random weights have no accuracy to keep), and to the TensorRT-form
INT8 Q/DQ graph too (``--target tensorrt``, in ``export-trt-int8``: the one OpenVINO runs). Then
`run_bench` times the PyTorch rows, the artifacts on ONNX Runtime and OpenVINO (paper and e2e
protocols, e2e rows with their accuracy against ONNX Runtime FP32) and the peers, with the floor.
``--variant`` / ``--image-size`` / ``--batch-size`` give a quick smaller run (the recorded one
uses the defaults).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from mmad_edge.bench.models import random_model
from mmad_edge.bench.options import BenchOptions
from mmad_edge.bench.peers import PEERS
from mmad_edge.bench.suite import run_bench
from mmad_edge.calib.options import Int8Options
from mmad_edge.checkpoint import save_checkpoint
from mmad_edge.config import ModelConfig
from mmad_edge.data.demo import make_demo_dataset
from mmad_edge.export.options import ExportOptions
from mmad_edge.export.pipeline import export_checkpoint
from mmad_edge.runtime.artifact.contract import PRECISIONS

CALIBRATION_IMAGES = 64


def bench_options(args: argparse.Namespace, checkpoint: Path) -> BenchOptions:
    """What ``run_bench`` is asked for; ``--peers`` must be all or none (it times the whole set)."""
    if args.peers and set(args.peers) != set(PEERS):
        raise SystemExit("record cpu times every peer or none: pass --peers all or --peers none "
                         "(a list of peers is for record gpu)")
    return BenchOptions(batches=args.batch_size, protocols="paper,e2e", warmup=args.warmup, iters=args.iters,
                        peers=bool(args.peers), checkpoint=checkpoint)


def _export(checkpoint: Path, folder: Path, calib: Path, precisions: tuple[str, ...], target: str, top: int) -> Path:
    """One export folder: ``precisions`` with the INT8 graph in ``target``'s form."""
    export_checkpoint(checkpoint, folder, ExportOptions(
        precisions=precisions, batch=f"1:{top}:{top}", calib_data=calib,
        int8=Int8Options(target=target, count=CALIBRATION_IMAGES, sensitivity=False)))
    return folder


def record(args: argparse.Namespace) -> dict[str, Any]:
    """Export, then time every row; the bench report (``record`` writes and prints it)."""
    with tempfile.TemporaryDirectory(prefix="mmad-bench-") as tmp:
        work = Path(tmp)
        options = bench_options(args, work / "checkpoint.pt")  # bad --peers fails before the exports
        top = max(args.batch_size)
        model = random_model(ModelConfig(variant=args.variant, image_size=args.image_size))
        checkpoint = save_checkpoint(options.checkpoint, model)
        data = make_demo_dataset(work / "data", ("brick",), n_train=CALIBRATION_IMAGES, n_test_good=2, n_test_defect=2)
        calib = data / "brick" / "train" / "good"
        folders = [_export(checkpoint, work / "export", calib, PRECISIONS, "cpu", top),
                   _export(checkpoint, work / "export-trt-int8", calib, ("int8",), "tensorrt", top)]
        return run_bench(folders, options)
