"""Reproduce bench/results/cpu.*: variant n at 256x256 on this CPU, every row in one run.

    python -m mmad_edge.bench.record_cpu [--out bench/results] [--iters 30]

Random trained-like weights (``bench.models.random_model``; speed does not depend on their values): a
variant-n checkpoint is exported to ONNX
FP32, FP16 and INT8 for CPUs (calibrated on the demo textures, accuracy search off: random
weights have no accuracy to keep), then `run_bench` times the PyTorch rows, the artifacts
(paper and e2e protocols) and the peers, with the floor, and writes JSON, Markdown and a plot.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


from mmad_edge.bench.models import random_model
from mmad_edge.calib.options import Int8Options
from mmad_edge.bench.console import summary_text, write_outputs
from mmad_edge.bench.options import BenchOptions
from mmad_edge.bench.suite import run_bench
from mmad_edge.checkpoint import save_checkpoint
from mmad_edge.config import ModelConfig
from mmad_edge.data.demo import make_demo_dataset
from mmad_edge.export.options import ExportOptions
from mmad_edge.export.pipeline import export_checkpoint
from mmad_edge.runtime.contract import PRECISIONS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--name", default="cpu")
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--no-peers", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mmad-bench-") as tmp:
        work = Path(tmp)
        model = random_model(ModelConfig(variant="n", image_size=256))
        checkpoint = save_checkpoint(work / "checkpoint.pt", model)
        data = make_demo_dataset(work / "data", ("brick",), n_train=64, n_test_good=2, n_test_defect=2)
        export_checkpoint(checkpoint, work / "export", ExportOptions(
            precisions=PRECISIONS, batch="1:16:16", calib_data=data / "brick" / "train" / "good",
            int8=Int8Options(target="cpu", count=64, sensitivity=False)))
        report = run_bench([work / "export"], BenchOptions(
            batches="1,16", protocols="paper,e2e", warmup=args.warmup, iters=args.iters, peers=not args.no_peers,
            checkpoint=checkpoint))
        print(summary_text(report))
        write_outputs(report, args.out / f"{args.name}.json", args.out / f"{args.name}.md",
                      args.out / f"{args.name}.png")

if __name__ == "__main__":
    main()
