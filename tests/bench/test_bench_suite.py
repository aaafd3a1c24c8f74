"""`mmad-edge bench` orchestration: default-artifact cache, JSON contract, filtering, claims, budget.

Everything runs on a tiny default (variant a at 64 px) with a fixed fake peak; no assertion
depends on how fast anything ran.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import onnx
import pytest
import torch
from typer.testing import CliRunner

from mmad_edge.bench import backend_rows, default_export, planning, suite
from mmad_edge.bench import floor as floor_module
from mmad_edge.bench.artifacts import FLOAT_NCHW_NAME, Artifact, find_artifacts
from mmad_edge.bench.claims import format_claims, speed_claim
from mmad_edge.bench.floor import Peak
from mmad_edge.bench.options import BenchOptions
from mmad_edge.bench.peers import PEERS
from mmad_edge.bench.runner import BenchCase, run_case
from mmad_edge.bench.tables import BASELINE, FLOOR_KEYS, REPARAM, RESULT_KEYS, markdown
from mmad_edge.bench.torch_rows import torch_model
from mmad_edge.checkpoint import save_checkpoint
from mmad_edge.cli import app
from mmad_edge.config import ModelConfig
from mmad_edge.export.metadata import METADATA_KEY, metadata_for_onnx
from mmad_edge.model.minimaxad import build_model
from mmad_edge.runtime.backends import REGISTRY, backend_class
from mmad_edge.runtime.backends.base import BackendOptions

TINY = ModelConfig(variant="a", image_size=64)
FAKE_PEAK = Peak(100.0, 10.0, "fake peak for tests")
TORCH_ROWS = planning.TorchRows(lambda: build_model(TINY), peers=False)
OPENVINO = REGISTRY["openvino"].available()


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bench-cache")
    default_export.default_artifacts(TINY, root, progress=False)
    return root


@pytest.fixture
def tiny_default(monkeypatch: pytest.MonkeyPatch, cache_root: Path) -> Path:
    """The default model shrunk to variant a, the peak fixed; returns the cache root."""
    monkeypatch.setattr(suite, "DEFAULT_VARIANT", "a")
    monkeypatch.setattr(floor_module, "measure_peak", lambda device="cpu": FAKE_PEAK)
    monkeypatch.setenv("HOME", str(cache_root / "home"))  # OpenVINO rows cache compiled models under ~/.cache
    return cache_root


def test_default_artifacts_exported_once_then_reused(cache_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = cache_root / default_export.cache_key(TINY)
    assert sorted(p.name for p in folder.iterdir()) == sorted(default_export.DEFAULT_FILES)
    assert metadata_for_onnx(folder / "model.fp16.onnx")["precision"] == "fp16"
    assert metadata_for_onnx(folder / "model.fp32.onnx")["model"]["variant"] == "a"
    for name in ("model.fp32.onnx", "model.fp16.onnx"):  # written as an export is: our metadata only
        assert [p.key for p in onnx.load(str(folder / name), load_external_data=False).metadata_props] == [METADATA_KEY]

    def no_export(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("re-exported although the cache holds the artifacts")

    monkeypatch.setattr(default_export, "export_onnx", no_export)
    assert default_export.default_artifacts(TINY, cache_root, progress=False) == folder
    assert "0.1" in default_export.cache_key(TINY) and "a-64px" in default_export.cache_key(TINY)


def test_bench_cli_json_contract(tiny_default: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    fp32 = tiny_default / default_export.cache_key(TINY) / "model.fp32.onnx"
    result = CliRunner().invoke(app, ["bench", str(fp32), "--batch-size", "1", "--warmup", "1", "--iters", "2",
                                      "--no-peers", "--json", str(out / "bench.json"), "--markdown",
                                      str(out / "bench.md")])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "bench.json").read_text())
    assert {"results", "floor", "machine", "speed_claim"} <= set(report)
    rows = report["results"]
    for row in rows:
        assert set(RESULT_KEYS) <= set(row)
        assert row["iters"] == 2 and row["warmup"] >= 1
    names = {(r["name"], r["backend"], r["protocol"]) for r in rows if not r["name"].startswith("ov-fp32-")}
    openvino = {("ov-fp32", "openvino", p) for p in ("paper", "e2e")} if OPENVINO else set()
    assert {(BASELINE, "torch", "paper"), (REPARAM, "torch", "paper"), ("onnx-fp32", "onnxruntime", "paper"),
            ("onnx-fp32", "onnxruntime", "e2e"), *openvino} == names
    ort_e2e = next(r for r in rows if r["name"] == "onnx-fp32" and r["protocol"] == "e2e")
    assert ort_e2e["accuracy_vs_ort_fp32"]["map_relative"] == 0.0  # the reference itself
    paper_fp32 = next(r for r in rows if r["name"] == "onnx-fp32" and r["protocol"] == "paper")
    assert paper_fp32["graph"] == FLOAT_NCHW_NAME
    for row in (r for r in rows if r["protocol"] == "e2e"):
        assert {"preprocess", "inference", "postprocess"} <= set(row["stages"])
    floor = report["floor"]
    assert set(FLOOR_KEYS) <= set(floor) and floor["peak_gflops"] == 100.0
    expected = max(floor["gflop_per_image"] / 100.0, floor["bytes_per_image"] / 10e9) * 1000.0
    assert floor["floor_ms_per_image"] == pytest.approx(expected)
    for row in rows:
        assert row["floor_ms"] == pytest.approx(expected * row["batch"])
        assert row["roofline_pct"] == pytest.approx(100.0 * row["floor_ms"] / row["p50_ms"])
    machine = report["machine"]
    assert machine["torch_threads"] == machine["ort_intra_op_threads"] >= 1
    claim = report["speed_claim"]
    assert claim["paper"]["reported_images_per_s"] == 906.0 and "differ" in claim["paper"]["note"]
    e2e = claim["e2e_onnx_fp32_vs_trainform"]  # 2 timed calls a row: no claim
    assert e2e["passed"] is None and e2e["reason"].startswith("too few timed calls for a claim: "), e2e
    load = machine["load"]
    assert load["cores"] == os.cpu_count() and isinstance(load["busy"], bool)
    assert (load["note"] is not None) == load["busy"] and (e2e.get("machine") == load["note"])
    assert claim["batch16_within_floor"]["passed"] is None  # only batch 1 ran
    assert claim["int8_faster_than_fp32"]["passed"] is None
    assert "random" in report["settings"]["weights"]["torch"]
    assert report["settings"]["artifacts"] == [str(fp32)] and report["settings"]["default_artifacts"] is None
    assert BASELINE in result.stdout and "% roofline" in result.stdout and "1.00x" in result.stdout
    assert result.stderr.count("] ") >= len(rows)  # one progress line per case
    assert f"wrote {out / 'bench.json'}" in result.stderr
    assert "Speed claims" in (out / "bench.md").read_text()


def _plan(folder: Path, backend: str, protocols: tuple[str, ...] = ("paper", "e2e"),
          peers: bool = True) -> planning.Plan:
    artifacts = find_artifacts([folder])
    rows = planning.TorchRows(lambda: build_model(TINY), peers=peers)
    return planning.plan_cases(TINY, rows, artifacts, backend, [1, 16],
                               protocols, threads=1)


def test_backend_filter(cache_root: Path) -> None:
    folder = cache_root / default_export.cache_key(TINY)
    torch_plan = _plan(folder, "torch")
    assert {c.backend for c in torch_plan.cases} == {"torch"}
    assert {c.protocol for c in torch_plan.cases} == {"paper"}
    assert {c.name for c in torch_plan.cases} == {BASELINE, REPARAM, *PEERS}
    ort_plan = _plan(folder, "onnxruntime")
    assert {c.backend for c in ort_plan.cases} == {"onnxruntime"}
    assert len(ort_plan.cases) == 2 * 2 * 2  # fp32 + fp16, paper + e2e, batch 1 + 16
    auto = _plan(folder, "auto", peers=False)
    openvino = {"ov-fp32"} if OPENVINO else set()
    assert {c.name for c in auto.cases} - {"ov-fp32-bf16", "ov-fp32-f16"} == {BASELINE, REPARAM, "onnx-fp32",
                                                                           "onnx-fp16", *openvino}
    assert _plan(folder, "torch", ("e2e",)).cases == []


@pytest.mark.skipif(not OPENVINO, reason="openvino is not installed")
def test_openvino_rows_beside_onnxruntime_each_hint_precision_run_or_skipped_with_the_reason(
        cache_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import openvino

    monkeypatch.setenv("HOME", str(cache_root / "home"))
    from mmad_edge.runtime.backends.openvino import PRECISION_UNITS, cpu_capabilities

    plan = _plan(cache_root / default_export.cache_key(TINY), "openvino")
    assert {c.backend for c in plan.cases} == {"openvino"}
    capabilities = cpu_capabilities(openvino.Core())
    for precision, unit in PRECISION_UNITS.items():
        name = "ov-fp32" if unit is None else f"ov-fp32-{precision}"
        runs = unit is None or unit in capabilities
        cases = [(c.protocol, c.batch) for c in plan.cases if c.name == name]
        assert sorted(cases) == (sorted((p, b) for p in ("paper", "e2e") for b in (1, 16)) if runs else [])
        skips = [s["reason"] for s in plan.skipped if s["name"] == name]
        assert runs or (skips and all(f"no {unit} units" in reason for reason in skips))
    assert not [c for c in plan.cases if c.name.startswith("ov-fp16")]  # the FP16 graph is for GPUs
    rows = [run_case(case, 0, 1) for case in plan.cases if case.name == "ov-fp32" and case.batch == 16]
    paper, e2e = sorted(rows, key=lambda row: row["protocol"] != "paper")
    assert paper["performance_hint"] == e2e["performance_hint"] == "throughput"  # batch 16
    assert e2e["inference_precision"] == "f32" and e2e["accuracy_vs_ort_fp32"]["map_relative"] < 1e-4
    assert e2e["accuracy_vs_ort_fp32"]["spearman"] > 0.999


def test_engine_without_tensorrt_is_a_skip_row(cache_root: Path, tmp_path: Path) -> None:
    folder = cache_root / default_export.cache_key(TINY)
    path = tmp_path / "model.fp16.engine"
    engine = Artifact(path, "fp16", TINY.to_dict(), (1, 16), path)
    plan = planning.plan_cases(TINY, TORCH_ROWS, [engine, *find_artifacts([folder])], "tensorrt", [1],
                               ("paper", "e2e"), threads=1)
    assert plan.cases == []
    assert {(s["name"], s["protocol"]) for s in plan.skipped} == {("trt-fp16", "paper"), ("trt-fp16", "e2e")}
    assert all(s["reason"] for s in plan.skipped)


def test_nothing_to_run_is_an_error(tiny_default: Path) -> None:
    with pytest.raises(suite.BenchError, match="nothing to run for --backend tensorrt"):
        suite.run_bench([], BenchOptions(backend="tensorrt", cache_dir=tiny_default, image_size=64, progress=False))
    with pytest.raises(suite.BenchError, match="paper protocol only"):
        suite.run_bench([], BenchOptions(backend="torch", protocols="e2e", cache_dir=tiny_default, image_size=64,
                                         progress=False))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backend": "cuda"}, "--backend must be one of auto, tensorrt, onnxruntime, openvino, torch"),
        ({"batches": "1,x"}, "--batch-size must be comma-separated integers like 1,16, got '1,x'"),
        ({"batches": "0"}, "positive batch sizes"),
        ({"protocols": "fast"}, "--protocol takes paper and/or e2e"),
        ({"iters": 0}, "--iters >= 1"),
        ({"inference_precision": "fp8"}, "--inference-precision: inference_precision must be one of f32, bf16, f16, "
                                         "got 'fp8'"),
        ({"performance_hint": "fast"}, "--performance-hint: performance_hint must be 'latency' or 'throughput'"),
        ({"artifacts": ["/nonexistent/model.onnx"]}, "no such file or folder"),
    ],
)
def test_bad_input_one_line_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(suite.BenchError, match=message):
        suite.run_bench(kwargs.pop("artifacts", ()), BenchOptions(**{"progress": False, **kwargs}))


def test_folder_without_models_and_wrong_size(cache_root: Path, tmp_path: Path) -> None:
    with pytest.raises(suite.BenchError, match="no model.<fp32|fp16|int8>.onnx or .engine here"):
        find_artifacts([tmp_path])
    artifacts = find_artifacts([cache_root / default_export.cache_key(TINY)])
    with pytest.raises(suite.BenchError, match="the artifacts are 64x64, not 256"):
        suite.model_config(artifacts, None, 256)


def test_checkpoint_weights_for_torch_rows(tmp_path: Path, cache_root: Path) -> None:
    model = build_model(TINY)
    with torch.no_grad():
        next(model.decoder.parameters()).fill_(0.25)
    checkpoint = save_checkpoint(tmp_path / "ckpt.pt", model)
    config = suite.model_config([], checkpoint, None)
    assert (config.variant, config.image_size) == ("a", 64)
    loaded = torch_model(config, checkpoint)()
    assert torch.all(next(loaded.decoder.parameters()) == 0.25)
    other = save_checkpoint(tmp_path / "f.pt", build_model(ModelConfig(variant="f", image_size=64)))
    artifacts = find_artifacts([cache_root / default_export.cache_key(TINY)])
    with pytest.raises(suite.BenchError, match="holds variant 'f' but the artifacts are variant 'a'"):
        suite.model_config(artifacts, other, None)


def test_e2e_detector_uses_explicit_threads(cache_root: Path) -> None:
    options = backend_class("onnxruntime").on_cpu(BackendOptions(threads=1, micro_batch=3))  # the bench's CPU rows
    detector = backend_rows.detector_loader("onnxruntime", options)(cache_root / default_export.cache_key(TINY) / "model.fp32.onnx")
    try:
        assert detector.backend._session.get_session_options().intra_op_num_threads == 1
        assert detector.backend._session.get_providers() == ["CPUExecutionProvider"]
        assert detector.backend.micro_batch == 3
    finally:
        detector.close()


def test_micro_batch_reaches_both_protocols(cache_root: Path) -> None:
    artifacts = find_artifacts([cache_root / default_export.cache_key(TINY) / "model.fp32.onnx"])
    plan = planning.plan_cases(TINY, TORCH_ROWS, artifacts, "onnxruntime", [16], ("paper", "e2e"), threads=1,
                               options=BackendOptions(micro_batch=4))
    rows = [run_case(case, 0, 1) for case in plan.cases]
    assert [(r["protocol"], r["micro_batch"]) for r in rows] == [("paper", 4), ("e2e", 4)]
    note = markdown({"results": rows})
    assert "batch 16 as runs of 4" in note and "`--micro-batch 0`" in note
    auto = planning.plan_cases(TINY, TORCH_ROWS, artifacts, "onnxruntime", [16], ("paper",), threads=1)
    assert run_case(auto.cases[0], 0, 1)["micro_batch"] == 16  # 64x64: the automatic choice (64) exceeds 16
    with pytest.raises(suite.BenchError, match="--micro-batch: micro_batch must be None"):
        suite.run_bench((), BenchOptions(micro_batch=-2, progress=False))


def _row(name: str, backend: str, precision: str, protocol: str, batch: int, p50: float, ips: float,
         **extra: Any) -> dict[str, Any]:
    return {"name": name, "backend": backend, "precision": precision, "protocol": protocol, "batch": batch,
            "p50_ms": p50, "images_per_s": ips, "family": "minimaxad", **extra}


MACHINE = {"cpu_model": "Test CPU", "logical_cores": 2, "gpu": None}
FLOOR = {"floor_ms_per_image": 1.0}


def test_speed_claims_from_given_numbers() -> None:
    rows = [
        _row(BASELINE, "torch", "fp32", "paper", 1, 100.0, 10.0),
        _row("onnx-fp32", "onnxruntime", "fp32", "e2e", 1, 40.0, 25.0),
        _row(REPARAM, "torch", "fp32", "paper", 16, 32.0, 453.0, floor_ms=16.0),
        _row("onnx-fp32", "onnxruntime", "fp32", "e2e", 16, 25.0, 800.0, floor_ms=16.0),
        _row("onnx-int8", "onnxruntime", "int8", "e2e", 16, 20.0, 1000.0, floor_ms=16.0),
    ]
    claims = speed_claim(rows, FLOOR, MACHINE, TINY)
    e2e = claims["e2e_onnx_fp32_vs_trainform"]
    assert e2e["passed"] is True and e2e["speedup"] == pytest.approx(2.5)
    floor = claims["batch16_within_floor"]
    # judged on FP32 rows only (the floor is FP32 work at the FP32 peak): onnx-fp32, 1.25 ms vs 1 ms
    assert floor["row"] == "onnx-fp32" and floor["ratio"] == pytest.approx(1.25) and floor["passed"] is True
    int8 = claims["int8_faster_than_fp32"]
    assert int8["passed"] is True and int8["comparisons"][0]["speedup"] == pytest.approx(1.25)
    paper = claims["paper"]
    assert paper["measured_row"] == REPARAM and paper["ratio_to_reported"] == pytest.approx(0.5)
    assert paper["this_device"] == "CPU Test CPU (2 cores)" and paper["this_model"] == "variant a, 64x64"


def test_peers_are_compared_exported_against_exported() -> None:
    rows = [
        _row(REPARAM, "torch", "fp32", "paper", 1, 10.0, 100.0),  # eager: never compared with the peers' exports
        _row("onnx-fp32", "onnxruntime", "fp32", "paper", 1, 5.0, 200.0),
        _row("onnx-fp16", "onnxruntime", "fp16", "paper", 1, 2.0, 500.0),  # FP32 only, as the peers' graphs
        _row("onnx-efficientad-s", "onnxruntime", "fp32", "paper", 1, 2.5, 400.0, family="peer"),
        _row("onnx-rd4ad-wrn50", "onnxruntime", "fp32", "paper", 1, 20.0, 50.0, family="peer"),
        _row("efficientad-s", "torch", "fp32", "paper", 1, 50.0, 20.0, family="peer"),
        _row("onnx-patchcore-wrn50", "onnxruntime", "fp32", "paper", 16, 1.0, 16.0, family="peer"),  # no batch-16 ours
    ]
    claim = speed_claim(rows, None, MACHINE, TINY)["onnx_faster_than_peers_onnx"]
    assert claim["passed"] is False and claim["lowest_speedup"] == pytest.approx(0.5)
    assert [(c["peer"], c["row"], c["speedup"]) for c in claim["comparisons"]] == [
        ("onnx-efficientad-s", "onnx-fp32", pytest.approx(0.5)), ("onnx-rd4ad-wrn50", "onnx-fp32", pytest.approx(4.0))]
    assert "FAIL: MiniMaxAD's exported FP32 graph" in format_claims(speed_claim(rows, None, MACHINE, TINY))


def test_peer_graphs_are_planned_beside_ours_on_onnxruntime(cache_root: Path) -> None:
    artifacts = find_artifacts([cache_root / default_export.cache_key(TINY) / "model.fp32.onnx"])
    graphs = {"efficientad-s": Path("peer.efficientad-s.onnx"), "patchcore-wrn50": Path("peer.patchcore-wrn50.onnx"),
              "rd4ad-wrn50": "ONNX export failed: test"}
    rows = planning.TorchRows(lambda: build_model(TINY), peers=False, peer_graphs=graphs)
    plan = planning.plan_cases(TINY, rows, artifacts, "onnxruntime", [1], ("paper",), threads=1)
    peers = [(c.name, c.backend, c.protocol, c.extra["family"], c.extra["graph"]) for c in plan.cases
             if c.extra["family"] == "peer"]
    assert peers == [("onnx-efficientad-s", "onnxruntime", "paper", "peer", "peer.efficientad-s.onnx"),
                     ("onnx-patchcore-wrn50", "onnxruntime", "paper", "peer", "peer.patchcore-wrn50.onnx")]
    patchcore = next(c for c in plan.cases if c.name == "onnx-patchcore-wrn50")
    assert "nearest-neighbour search" in patchcore.extra["note"]
    assert {"name": "onnx-rd4ad-wrn50", "backend": "onnxruntime", "protocol": "paper", "batch": 1,
            "reason": "ONNX export failed: test"} in plan.skipped
    torch_only = planning.plan_cases(TINY, rows, artifacts, "torch", [1], ("paper",), threads=1)
    assert not [c for c in torch_only.cases if c.extra["family"] == "peer"]


def test_a_claim_needs_ten_timed_calls_a_row_and_names_a_busy_machine() -> None:
    rows = [_row(BASELINE, "torch", "fp32", "paper", 1, 100.0, 10.0, iters=3),
            _row("onnx-fp32", "onnxruntime", "fp32", "e2e", 1, 0.9, 1100.0, iters=50)]
    busy = {**MACHINE, "load": {"busy": True, "note": "machine busy: load average 11.4 on 2 cores before the run"}}
    claim = speed_claim(rows, None, busy, TINY)["e2e_onnx_fp32_vs_trainform"]
    assert claim["passed"] is None and "speedup" not in claim  # 111x from 3 calls is no claim
    assert claim["reason"] == (f"too few timed calls for a claim: {BASELINE} b1 (3); a claim needs 10 per row, "
                               "raise --case-budget")
    assert claim["machine"] == busy["load"]["note"]
    rows[0]["iters"] = 10
    text = format_claims(speed_claim(rows, None, busy, TINY))
    line = next(line for line in text.splitlines() if "e2e ONNX FP32" in line)
    assert line.startswith("PASS: ") and line.endswith("[machine busy: load average 11.4 on 2 cores before the run]")
    assert "machine" not in speed_claim(rows, None, MACHINE, TINY)["e2e_onnx_fp32_vs_trainform"]


def test_load_watch_reads_load_and_steal(tmp_path, monkeypatch) -> None:
    from mmad_edge.bench import machine

    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 100 700 0 0 0 100 0 0\n")  # steal is the 8th field
    assert machine.cpu_ticks(str(stat)) == (1000, 100)
    monkeypatch.setattr(machine.os, "getloadavg", lambda: (3.0, 2.0, 1.0))
    ticks = iter([(1000, 100), (2000, 300)])
    monkeypatch.setattr(machine, "cpu_ticks", lambda: next(ticks))
    load = machine.LoadWatch(cores=2).finish()
    assert load["steal_pct"] == pytest.approx(20.0) and load["busy"] is True
    assert load["note"] == "machine busy: load average 3.0 on 2 cores before the run, 20 % CPU steal during it"


def test_speed_claims_fail_or_unknown() -> None:
    rows = [
        _row(BASELINE, "torch", "fp32", "paper", 1, 100.0, 10.0),
        _row("onnx-fp32", "onnxruntime", "fp32", "e2e", 1, 60.0, 16.7),
        _row("onnx-fp32", "onnxruntime", "fp32", "e2e", 16, 40.0, 400.0, floor_ms=16.0),
        _row("onnx-int8", "onnxruntime", "int8", "e2e", 16, 50.0, 320.0, floor_ms=16.0),
    ]
    claims = speed_claim(rows, FLOOR, MACHINE, TINY)
    assert claims["e2e_onnx_fp32_vs_trainform"]["passed"] is False
    assert claims["e2e_onnx_fp32_vs_trainform"]["speedup"] == pytest.approx(100.0 / 60.0)
    assert claims["batch16_within_floor"]["passed"] is False
    assert claims["batch16_within_floor"]["ratio"] == pytest.approx(2.5)
    assert claims["int8_faster_than_fp32"]["passed"] is False
    empty = speed_claim([], None, MACHINE, TINY)
    assert all(empty[key]["passed"] is None and empty[key]["reason"] for key in empty if key != "paper")
    assert empty["paper"]["measured_images_per_s"] is None
    assert "n/a" in format_claims(empty) and "FAIL" in format_claims(claims)
    emulated = {**_row("onnx-int8@trt", "onnxruntime", "int8", "e2e", 16, 90.0, 100.0), "int8_target": "tensorrt"}
    faster = {**rows[-1], "images_per_s": 500.0, "int8_target": "cpu"}
    claims = speed_claim([*rows[:-1], faster, emulated], FLOOR, MACHINE, TINY)
    assert claims["int8_faster_than_fp32"]["passed"] is True  # ONNX Runtime only emulates the TensorRT form
    assert len(claims["int8_faster_than_fp32"]["comparisons"]) == 1


def test_int8_artifacts_carry_their_form_from_the_export_report(tmp_path: Path) -> None:
    from runtime_fixtures import write_export_dir

    folder = write_export_dir(tmp_path / "export", 32, precisions=("fp32", "int8"))
    (folder / "report.json").write_text(json.dumps({"int8": {"target": "tensorrt"}}))
    artifacts = {a.precision: a for a in find_artifacts([folder])}
    assert artifacts["int8"].int8_target == "tensorrt" and artifacts["int8"].facts == {"int8_target": "tensorrt"}
    assert artifacts["fp32"].int8_target is None and artifacts["fp32"].facts == {}


def test_floor_goes_to_minimaxad_rows_of_a_measured_device() -> None:
    rows = [
        _row("onnx-fp32", "onnxruntime", "fp32", "e2e", 4, 8.0, 500.0),
        _row("trt-fp16", "tensorrt", "fp16", "e2e", 4, 2.0, 2000.0),
        {**_row("efficientad-s", "torch", "fp32", "paper", 4, 8.0, 500.0), "family": "peer"},
    ]
    cpu_only = suite.attach_floor(rows, {"cpu": 0.5})
    assert cpu_only[0]["floor_ms"] == 2.0 and cpu_only[0]["roofline_pct"] == pytest.approx(25.0)
    assert "floor_ms" not in cpu_only[1] and "floor_ms" not in cpu_only[2]
    assert suite.attach_floor(rows, {"cpu": 0.5, "cuda": 0.25})[1]["floor_ms"] == 1.0


class FakeClock:
    """perf_counter advancing ``tick`` seconds per call, so the probe 'takes' one tick."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 0.0, tick

    def perf_counter(self) -> float:
        self.now += self.tick
        return self.now


