"""Which encoder weights a model holds travels from the checkpoint into the export metadata and
shows in the summaries (`run` reads it from the artifact)."""

from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np
import pytest
from runtime_fixtures import write_export_dir
from typer.testing import CliRunner

from mmad_edge.cli import app
from mmad_edge.config import ModelConfig
from mmad_edge.export.metadata import MetadataError, build_metadata
from mmad_edge.runtime.artifact.metadata import describe_encoder_weights as describe
from mmad_edge.weights import encoder_record


def test_export_metadata_carries_the_encoder_record(tmp_path):
    weights = tmp_path / "unireplknet_a_in1k_224_acc77.03.pth"
    weights.write_bytes(b"weights")
    record = encoder_record("imagenet", weights, "unireplknet_a_in1k")
    assert record == {"kind": "imagenet", "name": "unireplknet_a_in1k", "file": weights.name,
                      "sha256": hashlib.sha256(b"weights").hexdigest()}
    metadata = build_metadata(ModelConfig(variant="a", image_size=64).to_dict(), "fp32", 20,
                              {"min": 1, "opt": 1, "max": 1}, None, None, record)
    assert metadata["encoder_weights"] == record
    assert describe(metadata["encoder_weights"]) == (f"ImageNet unireplknet_a_in1k ({weights.name}, sha256 "
                                                     f"{record['sha256'][:12]})")
    with pytest.raises(MetadataError, match="metadata field 'encoder_weights.kind' is missing"):
        build_metadata(ModelConfig(variant="a", image_size=64).to_dict(), "fp32", 20, {"min": 1, "opt": 1, "max": 1},
                       None, None, {"name": "x"})


def test_run_summary_names_the_encoder_weights(tmp_path):
    export = write_export_dir(tmp_path / "export")
    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "a.png"), np.full((64, 64, 3), 128, np.uint8))
    result = CliRunner().invoke(app, ["run", str(export), "--source", str(frames), "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    assert "encoder weights: not recorded (saved before mmad-edge recorded encoder weights)" in result.output
    assert json.loads((tmp_path / "r.json").read_text())["encoder_weights"] is None
