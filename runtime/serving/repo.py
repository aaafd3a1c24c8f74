"""`mmad-edge triton-repo`: a standard Triton model repository for the NGC tritonserver container.

No Python runs in the server: the exported graph itself is the model (``onnxruntime_onnx``) or
the engine (``tensorrt_plan``). The graph takes frames already resized to the model size, so the
client resizes (``serve`` resizes on the server instead). The thresholds and score statistics
travel in the config's ``parameters`` (string values), for clients that decide themselves.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..artifact.batching import batch_contract
from ..artifact.contract import CHANNEL_ORDER, ENGINE_SUFFIX, INPUT_NAME, OUTPUT_NAMES, SERVING_MODEL
from ..artifact.deployment import deployed_folder
from ..artifact.metadata import ArtifactInfo, Statistics, load_contract
from ..artifact.selection import select_artifact
from ..errors import ArtifactError
from .options import RepoOptions

# The NGC container of the tritonserver that PyTriton 0.7 (the serve extra) bundles, server 2.51.0:
# the printed command is pasteable, and runs the server `serve` was tested with (docs/serving.md).
TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"
PLATFORMS = {ENGINE_SUFFIX: ("tensorrt_plan", "model.plan", "KIND_GPU")}
ONNX_PLATFORM = ("onnxruntime_onnx", "model.onnx", "KIND_AUTO")


def pick_artifact(path: Path, options: RepoOptions) -> Path:
    """The file to serve: ``path`` itself, or from an export folder the one `serve` and `run` would
    load on this machine (same selection: on a CPU the fp32 graph, not the emulated fp16 one; an
    engine only where it runs). For another machine's engine, pass the ``.engine`` itself."""
    path = deployed_folder(path)
    if path.is_dir():
        return select_artifact(path, options.backend, options.precision)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such artifact; pass a .onnx, a .engine or an export folder")
    return path


def batch_limit(path: Path, info: ArtifactInfo, options: RepoOptions) -> int:
    """``max_batch_size``: ``--max-batch`` (default: the profile's maximum) as `serve` honours it
    (``batch_contract``: widened on an ONNX graph's dynamic batch axis, refused past an engine's
    profile or a fixed batch), or 0 for a fixed-batch graph (its batch dim is written out, no
    batcher). A profile that cannot take one frame cannot batch dynamically."""
    if options.max_batch is not None and options.max_batch < 1:
        raise ValueError(f"--max-batch must be >= 1, got {options.max_batch}")
    contract = batch_contract(path, info, options.max_batch)
    if contract.batch_min == contract.batch_max:
        return 0
    if info.batch_min > 1:
        raise ArtifactError(f"the artifact's batch profile starts at {info.batch_min}, so Triton cannot send it a "
                            "single request; export or build it with --batch 1:OPT:MAX")
    return contract.batch_max if options.max_batch is None else options.max_batch


def quoted(text: Any) -> str:
    """A protobuf text-format string literal."""
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def statistics_parameters(info: ArtifactInfo) -> dict[str, str]:
    """Threshold and normalisation, pooled and per category (``category.<name>.threshold`` ...)."""
    def entries(prefix: str, stats: Statistics) -> dict[str, str]:
        threshold, normalization = stats
        found = {} if threshold is None else {f"{prefix}threshold": repr(threshold)}
        if normalization is not None:
            found.update({f"{prefix}normalization_low": repr(normalization[0]),
                          f"{prefix}normalization_high": repr(normalization[1])})
        return found

    values = entries("", (info.threshold, info.normalization))
    for name, stats in sorted(info.categories.items()):
        values.update(entries(f"category.{name}.", stats))
    height, width = info.image_size
    values.update({"precision": info.precision, "input_size": f"{height}x{width}", "channel_order": CHANNEL_ORDER,
                   "input_note": f"frames must be resized to {height}x{width} by the client (the graph does not resize)"})
    return values


def tensor_block(name: str, dtype: str, dims: list[int], batched: bool) -> str:
    """One input/output entry; a dynamic-batch ``score`` (graph shape (B,)) is dims [1] reshaped to []."""
    reshape = " reshape: { shape: [ ] }" if batched and not dims else ""
    dims = dims if dims or not batched else [1]
    return f"  {{ name: {quoted(name)} data_type: {dtype} dims: [ {', '.join(map(str, dims))} ]{reshape} }}"


