"""Training with the reference recipe: frozen encoder, AdamW + ExponentialLR on bottleneck and
decoder, ADCLoss or global cosine loss. Resumable (a checkpoint per epoch, written atomically),
seeded per epoch and run on a pinned CPU thread count (the resumed run takes the count the run
started with) so a resumed run ends with the same weights, multi-GPU through torchrun.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Subset

from mmad_edge.checkpoint import import_encoder, load_parts, read_checkpoint, save_checkpoint
from mmad_edge.config import ModelConfig
from mmad_edge.data.dataset import AnomalyDataset, build_dataset
from mmad_edge.data.split import evenly_spaced, hold_out_split
from mmad_edge.fileio import ensure_writable_folder, remove_staging_leftovers, removed_if_left_empty
from mmad_edge.inference import predict
from mmad_edge.losses import adc_loss, global_cosine_loss
from mmad_edge.model.minimaxad import MiniMaxAD, build_model
from mmad_edge.progress import progress_bar
from mmad_edge.runtime.log import say
from mmad_edge.stats import statistics_by_category
from mmad_edge.texture_encoder import fit_texture_encoder
from mmad_edge.threads import pinned_threads
from mmad_edge.train_options import TrainOptions
from mmad_edge.weights import WeightsError, default_weights, encoder_record, resolve

LOSSES = ("adc", "global")
ENCODER_INITS = ("imagenet", "texture", "random")
FIT_IMAGES = 128  # normal images the texture encoder is fitted on, spread over every category


class LossModule(nn.Module):
    """Frames in, training loss out (one module so DistributedDataParallel can wrap it)."""

    def __init__(self, model: MiniMaxAD, loss: str) -> None:
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = self.model.preprocess(frames)
        enc, dec = self.model.features(x)
        if self.loss == "global":
            return global_cosine_loss(enc, dec)
        return adc_loss(enc, dec, (x.shape[2], x.shape[3]))


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> tuple[DistInfo, str]:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; one process per GPU, NCCL (gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), device
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if device.startswith("cuda"):
        torch.cuda.set_device(info.local_rank)
        device = f"cuda:{info.local_rank}"
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return info, device


def _log(message: str, info: DistInfo) -> None:
    say(message, info.main)  # rank 0 speaks for the run


def _validate(opts: TrainOptions) -> None:
    if opts.loss not in LOSSES:
        raise ValueError(f"unknown loss {opts.loss!r}; choose adc or global")
    if opts.encoder_init not in ENCODER_INITS:
        raise ValueError(f"unknown encoder init {opts.encoder_init!r}; choose imagenet, texture or random")
    if opts.pretrained and opts.encoder_init != "imagenet":
        raise ValueError(f"--pretrained {opts.pretrained} and --encoder-init {opts.encoder_init} contradict; pass one of them")
    if opts.epochs < 1 or opts.batch_size < 1:
        raise ValueError("--epochs and --batch-size must be at least 1")
    if Path(opts.out).exists() and not Path(opts.out).is_dir():
        raise ValueError(f"--out {opts.out} is a file; pass a folder (RUN_DIR/checkpoint.pt is written inside it)")
    if opts.resume and opts.force:
        raise ValueError("--resume and --force contradict each other; pass --resume to continue the run in --out "
                         "or --force to overwrite it")
    if opts.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda but no CUDA GPU is visible to PyTorch; use --device cpu")


def _prepare_out(opts: TrainOptions, ckpt_path: Path) -> dict | None:
    """Before any data is read: refuse to overwrite a run or to resume nothing, prove --out is
    writable, clear a killed run's temp files. Returns the checkpoint to resume from."""
    exists = ckpt_path.is_file()
    if opts.resume and not exists:
        raise ValueError(f"--resume: there is no {ckpt_path} to continue; drop --resume to start a new run there")
    if exists and not (opts.resume or opts.force):
        raise ValueError(f"--out {opts.out} already holds a run ({ckpt_path}); pass --resume to continue it, "
                         "--force to overwrite it, or another --out")
    ensure_writable_folder(opts.out, "--out")
    remove_staging_leftovers(ckpt_path)
    return read_checkpoint(ckpt_path) if opts.resume else None


