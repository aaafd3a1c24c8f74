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
