"""The official UniRepLKNet ImageNet checkpoints load as they are published: the classification
model's key set (stages 0-3, norm, head, no norm0..norm3; tests/fixtures/
official_classification_keys_variant_n.json), plain or wrapped, through `import-checkpoint`
and `train --pretrained PATH`, with norm0..norm2 at weight 1 / bias 0 as the reference leaves
them, and errors that name the first bad key or the file's variant."""

from __future__ import annotations

import json

import pytest
import torch
from reference_encoder import assert_same_encoder
from typer.testing import CliRunner

from mmad_edge.checkpoint import CheckpointError, detect_variant, import_encoder, load_checkpoint
from mmad_edge.cli import app
from mmad_edge.config import ModelConfig
from mmad_edge.data.demo import make_demo_dataset
from mmad_edge.model.minimaxad import build_model

NOTE = "norm0, norm1, norm2 not in the file: initialised (weight 1, bias 0) as the reference does"


WRAPPERS = {
    "plain": lambda sd: sd,
    "model": lambda sd: {"model": sd, "epoch": 300},
    "models": lambda sd: {"models": sd},
    "state_dict": lambda sd: {"state_dict": sd},
    "module.": lambda sd: {"model": {f"module.{k}": v for k, v in sd.items()}},
}


@pytest.fixture(scope="module")
def model_n():
    return build_model(ModelConfig(variant="n", image_size=64)).eval()


@pytest.mark.parametrize("wrapper", list(WRAPPERS))
def test_the_official_file_loads_in_each_wrapper(wrapper, official_state, reference_outputs, model_n, tmp_path):
    path = tmp_path / "unireplknet_n_in1k_224_acc81.64.pth"
    torch.save(WRAPPERS[wrapper](official_state), path)
    with torch.no_grad():
        model_n.encoder.norm1.weight.fill_(7.0)  # whatever the norms held before: the file's load resets them
    report = import_encoder(model_n, path)
    assert sorted(report.initialised) == [f"norm{i}.{p}" for i in range(3) for p in ("bias", "weight")]
    assert {k.split(".")[0] for k in report.ignored} == {"downsample_layers", "stages", "norm", "head"}
    assert len(report.ignored) == 4 + 96 + 4 and report.loaded == len(official_state) - 104
    assert NOTE in report.summary()
    assert_same_encoder(model_n, reference_outputs)


@pytest.mark.parametrize("wrapper", ["models", "module."])
def test_import_checkpoint_cli_loads_the_official_file(wrapper, official_state, reference_outputs, tmp_path):
    path = tmp_path / "unireplknet_n_in1k_224_acc81.64.pth"
    torch.save(WRAPPERS[wrapper](official_state), path)
    out = tmp_path / "checkpoint.pt"
    result = CliRunner().invoke(app, ["import-checkpoint", "--variant", "n", "--image-size", "64",
                                      "--encoder", str(path), "--out", str(out), "--json", str(tmp_path / "i.json")])
    assert result.exit_code == 0, result.output
    assert NOTE in result.output and "ignored 104 unused keys" in result.output
    model, ckpt = load_checkpoint(out)
    assert_same_encoder(model, reference_outputs)
    assert ckpt["encoder_weights"]["kind"] == "file" and ckpt["encoder_weights"]["file"] == str(path)
    assert json.loads((tmp_path / "i.json").read_text())["encoder_weights"] == ckpt["encoder_weights"]


def test_train_pretrained_path_loads_the_official_file(official_state, reference_outputs, tmp_path):
    path = tmp_path / "unireplknet_n_in1k_224_acc81.64.pth"
    torch.save(WRAPPERS["module."](official_state), path)
    data = make_demo_dataset(tmp_path / "data", ("brick",), n_train=4, n_test_good=1, n_test_defect=1, size=64)
    result = CliRunner().invoke(app, ["train", "--data", str(data), "--variant", "n", "--image-size", "64",
                                      "--epochs", "1", "--max-steps", "1", "--batch-size", "2",
                                      "--pretrained", str(path), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert NOTE in result.output
    model, ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert_same_encoder(model, reference_outputs)
    assert ckpt["encoder_weights"]["sha256"] and ckpt["encoder_weights"]["file"] == str(path)
    assert ckpt["training"]["options"]["pretrained"] == str(path) and "no ImageNet weights" not in result.output


def test_a_file_of_another_variant_names_its_variant(official_state, tmp_path):
    path = tmp_path / "n.pth"
    torch.save({"models": official_state}, path)
    assert detect_variant(official_state) == "n"
    with pytest.raises(CheckpointError) as exc:
        import_encoder(build_model(ModelConfig(variant="a", image_size=64)), path)
    assert str(exc.value) == (f"{path}: holds UniRepLKNet-n weights but the model is variant a; pass --variant n, "
                              "or the variant-a weights (unireplknet_a_in1k)")
    wide = {"downsample_layers.0.3.weight": torch.zeros(128, 64, 3, 3),
            **{f"stages.{i}.{j}.gamma": torch.zeros(1) for i, depth in enumerate((3, 3, 27)) for j in range(depth)}}
    torch.save(wide, tmp_path / "b.pth")
    with pytest.raises(CheckpointError, match=r"b\.pth: holds UniRepLKNet-b weights, a variant mmad-edge does not "
                                              r"build; use weights of variant a \(unireplknet_a_in1k\)$"):
        import_encoder(build_model(ModelConfig(variant="a", image_size=64)), tmp_path / "b.pth")


def test_a_misshapen_or_missing_key_is_named_with_its_shapes(official_state, tmp_path):
    model = build_model(ModelConfig(variant="n", image_size=64))
    bad = dict(official_state, **{"stages.1.0.dwconv.lk_origin.weight": torch.zeros(160, 1, 11, 11)})
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as exc:
        import_encoder(model, tmp_path / "bad.pth")
    assert str(exc.value) == (f"{tmp_path / 'bad.pth'}: key 'stages.1.0.dwconv.lk_origin.weight' has shape "
                              "(160, 1, 11, 11) but the encoder expects (160, 1, 13, 13); was it trained with "
                              "another --variant?")
    short = {k: v for k, v in official_state.items() if k != "stages.2.7.gamma"}
    torch.save(short, tmp_path / "short.pth")
    with pytest.raises(CheckpointError, match=r"short\.pth: missing key 'stages\.2\.7\.gamma' of shape \(320,\) for "
                                              r"the encoder; the checkpoint is truncated"):
        import_encoder(model, tmp_path / "short.pth")
