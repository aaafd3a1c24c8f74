"""One entry point for the recorded bench runs: ``cpu`` on this CPU, ``gpu`` on a CUDA machine.

    python -m mmad_edge.bench.record cpu [--out bench/results] [--iters 30]
    python -m mmad_edge.bench.record gpu --out gpu_out [--dry-run]

Both take the same run options (model variant and size, batch sizes, calls per row, peers) and
end the same way: the plain-text table on stdout and ``NAME.json`` / ``.md`` / ``.png`` in
``--out`` (``cpu.*`` and ``gpu_check.*`` by default, as in ``bench/results``). What each run
times lives in ``record_cpu`` and ``record_gpu``; the one asked for is imported after parsing,
so ``--help`` needs no torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .console import summary_text, write_outputs

RECIPES = {"cpu": "mmad_edge.bench.record_cpu", "gpu": "mmad_edge.bench.record_gpu"}
RESULTS = Path("bench/results")


def batch_sizes(text: str) -> list[int]:
    """``--batch-size`` as argparse reads it: the bench's rule (``runner.parse_batches``)."""
    from mmad_edge.runtime.flags import BATCH_SIZE

    from .runner import parse_batches

    try:
        return parse_batches(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"{BATCH_SIZE.name} ")) from None


def peer_names(text: str) -> list[str]:
    """``--peers``: 'all', 'none' or comma-separated names of ``peers.PEERS``."""
    from .peers import PEERS

    if text == "all":
        return list(PEERS)
    if text == "none":
        return []
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in PEERS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown peer(s) {', '.join(unknown)}; choose from {', '.join(PEERS)}, 'all' or 'none'")
    return names


def _run_options(parser: argparse.ArgumentParser, out: Path | None, name: str, warmup: int, iters: int) -> None:
    """The options both runs take, with the run's defaults; ``out`` None makes ``--out`` required."""
    parser.add_argument("--out", type=Path, default=out, required=out is None,
                        help="folder for NAME.json/.md/.png" + (f" (default {out})" if out else ""))
    parser.add_argument("--name", default=name, help=f"file name stem (default {name})")
    parser.add_argument("--variant", default="n", help="MiniMaxAD variant (default n, the paper's)")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=batch_sizes, default="1,16",
                        help="comma-separated batch sizes (default 1,16)")
    parser.add_argument("--warmup", type=int, default=warmup, help=f"untimed calls per row (default {warmup})")
    parser.add_argument("--iters", type=int, default=iters, help=f"timed calls per row (default {iters})")
    parser.add_argument("--peers", type=peer_names, default="all",
                        help="'all', 'none' or (gpu) comma-separated peer names (default all)")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mmad_edge.bench.record",
                                     description="Record one bench run: JSON + Markdown + plot, and the table.")
    runs = parser.add_subparsers(dest="command", required=True, metavar="{cpu,gpu}")
    cpu = runs.add_parser(
        "cpu", help="every CPU row in one run (reproduces bench/results/cpu.*)",
        description="Export a random-weight checkpoint (ONNX FP32 / FP16 / INT8 CPU form, TensorRT-form INT8) "
                    "and time the PyTorch rows, ONNX Runtime and OpenVINO and the peers on this CPU.")
    _run_options(cpu, RESULTS, "cpu", warmup=5, iters=30)
    gpu = runs.add_parser(
        "gpu", help="MiniMaxAD's PyTorch CUDA paths and the peers, with floors (fits a 10-minute slot)",
        description="Time MiniMaxAD's PyTorch CUDA paths and the peer detectors on the GPU, each row with its "
                    "roofline floor.")
    _run_options(gpu, None, "gpu_check", warmup=50, iters=500)
    gpu.add_argument("--model", choices=("minimaxad", "none"), default="minimaxad")
    gpu.add_argument("--patchcore-bank", type=int, default=16384, help="PatchCore memory-bank entries")
    gpu.add_argument("--compile-mode", default="reduce-overhead",
                     help="torch.compile mode (e.g. max-autotune-no-cudagraphs, slower to build); 'off' skips")
    gpu.add_argument("--compile-timeout", type=float, default=120.0, help="seconds allowed per compilation")
    gpu.add_argument("--budget-s", type=float, default=480.0, help="skip cases once this much time has passed")
    gpu.add_argument("--dry-run", action="store_true", help="CPU, FP32 eager only: checks the flow without a GPU")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    report = importlib.import_module(RECIPES[args.command]).record(args)
    print(summary_text(report))
    written = write_outputs(report, *(args.out / f"{args.name}.{ext}" for ext in ("json", "md", "png")))
    print(f"wrote {', '.join(str(path) for path in written)} ({len(report['results'])} rows, "
          f"{len(report['skipped'])} skipped) in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
