"""The batch an artifact can run when a caller asks for ``max_batch``: one rule for ``Detector.load``
(`serve`) and `triton-repo`, so the server and the model repository agree on what is honoured."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..errors import ArtifactError
from .contract import ENGINE_SUFFIX
from .metadata import ArtifactInfo


def batch_contract(path: Path, info: ArtifactInfo, max_batch: int | None) -> ArtifactInfo:
    """The contract to load or serve with. An ONNX graph with a dynamic batch axis (profile MIN < MAX;
    the profile is then only the hint for engine builds) takes any batch, so a ``max_batch`` above it
    widens it. A fixed-batch graph (MIN == MAX: the export writes the batch dim out) and an engine
    (its profile is built in) cannot: asking past them is an error naming the re-export or rebuild,
    never a silent cap."""
    if max_batch is None or max_batch <= info.batch_max:
        return info
    if path.suffix == ENGINE_SUFFIX:
        raise ArtifactError(f"{path.name}: max batch {max_batch} is above the engine's batch profile "
                            f"{info.batch_min}..{info.batch_max}; rebuild it from the ONNX with mmad-edge build-engine "
                            f"--batch {info.batch_min}:{max_batch}:{max_batch}, or ask for at most {info.batch_max}")
    if info.batch_min == info.batch_max:
        raise ArtifactError(f"{path.name}: max batch {max_batch} is above the graph's fixed batch of {info.batch_max} "
                            f"(profile {info.batch_min}:{info.batch_min}:{info.batch_max}, no dynamic batch axis); "
                            f"re-export it with mmad-edge export CHECKPOINT --batch 1:{max_batch}:{max_batch}, "
                            f"or ask for at most {info.batch_max}")
    return dataclasses.replace(info, batch_max=int(max_batch))
