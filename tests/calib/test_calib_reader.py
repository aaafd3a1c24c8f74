"""Calibration images: discovery, seeded selection, runtime preprocessing, clear errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from mmad_edge.calib.reader import (
    CalibrationDataError,
    CalibrationWarning,
    FrameReader,
    find_images,
    load_frames,
    select_images,
)
from mmad_edge.runtime.imageio import read_image
from mmad_edge.runtime.preprocess import resize_frame


def write_images(folder: Path, count: int, size: int = 40, start: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(start)
    paths = []
    for i in range(start, start + count):
        path = folder / f"img_{i:03d}.png"
        cv2.imwrite(str(path), rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8))
        paths.append(path)
    return paths


def test_missing_folder_names_it_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(CalibrationDataError, match=r"nowhere: calibration folder not found; pass a folder"):
        find_images(tmp_path / "nowhere")


def test_empty_folder_names_it_and_the_fix(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(CalibrationDataError, match=r"no images found .*put a few hundred normal images"):
        find_images(tmp_path)


def test_images_found_recursively_and_sorted(tmp_path: Path) -> None:
    write_images(tmp_path / "b", 2)
    write_images(tmp_path / "a" / "deep", 2, start=5)
    found = find_images(tmp_path)
    assert len(found) == 4
    assert found == sorted(found)


def test_selection_is_seeded_random_and_sorted(tmp_path: Path) -> None:
    images = write_images(tmp_path, 20)
    first = select_images(images, 5, seed=3, folder=tmp_path)
    assert first == select_images(images, 5, seed=3, folder=tmp_path)
    assert first == sorted(first) and len(set(first)) == 5
    assert first != select_images(images, 5, seed=4, folder=tmp_path)
    assert first != images[:5]


def test_fewer_images_than_requested_warns_and_uses_all(tmp_path: Path) -> None:
    images = write_images(tmp_path, 3)
    with pytest.warns(CalibrationWarning, match=r"3 images found, 200 requested; calibrating on all 3"):
        assert select_images(images, 200, seed=0, folder=tmp_path) == images


def test_frames_use_the_runtime_preprocessing(tmp_path: Path) -> None:
    images = write_images(tmp_path, 2)
    used, frames = load_frames(images, 32, tmp_path)
    assert used == images
    assert frames.shape == (2, 32, 32, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames[1], resize_frame(read_image(images[1]), 32))


def test_unreadable_images_are_skipped_with_their_names(tmp_path: Path) -> None:
    images = write_images(tmp_path, 2)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.warns(CalibrationWarning, match=r"skipped 1 unreadable image\(s\): .*broken\.png"):
        used, frames = load_frames([broken, *images], 32, tmp_path)
    assert used == images and len(frames) == 2


def test_no_readable_image_is_an_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"")
    with pytest.raises(CalibrationDataError, match=r"none of the 1 images could be read; replace them"):
        load_frames([broken], 32, tmp_path)


def test_reader_feeds_uint8_nhwc_batches_named_image_padding_the_last() -> None:
    """A fixed-batch graph takes nothing but its batch: the last batch repeats its final frame."""
    frames = np.arange(5, dtype=np.uint8).reshape(5, 1, 1, 1).repeat(8, axis=1).repeat(8, axis=2).repeat(3, axis=3)
    reader = FrameReader(frames, batch=2)
    batches = [reader.get_next() for _ in range(4)]
    assert batches[3] is None and all(b["image"].dtype == np.uint8 for b in batches[:3])
    assert [b["image"].shape for b in batches[:3]] == [(2, 8, 8, 3)] * 3
    assert [int(b["image"][i, 0, 0, 0]) for b in batches[:3] for i in range(2)] == [0, 1, 2, 3, 4, 4]
    assert [b["image"].shape[0] for b in iter(FrameReader(frames))] == [1] * 5
