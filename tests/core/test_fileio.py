import os
from pathlib import Path

import pytest
import torch

from mmad_edge.checkpoint import save_checkpoint
from mmad_edge.config import ModelConfig
from mmad_edge.fileio import remove_staging_leftovers, write_bytes_atomic, write_json_atomic
from mmad_edge.model.minimaxad import build_model


@pytest.fixture
def umask():
    """Set the process umask for one test; the previous one comes back."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    write_bytes_atomic(tmp_path / "engine.bin", b"\x00plan")
    write_json_atomic(tmp_path / "metadata.json", {"a": 1})
    write_json_atomic(tmp_path / "metadata.json", {"a": 2})  # replacing keeps following the umask
    for name in ("engine.bin", "metadata.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name
    assert (tmp_path / "metadata.json").read_text() == '{\n  "a": 2\n}\n'


def test_checkpoints_follow_the_umask_and_are_staged_beside_their_destination(tmp_path, umask, monkeypatch):
    umask(0o022)
    staged = []
    real_save = torch.save

    def spy(obj, target, *args, **kwargs):
        staged.append(Path(target.name))
        return real_save(obj, target, *args, **kwargs)

    monkeypatch.setattr(torch, "save", spy)
    path = save_checkpoint(tmp_path / "run" / "checkpoint.pt", build_model(ModelConfig(variant="a", image_size=64)))
    assert path.stat().st_mode & 0o777 == 0o644
    assert len(staged) == 1 and staged[0].parent == path.parent and staged[0].name.startswith(".checkpoint.pt.")
    assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint.pt"]


def test_staging_leftovers_of_one_file_are_removed_and_nothing_else(tmp_path):
    names = [".checkpoint.pt.a1b2.tmp", ".checkpoint.pt.zz.tmp", ".model.onnx.a1b2.tmp", "checkpoint.pt", "x.tmp"]
    for name in names:
        (tmp_path / name).write_bytes(b"1")
    removed = remove_staging_leftovers(tmp_path / "checkpoint.pt")
    assert [p.name for p in removed] == names[:2]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[2:])
