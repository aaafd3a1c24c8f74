"""The ``deployed`` row: what ``auto`` runs from an export folder that ``mmad-edge tune`` chose for
on this machine, timed e2e beside every other row, and the claim that compares it with torch eager.

The row loads the folder itself (``Detector.load(folder)``), so it times exactly what ``run`` and
``serve`` deploy; it carries the tuned candidate's name and its verified accuracy (tune's
comparison with FP32 on real images, from ``tuned.json``). A choice made on another machine is
ignored with one line and the folder gets no ``deployed`` row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mmad_edge.runtime.backends import reference
from mmad_edge.runtime.tuning.choice import TunedChoice, read_choice

from .artifacts import Artifact
from .runner import BenchCase, e2e_detector_case
from .tables import BASELINE

DEPLOYED = "deployed"
SPEEDUP_TARGET = 4.0  # issue 26: on a CPU with VNNI, at variant n 256 px
VERIFIED_KEYS = ("auroc_reference", "auroc", "auroc_drop", "score_shift", "verdict_agreement", "spearman")


def verified(choice: TunedChoice) -> dict[str, Any]:
    """The chosen candidate's accuracy as tune verified it against FP32."""
    comparison = choice.record.get("comparison") or {}
    return {"candidate": choice.name, **{key: comparison.get(key) for key in VERIFIED_KEYS}}


def deployed_cases(artifacts: Sequence[Artifact], batches: Sequence[int], frames: Sequence[np.ndarray],
                   probe: Callable[[Any], dict[str, Any]] | None) -> list[BenchCase]:
    """A ``deployed`` e2e case per batch for each folder of ``artifacts`` with a tuned choice here."""
    folders = list(dict.fromkeys(artifact.path.parent for artifact in artifacts))
    cases = []
    for folder in folders:
        choice = read_choice(folder)
        if choice is None:
            continue
        name = DEPLOYED if len(folders) == 1 else f"{DEPLOYED}@{folder.name}"
        for batch in batches:
            case = e2e_detector_case(folder, batch, frames, name=name, probe=probe)
            case.backend, case.precision = choice.backend, choice.precision  # what the load will confirm
            case.extra.update(family="minimaxad", artifact=str(folder), tuned=choice.name, verified=verified(choice))
            cases.append(case)
    return cases


def _e2e_batch1(rows: Sequence[dict[str, Any]], match: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    return next((r for r in rows if r["protocol"] == "e2e" and r["batch"] == 1 and match(r)), None)


def deployed_claims(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``deployed`` e2e batch-1 p50 against torch eager's (at least ``SPEEDUP_TARGET`` x, the target
    on a CPU with VNNI at variant n 256 px) with its verified accuracy, and against the reference
    backend's FP32 e2e row of the same run (never slower, on any CPU)."""
    cpu = reference().name
    vs_torch = (f"deployed (tuned) e2e batch-1 latency at least {SPEEDUP_TARGET:g}x lower than {BASELINE} (p50), "
                "accuracy as tune verified it against FP32")
    vs_fp32 = f"deployed (tuned) e2e batch-1 latency not above {cpu} FP32 e2e in the same run (p50)"
    row = _e2e_batch1(rows, lambda r: r["name"] == DEPLOYED)
    if row is None:
        reason = {"passed": None, "reason": "no deployed batch-1 row: run mmad-edge tune FOLDER, then bench FOLDER"}
        return {"deployed_vs_trainform": {"claim": vs_torch, **reason}, "deployed_vs_onnx_fp32": {"claim": vs_fp32, **reason}}
    accuracy = row.get("verified") or {}
    baseline = next((r for r in rows if r["name"] == BASELINE and r["batch"] == 1), None)
    fp32 = _e2e_batch1(rows, lambda r: r["backend"] == cpu and r["precision"] == "fp32" and r["name"] != DEPLOYED)
    first = ({"claim": vs_torch, "passed": None, "reason": f"the {BASELINE} batch-1 row did not run"} if baseline is None
             else {"claim": vs_torch, "passed": baseline["p50_ms"] / row["p50_ms"] >= SPEEDUP_TARGET,
                   "speedup": baseline["p50_ms"] / row["p50_ms"], "deployed_p50_ms": row["p50_ms"],
                   "baseline_p50_ms": baseline["p50_ms"], "tuned": row.get("tuned"),
                   "verified_auroc": accuracy.get("auroc"), "verified_auroc_drop": accuracy.get("auroc_drop")})
    second = ({"claim": vs_fp32, "passed": None, "reason": f"the e2e {cpu} fp32 batch-1 row did not run"} if fp32 is None
              else {"claim": vs_fp32, "passed": row["p50_ms"] <= fp32["p50_ms"], "ratio": row["p50_ms"] / fp32["p50_ms"],
                    "deployed_p50_ms": row["p50_ms"], "onnx_fp32_p50_ms": fp32["p50_ms"], "row": fp32["name"]})
    return {"deployed_vs_trainform": first, "deployed_vs_onnx_fp32": second}
