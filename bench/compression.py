"""False alarms on good frames a camera stream has compressed, before and after the remedies.

    python -m mmad_edge.bench.compression [--out bench/results] [--category gravel] [--epochs 3]
        [--n-train 60] [--calibration 30] [--defects 30]

The demo's recipe (``mmad-edge demo``: variant a, 128 px, global loss, texture encoder) on one
demo texture, with fewer images and epochs by default so that it fits minutes on a shared CPU,
trained twice: on the clean stills, and with ``camera_augment`` (each training image replaced by
one random camera degradation: offline, so both runs take the same steps). The demo's 60 good
test frames are encoded losslessly, as JPEG at quality 95, 75 and 50 and through MJPG video, then
scored. For each model and encoding: the mean pixel change, good frames above the threshold set
on clean stills (false alarms; ``measure`` says why not the checkpoint's own), the same after
``calibrate-threshold`` on other good frames sent through the same encoding, recall and the image
AUROC against defective frames encoded alike. Writes compression.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from mmad_edge.checkpoint import load_checkpoint
from mmad_edge.data.augment import camera_augment, jpeg
from mmad_edge.data.demo import make_demo_dataset
from mmad_edge.data.records import list_images
from mmad_edge.runtime.imageio import read_image
from mmad_edge.runtime.log import say
from mmad_edge.runtime.monitor.compare import auroc
from mmad_edge.runtime.preprocess import resize_frame
from mmad_edge.stats import score_statistics
from mmad_edge.train import TrainOptions, train

GOOD = 60  # the demo's good test frames (its test split does not depend on the other counts)
VIDEO_CODECS = {"mjpg": "MJPG"}
ENCODINGS = ("lossless", "jpeg95", "jpeg75", "jpeg50", *VIDEO_CODECS)


def encode(frames: list[np.ndarray], encoding: str, folder: Path) -> list[np.ndarray]:
    """``frames`` as a camera stream in ``encoding`` delivers them (decoded again)."""
    if encoding == "lossless":
        return frames
    if encoding.startswith("jpeg"):
        return [jpeg(frame, int(encoding[4:])) for frame in frames]
    path = folder / f"{encoding}.avi"
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*VIDEO_CODECS[encoding]), 10.0, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {VIDEO_CODECS[encoding]} video here")
    for frame in frames:
        writer.write(frame)
    writer.release()
    capture = cv2.VideoCapture(str(path))
    decoded = []
    for number in range(len(frames)):
        ok, frame = capture.read()
        if not ok:
            capture.release()
            raise RuntimeError(f"OpenCV wrote {len(frames)} {VIDEO_CODECS[encoding]} frames but cannot read frame "
                               f"{number} back from {path}; check this OpenCV build's video decoders")
        decoded.append(frame)
    capture.release()
    return decoded


def camera_copy(data: Path, category: str, seed: int) -> Path:
    """The training images of ``data`` each replaced by one ``camera_augment`` draw (tests kept)."""
    out = data.parent / "camera"
    rng = np.random.default_rng(seed)
    for image in list_images(data / category / "train" / "good"):
        target = out / category / "train" / "good" / image.name
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target), camera_augment(read_image(image), rng))
    return out


def train_model(data: Path, out: Path, category: str, epochs: int) -> Path:
    """The demo's recipe (``mmad_edge.app.demo``: bench may not import the application room)."""
    return train(TrainOptions(data=data, out=out, categories=[category], variant="a", image_size=128, epochs=epochs,
                              batch_size=16, loss="global", encoder_init="texture", seed=111, force=True,
                              progress=False))


