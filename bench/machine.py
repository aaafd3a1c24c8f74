"""Describe the machine a benchmark ran on, so numbers are never read without their context."""

from __future__ import annotations

import os
import platform
import re
import sys
from importlib import metadata
from typing import Any

from mmad_edge.runtime.tuning.machine import cpu_model

# Distribution families whose version changes the numbers; "tensorrt" also matches e.g.
# tensorrt-lean-cu13, "onnxruntime" matches onnxruntime-gpu.
LIBRARIES = ("numpy", "torch", "onnx", "onnxruntime", "openvino", "tensorrt", "cuda-python", "faiss", "mmad-edge")
_PARTS = ("-libs", "-bindings")  # wheels split out of a package listed under its own name


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that change the numbers (distribution metadata only)."""
    versions = {}
    for dist in metadata.distributions():
        name = re.sub(r"[-_.]+", "-", dist.metadata["Name"] or "").lower()
        if name.endswith(_PARTS):
            continue
        if any(name == family or name.startswith(family + "-") for family in LIBRARIES):
            versions[name] = dist.version
    return dict(sorted(versions.items()))


def gpu_info() -> dict[str, Any] | None:
    """Name, memory and compute capability of CUDA device 0, if torch is loaded and sees one.

    Only consults torch if something already imported it, so describing a machine never pays
    for (or requires) a torch import.
    """
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return {
        "name": props.name,
        "memory_gib": round(props.total_memory / 2**30, 1),
        "compute_capability": f"{props.major}.{props.minor}",
        "cuda": torch.version.cuda,
    }


def machine_info() -> dict[str, Any]:
    """The report's ``machine`` section."""
    physical = None
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
    except ImportError:
        pass
    return {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": physical,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "libraries": library_versions(),
        "gpu": gpu_info(),
    }


BUSY_LOAD_PER_CORE = 0.5  # 1-minute load average per logical core before the bench started
BUSY_STEAL_PCT = 5.0  # % of CPU time the hypervisor gave to other guests during the run


def cpu_ticks(stat: str = "/proc/stat") -> tuple[int, int] | None:
    """(all, steal) CPU ticks since boot from the aggregate ``cpu`` line; None where unreadable."""
    try:
        with open(stat, encoding="utf-8") as handle:
            fields = [int(value) for value in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(fields[:8]), fields[7]) if len(fields) >= 8 else None


class LoadWatch:
    """How busy the machine was around a bench: the load average before it started (its own work
    raises the load after) and the CPU steal during it. A claim read from a busy machine says so."""

    def __init__(self, cores: int | None = None) -> None:
        self.cores = cores or os.cpu_count() or 1
        self.load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        self.ticks = cpu_ticks()

    def finish(self) -> dict[str, Any]:
        """The report's ``machine.load`` section: ``busy`` and the ``note`` a claim repeats."""
        after = cpu_ticks()
        steal = None
        if self.ticks is not None and after is not None and after[0] > self.ticks[0]:
            steal = 100.0 * (after[1] - self.ticks[1]) / (after[0] - self.ticks[0])
        reasons = []
        if self.load_before is not None and self.load_before > BUSY_LOAD_PER_CORE * self.cores:
            reasons.append(f"load average {self.load_before:.1f} on {self.cores} cores before the run")
        if steal is not None and steal > BUSY_STEAL_PCT:
            reasons.append(f"{steal:.0f} % CPU steal during it")
        return {"load_1min_before": self.load_before, "cores": self.cores, "steal_pct": steal,
                "busy": bool(reasons), "note": "machine busy: " + ", ".join(reasons) if reasons else None}
