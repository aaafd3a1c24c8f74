"""Checkpoints: the project's own format, and import of the ones users already have.

Everything is read with ``torch.load(weights_only=True)``: tensors and plain containers only,
never arbitrary pickled objects. Every error names the file and the first bad key.
"""

from __future__ import annotations

import errno
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmad_edge import weights
from mmad_edge.config import VARIANTS, ConfigError, ModelConfig
from mmad_edge.fileio import WriteError, staged_write
from mmad_edge.model.encoder import STAGE_NORM_PREFIXES, UNUSED_ENCODER_PREFIXES
from mmad_edge.model.minimaxad import MiniMaxAD, build_model

FORMAT = "mmad-edge-checkpoint"
FORMAT_VERSION = 1
WRAPPER_KEYS = ("models", "model", "state_dict", "module")
PARTS = ("encoder", "bottleneck", "decoder")  # the weights a project checkpoint holds

# First-stage width and depths of the UniRepLKNet variants mmad-edge does not build, so a file of
# one of them is named instead of failing on its first key.
UNBUILT_VARIANTS = {"b": (128, (3, 3, 27)), "l": (192, (3, 3, 27)), "xl": (256, (3, 3, 27))}


class CheckpointError(ValueError):
    """A checkpoint that is missing, unsafe, or does not fit the model."""


@dataclass
class LoadReport:
    """What an import did: keys loaded, ignored on purpose, and (never silently) missing."""

    source: str
    target: str
    loaded: int = 0
    ignored: list[str] = field(default_factory=list)
    initialised: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"{self.target}: {self.loaded} tensors from {self.source}"
        if self.ignored:
            text += f"; ignored {len(self.ignored)} unused keys ({_prefix_summary(self.ignored)})"
        if self.initialised:
            text += (f"; {_prefix_summary(self.initialised)} not in the file: initialised (weight 1, bias 0) "
                     "as the reference does")
        return text


def _prefix_summary(keys: list[str]) -> str:
    prefixes = sorted({".".join(k.split(".")[:2 if k.count(".") > 1 else 1]) for k in keys})
    return ", ".join(prefixes[:6]) + (", ..." if len(prefixes) > 6 else "")


def read_torch_file(path: str | os.PathLike[str]) -> Any:
    """``torch.load(weights_only=True)`` with one-line errors for missing and unsafe files."""
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise CheckpointError(f"{name}: no such checkpoint file; check the path")
    try:
        return torch.load(name, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{name}: refused to unpickle non-tensor objects ({first}); re-save it as a plain "
            "state dict with torch.save(model.state_dict(), path)"
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"{name}: not a readable PyTorch checkpoint ({exc}); the file may be truncated") from None