@torch.inference_mode()
def scores_of(model, frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    size = model.config.image_size
    batch = torch.from_numpy(np.stack([resize_frame(frame, size) for frame in frames]))
    maps, scores = zip(*(model(chunk) for chunk in batch.split(30)))
    return torch.cat(scores).float().numpy(), torch.cat(maps).float().numpy()


def measure(checkpoint: Path, sets: dict[str, dict[str, list[np.ndarray]]]) -> dict[str, dict]:
    """Per encoding: false alarms and recall at the threshold of clean stills (the training rule,
    mean+3std, on the calibration frames without loss: both models alike, whatever their training
    images looked like) and at one calibrated on the calibration frames through the encoding."""
    model, ckpt = load_checkpoint(checkpoint)
    model.eval()
    scored = {encoding: {kind: scores_of(model, frames) for kind, frames in parts.items()}
              for encoding, parts in sets.items()}
    clean = float(score_statistics(*scored["lossless"]["calibration"], "mean+3std")["threshold"])
    rows = {}
    for encoding, parts in scored.items():
        good, bad = parts["good"][0], parts["defect"][0]
        calibrated = float(score_statistics(*parts["calibration"], "mean+3std")["threshold"])
        labels = np.r_[np.zeros(len(good)), np.ones(len(bad))]
        rows[encoding] = {
            "false_alarms": int((good > clean).sum()), "threshold": clean,
            "false_alarms_calibrated": int((good > calibrated).sum()), "threshold_calibrated": calibrated,
            "false_alarms_at_checkpoint_threshold": int((good > ckpt["statistics"]["threshold"]).sum()),
            "recall": float((bad > clean).mean()), "recall_calibrated": float((bad > calibrated).mean()),
            "auroc": auroc(labels, np.r_[good, bad]), "good_frames": len(good),
        }
    return rows


def markdown(result: dict) -> str:
    lines = [f"# Compression robustness ({result['category']}, {result['good_frames']} good frames)", "",
             f"`{result['command']}`: {result['recipe']}; {result['seconds']:.0f} s on this machine.", "",
             "| encoding | pixel change | model | false alarms | after calibrate-threshold | recall | recall calibrated "
             "| AUROC |", "|---|---|---|---|---|---|---|---|"]
    for encoding in ENCODINGS:
        for model, rows in result["models"].items():
            row = rows[encoding]
            lines.append(f"| {encoding} | {result['pixel_change'][encoding]:.2f} | {model} | "
                         f"{row['false_alarms']}/{row['good_frames']} | "
                         f"{row['false_alarms_calibrated']}/{row['good_frames']} | {row['recall']:.2f} | "
                         f"{row['recall_calibrated']:.2f} | {row['auroc']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--category", default="gravel")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=60)
    parser.add_argument("--calibration", type=int, default=30, help="good frames calibrate-threshold sees")
    parser.add_argument("--defects", type=int, default=30)
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mmad-compression-") as tmp:
        root = Path(tmp)
        data = make_demo_dataset(root / "data", [args.category], n_train=args.n_train,
                                 n_test_good=GOOD + args.calibration, n_test_defect=args.defects, size=256, seed=0)
        test = data / args.category / "test"
        goods = [read_image(path) for path in list_images(test / "good")]
        defects = [read_image(path) for path in sorted(test.glob("*/*.png")) if path.parent.name != "good"]
        sets = {encoding: {"good": encode(goods[:GOOD], encoding, root), "calibration": encode(goods[GOOD:], encoding, root),
                           "defect": encode(defects, encoding, root)} for encoding in ENCODINGS}
        change = {encoding: float(np.mean([np.abs(a.astype(int) - b).mean() for a, b in zip(frames["good"], goods)]))
                  for encoding, frames in sets.items()}
        models = {}
        for name, train_data in (("clean", data), ("camera_augment", camera_copy(data, args.category, seed=1))):
            say(f"training on {name} images ({args.epochs} epochs) ...")
            checkpoint = train_model(train_data, root / name, args.category, args.epochs)
            say(f"scoring {len(ENCODINGS)} encodings ...")
            models[name] = measure(checkpoint, sets)
    result = {"command": f"python -m mmad_edge.bench.compression --category {args.category} --epochs {args.epochs} "
                         f"--n-train {args.n_train} --calibration {args.calibration} --defects {args.defects}",
              "recipe": f"demo recipe (variant a, 128 px, global loss, texture encoder), {args.epochs} epochs on "
                        f"{args.n_train} training images; camera_augment offline (one draw per training image)",
              "category": args.category, "good_frames": GOOD, "calibration_frames": args.calibration,
              "defect_frames": len(defects), "pixel_change": change,
              "models": models, "seconds": time.perf_counter() - started}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compression.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "compression.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