@pytest.mark.parametrize(("tick", "iters", "warmup", "steps"), [(1.0, 3, 1, 4), (0.001, 50, 10, 60)])
def test_case_budget_cuts_slow_cases(monkeypatch: pytest.MonkeyPatch, tick: float, iters: int, warmup: int,
                                     steps: int) -> None:
    log = {"setup": 0, "step": 0, "teardown": 0}
    case = BenchCase(
        name="slow", backend="fake", precision="fp32", protocol="paper", batch=2,
        step=lambda: log.__setitem__("step", log["step"] + 1),
        setup=lambda: log.__setitem__("setup", log["setup"] + 1) or {"backend": "resolved"},
        teardown=lambda: log.__setitem__("teardown", log["teardown"] + 1),
    )
    monkeypatch.setattr(suite, "time", FakeClock(tick))
    row = suite.run_budgeted(case, warmup=10, iters=50, budget_s=2.5)
    assert (row["iters"], row["warmup"]) == (iters, warmup)
    assert log == {"setup": 1, "step": steps, "teardown": 1}
    assert row["backend"] == "resolved"


def test_failing_case_becomes_a_skip(capsys: pytest.CaptureFixture) -> None:
    def broken() -> None:
        raise ImportError("No module named 'faiss'")

    plan = planning.Plan([BenchCase(name="peer-x", backend="torch", precision="fp32", protocol="paper", batch=1,
                                 step=broken)])
    assert suite.run_plan(plan, warmup=1, iters=2, budget_s=1.0, progress=True) == []
    (skip,) = plan.skipped
    assert skip["name"] == "peer-x" and "optional package" in skip["reason"] and "faiss" in skip["reason"]
    assert "skipped" in capsys.readouterr().err


