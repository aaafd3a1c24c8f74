"""Dataset layouts, item format, augmentation, hold-out split and the one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mmad_edge.data import DatasetError, build_dataset, hold_out_split
from mmad_edge.data.split import evenly_spaced
from mmad_edge.runtime.imageio import ImageReadError


def write_image(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


def colour(value: int, shape: tuple[int, int] = (40, 48)) -> np.ndarray:
    image = np.zeros((*shape, 3), dtype=np.uint8)
    image[:] = (value, value // 2, 255 - value)
    return image


def square_mask(shape: tuple[int, int] = (40, 48)) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.uint8)
    mask[10:20, 12:24] = 255
    return mask


@pytest.fixture()
def mvtec(tmp_path: Path) -> Path:
    """Two categories; widget has grayscale, BGRA and 16-bit training images."""
    root = tmp_path / "mvtec"
    widget = root / "widget"
    write_image(widget / "train/good/000.png", np.full((40, 48), 90, np.uint8))
    write_image(widget / "train/good/001.png", np.dstack([colour(60), np.full((40, 48), 255, np.uint8)]))
    write_image(widget / "train/good/002.png", np.full((40, 48, 3), 65535, np.uint16))
    write_image(widget / "test/good/000.png", colour(10))
    write_image(widget / "test/crack/000.png", colour(200))
    write_image(widget / "test/crack/001.png", colour(220))  # no mask file
    write_image(widget / "ground_truth/crack/000_mask.png", square_mask())
    gadget = root / "gadget"
    write_image(gadget / "train/good/a.jpg", colour(30))
    write_image(gadget / "test/bad/b.jpg", colour(130))
    write_image(gadget / "ground_truth/bad/b.png", square_mask())  # VisA names masks like the image
    return root


def test_mvtec_train_items_are_uint8_bgr(mvtec: Path) -> None:
    dataset = build_dataset(mvtec, "mvtec", "widget", "train", 32)
    assert len(dataset) == 3
    item = dataset[0]
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (32, 32, 3)
    assert item["mask"].dtype == torch.bool and not item["mask"].any()
    assert item["label"] == 0 and item["has_mask"] is True and item["category"] == "widget"
    assert item["path"].endswith("widget/train/good/000.png")
    assert int(item["image"][0, 0, 0]) == 90  # grayscale became 3 equal channels
    assert dataset[1]["image"][0, 0].tolist() == [60, 30, 195]  # BGRA lost its alpha
    assert dataset[2]["image"].max() == 255  # 16-bit scaled to 8-bit


def test_mvtec_test_items_masks_and_labels(mvtec: Path) -> None:
    dataset = build_dataset(mvtec, "mvtec", ["widget"], "test", 24)
    by_name = {Path(item["path"]).parent.name + "/" + Path(item["path"]).name: item for item in dataset}
    good, masked, unmasked = by_name["good/000.png"], by_name["crack/000.png"], by_name["crack/001.png"]
    assert (good["label"], good["has_mask"]) == (0, True)
    assert (masked["label"], masked["has_mask"], masked["defect"]) == (1, True, "crack")
    assert (unmasked["label"], unmasked["has_mask"]) == (1, False)
    assert not unmasked["mask"].any()
    # Nearest-neighbour resize of the 10x12 box (of 40x48) to 24x24: rows 6-11, columns 6-11.
    expected = torch.zeros(24, 24, dtype=torch.bool)
    expected[6:12, 6:12] = True
    assert torch.equal(masked["mask"], expected)
    assert sorted(dataset.labels.tolist()) == [0, 1, 1]


def test_several_categories_carry_their_names_and_collate(mvtec: Path) -> None:
    dataset = build_dataset(mvtec, "mvtec", "widget,gadget", "test", 16)
    assert dataset.categories == ["gadget", "widget"]
    gadget = [item for item in dataset if item["category"] == "gadget"]
    assert len(gadget) == 1 and gadget[0]["has_mask"] and gadget[0]["mask"].any()
    batch = next(iter(DataLoader(dataset, batch_size=4)))
    assert batch["image"].shape == (4, 16, 16, 3) and batch["mask"].shape == (4, 16, 16)
    assert build_dataset(mvtec, "mvtec", None, "train", 16).categories == ["gadget", "widget"]
    # A category folder given as the root works too.
    assert len(build_dataset(mvtec / "widget", "mvtec", None, "train", 16)) == 3


def test_errors_name_the_path_and_the_fix(mvtec: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"nowhere: dataset root not found; check the path"):
        build_dataset(tmp_path / "nowhere", "mvtec", None, "train", 32)
    with pytest.raises(DatasetError, match=r"bottle: category folder not found; available under .*: gadget, widget"):
        build_dataset(mvtec, "mvtec", "bottle", "train", 32)
    (mvtec / "empty/train/good").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"empty/train/good: no train images found"):
        build_dataset(mvtec, "mvtec", "empty", "train", 32)
    with pytest.raises(DatasetError, match="unknown dataset layout 'coco'"):
        build_dataset(mvtec, "coco", None, "train", 32)
    with pytest.raises(DatasetError, match="unknown split 'val'"):
        build_dataset(mvtec, "mvtec", None, "val", 32)


def test_corrupt_image_raises_when_read(mvtec: Path) -> None:
    (mvtec / "widget/train/good/003.png").write_bytes(b"not a png")
    dataset = build_dataset(mvtec, "mvtec", "widget", "train", 32)
    with pytest.raises(ImageReadError, match=r"003\.png: cannot decode image"):
        dataset[3]


def test_mask_of_another_size_names_both_files(mvtec: Path) -> None:
    write_image(mvtec / "widget/ground_truth/crack/000_mask.png", square_mask((20, 20)))
    dataset = build_dataset(mvtec, "mvtec", "widget", "test", 32)
    index = [i for i, r in enumerate(dataset.records) if r.image.name == "000.png" and r.label][0]
    with pytest.raises(DatasetError, match=r"000_mask\.png: mask is 20x20 but image .*crack/000\.png is 48x40"):
        dataset[index]


def test_folder_layout(tmp_path: Path) -> None:
    root = tmp_path / "line_camera"
    for index in range(3):
        write_image(root / f"frame{index}.jpg", colour(50 + index))
    train = build_dataset(root, "folder", None, "train", 32)
    assert len(train) == 3 and train[0]["category"] == "line_camera"
    with pytest.raises(DatasetError, match=r"line_camera/test: test folder not found"):
        build_dataset(root, "folder", None, "test", 32)
    write_image(root / "test/good/g.png", colour(1))
    write_image(root / "test/dent/d.png", colour(2))
    test = build_dataset(root, "folder", None, "test", 32)
    assert sorted((item["label"], item["has_mask"]) for item in test) == [(0, True), (1, False)]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="no train images found"):
        build_dataset(empty, "folder", None, "train", 32)


@pytest.fixture()
def aebad(tmp_path: Path) -> Path:
    base = tmp_path / "aebad" / "AeBAD_S"
    write_image(base / "train/good/background/t0.png", colour(5))
    write_image(base / "train/good/view/t1.png", colour(6))
    for domain in ("same", "view"):
        write_image(base / f"test/good/{domain}/g.png", colour(7))
        write_image(base / f"test/ablation/{domain}/a.png", colour(8))
        write_image(base / f"ground_truth/ablation/{domain}/a.png", square_mask())
    return tmp_path / "aebad"


def test_aebad_layout_reports_each_domain(aebad: Path) -> None:
    assert len(build_dataset(aebad, "aebad", "AeBAD_S", "train", 32)) == 2
    test = build_dataset(aebad, "aebad", "AeBAD_S", "test", 32)
    assert test.categories == ["AeBAD_S/same", "AeBAD_S/view"]
    defects = [item for item in test if item["label"] == 1]
    assert len(defects) == 2 and all(item["has_mask"] and item["mask"].any() for item in defects)
    view = build_dataset(aebad, "aebad", "AeBAD_S", "test", 32, domains=["view"])
    assert view.categories == ["AeBAD_S/view"] and len(view) == 2
    with pytest.raises(DatasetError, match="unknown AeBAD test domain"):
        build_dataset(aebad, "aebad", "AeBAD_S", "test", 32, domains=["night"])


def test_realiad_json_splits(tmp_path: Path) -> None:
    root = tmp_path / "Real-IAD"
    images = root / "realiad_256" / "toy"
    write_image(images / "OK/S0001/toy_0001_OK_C1.jpg", colour(40))
    write_image(images / "NG/HS/S0002/toy_0002_NG_C1.jpg", colour(140))
    write_image(images / "NG/HS/S0002/toy_0002_NG_C1.png", square_mask())
    document = {
        "meta": {"prefix": "", "normal_class": "OK"},
        "train": [{"category": "toy", "anomaly_class": "OK", "image_path": "OK/S0001/toy_0001_OK_C1.jpg", "mask_path": None}],
        "test": [
            {"category": "toy", "anomaly_class": "OK", "image_path": "OK/S0001/toy_0001_OK_C1.jpg", "mask_path": None},
            {
                "category": "toy",
                "anomaly_class": "HS",
                "image_path": "NG/HS/S0002/toy_0002_NG_C1.jpg",
                "mask_path": "NG/HS/S0002/toy_0002_NG_C1.png",
            },
        ],
    }
    json_dir = root / "realiad_jsons" / "realiad_jsons"
    json_dir.mkdir(parents=True)
    (json_dir / "toy.json").write_text(json.dumps(document))
    train = build_dataset(root, "realiad", None, "train", 32)
    assert len(train) == 1 and train[0]["category"] == "toy"
    test = build_dataset(root, "realiad", ["toy"], "test", 32)
    assert [item["label"] for item in test] == [0, 1]
    assert test[1]["defect"] == "HS" and test[1]["has_mask"] and test[1]["mask"].any()
    with pytest.raises(DatasetError, match=r"bolt\.json: Real-IAD category not found; available: toy"):
        build_dataset(root, "realiad", "bolt", "test", 32)
    with pytest.raises(DatasetError, match="realiad_512: Real-IAD image folder not found"):
        build_dataset(root, "realiad", "toy", "test", 32, realiad_resolution=512)


def test_augmentation_is_seeded_by_torch(mvtec: Path) -> None:
    write_image(mvtec / "widget/train/good/004.png", np.random.default_rng(0).integers(0, 255, (64, 80, 3), np.uint8))
    dataset = build_dataset(mvtec, "mvtec", "widget", "train", 32, augment=True)
    torch.manual_seed(5)
    first = [dataset[3]["image"] for _ in range(4)]
    torch.manual_seed(5)
    again = [dataset[3]["image"] for _ in range(4)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(first[0], other) for other in first[1:])
    assert first[0].shape == (32, 32, 3) and first[0].dtype == torch.uint8


def test_hold_out_split() -> None:
    train, held = hold_out_split(50, 0.1, seed=1)
    assert len(held) == 5 and len(train) == 45
    assert sorted(np.r_[train, held].tolist()) == list(range(50))
    again = hold_out_split(50, 0.1, seed=1)
    assert np.array_equal(again[1], held) and not np.array_equal(hold_out_split(50, 0.1, seed=2)[1], held)
    assert len(hold_out_split(5, 0.1)[1]) == 1  # at least one held out
    assert len(hold_out_split(1, 0.5)[1]) == 0  # the only image trains
    assert len(hold_out_split(10, 0.0)[1]) == 0
    with pytest.raises(ValueError, match="0 <= fraction < 1"):
        hold_out_split(10, 1.0)


def test_hold_out_split_per_category() -> None:
    groups = ["brick"] * 30 + ["grass"] * 20 + ["gravel"] * 5
    train, held = hold_out_split(55, 0.1, seed=4, groups=groups)
    names = np.asarray(groups)
    assert [int((names[held] == g).sum()) for g in ("brick", "grass", "gravel")] == [3, 2, 1]  # each its own 10 %
    assert sorted(np.r_[train, held].tolist()) == list(range(55))
    assert np.array_equal(hold_out_split(55, 0.1, seed=4, groups=groups)[1], held)
    one = hold_out_split(40, 0.1, seed=4, groups=["bottle"] * 40)
    assert all(np.array_equal(a, b) for a, b in zip(one, hold_out_split(40, 0.1, seed=4)))  # one category: unchanged
    with pytest.raises(ValueError, match="2 group labels for 3 items"):
        hold_out_split(3, 0.1, groups=["a", "b"])


def test_evenly_spaced_covers_every_category() -> None:
    # Training indices are sorted, category by category: a prefix would see the first ones only.
    train_idx = np.arange(162)  # three categories of 54
    chosen = evenly_spaced(train_idx, 64)
    assert len(chosen) == 64 and len(set(chosen.tolist())) == 64 and chosen[0] == 0 and chosen[-1] == 161
    counts = [int(((chosen >= lo) & (chosen < lo + 54)).sum()) for lo in (0, 54, 108)]
    assert sorted(counts) == [21, 21, 22]  # the old prefix took 54 / 10 / 0
    assert np.array_equal(evenly_spaced(np.arange(10), 64), np.arange(10))
