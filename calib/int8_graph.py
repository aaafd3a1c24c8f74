"""One INT8 Q/DQ graph from an FP32 graph and calibrated ranges, for TensorRT or the CPU.

``quantize_static`` does the work; the ranges reach it through its calibration cache file, so
building a graph (the sensitivity search builds dozens) never re-runs calibration.

- ``tensorrt``: symmetric INT8 everywhere (zero points 0), per-channel weights (Conv axis 0;
  ConvTranspose axis 0 too, the per-input-channel scales TensorRT's deconvolution kernels
  expect), per-tensor activations, float biases, Q/DQ only on the inputs of convolutions.
- ``cpu``: uint8 activations / int8 weights, per-channel weights, as Q/DQ (``qdq``: Q/DQ on
  conv outputs too, so ONNX Runtime fuses QLinearConv) or as QLinearConv operators
  (``qoperator``). Which is faster depends on the CPU; ``export_int8`` times both. Measured on
  a 2-core AVX512-VNNI x86 with ORT 1.32 (variant n, 256 px, batch 1): FP32 308 ms, Q/DQ
  183 ms, QOperator 131 ms; the tensorrt graph run by ORT itself: 451 ms (it is made for
  TensorRT, whose kernels fuse the Q/DQ).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
from onnxruntime.quantization import (
    QuantFormat,
    QuantType,
    TensorData,
    TensorsData,
    quantize_static,
    save_tensors_data,
)

from mmad_edge.calib.cache import Ranges
from mmad_edge.calib.graph import QUANTIZED_OPS, quantizable_convs
from mmad_edge.calib.qdq import keep_float_inputs
from mmad_edge.calib.ranges import METHODS

TARGETS = ("tensorrt", "cpu")
CPU_FORMATS = ("qdq", "qoperator")
MIN_OPSET = 13  # per-channel QuantizeLinear / DequantizeLinear


class QuantizationError(ValueError):
    """A model or option the INT8 graph cannot be built from (message names the fix)."""


def _opset(model: onnx.ModelProto) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def _check(model: onnx.ModelProto, target: str) -> None:
    if target not in TARGETS:
        raise QuantizationError(f"unknown INT8 target {target!r}; choose one of {', '.join(TARGETS)}")
    if _opset(model) < MIN_OPSET:
        raise QuantizationError(
            f"the FP32 model uses opset {_opset(model)}; per-channel INT8 needs opset >= {MIN_OPSET}: re-export it"
        )
    if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        raise QuantizationError(
            f"onnxruntime {onnxruntime.__version__} cannot reuse calibrated ranges "
            "(quantize_static has no calibration_cache_path); upgrade it: pip install -U onnxruntime"
        )


def _target_options(model: onnx.ModelProto, target: str) -> dict[str, Any]:
    if target == "cpu":
        return {
            "activation_type": QuantType.QUInt8,
            "weight_type": QuantType.QInt8,
            "per_channel": True,
            "extra_options": {"WeightSymmetric": True},
        }
    deconv_weights = [n.input[1] for n in model.graph.node if n.op_type == "ConvTranspose"]
    return {
        "activation_type": QuantType.QInt8,
        "weight_type": QuantType.QInt8,
        "per_channel": True,
        "extra_options": {
            "ActivationSymmetric": True,
            "WeightSymmetric": True,
            "QuantizeBias": False,
            "OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS),
            "TensorQuantOverrides": {name: [{"axis": 0}] for name in deconv_weights},
        },
    }


def _write_ort_ranges(ranges: Ranges, method: str, path: Path) -> None:
    data = {
        name: TensorData(lowest=np.float32(lo), highest=np.float32(hi)) for name, (lo, hi) in ranges.items()
    }
    save_tensors_data(TensorsData(METHODS[method], data), path)


def build_int8_graph(
    fp32_onnx: Path,
    out_path: Path,
    ranges: Ranges,
    method: str,
    target: str = "tensorrt",
    exclude: Iterable[str] = (),
    cpu_format: str = "qdq",
) -> list[str]:
    """Write the INT8 graph to ``out_path`` and return the quantised node names (the caller
    writes into a staging folder that is moved into place, so no partial file is ever seen).

    ``exclude``: convolution node names kept in float (beyond the head, always float).
    ``cpu_format``: ``qdq`` or ``qoperator``, for the cpu target only.
    """
    if cpu_format not in CPU_FORMATS:
        raise QuantizationError(f"unknown CPU INT8 format {cpu_format!r}; choose one of {', '.join(CPU_FORMATS)}")
    operators = target == "cpu" and cpu_format == "qoperator"
    model = onnx.load(str(fp32_onnx))
    _check(model, target)
    excluded = set(exclude)
    quantized = [n.name for n in quantizable_convs(model) if n.name not in excluded]  # the head never is
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if not quantized:  # quantize_static reads an empty node list as "quantise everything"
        onnx.save(model, str(out_path))
        return quantized
    with tempfile.TemporaryDirectory(prefix="mmad-int8-") as tmp:
        cache = Path(tmp) / "ranges.json"
        raw = Path(tmp) / "qdq.onnx"
        _write_ort_ranges(ranges, method, cache)
        with _quiet_preprocess_hint():
            quantize_static(
                str(fp32_onnx),
                str(raw),
                calibration_data_reader=None,
                quant_format=QuantFormat.QOperator if operators else QuantFormat.QDQ,
                op_types_to_quantize=list(QUANTIZED_OPS),
                nodes_to_quantize=quantized,
                calibrate_method=METHODS[method],
                calibration_cache_path=str(cache),
                **_target_options(model, target),
            )
        result = onnx.load(str(raw))
        if not operators:  # QLinearConv nodes leave other consumers of their input in float
            keep_float_inputs(result, set(quantized), output_qdq=target == "cpu")
    onnx.save(result, str(out_path))
    return quantized


class _DropPreprocessHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage()


@contextlib.contextmanager
def _quiet_preprocess_hint() -> Iterator[None]:
    """quantize_static logs a 'consider pre-processing' hint on every call (dozens in a
    sensitivity search); the graph needs none (already shape-inferred and constant-folded)."""
    hint = _DropPreprocessHint()
    root = logging.getLogger()
    root.addFilter(hint)
    try:
        yield
    finally:
        root.removeFilter(hint)