def unwrap_state_dict(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """Accept a plain state dict or one wrapped as {"models"|"model"|"state_dict": ...}."""
    if isinstance(obj, Mapping):
        for key in WRAPPER_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                return unwrap_state_dict(obj[key], source)
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return {k.removeprefix("module."): v for k, v in tensors.items()}
    raise CheckpointError(f"{source}: holds no state dict (expected tensors, or a 'models'/'state_dict' entry)")


def load_state(
    module: nn.Module, state: Mapping[str, torch.Tensor], source: str, target: str,
    ignore_prefixes: tuple[str, ...] = (), optional_prefixes: tuple[str, ...] = (),
) -> LoadReport:
    """Load ``state`` into ``module`` exactly: zero missing, zero unexpected, equal shapes.

    Keys starting with ``ignore_prefixes`` are dropped and reported; keys starting with
    ``optional_prefixes`` may be missing (listed in ``initialised``; the caller sets them). The
    first bad key is named.
    """
    expected = module.state_dict()
    report = LoadReport(source=source, target=target)
    kept: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked") and key not in expected:
            continue
        if key.startswith(ignore_prefixes):
            report.ignored.append(key)
            continue
        if key not in expected:
            raise CheckpointError(
                f"{source}: unexpected key {key!r} for the {target}; is this a {target} checkpoint of this architecture?"
            )
        if tuple(value.shape) != tuple(expected[key].shape):
            raise CheckpointError(
                f"{source}: key {key!r} has shape {tuple(value.shape)} but the {target} expects "
                f"{tuple(expected[key].shape)}; was it trained with another --variant?"
            )
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{source}: key {key!r} holds NaN or inf values; the checkpoint is corrupt")
        if key.endswith("running_var") and bool((value < 0).any()):
            raise CheckpointError(f"{source}: key {key!r} has negative variances; the checkpoint is corrupt")
        kept[key] = value
    missing = [k for k in expected if k not in kept and not k.endswith("num_batches_tracked")]
    report.initialised = [k for k in missing if k.startswith(optional_prefixes)] if optional_prefixes else []
    missing = [k for k in missing if k not in report.initialised]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(
            f"{source}: missing key {missing[0]!r} of shape {tuple(expected[missing[0]].shape)}{more} for the "
            f"{target}; the checkpoint is truncated or from another model"
        )
    module.load_state_dict(kept, strict=False)
    report.loaded = len(kept)
    return report


def import_encoder(model: MiniMaxAD, path: str | os.PathLike[str]) -> LoadReport:
    """UniRepLKNet ImageNet weights into the encoder, as the reference loads them.

    The classifier and the unused last stage (downsample_layers.3, stages.3, norm3, norm, head)
    are ignored and reported. The official files hold no per-stage output norms norm0..norm2:
    those are set to weight 1, bias 0 (they still normalise each pixel over channels) and
    reported. A file of another variant is named as such.
    """
    source = os.fspath(path)
    state = unwrap_state_dict(read_torch_file(source), source)
    _check_variant(state, model.config.variant, source)
    report = load_state(model.encoder, state, source, "encoder", UNUSED_ENCODER_PREFIXES, STAGE_NORM_PREFIXES)
    with torch.no_grad():
        for key in report.initialised:
            tensor = model.encoder.state_dict()[key]
            tensor.fill_(1.0 if key.endswith("weight") else 0.0)
    return report


def detect_variant(state: Mapping[str, torch.Tensor]) -> str | None:
    """The UniRepLKNet variant a state dict was saved from (first-stage width and the depths of
    stages 0-2), or None when the keys do not say."""
    stem = state.get("downsample_layers.0.3.weight")
    if stem is None:
        return None
    depths = tuple(len({k.split(".")[2] for k in state if k.startswith(f"stages.{i}.")}) for i in range(3))
    known = {name: (spec.dims[0], spec.depths[:3]) for name, spec in VARIANTS.items()} | UNBUILT_VARIANTS
    for name, layout in known.items():
        if layout == (int(stem.shape[0]), depths):
            return name
    return None


def _check_variant(state: Mapping[str, torch.Tensor], variant: str, source: str) -> None:
    found = detect_variant(state)
    if found is None or found == variant:
        return
    if found in UNBUILT_VARIANTS:
        raise CheckpointError(f"{source}: holds UniRepLKNet-{found} weights, a variant mmad-edge does not build; "
                              f"use weights of variant {variant} ({weights.default_weights(variant)})")
    raise CheckpointError(f"{source}: holds UniRepLKNet-{found} weights but the model is variant {variant}; "
                          f"pass --variant {found}, or the variant-{variant} weights ({weights.default_weights(variant)})")


def import_minimaxad(model: MiniMaxAD, path: str | os.PathLike[str]) -> list[LoadReport]:
    """A MiniMaxAD training checkpoint {"bn": ..., "decoder": ...} (optionally "encoder")."""
    source = os.fspath(path)
    obj = read_torch_file(source)
    if not isinstance(obj, Mapping) or "bn" not in obj or "decoder" not in obj:
        found = sorted(obj)[:5] if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(
            f"{source}: not a MiniMaxAD run (expected 'bn' and 'decoder' entries, found {found}); "
            "pass ImageNet weights with --encoder instead"
        )
    reports = [
        load_state(model.bottleneck, unwrap_state_dict(obj["bn"], f"{source}[bn]"), f"{source}[bn]", "bottleneck"),
        load_state(model.decoder, unwrap_state_dict(obj["decoder"], f"{source}[decoder]"), f"{source}[decoder]", "decoder"),
    ]
    if isinstance(obj.get("encoder"), Mapping):
        enc = unwrap_state_dict(obj["encoder"], f"{source}[encoder]")
        reports.append(load_state(model.encoder, enc, f"{source}[encoder]", "encoder", UNUSED_ENCODER_PREFIXES))
    return reports


def save_checkpoint(
    path: str | os.PathLike[str], model: MiniMaxAD, statistics: dict | None = None,
    training: dict | None = None, optimizer: dict | None = None, scheduler: dict | None = None,
    encoder_weights: dict | None = None,
) -> Path:
    """Write the project checkpoint atomically (temp file beside it + rename: never half-written;
    a failed write, e.g. a full disk, leaves the previous file as it was).
    ``encoder_weights``: the provenance record of the frozen encoder (mmad_edge.weights)."""
    target = Path(path)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "encoder": model.encoder.state_dict(),
        "bottleneck": model.bottleneck.state_dict(),
        "decoder": model.decoder.state_dict(),
        "statistics": statistics,
        "training": training or {},
        "optimizer": optimizer,
        "scheduler": scheduler,
        "encoder_weights": encoder_weights,
    }
    existed = target.is_file()
    try:
        with staged_write(target) as handle:
            torch.save(payload, handle)
    except OSError as exc:
        fix = "free space on that disk" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "check its permissions"
        kept = "; the checkpoint already there is unchanged" if existed else ""
        raise WriteError(f"{target}: could not write the checkpoint ({exc.strerror or exc}); {fix} "
                         f"or write to another folder{kept}") from exc
    return target


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The raw project checkpoint dict, validated for format and config."""
    source = os.fspath(path)
    obj = read_torch_file(source)
    if not isinstance(obj, Mapping) or obj.get("format") != FORMAT:
        raise CheckpointError(
            f"{source}: not an mmad-edge checkpoint; convert it with 'mmad-edge import-checkpoint "
            "--variant V --image-size S --encoder ENC.pth --minimaxad RUN.pth --out checkpoint.pt'"
        )
    version = obj.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise CheckpointError(f"{source}: format_version is {version!r} ({type(version).__name__}), not an integer; "
                              "the file was edited or written by another tool: re-train or re-import it")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{source}: written by a newer mmad-edge (format {version}); upgrade mmad-edge")
    for part in PARTS:
        if not isinstance(obj.get(part), Mapping) or not obj[part]:
            raise CheckpointError(f"{source}: has no {part} weights (the {part!r} entry is missing or empty); the file is "
                                  "incomplete: re-train or re-import it")
    try:
        ModelConfig.from_dict(dict(obj["config"]))
    except (ConfigError, TypeError, KeyError) as exc:
        raise CheckpointError(f"{source}: bad config in checkpoint: {exc}") from None
    return dict(obj)


def model_from_checkpoint(ckpt: Mapping[str, Any], source: str, config: ModelConfig | None = None) -> MiniMaxAD:
    """The model built from an already-read project checkpoint (its own config unless one is
    given), so a caller that needs the dict too reads the file once; ``source`` names it in errors."""
    model = build_model(config or ModelConfig.from_dict(dict(ckpt["config"])))
    load_parts(model, ckpt, source)
    return model.eval()


def load_parts(model: MiniMaxAD, ckpt: Mapping[str, Any], source: str) -> None:
    """Encoder, bottleneck and decoder weights of a read checkpoint into ``model``, in place
    (resuming keeps the parameters the optimizer holds)."""
    for part in PARTS:
        load_state(getattr(model, part), ckpt[part], source, part)


def load_checkpoint(path: str | os.PathLike[str], config: ModelConfig | None = None) -> tuple[MiniMaxAD, dict[str, Any]]:
    """Build the model from a project checkpoint (its own config unless one is given)."""
    source = os.fspath(path)
    ckpt = read_checkpoint(source)
    return model_from_checkpoint(ckpt, source, config), ckpt


def import_checkpoint(
    config: ModelConfig, out: str | os.PathLike[str], encoder: str | os.PathLike[str] | None = None,
    minimaxad: str | os.PathLike[str] | None = None,
) -> tuple[Path, list[LoadReport], dict[str, Any]]:
    """Build a project checkpoint from ImageNet encoder weights and/or a MiniMaxAD run.

    ``encoder`` is a weights name (``mmad-edge weights``) or a file. Everything is checked before
    anything is written; parts not given keep their fresh init.
    """
    if encoder is None and minimaxad is None:
        raise CheckpointError("nothing to import: pass --encoder ENCODER.pth and/or --minimaxad RUN.pth")
    model = build_model(config)
    record = weights.encoder_record("random")
    reports = []
    if encoder is not None:
        encoder_path, record = weights.resolve(os.fspath(encoder), config.variant)
        reports.append(import_encoder(model, encoder_path))
    if minimaxad is not None:
        reports += import_minimaxad(model, minimaxad)
        if reports[-1].target == "encoder":
            record = weights.encoder_record("file", minimaxad)
    sources = {"encoder": os.fspath(encoder) if encoder else None, "minimaxad": os.fspath(minimaxad) if minimaxad else None}
    path = save_checkpoint(out, model, None, {"imported_from": sources, "completed": True}, encoder_weights=record)
    return path, reports, record
