"""The peers exported to ONNX the way MiniMaxAD is, so their ONNX Runtime rows compare like with like.

Eager PyTorch peers against an exported MiniMaxAD would credit the exporter's graph
optimisations to MiniMaxAD. Each peer (random weights, seed 0) is exported once per image size
into the bench cache (``<cache>/peers-<size>px-mmad-edge-<version>/peer.<name>.onnx``), staged
and placed like an export (``export.staging``), with a dynamic batch and float NCHW normalised
input, the same input the MiniMaxAD paper-protocol graph takes. Needs torch and onnx.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

import mmad_edge
from mmad_edge.export.options import DEFAULT_OPSET
from mmad_edge.export.staging import place, staged
from mmad_edge.runtime.errors import one_line
from mmad_edge.runtime.log import say

from .patchcore import PatchCore
from .peers import build_peer


class _PatchEmbedding(nn.Module):
    """PatchCore up to its patch embedding: the part a graph holds (the bank search is a library call)."""

    def __init__(self, patchcore: PatchCore) -> None:
        super().__init__()
        self.patchcore = patchcore

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.patchcore.embed(x)


@contextmanager
def native_stdout_discarded() -> Iterator[None]:
    """File descriptor 1 to /dev/null for the block: TorchScript's exporter prints the whole IR graph
    (hundreds of lines) from C++ when an operator fails, above the bench's table; the failure is
    told in one line instead. C's buffers are flushed first and after, so nothing leaks later."""
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    libc.fflush(None)
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as sink:
            os.dup2(sink.fileno(), 1)
            yield
    finally:
        libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)


def failure_reason(exc: BaseException) -> str:
    """An export error's first line without TorchScript's pointer into the IR and its plea for a pull request."""
    first = one_line(exc)
    return re.split(r" \[Caused by | Please feel free to request support", first)[0].strip()


def peer_graph_name(peer: str) -> str:
    return f"peer.{peer}.onnx"


def peer_graphs(peers: Sequence[str], image_size: int, cache_root: Path, progress: bool = True) -> dict[str, Path | str]:
    """Each peer's ONNX graph (exported on first use), or why it could not be exported (one line)."""
    folder = cache_root / f"peers-{image_size}px-mmad-edge-{mmad_edge.__version__}"
    found: dict[str, Path | str] = {}
    missing = [peer for peer in peers if not (folder / peer_graph_name(peer)).is_file()]
    if missing:
        say(f"exporting the peers {', '.join(missing)} to ONNX ({image_size}x{image_size}, random weights) "
            f"into {folder}", progress)
        with staged(folder) as staging:
            for peer in missing:
                try:
                    with native_stdout_discarded():
                        export_peer(peer, image_size, staging / peer_graph_name(peer))
                except (ValueError, RuntimeError) as exc:  # e.g. a size the peer does not take
                    found[peer] = f"ONNX export failed: {failure_reason(exc)}"
            place(staging, folder)
    for peer in peers:
        found.setdefault(peer, folder / peer_graph_name(peer))
    return found


def export_peer(peer: str, image_size: int, path: Path) -> Path:
    """Export ``peer`` (seed 0) with a dynamic batch: image -> (anomaly_map, score), or patch embeddings."""
    torch.manual_seed(0)
    module = build_peer(peer, image_size)
    outputs = ["anomaly_map", "score"]
    if isinstance(module, PatchCore):
        module, outputs = _PatchEmbedding(module).eval(), ["patches"]
    example = torch.zeros(1, 3, image_size, image_size)
    axes = {name: {0: "batch"} for name in ["image", *outputs]}
    with torch.no_grad():
        torch.onnx.export(module, (example,), str(path), input_names=["image"], output_names=outputs,
                          dynamic_axes=axes, opset_version=DEFAULT_OPSET, do_constant_folding=True, dynamo=False)
    return path