def test_no_fp32_graph_means_no_floor_and_says_why(tmp_path: Path) -> None:
    path = tmp_path / "model.fp16.engine"
    plan = planning.Plan()
    engine_only = [Artifact(path, "fp16", TINY.to_dict(), (1, 1), path)]
    floor, floors = suite.measure_floors(floor_module, engine_only, FAKE_PEAK, [], plan)
    assert floor is None and floors == {}
    assert "no model.fp32.onnx" in plan.skipped[0]["reason"]


def test_peer_graphs_default_to_the_bench_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    from mmad_edge.bench import peer_export

    seen = {}
    monkeypatch.setattr(peer_export, "peer_graphs", lambda peers, size, root, progress: seen.setdefault("root", root))
    suite.peer_graphs(64, None, False)
    assert seen["root"] == default_export.default_cache_root()


def test_a_registered_backend_gets_bench_rows_by_its_entry_alone(cache_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One module and one registry entry: the bench plans its paper and e2e rows, named by its label."""
    import sys
    import types

    from mmad_edge.runtime import backends
    from mmad_edge.runtime.backends.onnxruntime import OnnxRuntimeBackend

    class Other(OnnxRuntimeBackend):
        name = "other"

    module = types.ModuleType("fake_other_backend")
    module.BACKEND = Other
    monkeypatch.setitem(sys.modules, "fake_other_backend", module)
    monkeypatch.setattr(backends, "REGISTRY", dict(REGISTRY))
    monkeypatch.setattr(planning, "REGISTRY", backends.REGISTRY)
    backends.register(backends.BackendEntry("other", "fake_other_backend", (".onnx",), lambda: True,
                                            lambda path: None, label="oth"))
    artifacts = find_artifacts([cache_root / default_export.cache_key(TINY) / "model.fp32.onnx"])
    plan = planning.plan_cases(TINY, TORCH_ROWS, artifacts, "other", [2], ("paper", "e2e"), threads=1)
    assert [(c.name, c.backend, c.protocol) for c in plan.cases] == [("oth-fp32", "other", "paper"),
                                                                     ("oth-fp32", "other", "e2e")]
    rows = [run_case(case, 0, 1) for case in plan.cases]
    assert rows[1]["backend"] == "other" and rows[1]["accuracy_vs_ort_fp32"]["map_relative"] == 0.0


def test_int8_claim_says_which_row_it_lacks() -> None:
    fp32 = _row("onnx-fp32", "onnxruntime", "fp32", "e2e", 1, 9.0, 111.0)
    trt_form = {**_row("onnx-int8", "onnxruntime", "int8", "e2e", 1, 30.0, 33.0), "int8_target": "tensorrt"}
    cpu_form = {**_row("onnx-int8", "onnxruntime", "int8", "e2e", 16, 5.0, 200.0), "int8_target": "cpu"}

    def reason(rows: list) -> str:
        claim = speed_claim(rows, FLOOR, MACHINE, TINY)["int8_faster_than_fp32"]
        assert claim["passed"] is None
        return claim["reason"]

    assert "only the TensorRT-form INT8 graph was timed" in reason([fp32, trt_form])
    assert "--target cpu" in reason([fp32, trt_form])
    assert "no onnxruntime fp32 row at the protocol and batch" in reason([fp32, cpu_form])  # fp32 at b1, int8 at b16
    assert reason([fp32]).startswith("no int8 artifact was timed on onnxruntime")
    assert speed_claim([fp32, trt_form, {**cpu_form, "batch": 1}], FLOOR, MACHINE, TINY)[
        "int8_faster_than_fp32"]["comparisons"][0]["speedup"] == pytest.approx(200.0 / 111.0)
