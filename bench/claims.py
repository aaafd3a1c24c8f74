"""The paper's figure as context and this machine's checkable speed claims, from result rows.

Each claim is true/false with its numbers, or ``passed: None`` with the reason when the rows it
needs did not run (e.g. the torch baseline on a runtime-only install).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mmad_edge.config import ModelConfig
from mmad_edge.runtime.backends import reference

from .deployed import deployed_claims
from .tables import BASELINE, computes, format_value

PAPER_IMAGES_PER_S = 906.0
PAPER_BATCH = 16
PAPER_CONTEXT = (
    "about 906 images/s reported (second-hand) for reparameterised variant n, FP32, batch 16, 256x256, "
    "input on the GPU, forward only, on an NVIDIA RTX 4090"
)
E2E_SPEEDUP_TARGET = 2.0
FLOOR_RATIO_TARGET = 1.5
FLOOR_CLAIM_BATCH = 16
CLAIM_MIN_CALLS = 10  # timed calls each row of a claim needs: 3 calls on a loaded machine prove nothing
TRT_FORM = "tensorrt"  # the export's INT8 target of the symmetric Q/DQ graph (``calib.int8_graph.TARGETS``)


def _too_few_calls(*rows: dict[str, Any]) -> str | None:
    """Why rows cannot carry a claim: one timed fewer than ``CLAIM_MIN_CALLS`` calls (the case budget
    cut it); rows without a count ran the calls asked for."""
    short = [r for r in rows if r.get("iters") is not None and r["iters"] < CLAIM_MIN_CALLS]
    if not short:
        return None
    named = ", ".join(f"{r['name']} b{r['batch']} ({r['iters']})" for r in short)
    return (f"too few timed calls for a claim: {named}; a claim needs {CLAIM_MIN_CALLS} per row, "
            "raise --case-budget")


def _find(rows: Sequence[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    return next((row for row in rows if all(row.get(key) == value for key, value in match.items())), None)


def speed_claim(
    rows: Sequence[dict[str, Any]], floor: dict[str, Any] | None, machine: dict[str, Any], model: ModelConfig,
) -> dict[str, Any]:
    """The paper's figure as context, and this machine's three checkable claims (true/false + numbers).

    A claim whose rows are missing, or timed fewer than ``CLAIM_MIN_CALLS`` calls, has ``passed:
    None`` and the reason; on a busy machine (``machine["load"]``) each claim carries the note.
    """
    claims = {
        "e2e_onnx_fp32_vs_trainform": _e2e_claim(rows),
        "batch16_within_floor": _floor_claim(rows, floor),
        "int8_faster_than_fp32": _int8_claim(rows),
        "onnx_faster_than_peers_onnx": _peer_claim(rows),
        **deployed_claims(rows),
    }
    note = (machine.get("load") or {}).get("note")
    if note:
        claims = {key: {**claim, "machine": note} for key, claim in claims.items()}
    return {"paper": _paper_context(rows, machine, model), **claims}


def _paper_context(rows: Sequence[dict[str, Any]], machine: dict[str, Any], model: ModelConfig) -> dict[str, Any]:
    gpu = (machine.get("gpu") or {}).get("name")
    device = f"GPU {gpu}" if gpu else f"CPU {machine.get('cpu_model', '?')} ({machine.get('logical_cores', '?')} cores)"
    candidates = [r for r in rows if r.get("family") == "minimaxad" and r["protocol"] == "paper"
                  and computes(r) == "fp32" and r["batch"] == PAPER_BATCH and r["name"] != BASELINE]
    best = max(candidates, key=lambda r: r["images_per_s"], default=None)
    return {
        "reported_images_per_s": PAPER_IMAGES_PER_S,
        "reported": PAPER_CONTEXT,
        "this_device": device,
        "this_model": f"variant {model.variant}, {model.image_size}x{model.image_size}",
        "measured_row": None if best is None else best["name"],
        "measured_images_per_s": None if best is None else best["images_per_s"],
        "ratio_to_reported": None if best is None else best["images_per_s"] / PAPER_IMAGES_PER_S,
        "note": "different device (and maybe model) and a second-hand figure: context only, not a pass/fail",
    }


def _e2e_claim(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    claim = f"e2e ONNX FP32 batch-1 latency at least {E2E_SPEEDUP_TARGET:g}x lower than {BASELINE} (p50)"
    onnx_row = _find(rows, backend=reference().name, precision="fp32", protocol="e2e", batch=1)
    baseline = _find(rows, name=BASELINE, batch=1)
    if onnx_row is None or baseline is None:
        missing = f"the e2e {reference().name} fp32 batch-1 row" if onnx_row is None else f"the {BASELINE} batch-1 row"
        return {"claim": claim, "passed": None, "reason": f"{missing} did not run"}
    short = _too_few_calls(onnx_row, baseline)
    if short:
        return {"claim": claim, "passed": None, "reason": short}
    speedup = baseline["p50_ms"] / onnx_row["p50_ms"]
    return {"claim": claim, "passed": speedup >= E2E_SPEEDUP_TARGET, "speedup": speedup,
            "onnx_p50_ms": onnx_row["p50_ms"], "baseline_p50_ms": baseline["p50_ms"], "row": onnx_row["name"]}


def _floor_claim(rows: Sequence[dict[str, Any]], floor: dict[str, Any] | None) -> dict[str, Any]:
    claim = f"batch-{FLOOR_CLAIM_BATCH} throughput within {FLOOR_RATIO_TARGET:g}x of the roofline floor"
    # The floor is FP32 work at the FP32 peak: only FP32 rows are judged against it.
    candidates = [r for r in rows if r["batch"] == FLOOR_CLAIM_BATCH and r.get("floor_ms") and computes(r) == "fp32"]
    if floor is None or not candidates:
        reason = "no floor was counted" if floor is None else f"no batch-{FLOOR_CLAIM_BATCH} MiniMaxAD row ran"
        return {"claim": claim, "passed": None, "reason": reason}
    best = max(candidates, key=lambda r: r["images_per_s"])
    short = _too_few_calls(best)
    if short:
        return {"claim": claim, "passed": None, "reason": short}
    ms_per_image = 1000.0 / best["images_per_s"]
    floor_per_image = best["floor_ms"] / best["batch"]
    ratio = ms_per_image / floor_per_image
    return {"claim": claim, "passed": ratio <= FLOOR_RATIO_TARGET, "ratio": ratio, "row": best["name"],
            "protocol": best["protocol"], "ms_per_image": ms_per_image, "floor_ms_per_image": floor_per_image}


def _int8_claim(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    claim = "INT8 on the CPU (ONNX Runtime) has higher throughput than FP32 at the same batch and protocol"
    pairs = []  # the TensorRT-form graph is left out: ONNX Runtime only emulates its Q/DQ
    cpu = reference().name
    cpu_form = (r for r in rows if r["backend"] == cpu and r["precision"] == "int8" and r.get("int8_target") != TRT_FORM)
    for int8 in cpu_form:
        fp32 = _find(rows, backend=cpu, precision="fp32", protocol=int8["protocol"], batch=int8["batch"])
        if fp32 is None:
            continue
        short = _too_few_calls(int8, fp32)
        if short:
            return {"claim": claim, "passed": None, "reason": short}
        pairs.append({"protocol": int8["protocol"], "batch": int8["batch"],
                      "int8_images_per_s": int8["images_per_s"], "fp32_images_per_s": fp32["images_per_s"],
                      "speedup": int8["images_per_s"] / fp32["images_per_s"]})
    if not pairs:
        return {"claim": claim, "passed": None, "reason": _no_int8_pair(rows)}
    return {"claim": claim, "passed": all(p["speedup"] > 1.0 for p in pairs), "comparisons": pairs}


def _no_int8_pair(rows: Sequence[dict[str, Any]]) -> str:
    """Why the INT8 claim has no pair: which row is missing, and what gives it."""
    cpu = reference().name
    int8 = [r for r in rows if r["backend"] == cpu and r["precision"] == "int8"]
    if not int8:
        return f"no int8 artifact was timed on {cpu}; bench an export folder with a model.int8.onnx"
    if all(r.get("int8_target") == TRT_FORM for r in int8):
        return (f"only the TensorRT-form INT8 graph was timed, which {cpu} only emulates (left out of this claim); "
                "bench a folder exported with --precision int8 --target cpu for it")
    return (f"no {cpu} fp32 row at the protocol and batch of the CPU-form int8 rows was timed; bench the folder's "
            "model.fp32.onnx beside it")


def _peer_claim(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Like with like: MiniMaxAD's exported FP32 graph against each peer's exported graph, same
    backend (ONNX Runtime), protocol (paper) and batch; eager peers are not compared with exports."""
    claim = "MiniMaxAD's exported FP32 graph has higher throughput than each peer's exported graph (ONNX Runtime, paper)"
    pairs = []
    cpu = reference().name
    for peer in (r for r in rows if r.get("family") == "peer" and r["backend"] == cpu):
        ours = [r for r in rows if r.get("family") == "minimaxad" and r["backend"] == cpu
                and r["protocol"] == "paper" and computes(r) == "fp32" and r["batch"] == peer["batch"]]
        best = max(ours, key=lambda r: r["images_per_s"], default=None)
        if best is None:
            continue
        short = _too_few_calls(best, peer)
        if short:
            return {"claim": claim, "passed": None, "reason": short}
        pairs.append({"peer": peer["name"], "batch": peer["batch"], "row": best["name"],
                      "images_per_s": best["images_per_s"], "peer_images_per_s": peer["images_per_s"],
                      "speedup": best["images_per_s"] / peer["images_per_s"], "note": peer.get("note")})
    if not pairs:
        return {"claim": claim, "passed": None,
                "reason": "no exported peer row (with a MiniMaxAD ONNX FP32 paper row at its batch) was timed"}
    return {"claim": claim, "passed": all(p["speedup"] > 1.0 for p in pairs), "comparisons": pairs,
            "lowest_speedup": min(p["speedup"] for p in pairs)}


def format_claims(claims: dict[str, Any]) -> str:
    """One line per claim: PASS / FAIL / n/a and its numbers; the paper figure as context."""
    paper = claims["paper"]
    lines = [f"paper: {paper['reported']}; this run ({paper['this_model']}, {paper['this_device']}): "
             f"{format_value(paper['measured_images_per_s'], 1)} images/s ({paper['note']})"]
    for key, claim in claims.items():
        if key == "paper":
            continue
        verdict = {True: "PASS", False: "FAIL", None: "n/a"}[claim["passed"]]
        numbers = ", ".join(f"{k} {v:.3g}" for k, v in claim.items() if isinstance(v, float))
        busy = f" [{claim['machine']}]" if claim.get("machine") else ""
        lines.append(f"{verdict}: {claim['claim']}" + (f" ({numbers})" if numbers else f" ({claim.get('reason', '')})")
                     + busy)
    return "\n".join(lines)
