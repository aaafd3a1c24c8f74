"""Every way this machine could run an export folder: backend x graph x the backend's settings.

The backends describe their own settings worth trying (``Backend.tuning_variants``: e.g. OpenVINO's
compute precisions and performance hints); tune adds the CPU thread counts asked for. The reference
(the reference backend's FP32 graph at the library's thread count) is always a candidate, whatever
thread counts are asked for, so the choice is never slower than it. A candidate that cannot run here
keeps the reason, so the summary lists it instead of dropping it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..artifact.contract import PRECISIONS, artifact_name
from ..backends import REGISTRY, backend_class, why_not
from ..backends.base import BackendOptions
from ..errors import ArtifactError


@dataclass(frozen=True)
class Candidate:
    """One backend running one graph of the folder with ``options``; ``problem``: why not here;
    ``reference``: the baseline every choice is held to (ONNX Runtime FP32, default threads)."""

    name: str
    backend: str
    artifact: Path
    precision: str
    options: BackendOptions
    problem: str | None = None
    reference: bool = False


def _thread_counts(reference: bool, threads: Sequence[int | None]) -> tuple[int | None, ...]:
    """The thread counts a graph is tried at: those asked for, and the library's choice for the
    reference graph whatever was asked."""
    return tuple(threads) if not reference or None in threads else (None, *threads)


def candidates(folder: Path, batch: int, threads: Sequence[int | None] = (None,)) -> list[Candidate]:
    """The candidates of ``folder`` at ``batch``, backend by backend (registry order), each graph
    of each precision, each variant, each thread count (None: the library's choice; a name ends in
    ``-tN`` at N threads)."""
    folder = Path(folder)
    found: list[Candidate] = []
    for entry in REGISTRY.values():
        impl = backend_class(entry.name)
        for suffix in entry.suffixes:
            for precision in PRECISIONS:
                path = folder / artifact_name(precision, suffix)
                if not path.is_file():
                    continue
                base = f"{entry.row_label}-{precision}"
                problem = why_not(entry.name, path)
                if problem is not None:
                    found.append(Candidate(base, entry.name, path, precision, BackendOptions(), problem))
                    continue
                baseline = entry.reference and precision == "fp32"
                for count in _thread_counts(baseline, threads):
                    options = BackendOptions(threads=count)
                    for variant in impl.tuning_variants(precision, options, batch):
                        name = base + variant.suffix + ("" if count is None else f"-t{count}")
                        found.append(Candidate(name, entry.name, path, precision, variant.options, variant.problem,
                                               baseline and count is None and not variant.suffix))
    if not found:
        raise ArtifactError(f"{folder}: no model.<precision>.onnx or .engine here; point at an mmad-edge export folder")
    return found
