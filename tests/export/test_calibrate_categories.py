"""`calibrate-threshold` on a model of several categories says which threshold the images moved; it
never rewrites a deployed version (the export is calibrated and promoted)."""

import json

import cv2
import numpy as np
from runtime_fixtures import standin_metadata, write_standin
from typer.testing import CliRunner

from mmad_edge.cli import app
from mmad_edge.runtime import Detector
from mmad_edge.runtime.artifact.deployment import promote, rollback

SIZE = 32
CATEGORIES = {"brick": 0.55, "gravel": 0.6, "tile": 0.7}


def three_category_export(root):
    """A stand-in graph with a metadata.json of three categories beside it (pooled threshold 0.6)."""
    folder = root / "export"
    folder.mkdir()
    meta = {**standin_metadata(SIZE), "source_checkpoint": None}  # written as by export: the whole schema
    pooled = meta["statistics"]
    meta["statistics"] = {**pooled, "categories": {
        name: {**pooled, "threshold": value, "normalization": {"low": 0.5, "high": value}}
        for name, value in CATEGORIES.items()}}
    write_standin(folder / "model.fp32.onnx", SIZE, metadata=meta, embed=False)
    (folder / "metadata.json").write_text(json.dumps(meta))
    good = root / "good"
    good.mkdir()
    for index, value in enumerate((40, 50, 60, 70)):
        cv2.imwrite(str(good / f"{index}.png"), np.full((SIZE, SIZE, 3), value, np.uint8))
    return folder / "model.fp32.onnx", good


def test_without_category_only_the_pooled_threshold_moves_and_the_summary_says_so(tmp_path):
    artifact, good = three_category_export(tmp_path)
    result = CliRunner().invoke(app, ["calibrate-threshold", str(artifact), "--good", str(good), "--backend", "onnxruntime",
                                      "--json", str(tmp_path / "cal.json")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "cal.json").read_text())
    assert summary["moved"] == {"threshold": "pooled", "kept": ["brick", "gravel", "tile"]}
    lines = result.output.splitlines()
    assert lines[0].startswith(f"{artifact}: pooled threshold {summary['threshold']:.6g} (was 0.6;")
    assert lines[1] == ("only the pooled threshold moved (sources run without a category); the thresholds of brick, "
                        "gravel, tile are unchanged: if these images are one category's, pass --category NAME instead")
    stats = json.loads((artifact.parent / "metadata.json").read_text())["statistics_by_artifact"][artifact.name]
    assert {name: entry["threshold"] for name, entry in stats["categories"].items()} == CATEGORIES


def test_with_category_that_threshold_moves_alone(tmp_path):
    artifact, good = three_category_export(tmp_path)
    result = CliRunner().invoke(app, ["calibrate-threshold", str(artifact), "--good", str(good), "--category", "gravel",
                                      "--backend", "onnxruntime", "--json", str(tmp_path / "cal.json")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "cal.json").read_text())
    assert summary["moved"] == {"threshold": "category gravel", "kept": ["pooled", "brick", "tile"]}
    assert result.output.splitlines()[0].startswith(f"{artifact}: category gravel threshold ")
    assert "only the pooled threshold moved" not in result.output
    stats = json.loads((artifact.parent / "metadata.json").read_text())["statistics_by_artifact"][artifact.name]
    assert stats["threshold"] == 0.6 and stats["categories"]["tile"]["threshold"] == 0.7
    assert stats["categories"]["gravel"]["threshold"] == summary["threshold"] != 0.6


def calibrate_cli(*args: str):
    return CliRunner().invoke(app, ["calibrate-threshold", *args, "--backend", "onnxruntime"])


def test_a_deployment_folder_is_refused_and_the_export_is_promoted_instead(tmp_path):
    artifact, good = three_category_export(tmp_path)
    export = artifact.parent
    line = tmp_path / "line"
    promote(export, line)
    version = line / "versions" / "0001-export"
    before = {path.name: path.read_bytes() for path in version.iterdir()}
    for target in (line, line / "current", version, version / "model.fp32.onnx"):
        result = calibrate_cli(str(target), "--good", str(good))
        assert result.exit_code == 2, result.output
        where = "a deployment folder" if target == line else f"in deployment folder {line}"
        assert result.output.splitlines() == [
            f"error: {target}: {where}, whose versions are not changed in place (rollback could not undo it); "
            f"calibrate the export folder, then mmad-edge promote EXPORT --to {line}"]
    assert {path.name: path.read_bytes() for path in version.iterdir()} == before

    result = calibrate_cli(str(export), "--good", str(good), "--json", str(tmp_path / "cal.json"))
    assert result.exit_code == 0, result.output
    calibrated = json.loads((tmp_path / "cal.json").read_text())["threshold"]
    assert calibrated != 0.6
    promote(export, line)
    with Detector.load(line) as detector:
        assert detector.threshold == calibrated
    rollback(line)
    with Detector.load(line) as detector:
        assert detector.threshold == 0.6
