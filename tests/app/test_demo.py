"""`mmad-edge demo` end to end on a tiny configuration: every step runs and the report is complete."""

import json
import os
import re
import shutil

import pytest

from mmad_edge.app.demo import DemoOptions, run_demo


def test_demo_writes_report_with_accuracy_and_latency_per_precision(tmp_path, capfd):
    opts = DemoOptions(out=tmp_path / "demo", image_size=64, epochs=1, batch_size=8, categories=("brick",),
                       n_train=10, n_test_good=3, n_test_defect=3, calib_count=8, bench_iters=1, progress=False)
    summary = run_demo(opts)
    report = (tmp_path / "demo" / "report.md").read_text()
    for name in ("fp32", "fp16", "int8", "int8-cpu"):
        row = next(line for line in report.splitlines() if line.startswith(f"| {name} |"))
        backend, computed, *numbers = (cell.strip() for cell in row.strip("|").split("|")[1:6])
        assert (backend, computed) == ("onnxruntime", name.split("-")[0])  # the backend and precision that compute
        auroc, latency, throughput = (float(cell) for cell in numbers)
        # 3 normal x 3 defective images: chance is 0.5, 0.75 allows two of the nine pairs misordered
        # (the texture encoder reaches 1.0 here).
        assert auroc >= 0.75 and latency > 0 and throughput > 0, (name, auroc)
    saved = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert set(saved["runtime_auroc"]) == {"fp32", "fp16", "int8", "int8-cpu"}
    assert saved["model"]["reparam_relative_l2_error"] < 1e-5
    assert len(list((tmp_path / "demo" / "overlays").glob("*.png"))) == 6
    assert (tmp_path / "demo" / "accuracy_latency.png").stat().st_size > 0
    assert summary["metrics"]["mean"]["image_auroc"] >= 0.75 and summary["metrics"]["mean"]["pixel_auroc"] >= 0.8
    # The CPU-form INT8 graph is not meant for TensorRT: no TensorRT check, no issue list on stderr;
    # the TensorRT-form graphs are checked and clean.
    err = capfd.readouterr().err
    assert err.count("may not build with TensorRT") == 0 and "TensorRT needs signed INT8" not in err
    cpu_report = json.loads((tmp_path / "demo" / "export-int8-cpu" / "report.json").read_text())
    assert cpu_report["int8"]["target"] == "cpu" and cpu_report["tensorrt_compat"]["int8"] is None
    trt_report = json.loads((tmp_path / "demo" / "export" / "report.json").read_text())
    assert trt_report["tensorrt_compat"] == {"fp32": [], "fp16": [], "int8": []}

    # Verdicts and thresholds per precision; the FP32 counts match the overlays' verdicts.
    # Columns: normal median, threshold, defects / normals flagged, then the same against the pooled threshold.
    number = r"([0-9.e-]+)"
    rows = re.findall(rf"^\| (fp32|fp16|int8|int8-cpu) \| brick \| {number} \| {number} \| (\d+) of 3 \| (\d+) of 3 \| "
                      rf"{number} \| (\d+) of 3 \| (\d+) of 3 \|$", report, re.MULTILINE)
    assert [r[0] for r in rows] == ["fp32", "fp16", "int8", "int8-cpu"], report
    verdicts = summary["runtime_auroc"]["fp32"]["verdicts"]["brick"]
    threshold = verdicts["threshold"]
    assert all(float(r[2]) == pytest.approx(threshold, rel=1e-3) for r in rows)  # printed to 4 digits
    assert float(rows[0][1]) == pytest.approx(verdicts["normal_median"], rel=1e-3) and verdicts["normal_median"] < threshold
    # One category: its statistics are the pooled ones, so both verdicts agree.
    assert float(rows[0][5]) == pytest.approx(threshold, rel=1e-3) and rows[0][6:8] == rows[0][3:5]
    rows = [(r[0], r[2], r[3], r[4]) for r in rows]
    overlays = [p.name for p in (tmp_path / "demo" / "overlays").glob("anomaly_*.png")]
    flagged = sum(not name.startswith("anomaly_brick_good_") for name in overlays)
    assert (int(rows[0][2]), int(rows[0][3])) == (flagged, len(overlays) - flagged)
    # The calibration folder holds relative links: the demo folder survives a move.
    links = list((tmp_path / "demo" / "calib_images").iterdir())
    assert len(links) == 10 and all(not os.path.isabs(os.readlink(p)) for p in links if p.is_symlink())
    shutil.move(tmp_path / "demo", tmp_path / "moved")
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in (tmp_path / "moved" / "calib_images").iterdir())
