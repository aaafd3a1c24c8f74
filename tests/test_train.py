import json

import pytest
import torch
from typer.testing import CliRunner

from mmad_edge.checkpoint import load_checkpoint, read_checkpoint
import mmad_edge.train as train_module
from mmad_edge.cli import app
from mmad_edge.data.dataset import build_dataset
from mmad_edge.data.demo import make_demo_dataset
from mmad_edge.data.records import DatasetError
from mmad_edge.train import TrainOptions, train


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_demo_dataset(tmp_path_factory.mktemp("demo"), ("brick",), n_train=10, n_test_good=2, n_test_defect=3, size=64)


def options(data, out, **kw):
    base = dict(data=data, out=out, variant="a", image_size=64, epochs=2, batch_size=4, progress=False,
                encoder_init="texture")
    return TrainOptions(**{**base, **kw})


class Interrupt(Exception):
    pass


def test_interrupted_training_resumes_to_identical_weights(tiny_data, tmp_path):
    full = train(options(tiny_data, tmp_path / "full"))

    def stop_after_first(epoch, state):
        if epoch == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(options(tiny_data, tmp_path / "cut"), on_epoch_end=stop_after_first)
    assert read_checkpoint(tmp_path / "cut" / "checkpoint.pt")["training"]["epoch"] == 1
    resumed = train(options(tiny_data, tmp_path / "cut", resume=True))
    a, ckpt_a = load_checkpoint(full)
    b, ckpt_b = load_checkpoint(resumed)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name
    assert ckpt_b["training"]["completed"] and ckpt_b["training"]["epoch"] == 2
    stats = ckpt_a["statistics"]
    assert stats["threshold"] > stats["normalization"]["low"]
    assert ckpt_a["training"]["holdout_images"] == 1


def test_max_steps_and_global_loss_with_one_dataset_scan(tiny_data, tmp_path, monkeypatch):
    scans = []

    def counted(*args, **kwargs):
        scans.append(args)
        return build_dataset(*args, **kwargs)

    monkeypatch.setattr(train_module, "build_dataset", counted)
    path = train(options(tiny_data, tmp_path / "g", loss="global", max_steps=1, epochs=5, augment=True))
    training = read_checkpoint(path)["training"]
    assert training["step"] == 1 and training["epoch"] == 1
    assert len(scans) == 1  # the un-augmented hold-out / PCA view reuses the scanned records


def test_bad_inputs_fail_with_one_line_errors(tiny_data, tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        train(options(tmp_path / "missing", tmp_path / "o"))
    empty = tmp_path / "empty" / "thing"
    (empty / "train" / "good").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"thing/train/good: no train images found \(\.png, .*check the --layout"):
        train(options(tmp_path / "empty", tmp_path / "o", categories=["thing"]))
    with pytest.raises(ValueError, match="unknown loss"):
        train(options(tiny_data, tmp_path / "o", loss="l2"))
    assert not (tmp_path / "o" / "checkpoint.pt").exists()


def test_cli_train_then_eval_json_schema(tiny_data, tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--data", str(tiny_data), "--layout", "mvtec", "--category", "brick",
                                 "--variant", "a", "--image-size", "64", "--epochs", "1", "--batch-size", "4",
                                 "--loss", "adc", "--device", "cpu", "--seed", "111", "--encoder-init", "texture",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics_path = tmp_path / "metrics.json"
    result = runner.invoke(app, ["eval", str(out / "checkpoint.pt"), "--data", str(tiny_data), "--layout", "mvtec",
                                 "--category", "brick", "--json", str(metrics_path)])
    assert result.exit_code == 0, result.output
    assert "encoder weights: texture statistics" in result.output
    metrics = json.loads(metrics_path.read_text())
    assert metrics["encoder_weights"] == {"kind": "texture", "name": None, "file": None, "sha256": None}
    keys = {"image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_ap", "pixel_f1_max", "pixel_aupro"}
    assert set(metrics["categories"]["brick"]) == keys and set(metrics["mean"]) == keys
    assert 0.0 <= metrics["mean"]["image_auroc"] <= 1.0
    result = runner.invoke(app, ["eval", str(tmp_path / "nope.pt"), "--data", str(tiny_data)])
    assert result.exit_code == 2 and "no such checkpoint file" in result.output


def test_cli_train_and_eval_report_unusable_paths_in_one_line(tiny_data, tmp_path):
    runner = CliRunner()
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = runner.invoke(app, ["train", "--data", str(tiny_data), "--category", "brick", "--variant", "a",
                                 "--image-size", "64", "--epochs", "1", "--encoder-init", "texture",
                                 "--out", str(blocker)])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [f"error: --out {blocker} is a file; pass a folder "
                                                  "(RUN_DIR/checkpoint.pt is written inside it)"]
    assert result.exception is None or isinstance(result.exception, SystemExit)
    run = tmp_path / "run"
    train(options(tiny_data, run, epochs=1, max_steps=1))
    result = runner.invoke(app, ["eval", str(run / "checkpoint.pt"), "--data", str(tiny_data), "--category", "brick",
                                 "--json", str(blocker / "metrics.json")])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines()[-1].startswith(f"error: {blocker}: ")
    assert "check the path and its permissions" in result.output


def test_progress_in_a_log_is_not_one_line_per_step(tiny_data, tmp_path, capsys, monkeypatch):
    """stderr is not a terminal under pytest: the bar must not redraw (or print its postfix) per step."""
    monkeypatch.setattr("mmad_edge.progress.LOG_INTERVAL_S", 1e6)  # a slow machine must not make this flaky
    train(options(tiny_data, tmp_path / "log", epochs=2, batch_size=2, progress=True))
    err = capsys.readouterr().err
    assert err.count("epoch 1/2") >= 1 and "loss" in err  # the per-epoch summary lines are there
    assert err.count("img_s=") <= 2  # at most one bar draw per epoch, not one per step (4 steps)
