"""A small MVTec-layout dataset from scikit-image's texture photographs, for demos and tests.

Normal images are random crops of a tinted texture (random flips, 90-degree turns, brightness
jitter); test defects are synthetic (see ``defects``) with exact masks. Same seed, same files.
"""

from __future__ import annotations

import shutil
import zlib
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from mmad_edge.data.defects import DEFECT_KINDS, add_defect
from mmad_edge.data.records import DatasetError
from mmad_edge.runtime.preprocess import resize_frame

# BGR gains so the colour of each texture matters (a stain is a colour shift).
TINTS = {"brick": (0.78, 0.88, 1.12), "grass": (0.80, 1.06, 0.86), "gravel": (1.06, 1.0, 0.90)}


def texture(name: str) -> np.ndarray:
    """The 512 x 512 grayscale photograph ``skimage.data.<name>()`` as tinted uint8 BGR."""
    if name not in TINTS:
        raise DatasetError(f"unknown demo texture {name!r}; choose from {', '.join(TINTS)}")
    from skimage import data

    gray = getattr(data, name)().astype(np.float32)
    tinted = gray[..., None] * np.asarray(TINTS[name], dtype=np.float32)
    return np.clip(np.rint(tinted), 0, 255).astype(np.uint8)


def normal_crop(source: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    side = min(size, source.shape[0], source.shape[1])
    top = int(rng.integers(0, source.shape[0] - side + 1))
    left = int(rng.integers(0, source.shape[1] - side + 1))
    crop = source[top : top + side, left : left + side]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    if rng.random() < 0.5:
        crop = crop[::-1]
    crop = np.rot90(crop, int(rng.integers(0, 4)))
    crop = resize_frame(np.ascontiguousarray(crop), size)
    gain = rng.uniform(0.92, 1.08)
    return np.clip(np.rint(crop.astype(np.float32) * gain), 0, 255).astype(np.uint8)


def _write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise DatasetError(f"{path}: cannot write image; check the folder is writable and the disk not full")


def _make_category(
    folder: Path, name: str, n_train: int, n_test_good: int, n_test_defect: int, size: int, seed: int
) -> None:
    # Separate streams for the training and the test images: the test split stays the same
    # whatever the training count, so results with more or fewer training images compare.
    train_rng, test_rng = (np.random.default_rng([seed, zlib.crc32(name.encode()), split]) for split in (0, 1))
    source = texture(name)
    others = [other for other in TINTS if other != name]
    foreign = texture(others[zlib.crc32(name.encode()) % len(others)])  # what "patch" defects paste in
    for index in range(n_train):
        _write(folder / "train" / "good" / f"{index:03d}.png", normal_crop(source, size, train_rng))
    for index in range(n_test_good):
        _write(folder / "test" / "good" / f"{index:03d}.png", normal_crop(source, size, test_rng))
    for index in range(n_test_defect):
        kind = DEFECT_KINDS[index % len(DEFECT_KINDS)]
        stem = f"{index // len(DEFECT_KINDS):03d}"
        image, mask = add_defect(normal_crop(source, size, test_rng), kind, test_rng, foreign)
        _write(folder / "test" / kind / f"{stem}.png", image)
        _write(folder / "ground_truth" / kind / f"{stem}_mask.png", mask.astype(np.uint8) * 255)


def make_demo_dataset(
    root: str | Path,
    categories: Sequence[str] = ("brick", "grass", "gravel"),
    n_train: int = 60,
    n_test_good: int = 10,
    n_test_defect: int = 20,
    size: int = 256,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write ``<root>/<category>/{train/good, test/good, test/<defect>, ground_truth/<defect>}``.

    Defect kinds (scratch, stain, hole, patch) take turns. The defaults train on a CPU in a few
    minutes. An existing non-empty category folder is an error unless ``overwrite`` (it is then
    deleted first, so no stale files mix in).
    """
    if n_train < 1 or n_test_good < 0 or n_test_defect < 0 or size < 16:
        raise DatasetError(
            f"demo dataset needs n_train >= 1, test counts >= 0 and size >= 16 "
            f"(got {n_train}, {n_test_good}, {n_test_defect}, {size})"
        )
    unknown = [name for name in categories if name not in TINTS]
    if unknown:
        raise DatasetError(f"unknown demo texture(s) {', '.join(unknown)}; choose from {', '.join(TINTS)}")
    root = Path(root)
    for name in categories:
        folder = root / name
        if folder.is_dir() and any(folder.iterdir()):
            if not overwrite:
                raise DatasetError(f"{folder}: already exists; delete it, choose another folder or overwrite")
            shutil.rmtree(folder)
    for name in categories:
        _make_category(root / name, name, n_train, n_test_good, n_test_defect, size, seed)
    return root