def config_text(info: ArtifactInfo, platform: str, kind: str, options: RepoOptions, max_batch: int) -> str:
    """config.pbtxt for the graph described by ``info``, batching up to ``max_batch`` (0: fixed batch)."""
    prefix = [] if max_batch else [info.batch_max]
    height, width = info.image_size
    map_name, score_name = OUTPUT_NAMES
    lines = [f"name: {quoted(SERVING_MODEL)}", f"platform: {quoted(platform)}", f"max_batch_size: {max_batch}",
             "input [", tensor_block(INPUT_NAME, "TYPE_UINT8", [*prefix, height, width, 3], bool(max_batch)), "]",
             "output [", tensor_block(map_name, "TYPE_FP32", [*prefix, height, width], bool(max_batch)) + ",",
             tensor_block(score_name, "TYPE_FP32", prefix, bool(max_batch)), "]"]
    if max_batch:
        lines.append(f"dynamic_batching {{ max_queue_delay_microseconds: {options.max_queue_delay_us} }}")
    lines.append(f"instance_group [ {{ count: {options.instances} kind: {kind} }} ]")
    for key, value in statistics_parameters(info).items():
        lines.append(f"parameters {{ key: {quoted(key)} value: {{ string_value: {quoted(value)} }} }}")
    return "\n".join(lines) + "\n"


def replace_folder(staged: Path, target: Path) -> None:
    """Move ``staged`` to ``target``; an existing ``target`` is moved aside first and removed after."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old."))
        os.replace(target, old / target.name)
    os.replace(staged, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_model_repository(artifact: str | os.PathLike[str], out: str | os.PathLike[str],
                           options: RepoOptions = RepoOptions()) -> dict[str, Any]:
    """Write ``out/mmad_edge/{config.pbtxt, 1/model.onnx|model.plan}`` (staged beside it and moved in
    whole, so a failure leaves the earlier repository as it was); returns what was written."""
    if options.instances < 1:
        raise ValueError(f"--instances must be >= 1, got {options.instances}")
    source = pick_artifact(Path(artifact), options)
    info = load_contract(source)
    platform, file_name, kind = PLATFORMS.get(source.suffix, ONNX_PLATFORM)
    max_batch = batch_limit(source, info, options)
    text = config_text(info, platform, kind, options, max_batch)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(dir=out, prefix=f".{SERVING_MODEL}.", suffix=".tmp"))
    try:
        (staged / "1").mkdir()
        shutil.copyfile(source, staged / "1" / file_name)
        (staged / "config.pbtxt").write_text(text, encoding="utf-8")
        staged.chmod(0o777 & ~_umask())
        replace_folder(staged, out / SERVING_MODEL)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    model_dir = out / SERVING_MODEL
    return {"repository": str(out), "artifact": str(source), "precision": info.precision, "platform": platform,
            "instance_kind": kind,
            "model_file": str(model_dir / "1" / file_name), "config": str(model_dir / "config.pbtxt"),
            "max_batch_size": max_batch, "batch_profile": [info.batch_min, info.batch_max],
            "image_size": list(info.image_size)}


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def repo_summary(written: dict[str, Any]) -> str:
    """What `triton-repo` prints."""
    size = "x".join(str(side) for side in written["image_size"])
    low, high = written["batch_profile"]
    batching = f"fixed batch of {low} (no dynamic batching)"
    if written["max_batch_size"]:
        widened = f", above the export's profile {low}..{high}" if written["max_batch_size"] > high else ""
        batching = f"dynamic batching up to {written['max_batch_size']}{widened}"
    return (f"wrote {written['config']} and {written['model_file']} (from {Path(written['artifact']).name}: "
            f"{written['precision']}, {written['platform']}, uint8 {size} BGR "
            f"frames resized by the client, {batching}, {written['instance_kind']})\n"
            f"  serve it: docker run --rm --gpus all -p 8000:8000 -p 8001:8001 -p 8002:8002 "
            f"-v {Path(written['repository']).resolve()}:/models {TRITON_IMAGE} "
            f"tritonserver --model-repository=/models")
