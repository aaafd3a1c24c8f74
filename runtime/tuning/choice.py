"""The ``tuned.json`` an export folder carries once ``mmad-edge tune`` ran: the chosen candidate,
the machine it was chosen on, and the evidence (every candidate's timing and comparison with FP32).

``Detector.load(folder)`` with ``auto`` follows the choice on the same machine. Elsewhere (another
CPU model, or, once loaded, another device or library version of the chosen backend) the choice
is ignored with one line on stderr and ``auto`` keeps the registry's plain ranking.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..artifact.contract import TUNED_FILE
from ..artifact.metadata import ArtifactInfo, load_contract
from ..backends import REGISTRY, backend_class, why_not
from ..backends.base import Backend, BackendOptions
from ..errors import BackendUnavailableError, one_line
from ..log import notice
from .machine import cpu_model, differences, fingerprint
from .selection import Trial

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class TunedChoice:
    """The candidate ``tune`` chose for ``folder`` on the machine ``machine`` describes."""

    folder: Path
    name: str
    backend: str
    artifact: Path
    precision: str
    options: Mapping[str, Any]
    machine: Mapping[str, Any]
    record: Mapping[str, Any]  # the chosen candidate's timing and comparison, as tune wrote them

    def load_options(self, given: BackendOptions) -> BackendOptions:
        """The choice's settings, with the ones a caller set (not None) kept over them."""
        return BackendOptions(**{**self.options, **given.given()})

    def elsewhere(self, described: Mapping[str, Any]) -> str | None:
        """Why a backend loaded with this choice is not the one tune timed (another device or
        library version), or None when it is."""
        changed = differences(self.machine, fingerprint(described))
        return None if not changed else _elsewhere(self.folder, changed)


def _elsewhere(folder: Path, changed: list[str]) -> str:
    return (f"ignoring {tuned_path(folder)}: tuned on another machine ({', '.join(changed)}); auto picks by the plain "
            f"ranking: run mmad-edge tune {folder} here")


def tuned_path(folder: str | Path) -> Path:
    return Path(folder) / TUNED_FILE


def choice_document(chosen: Trial, trials: Sequence[Trial], evidence: Mapping[str, Any]) -> dict[str, Any]:
    """What ``tune`` writes: the chosen trial, this machine's fingerprint, and the evidence."""
    return {"schema_version": SCHEMA_VERSION, "choice": chosen.to_dict(), "machine": fingerprint(chosen.ran_on or {}),
            "evidence": {**evidence, "candidates": [trial.to_dict() for trial in trials]}}


def read_choice(folder: str | Path, precision: str | None = None) -> TunedChoice | None:
    """The folder's tuned choice when it holds for this CPU (and ``precision``, when one is asked
    for); None without one. An unreadable choice, or one from another CPU, is ignored in one line."""
    path = tuned_path(folder)
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        chosen, machine = document["choice"], document["machine"]
        choice = TunedChoice(Path(folder), chosen["name"], chosen["backend"], Path(folder) / chosen["artifact"],
                             chosen["precision"], dict(chosen["options"]), dict(machine), chosen)
        if document.get("schema_version") != SCHEMA_VERSION or choice.backend not in REGISTRY:
            raise ValueError(f"schema {document.get('schema_version')}, backend {choice.backend!r}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        notice(f"ignoring {path}: not a tuned choice this version reads ({exc}); run mmad-edge tune {folder} again")
        return None
    if precision is not None and precision != choice.precision:
        return None
    changed = differences(machine, {"cpu": cpu_model()})
    if changed:
        notice(_elsewhere(Path(folder), changed))
        return None
    if not choice.artifact.is_file():
        notice(f"ignoring {path}: its {choice.artifact.name} is gone; run mmad-edge tune {folder} again")
        return None
    return choice


def load_tuned(choice: TunedChoice, given: BackendOptions,
               contract_for: Callable[[Path], ArtifactInfo] = load_contract) -> Backend | None:
    """The chosen backend loaded with the choice's settings (``given``'s set ones kept) and the
    contract ``contract_for`` reads (the detector's batch limits); None, after one line on stderr,
    where it cannot run here or is not the device and library tune timed."""
    problem = why_not(choice.backend, choice.artifact)
    if problem is not None:
        notice(f"ignoring {tuned_path(choice.folder)}: {problem}")
        return None
    try:
        impl = backend_class(choice.backend)(choice.artifact, contract_for(choice.artifact),
                                             choice.load_options(given))
    except (ValueError, BackendUnavailableError) as exc:  # ArtifactError is a ValueError
        notice(f"ignoring {tuned_path(choice.folder)}: its {choice.name} does not load here ({one_line(exc)})")
        return None
    mismatch = choice.elsewhere(impl.describe())
    if mismatch is None:
        return impl
    impl.close()
    notice(mismatch)
    return None
