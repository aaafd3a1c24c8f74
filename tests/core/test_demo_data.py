"""The demo texture dataset: layout, determinism and masks that match the changed pixels."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from mmad_edge.data import DatasetError, build_dataset, make_demo_dataset
from mmad_edge.data.defects import DEFECT_KINDS, add_defect
from mmad_edge.data.demo import TINTS, normal_crop, texture

SMALL = dict(categories=("brick", "gravel"), n_train=3, n_test_good=2, n_test_defect=4, size=64)


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def test_layout_and_loading(tmp_path: Path) -> None:
    root = make_demo_dataset(tmp_path / "demo", **SMALL)
    names = set(files(root))
    for category in ("brick", "gravel"):
        assert {f"{category}/train/good/{i:03d}.png" for i in range(3)} <= names
        assert {f"{category}/test/good/{i:03d}.png" for i in range(2)} <= names
        for kind in DEFECT_KINDS:
            assert f"{category}/test/{kind}/000.png" in names
            mask = cv2.imread(str(root / category / "ground_truth" / kind / "000_mask.png"), cv2.IMREAD_GRAYSCALE)
            assert mask.shape == (64, 64) and set(np.unique(mask)) == {0, 255}
    image = cv2.imread(str(root / "brick/train/good/000.png"), cv2.IMREAD_UNCHANGED)
    assert image.shape == (64, 64, 3)
    assert image[..., 2].mean() > image[..., 0].mean()  # brick is tinted red (BGR)
    test = build_dataset(root, "mvtec", None, "test", 64)
    assert len(test) == 12 and sum(item["label"] for item in test) == 8
    assert all(item["mask"].any() for item in test if item["label"])


def test_same_seed_same_files(tmp_path: Path) -> None:
    first = files(make_demo_dataset(tmp_path / "a", **SMALL, seed=3))
    assert first == files(make_demo_dataset(tmp_path / "b", **SMALL, seed=3))
    assert first != files(make_demo_dataset(tmp_path / "c", **SMALL, seed=4))


def test_test_split_does_not_depend_on_the_training_count(tmp_path: Path) -> None:
    few = files(make_demo_dataset(tmp_path / "few", **SMALL))
    more = files(make_demo_dataset(tmp_path / "more", **{**SMALL, "n_train": 7}))
    assert {k: v for k, v in few.items() if "/train/" not in k} == {k: v for k, v in more.items() if "/train/" not in k}
    assert all(few[k] == more[k] for k in few if "/train/" in k)  # the first training images too
    assert len(more) == len(few) + 2 * 4


def test_existing_folder_needs_overwrite(tmp_path: Path) -> None:
    make_demo_dataset(tmp_path, **SMALL)
    with pytest.raises(DatasetError, match=r"brick: already exists"):
        make_demo_dataset(tmp_path, **SMALL)
    (tmp_path / "brick" / "stale.png").write_bytes(b"x")
    make_demo_dataset(tmp_path, **SMALL, overwrite=True)
    assert not (tmp_path / "brick" / "stale.png").exists()
    with pytest.raises(DatasetError, match="unknown demo texture"):
        make_demo_dataset(tmp_path, categories=("marble",))


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_defects_change_only_and_mostly_their_mask(kind: str) -> None:
    source, foreign = texture("grass"), texture("gravel")
    rng = np.random.default_rng(11)
    for _ in range(6):
        clean = normal_crop(source, 128, rng)
        damaged, mask = add_defect(clean, kind, rng, foreign)
        changed = (damaged != clean).any(axis=2)
        assert mask.dtype == bool and mask.sum() >= 10
        assert not (changed & ~mask).any()
        assert changed[mask].mean() > 0.8
        # Clearly visible: a mean absolute change inside the mask of at least 25 grey levels
        # (15 for stains, whose soft edges fade out but whose colour shift is the cue).
        difference = np.abs(damaged.astype(int) - clean.astype(int)).max(axis=2)
        assert difference[mask].mean() > (15 if kind == "stain" else 25)


def test_unknown_defect_kind() -> None:
    with pytest.raises(ValueError, match="unknown defect kind 'dent'"):
        add_defect(np.zeros((32, 32, 3), np.uint8), "dent", np.random.default_rng(0))


def test_patch_defects_paste_a_foreign_texture(tmp_path: Path) -> None:
    """A patch is another texture (its own tint), not a piece of the product itself."""
    root = make_demo_dataset(tmp_path, ("grass",), n_train=1, n_test_good=0, n_test_defect=4, size=128)
    image = cv2.imread(str(root / "grass" / "test" / "patch" / "000.png")).astype(np.float64)
    mask = cv2.imread(str(root / "grass" / "ground_truth" / "patch" / "000_mask.png"), cv2.IMREAD_GRAYSCALE) > 0
    blue_over_green = image[mask, 0].mean() / image[mask, 1].mean()
    own = TINTS["grass"][0] / TINTS["grass"][1]
    others = [TINTS[name][0] / TINTS[name][1] for name in ("brick", "gravel")]
    assert abs(blue_over_green - own) > 0.08
    assert min(abs(blue_over_green - ratio) for ratio in others) < 0.03
