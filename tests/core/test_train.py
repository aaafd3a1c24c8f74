import errno
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

import mmad_edge.train as train_module
from mmad_edge.checkpoint import load_checkpoint, read_checkpoint
from mmad_edge.cli import app
from mmad_edge.data.dataset import build_dataset
from mmad_edge.data.demo import make_demo_dataset
from mmad_edge.data.records import DatasetError
from mmad_edge.fileio import file_sha256
from mmad_edge.train import TrainOptions, train


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    # 4 good and 4 defective test images (one of each defect kind): an AUROC has 16 pairs to rank
    return make_demo_dataset(tmp_path_factory.mktemp("demo"), ("brick",), n_train=10, n_test_good=4, n_test_defect=4, size=64)


@pytest.fixture(scope="module")
def finished_run(tiny_data, tmp_path_factory):
    """A finished one-step run that tests copy (each training costs seconds)."""
    return train(options(tiny_data, tmp_path_factory.mktemp("finished") / "run", epochs=1, max_steps=1)).parent


def copy_run(finished_run, tmp_path):
    return shutil.copytree(finished_run, tmp_path / "run")


def options(data, out, **kw):
    base = dict(data=data, out=out, variant="a", image_size=64, epochs=2, batch_size=4, progress=False,
                encoder_init="texture")
    return TrainOptions(**{**base, **kw})


def train_cli(data, out, *extra):
    args = ["train", "--data", str(data), "--category", "brick", "--variant", "a", "--image-size", "64",
            "--epochs", "1", "--max-steps", "1", "--batch-size", "4", "--out", str(out), "--encoder-init", "texture", *extra]
    return CliRunner().invoke(app, args)


