import argparse

import pytest
import torch
from random_states import state_from_shapes
from typer.testing import CliRunner

from mmad_edge.checkpoint import (
    CheckpointError,
    import_encoder,
    import_minimaxad,
    load_checkpoint,
    model_from_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from mmad_edge.cli import app
from mmad_edge.config import ModelConfig
from mmad_edge.model.minimaxad import build_model


@pytest.fixture(scope="module")
def model_n():
    return build_model(ModelConfig(variant="n"))


def test_reference_minimaxad_run_loads_with_no_missing_or_unexpected(tmp_path, reference_keys, model_n):
    path = tmp_path / "run.pth"
    bn, dec = state_from_shapes(reference_keys["bn"]), state_from_shapes(reference_keys["decoder"], 1)
    torch.save({"bn": bn, "decoder": dec}, path)
    reports = import_minimaxad(model_n, path)
    assert [r.loaded for r in reports] == [len(bn), len(dec)]
    assert all(not r.ignored for r in reports)
    key = "stages.1.0.dwconv.dil_conv_k7_2.weight"
    assert torch.equal(model_n.decoder.state_dict()[key], dec[key])
    assert torch.equal(model_n.bottleneck.state_dict()["conv4.weight"], bn["conv4.weight"])


def test_reference_encoder_loads_wrapped_and_reports_ignored_keys(tmp_path, reference_keys, model_n):
    enc = state_from_shapes(reference_keys["encoder"])
    enc["head.weight"] = torch.randn(1000, 640)
    enc["norm.weight"] = torch.randn(640)
    path = tmp_path / "unireplknet_n.pth"
    torch.save({"models": enc}, path)
    report = import_encoder(model_n, path)
    assert report.loaded == len(enc) - len(report.ignored) == 540
    assert sorted(report.ignored) == sorted(
        k for k in enc if k.startswith(("downsample_layers.3.", "norm3.", "head.", "norm."))
    )
    assert "ignored" in report.summary()


def test_truncated_checkpoint_names_first_missing_key(tmp_path, reference_keys, model_n):
    bn = state_from_shapes(reference_keys["bn"])
    del bn["conv2.weight"]
    path = tmp_path / "truncated.pth"
    torch.save({"bn": bn, "decoder": state_from_shapes(reference_keys["decoder"])}, path)
    with pytest.raises(CheckpointError, match=r"truncated\.pth\[bn\]: missing key 'conv2.weight'") as exc:
        import_minimaxad(model_n, path)
    assert "\n" not in str(exc.value)


def test_mismatched_variant_names_the_first_bad_key(tmp_path, reference_keys):
    path = tmp_path / "run_n.pth"
    torch.save({"bn": state_from_shapes(reference_keys["bn"]), "decoder": state_from_shapes(reference_keys["decoder"])}, path)
    first = next(iter(reference_keys["bn"]))
    with pytest.raises(CheckpointError, match=rf"key '{first}' has shape .* expects .*--variant"):
        import_minimaxad(build_model(ModelConfig(variant="a")), path)


def test_corrupt_values_are_named(tmp_path, reference_keys, model_n):
    bn, dec = state_from_shapes(reference_keys["bn"]), state_from_shapes(reference_keys["decoder"])
    bn["bn2.running_var"][3] = -1.0
    torch.save({"bn": bn, "decoder": dec}, tmp_path / "neg.pth")
    with pytest.raises(CheckpointError, match=r"'bn2.running_var' has negative variances"):
        import_minimaxad(model_n, tmp_path / "neg.pth")
    bn["bn2.running_var"][3] = 1.0
    dec["upsample_layers.0.0.weight"][0, 0, 0, 0] = float("nan")
    torch.save({"bn": bn, "decoder": dec}, tmp_path / "nan.pth")
    with pytest.raises(CheckpointError, match=r"'upsample_layers.0.0.weight' holds NaN"):
        import_minimaxad(model_n, tmp_path / "nan.pth")


def test_untrusted_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"bn": argparse.Namespace(lr=0.005), "decoder": {}}, path)
    with pytest.raises(CheckpointError, match="refused to unpickle"):
        import_minimaxad(build_model(ModelConfig(variant="a")), path)


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        read_checkpoint(tmp_path / "nope.pt")
    torch.save({"weight": torch.zeros(1)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not an mmad-edge checkpoint"):
        read_checkpoint(tmp_path / "plain.pt")
    (tmp_path / "broken.pt").write_bytes(b"\x80\x04garbage")
    with pytest.raises(CheckpointError, match="broken.pt"):
        read_checkpoint(tmp_path / "broken.pt")


def test_project_checkpoint_round_trip_with_weights_only(tmp_path):
    model = build_model(ModelConfig(variant="a", image_size=128, score_mode="max"))
    torch.nn.init.normal_(model.decoder.upsample_layers[0][0].weight)
    path = save_checkpoint(tmp_path / "run" / "checkpoint.pt", model, statistics={"threshold": 0.5}, training={"epoch": 3})
    raw = torch.load(path, weights_only=True)
    assert raw["config"]["image_size"] == 128 and raw["training"]["epoch"] == 3
    loaded, ckpt = load_checkpoint(path)
    assert loaded.config == model.config
    for a, b in zip(loaded.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)
    assert ckpt["statistics"] == {"threshold": 0.5}
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_checkpoint_of_other_variant_than_config(tmp_path):
    path = save_checkpoint(tmp_path / "a.pt", build_model(ModelConfig(variant="a")))
    with pytest.raises(CheckpointError, match="--variant"):
        load_checkpoint(path, ModelConfig(variant="f"))


def test_model_from_an_already_read_checkpoint(tmp_path):
    model = build_model(ModelConfig(variant="a", image_size=64))
    torch.nn.init.normal_(model.decoder.upsample_layers[0][0].weight)
    path = save_checkpoint(tmp_path / "a.pt", model)
    ckpt = read_checkpoint(path)
    built = model_from_checkpoint(ckpt, str(path), ModelConfig(variant="a", image_size=96))
    assert built.config.image_size == 96 and not built.training
    for a, b in zip(built.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)
    ckpt["decoder"] = {k: v for k, v in ckpt["decoder"].items() if not k.startswith("upsample_layers.0.")}
    with pytest.raises(CheckpointError, match=r"a\.pt: missing key 'upsample_layers\.0"):
        model_from_checkpoint(ckpt, str(path))


def test_incomplete_or_edited_checkpoints_fail_in_one_line_through_the_cli(tmp_path):
    path = save_checkpoint(tmp_path / "a.pt", build_model(ModelConfig(variant="a", image_size=64)))
    raw = torch.load(path, weights_only=True)
    cases = {
        "no_decoder.pt": ({k: v for k, v in raw.items() if k != "decoder"},
                          "has no decoder weights (the 'decoder' entry is missing or empty); the file is incomplete: "
                          "re-train or re-import it"),
        "empty_bottleneck.pt": ({**raw, "bottleneck": {}}, "has no bottleneck weights"),
        "text_version.pt": ({**raw, "format_version": "1"},
                            "format_version is '1' (str), not an integer; the file was edited or written by another "
                            "tool: re-train or re-import it"),
        "none_version.pt": ({**raw, "format_version": None}, "format_version is None (NoneType), not an integer"),
    }
    runner = CliRunner()
    for name, (obj, message) in cases.items():
        torch.save(obj, tmp_path / name)
        result = runner.invoke(app, ["eval", str(tmp_path / name), "--data", str(tmp_path / "unused")])
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {tmp_path / name}: {message}"), result.output