def _thread_count(resumed: dict | None, info: DistInfo) -> int:
    """This process's CPU thread count, or the run's own when resuming (same rounding), unless
    this machine has fewer cores than that."""
    current = torch.get_num_threads()
    started = int((resumed or {}).get("training", {}).get("threads") or current)
    if started == current:
        return current
    if started > (os.cpu_count() or 1):
        _log(f"warning: the run used {started} CPU threads, this machine has {os.cpu_count()} cores; continuing on "
             f"{current}, so the weights will differ slightly from an uninterrupted run", info)
        return current
    _log(f"resuming on {started} CPU threads as the run started (this process had {current}), so the weights match "
         "an uninterrupted run", info)
    return started


def train(opts: TrainOptions, on_epoch_end: Callable[[int, dict], None] | None = None) -> Path:
    """Train and write ``opts.out/checkpoint.pt`` (every epoch, and final with statistics)."""
    _validate(opts)
    info, device = setup_distributed(opts.device)
    ckpt_path = Path(opts.out) / "checkpoint.pt"
    with removed_if_left_empty(opts.out):
        resumed = _prepare_out(opts, ckpt_path)
        with pinned_threads(_thread_count(resumed, info)) as threads:
            return _train(opts, info, device, ckpt_path, resumed, threads, on_epoch_end)


def _train(
    opts: TrainOptions, info: DistInfo, device: str, ckpt_path: Path, resumed: dict | None, threads: int,
    on_epoch_end: Callable[[int, dict], None] | None,
) -> Path:
    config = ModelConfig(variant=opts.variant, image_size=opts.image_size,
                         **{"encoder_padding": encoder_padding(opts), **opts.model_options})
    full = build_dataset(opts.data, opts.layout, opts.categories, "train", opts.image_size, augment=opts.augment,
                         camera=opts.camera_augment)
    plain = AnomalyDataset(full.records, opts.image_size)  # the same images, never augmented: one folder scan
    train_idx, holdout_idx = hold_out_split(len(full), opts.holdout, opts.seed, [r.category for r in full.records])
    train_set, holdout_set = Subset(full, train_idx.tolist()), Subset(plain, holdout_idx.tolist())

    torch.manual_seed(opts.seed)
    model = build_model(config)
    if resumed is None:  # a resumed run takes its encoder (and its record) from the checkpoint
        encoder_weights = _init_encoder(model, opts, info, plain, full, train_idx)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=opts.lr, betas=(0.9, 0.999), weight_decay=opts.weight_decay)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=opts.lr_gamma)
    state = {"epoch": 0, "step": 0, "history": [], "seed": opts.seed, "completed": False,
             "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(opts).items()},
             "train_images": len(train_set), "holdout_images": len(holdout_set), "threads": threads}
    if resumed is not None:
        state, encoder_weights = _resume(resumed, ckpt_path, model, optimizer, scheduler, state)
        _log(f"resumed from {ckpt_path} at epoch {state['epoch']} (step {state['step']})", info)

    model.to(device).train()
    step_module: nn.Module = LossModule(model, opts.loss)
    if info.world > 1:
        step_module = nn.parallel.DistributedDataParallel(step_module, device_ids=[info.local_rank] if device.startswith("cuda") else None)
    use_amp = opts.amp and device.startswith("cuda")
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    while state["epoch"] < opts.epochs and not _done(state, opts):
        epoch = state["epoch"]
        torch.manual_seed(opts.seed + epoch)  # augmentation and order depend on (seed, epoch) only
        generator = torch.Generator().manual_seed(opts.seed + epoch)
        if info.world > 1:
            sampler = DistributedSampler(train_set, info.world, info.rank, shuffle=True, seed=opts.seed)
            sampler.set_epoch(epoch)
        else:
            sampler = RandomSampler(train_set, generator=generator)
        batches = DataLoader(train_set, batch_size=opts.batch_size, sampler=sampler, num_workers=opts.workers, drop_last=False)
        losses, seen, start = [], 0, time.perf_counter()
        bar = progress_bar(batches, f"epoch {epoch + 1}/{opts.epochs}", opts.progress and info.main)
        for batch in bar:
            frames = batch["image"].to(device, non_blocking=True)
            with torch.autocast("cuda", dtype=amp_dtype, enabled=use_amp):
                loss = step_module(frames)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"training loss became {float(loss)} at step {state['step'] + 1} (epoch {epoch + 1}); the last "
                    f"good checkpoint is {ckpt_path}: lower --lr and continue with --resume"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            losses.append(float(loss.detach()))
            seen += frames.shape[0]
            state["step"] += 1
            bar.set_postfix(loss=f"{losses[-1]:.4f}", img_s=f"{seen * info.world / (time.perf_counter() - start):.1f}",
                            refresh=False)  # shown at the bar's own pace (throttled in logs)
            if _done(state, opts):
                break
        scheduler.step()
        state["epoch"] = epoch + 1
        record = {"epoch": epoch + 1, "loss": sum(losses) / max(len(losses), 1), "seconds": time.perf_counter() - start,
                  "lr": scheduler.get_last_lr()[0]}
        state["history"].append(record)
        _log(f"epoch {epoch + 1}/{opts.epochs}  loss {record['loss']:.4f}  {record['seconds']:.1f}s", info)
        if info.main:
            save_checkpoint(ckpt_path, model, None, state, optimizer.state_dict(), scheduler.state_dict(), encoder_weights)
        if on_epoch_end:
            on_epoch_end(epoch + 1, state)

    if info.main:
        statistics = None
        if len(holdout_set):
            held = predict(model, holdout_set, opts.batch_size, device, progress=opts.progress, desc="hold-out")
            statistics = statistics_by_category(held.scores, held.maps, held.categories, opts.threshold_rule, seed=opts.seed)
            per_category = statistics["categories"]
            detail = "" if len(per_category) < 2 else " (per category: " + ", ".join(
                f"{name} {stats['threshold']:.4f}" for name, stats in per_category.items()) + ")"
            _log(f"threshold {statistics['threshold']:.4f} from {len(holdout_set)} held-out normal images{detail}", info)
        state["completed"] = True
        save_checkpoint(ckpt_path, model.cpu(), statistics, state, optimizer.state_dict(), scheduler.state_dict(),
                        encoder_weights)
    if info.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return ckpt_path


