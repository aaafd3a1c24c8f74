"""A fixed CPU thread count for bitwise-reproducible training.

Why: gradient reductions on the CPU (oneDNN convolutions, MKL GEMMs) round differently with
another number of threads (1 against 2 threads: the bottleneck weights differ after one epoch).
PyTorch's own count never changes by itself, but MKL by default (MKL_DYNAMIC=TRUE) may run a call
on fewer threads than asked for (the likely cause of resumes differing on a busy Intel Xeon);
Intel's reproducibility conditions require a fixed count with that adjustment off. A resumed run
also needs the count the run started with. And MKL's conditional numerical reproducibility must be
on (``MKL_CBWR``, set by ``mmad_edge/__init__.py`` before torch's first MKL call): without it, a
resumed run on an Intel Xeon (AVX-512 VNNI) differed from an uninterrupted one in most runs.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch


def _mkl_set_dynamic() -> Callable[[int], None] | None:
    """MKL's own switch (PyTorch exposes none); None on builds without MKL or without the symbol."""
    if not torch.backends.mkl.is_available():
        return None
    for library in sorted((Path(torch.__file__).parent / "lib").glob("libtorch_cpu.*")):
        try:
            switch = ctypes.CDLL(str(library)).MKL_Set_Dynamic  # C entry; mkl_set_dynamic takes a pointer
        except (OSError, AttributeError):
            continue
        switch.argtypes, switch.restype = [ctypes.c_int], None
        return switch
    return None


def mkl_dynamic_default() -> bool:
    """What MKL starts with in this process: dynamic unless MKL_DYNAMIC says FALSE."""
    return os.environ.get("MKL_DYNAMIC", "TRUE").strip().upper() not in ("FALSE", "0", "NO", "OFF")


@contextmanager
def pinned_threads(count: int) -> Iterator[int]:
    """Run the block on exactly ``count`` intra-op threads with MKL's dynamic adjustment off;
    the previous count and MKL's default are restored afterwards."""
    previous = torch.get_num_threads()
    set_dynamic = _mkl_set_dynamic()
    torch.set_num_threads(count)
    if set_dynamic is not None:
        set_dynamic(0)
    try:
        yield count
    finally:
        torch.set_num_threads(previous)
        if set_dynamic is not None:
            set_dynamic(int(mkl_dynamic_default()))
