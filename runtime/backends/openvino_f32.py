"""Keep the numerically sensitive parts of a graph in f32 while OpenVINO's CPU plugin computes in bf16.

Why: BF16 keeps 8 significant bits. ``1 - cosine`` of two nearly parallel feature vectors
cancels (near 1 the bf16 spacing is 0.004, about the size of the anomaly signal), and the
LayerNorm / GRN statistics (means, variances, L2 norms and the divisions by them) lose the
small differences they exist for. The convolutions, where BF16 units pay, stay in bf16.

Which nodes: the statistics (reductions, square roots, powers, divisions, subtractions and the
clamps around them, plus the Multiply / Add fed by one: the variance's square, ``+ eps``,
GRN's ``x * nx``) and the tail, everything the outputs depend on back to the last
multi-channel convolution: the cosine head, the map's interpolation and smoothing, the score,
and the LayerNorm'd features they read.

How: the engine's own per-node attribute ``DisablePrecisionConversion`` (rt_info, OpenVINO
2025+). The CPU plugin honours it per node but reads its f16 entry even under bf16, so both are
listed. Python cannot build that attribute object (a plain string under its name is ignored),
so the model goes through its IR text: serialised, the attribute added to the chosen layers,
read back. The plugin replaces a few marked nodes with its own (Unsqueeze by Reshape, the
Interpolate, the one-channel smoothing convolution); the attribute is not copied to them, so
they run bf16. ``runtime_precisions`` says what each original node ran in.
"""

from __future__ import annotations

import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

# Ops that carry the arithmetic and gain from bf16: never kept in f32 (except a 1-channel one).
HEAVY_TYPES = frozenset({"Convolution", "GroupConvolution", "ConvolutionBackpropData", "MatMul"})
# Normalisation statistics and the ops that divide or subtract by them.
STATISTIC_TYPES = frozenset({"ReduceMean", "ReduceSum", "ReduceL2", "Sqrt", "Power", "Divide", "Subtract",
                             "Maximum", "Minimum", "Clamp", "MVN", "NormalizeL2"})
FED_BY_STATISTIC = frozenset({"Multiply", "Add"})
NEVER_MARKED = frozenset({"Constant", "Parameter", "Result", "ShapeOf"})
ATTRIBUTE = "DisablePrecisionConversion"
# Any source type, not to f16 (what the CPU plugin checks) nor bf16.
KEEP_F32 = "dynamic:f16,bf16"


def _is_heavy(node: Any) -> bool:
    """A convolution / MatMul with more than one output channel (the smoothing conv has one)."""
    if node.get_type_name() not in HEAVY_TYPES:
        return False
    shape = node.get_output_partial_shape(0)
    return not (shape.rank.is_static and len(shape) > 1 and shape[1].is_static and shape[1].get_length() == 1)


def _is_float(node: Any) -> bool:
    """f32 output: shape arithmetic (i64) is left alone."""
    return node.get_output_size() > 0 and node.get_output_element_type(0).get_type_name() == "f32"


def _tail(model: Any) -> set[Any]:
    """Every node the outputs depend on without crossing a heavy op."""
    seen: set[Any] = set()
    stack = [result for result in model.get_results()]
    while stack:
        node = stack.pop()
        for value in node.input_values():
            parent = value.get_node()
            if parent in seen or _is_heavy(parent) or parent.get_type_name() in NEVER_MARKED:
                continue
            seen.add(parent)
            stack.append(parent)
    return seen


def sensitive_nodes(model: Any) -> set[str]:
    """Friendly names of the nodes to keep in f32 (see the module docstring)."""
    ops = [op for op in model.get_ordered_ops() if op.get_type_name() not in NEVER_MARKED and _is_float(op)]
    statistics = {op for op in ops if op.get_type_name() in STATISTIC_TYPES}
    fed = {op for op in ops if op.get_type_name() in FED_BY_STATISTIC
           and any(value.get_node() in statistics for value in op.input_values())}
    return {op.get_friendly_name() for op in statistics | fed | _tail(model)}


def keep_f32(core: Any, model: Any, names: set[str]) -> Any:
    """``model`` with ``DisablePrecisionConversion`` on the layers named, read back through IR."""
    import openvino as ov

    with tempfile.TemporaryDirectory(prefix="mmad-ov-") as folder:
        xml_path = Path(folder) / "model.xml"
        ov.save_model(model, str(xml_path), compress_to_fp16=False)
        tree = ET.parse(xml_path)
        for layer in tree.getroot().iter("layer"):
            if layer.get("name") in names:
                info = layer.find("rt_info")
                info = ET.SubElement(layer, "rt_info") if info is None else info
                ET.SubElement(info, "attribute", {"name": ATTRIBUTE, "version": "0", "value": KEEP_F32})
        weights = ov.Tensor(np.fromfile(xml_path.with_suffix(".bin"), dtype=np.uint8))  # a copy: no mmap
    return core.read_model(ET.tostring(tree.getroot(), encoding="unicode"), weights)


def runtime_precisions(compiled: Any) -> dict[str, str]:
    """Original node name -> the precision the compiled model runs it in (runtime model rt_info)."""
    ran: dict[str, str] = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        precision = info["runtimePrecision"].astype(str)
        for name in info["originalLayersNames"].astype(str).split(","):
            if name:
                ran[name] = precision
    return ran
