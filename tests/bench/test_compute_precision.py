"""Rows, tables, claims and the demo report name the precision that computes: an FP32 graph that
OpenVINO runs in BF16 is a BF16 row, never an FP32 one (this CPU refuses BF16, so the rows here are
what the backend reports on a CPU that has the units)."""

from __future__ import annotations

import json

import pytest

from mmad_edge.app.demo import latency_lines
from mmad_edge.bench.claims import speed_claim
from mmad_edge.bench.runner import BenchCase, e2e_detector_case, run_case
from mmad_edge.bench.tables import build_report, markdown
from mmad_edge.config import ModelConfig
from mmad_edge.runtime.backends.base import compute_precision, precision_label


@pytest.mark.parametrize("graph, hint, computed", [
    ("fp32", "bf16", "bf16"), ("fp32", "f16", "fp16"), ("fp32", "f32", "fp32"), ("fp32", None, "fp32"),
    ("int8", "f32", "int8"), ("fp16", None, "fp16"),
])
def test_compute_precision_is_the_lower_float_type_when_the_backend_uses_one(graph, hint, computed):
    assert compute_precision(graph, hint) == computed
    assert precision_label(graph, computed) == (graph if computed == graph else f"{computed} ({graph} graph)")


def graph_row(name: str, facts: dict, precision: str = "fp32", batch: int = 16) -> dict:
    """A paper row as ``graph_case`` makes it: the facts are what the backend's ``time_graph`` reports."""
    case = BenchCase(name=name, backend="openvino", precision=precision, protocol="paper", batch=batch,
                     step=lambda: None, setup=lambda: dict(facts), extra={"family": "minimaxad"})
    return run_case(case, warmup=0, iters=2)


def test_a_bf16_row_is_labelled_bf16_in_the_json_the_markdown_and_the_claims():
    bf16 = graph_row("ov-fp32-bf16", {"inference_precision": "bf16", "performance_hint": "throughput"})
    f32 = graph_row("ov-fp32", {"inference_precision": "f32", "performance_hint": "throughput"})
    report = json.loads(json.dumps(build_report([f32, bf16])))
    assert [(r["name"], r["precision"], r["compute_precision"]) for r in report["results"]] == [
        ("ov-fp32", "fp32", "fp32"), ("ov-fp32-bf16", "fp32", "bf16")]
    table = markdown(report)
    assert "| ov-fp32-bf16 | openvino | bf16 (fp32 graph) | paper | 16 |" in table
    assert "| ov-fp32 | openvino | fp32 | paper | 16 |" in table
    # The paper figure compares FP32 work: the BF16 row is not this run's FP32 measurement, however fast.
    bf16["images_per_s"] = f32["images_per_s"] * 10
    claims = speed_claim([f32, bf16], None, {"cpu_model": "test"}, ModelConfig(variant="a", image_size=64))
    assert claims["paper"]["measured_row"] == "ov-fp32"


class Bf16Detector:
    """What a loaded OpenVINO detector on a BF16 CPU reports (its ``describe``)."""

    class info:  # noqa: N801
        precision = "fp32"

    class backend:  # noqa: N801
        name = "openvino"

        @staticmethod
        def describe() -> dict:
            return {"backend": "openvino", "precision": "fp32", "inference_precision": "bf16",
                    "compute_precision": "bf16", "performance_hint": "latency", "infer_requests": 1}

    def predict(self, frames: list) -> list:
        return []

    def close(self) -> None:
        pass


def test_an_e2e_row_takes_the_compute_precision_the_detector_reports():
    case = e2e_detector_case("export/model.fp32.onnx", 1, [b"frame"], loader=lambda path, **kw: Bf16Detector(),
                             name="ov-fp32-bf16")
    row = run_case(case, warmup=0, iters=1)
    assert (row["precision"], row["inference_precision"], row["compute_precision"]) == ("fp32", "bf16", "bf16")


def test_the_demo_report_gives_bf16_latency_its_own_labelled_line_not_the_fp32_one():
    ort = {"name": "ort-fp32", "backend": "onnxruntime", "precision": "fp32", "compute_precision": "fp32",
           "protocol": "e2e", "batch": 1, "p50_ms": 32.4}
    ov = {"name": "ov-fp32-bf16", "backend": "openvino", "precision": "fp32", "compute_precision": "bf16",
          "protocol": "e2e", "batch": 1, "p50_ms": 18.6}
    lines, latencies = latency_lines({"fp32": {"mean": 0.9}}, {"results": [ort, ov]})
    assert lines[0] == "## Accuracy and latency per precision (onnxruntime, this CPU)"
    assert "| fp32 | onnxruntime | fp32 | 0.900 | 32.4 | nan |" in lines and latencies == [32.4]
    assert "| ov-fp32-bf16 | openvino | fp32 | bf16 | 18.6 | nan |" in lines