def one_line_error(result, after_progress: bool = False) -> str:
    """The CLI's error line: exit 2, no traceback, one 'error:' line, which is the whole output
    (stdout and stderr) unless training had started (``after_progress``) and it comes last."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 or after_progress, result.output
    assert [line for line in lines if line.startswith("error:")] == lines[-1:], result.output
    return lines[-1]


class Interrupt(Exception):
    pass


@pytest.fixture
def busy_cores():
    """Every core spinning in another process (each stops by itself after 120 s) while the test runs."""
    burn = "import time\nend = time.time() + 120\nwhile time.time() < end:\n    pass\n"
    burners = [subprocess.Popen([sys.executable, "-c", burn]) for _ in range(os.cpu_count() or 1)]
    yield
    for burner in burners:
        burner.kill()
        burner.wait()


def test_interrupted_training_resumes_to_identical_weights(tiny_data, tmp_path, busy_cores):
    """Bitwise, with the cores busy and the resuming process on another thread count (a new process,
    or MKL's load-dependent thread cut on Intel CPUs): the run keeps the count it started with."""
    threads = torch.get_num_threads()
    full = train(options(tiny_data, tmp_path / "full"))

    def stop_after_first(epoch, state):
        if epoch == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(options(tiny_data, tmp_path / "cut"), on_epoch_end=stop_after_first)
    assert read_checkpoint(tmp_path / "cut" / "checkpoint.pt")["training"]["epoch"] == 1
    torch.set_num_threads(threads + 1)
    try:
        resumed = train(options(tiny_data, tmp_path / "cut", resume=True))
        assert torch.get_num_threads() == threads + 1  # the caller's count is given back
    finally:
        torch.set_num_threads(threads)
    a, ckpt_a = load_checkpoint(full)
    b, ckpt_b = load_checkpoint(resumed)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name
    assert ckpt_b["training"]["completed"] and ckpt_b["training"]["epoch"] == 2
    assert ckpt_b["training"]["threads"] == ckpt_a["training"]["threads"] == threads
    stats = ckpt_a["statistics"]
    assert stats["threshold"] > stats["normalization"]["low"]
    assert ckpt_a["training"]["holdout_images"] == 1


def test_max_steps_and_global_loss_with_one_dataset_scan(tiny_data, tmp_path, monkeypatch):
    scans = []

    def counted(*args, **kwargs):
        scans.append(build_dataset(*args, **kwargs))
        return scans[-1]

    monkeypatch.setattr(train_module, "build_dataset", counted)
    path = train(options(tiny_data, tmp_path / "g", loss="global", max_steps=1, epochs=5, augment=True,
                         camera_augment=True))
    training = read_checkpoint(path)["training"]
    assert training["step"] == 1 and training["epoch"] == 1
    assert training["options"]["camera_augment"] is True
    assert len(scans) == 1  # the un-augmented hold-out / PCA view reuses the scanned records
    assert scans[0].augment and scans[0].camera


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
    # the demo defects are drawn to be visible: one epoch already ranks them (1.0 on every seed tried)
    assert metrics["mean"]["image_auroc"] >= 0.9 and metrics["mean"]["image_ap"] >= 0.9
    assert metrics["mean"]["pixel_auroc"] >= 0.9
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


def test_cli_refuses_to_overwrite_a_run_or_to_resume_nothing(tiny_data, finished_run, tmp_path):
    out = copy_run(finished_run, tmp_path)
    ckpt = out / "checkpoint.pt"
    before = file_sha256(ckpt)
    assert one_line_error(train_cli(tiny_data, out, "--seed", "5")) == (
        f"error: --out {out} already holds a run ({ckpt}); pass --resume to continue it, --force to overwrite it, "
        "or another --out")
    assert one_line_error(train_cli(tiny_data, out, "--resume", "--force")).startswith(
        "error: --resume and --force contradict each other; ")
    assert file_sha256(ckpt) == before
    empty = tmp_path / "empty"
    assert one_line_error(train_cli(tiny_data, empty, "--resume")) == (
        f"error: --resume: there is no {empty / 'checkpoint.pt'} to continue; drop --resume to start a new run there")
    assert not empty.exists()
    result = train_cli(tiny_data, out, "--seed", "5", "--force")
    assert result.exit_code == 0, result.output
    assert read_checkpoint(ckpt)["training"]["seed"] == 5


def test_cli_read_only_out_fails_before_the_first_epoch(tiny_data, tmp_path, monkeypatch):
    """A read-only filesystem (simulated: root ignores permission bits) is refused at the start."""
    real_open, real_mkdir = os.open, os.mkdir
    read_only = tmp_path / "ro"
    read_only.mkdir()

    def refuse(real):
        def call(path, *args, **kwargs):
            if os.fspath(path).startswith(str(read_only)):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
            return real(path, *args, **kwargs)
        return call

    monkeypatch.setattr(os, "open", refuse(real_open))
    monkeypatch.setattr(os, "mkdir", refuse(real_mkdir))
    for out in (read_only, read_only / "new" / "run"):
        assert one_line_error(train_cli(tiny_data, out)) == (
            f"error: --out {out}: cannot write there (Read-only file system); pass a folder you can write to")
    assert list(read_only.iterdir()) == []


def test_disk_full_while_saving_keeps_the_previous_checkpoint(tiny_data, finished_run, tmp_path, monkeypatch):
    out = copy_run(finished_run, tmp_path)
    ckpt = out / "checkpoint.pt"
    before = file_sha256(ckpt)

    def disk_full(obj, target, *args, **kwargs):
        handle = target if hasattr(target, "write") else open(target, "wb")
        handle.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", disk_full)
    line = one_line_error(train_cli(tiny_data, out, "--resume"), after_progress=True)  # hold-out scores, then save
    assert line == (f"error: {ckpt}: could not write the checkpoint (No space left on device); free space on that disk "
                    "or write to another folder; the checkpoint already there is unchanged")
    assert file_sha256(ckpt) == before
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt"]


def test_a_killed_runs_temp_files_are_removed_by_the_next_run(tiny_data, finished_run, tmp_path):
    out = copy_run(finished_run, tmp_path)
    leftovers = [out / ".checkpoint.pt.k1ll3d.tmp", out / ".checkpoint.pt.0x9a7b.tmp"]
    for leftover in leftovers:
        leftover.write_bytes(b"half a checkpoint")
    (out / "notes.tmp").write_text("a user's file")
    train(options(tiny_data, out, epochs=1, max_steps=1, resume=True))
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "notes.tmp"]


@pytest.mark.parametrize("init,pretrained,padding", [
    ("texture", None, "reflect"), ("imagenet", None, "zeros"), ("random", None, "zeros"), ("texture", "w.pth", "zeros")])
def test_only_the_fitted_texture_encoder_pads_by_reflection(init, pretrained, padding, tmp_path):
    # ImageNet weights keep the reference's zero padding (published numbers); docs/maps.md
    opts = TrainOptions(data=tmp_path, out=tmp_path / "run", encoder_init=init, pretrained=pretrained)
    assert train_module.encoder_padding(opts) == padding
