"""Encoder weights by name or file: the official UniRepLKNet ImageNet checkpoints, where each is
cached, how it is downloaded, and the provenance record a checkpoint and an export carry.

Pure Python at import (``huggingface_hub`` is imported only to download or look in its cache).
The record's one-phrase description lives in the runtime (``describe_encoder_weights``), so
`mmad-edge run` can describe an artifact's encoder with the runtime's dependencies alone.
Hub settings (``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, ``HF_HUB_CACHE`` / ``HF_HOME``) are read at
each call, not when huggingface_hub is first imported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmad_edge.fileio import file_sha256
from mmad_edge.runtime.errors import install_hint

REPO_ID = "DingXiaoH/UniRepLKNet"
REVISION = "main"
DEFAULT_ENDPOINT = "https://huggingface.co"
LOCAL_DIR_ENV = "MMAD_EDGE_WEIGHTS"
ENCODER_KINDS = ("imagenet", "file", "texture", "random")


@dataclass(frozen=True)
class NamedWeights:
    """One official checkpoint: its short name, the variant it fits, its file on the hub."""

    name: str
    variant: str
    filename: str
    pretraining: str


OFFICIAL: dict[str, NamedWeights] = {w.name: w for w in (
    NamedWeights("unireplknet_a_in1k", "a", "unireplknet_a_in1k_224_acc77.03.pth", "ImageNet-1K, 224 px"),
    NamedWeights("unireplknet_f_in1k", "f", "unireplknet_f_in1k_224_acc78.58.pth", "ImageNet-1K, 224 px"),
    NamedWeights("unireplknet_p_in1k", "p", "unireplknet_p_in1k_224_acc80.23.pth", "ImageNet-1K, 224 px"),
    NamedWeights("unireplknet_n_in1k", "n", "unireplknet_n_in1k_224_acc81.64.pth", "ImageNet-1K, 224 px"),
    NamedWeights("unireplknet_t_in1k", "t", "unireplknet_t_in1k_224_acc83.21.pth", "ImageNet-1K, 224 px"),
    NamedWeights("unireplknet_s_in1k", "s", "unireplknet_s_in1k_224_acc83.91.pth", "ImageNet-1K, 224 px"),
    NamedWeights("unireplknet_s_in22k", "s", "unireplknet_s_in22k_pretrain.pth", "ImageNet-22K"),
    NamedWeights("unireplknet_s_in22k_to_in1k", "s", "unireplknet_s_in22k_to_in1k_384_acc86.44.pth",
                 "ImageNet-22K, then 1K at 384 px"),
)}


class WeightsError(ValueError):
    """Named weights that are unknown, do not fit the variant, or cannot be had; ``reason`` and
    ``fix`` let a caller that chose the name itself (train's default) say it its own way."""

    def __init__(self, subject: str, reason: str, fix: str) -> None:
        super().__init__(f"{subject}: {reason}; {fix}")
        self.reason, self.fix = reason, fix


def default_weights(variant: str) -> str:
    """The name ``train`` uses without ``--pretrained``: the variant's ImageNet-1K checkpoint."""
    return f"unireplknet_{variant}_in1k"


def hub_url(weights: NamedWeights) -> str:
    return f"{_endpoint()}/{REPO_ID}/resolve/{REVISION}/{weights.filename}"


def local_dir() -> Path:
    """A plain folder checked before the hub cache: where an offline machine's copy goes."""
    return Path(os.environ.get(LOCAL_DIR_ENV) or Path.home() / ".cache" / "mmad-edge" / "weights").expanduser()


def lookup(name: str, variant: str | None = None) -> NamedWeights:
    """The named weights, checked against the model's variant when one is given."""
    if name not in OFFICIAL:
        raise WeightsError(name, "not a known weights name", "`mmad-edge weights` lists them; or pass a .pth path")
    weights = OFFICIAL[name]
    if variant is not None and weights.variant != variant:
        raise WeightsError(name, f"fits variant {weights.variant}, not {variant}",
                           f"pass --variant {weights.variant} or --pretrained {default_weights(variant)}")
    return weights


def cached_path(weights: NamedWeights) -> Path | None:
    """The local copy of ``weights`` (plain folder first, then the hub cache) or None; no network."""
    local = local_dir() / weights.filename
    if local.is_file():
        return local
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    hit = try_to_load_from_cache(REPO_ID, weights.filename, cache_dir=_cache_dir(), revision=REVISION)
    return Path(hit) if isinstance(hit, str) else None


def fetch(name: str, variant: str | None = None) -> Path:
    """The file of the named weights: the local copy, else a download into the hub cache (once,
    with a progress bar). Offline without a copy: a WeightsError naming the file and the folder."""
    weights = lookup(name, variant)
    local = local_dir() / weights.filename
    if local.is_file():
        return local
    fix = f"download {hub_url(weights)} and put it in {local_dir()}/ (or pass its path instead of the name)"
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise WeightsError(name, "downloading needs huggingface_hub", f"{install_hint('train')}, or {fix}") from None
    offline = _offline()
    try:
        return Path(hf_hub_download(REPO_ID, weights.filename, revision=REVISION, cache_dir=_cache_dir(),
                                    endpoint=_endpoint(), local_files_only=offline))
    except OSError as exc:  # huggingface_hub's HTTP, offline and not-found errors are all OSErrors
        status = getattr(getattr(exc, "response", None), "status_code", None)
        where = ("HF_HUB_OFFLINE is set" if offline else f"{_endpoint()} answered HTTP {status}" if status
                 else f"{_endpoint()} could not be reached")
        raise WeightsError(name, f"{where} and {weights.filename} is not cached", fix) from None


def resolve(spec: str, variant: str) -> tuple[Path, dict[str, Any]]:
    """``--pretrained NAME`` or ``--pretrained PATH`` -> (file, provenance record)."""
    if spec in OFFICIAL:
        weights = lookup(spec, variant)
        path = fetch(spec, variant)
        return path, encoder_record("imagenet", path, weights.name)
    path = Path(spec).expanduser()
    if not path.is_file():
        hint = "`mmad-edge weights` lists the names" if spec.startswith("unireplknet_") else "check the path"
        raise WeightsError(spec, "neither an existing file nor a known weights name", hint)
    return path, encoder_record("file", path)


def encoder_record(kind: str, path: str | os.PathLike[str] | None = None, name: str | None = None) -> dict[str, Any]:
    """What a checkpoint and an export record about the frozen encoder's weights."""
    if kind not in ENCODER_KINDS:
        raise ValueError(f"unknown encoder weights kind {kind!r}; choose one of {', '.join(ENCODER_KINDS)}")
    record: dict[str, Any] = {"kind": kind, "name": name, "file": None, "sha256": None}
    if path is not None:
        record.update(file=Path(path).name if kind == "imagenet" else os.fspath(path), sha256=file_sha256(path))
    return record


def listing() -> list[dict[str, Any]]:
    """Every official name with its variant, file and local copy (None when not cached)."""
    rows = []
    for weights in OFFICIAL.values():
        path = cached_path(weights)
        rows.append({"name": weights.name, "variant": weights.variant, "pretraining": weights.pretraining,
                     "file": weights.filename, "cached": str(path) if path else None})
    return rows


def _endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _cache_dir() -> str | None:
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    return os.path.join(os.environ["HF_HOME"], "hub") if os.environ.get("HF_HOME") else None