def encoder_padding(opts: TrainOptions) -> str:
    """"reflect" for the texture encoder (fitted here: zero padding would make its top-left corner
    an edge against the mean colour, a hot corner in every map; docs/maps.md), "zeros" as the
    reference for ImageNet weights and the random encoder."""
    return "reflect" if opts.encoder_init == "texture" and not opts.pretrained else "zeros"


def _init_encoder(
    model: MiniMaxAD, opts: TrainOptions, info: DistInfo, plain: AnomalyDataset, full: AnomalyDataset,
    train_idx: np.ndarray,
) -> dict:
    """Give the frozen encoder its weights as the options say; returns their provenance record."""
    if opts.pretrained or opts.encoder_init == "imagenet":
        spec = str(opts.pretrained or default_weights(opts.variant))
        try:
            path, record = resolve(spec, opts.variant)
        except WeightsError as exc:
            if opts.pretrained:
                raise
            raise WeightsError(f"no --pretrained given, so train uses {spec} (the ImageNet weights of variant "
                               f"{opts.variant})", exc.reason, "offline, pass --encoder-init texture (fitted on the "
                               "training images) or --pretrained PATH") from None
        _log(import_encoder(model, path).summary(), info)
        return record
    if opts.encoder_init == "random":
        _log("warning: no --pretrained encoder weights; the frozen encoder is random", info)
        return encoder_record("random")
    picks = evenly_spaced(train_idx, FIT_IMAGES).tolist()
    frames = torch.stack([torch.as_tensor(plain[i]["image"]) for i in picks])
    sizes = fit_texture_encoder(model, frames, [full.records[i].category for i in picks])
    _log(f"warning: no ImageNet weights (--encoder-init texture); the frozen encoder computes texture statistics "
         f"({'/'.join(map(str, sizes))} per scale) fitted on {len(picks)} training images "
         f"(a fallback: pass --pretrained for real lines)", info)
    return encoder_record("texture")


def _done(state: dict, opts: TrainOptions) -> bool:
    return opts.max_steps is not None and state["step"] >= opts.max_steps


def _resume(ckpt: dict, path: Path, model: MiniMaxAD, optimizer, scheduler, state: dict) -> tuple[dict, dict | None]:
    if ckpt["config"] != model.config.to_dict():
        raise ValueError(f"{path}: was trained with {ckpt['config']}, not these options; use another --out or matching options")
    load_parts(model, ckpt, str(path))
    if ckpt.get("optimizer"):
        optimizer.load_state_dict(ckpt["optimizer"])
    if ckpt.get("scheduler"):
        scheduler.load_state_dict(ckpt["scheduler"])
    resumed = dict(ckpt.get("training") or {})
    return {**state, **{k: resumed[k] for k in ("epoch", "step", "history") if k in resumed}}, ckpt.get("encoder_weights")
