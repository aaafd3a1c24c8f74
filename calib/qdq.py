"""Fix-ups of ONNX Runtime's Q/DQ graph.

ONNX Runtime rewires *every* consumer of a quantised tensor to its DequantizeLinear output when
only one consumer is quantised. In this network that would feed fake-quantised values to the
float parts: the residual adds (the block input feeds the depthwise conv and the skip), the
LayerNorm-ed encoder features (they feed the bottleneck convs and the cosine head). Here those
consumers get the float tensor back, so Q/DQ sit only on the edges into quantised convolutions.
"""

from __future__ import annotations

import onnx

from mmad_edge.calib.graph import QUANTIZED_OPS, consumers


def keep_float_inputs(model: onnx.ModelProto, quantized: set[str], output_qdq: bool) -> int:
    """Point consumers outside ``quantized`` back at the float tensor a Q/DQ pair was made
    from, then drop Q/DQ nodes left without consumers. Returns how many inputs were restored.

    ``output_qdq``: the graph quantises conv outputs on purpose (the CPU target's QLinearConv
    fusion); Q/DQ on a quantised node's output then stay shared by all its consumers.
    """
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    outputs = {v.name for v in graph.output}
    # Built once and kept current: a rewired input moves to ``source``'s readers. Each DQ output
    # is looked up once, so its own (stale) entry is never read again.
    users = consumers(model)
    restored = 0
    for dq in [n for n in graph.node if n.op_type == "DequantizeLinear"]:
        q = producer.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear":
            continue
        source = q.input[0]
        origin = producer.get(source)
        if origin is None or (output_qdq and origin.name in quantized):
            continue  # a graph input/initializer, or a fused conv output
        for node in users.get(dq.output[0], []):
            if node.name in quantized:
                continue
            for i, name in enumerate(node.input):
                if name == dq.output[0]:
                    node.input[i] = source
                    users.setdefault(source, []).append(node)
                    restored += 1
    _drop_unused(model, {"DequantizeLinear", "QuantizeLinear"}, outputs)
    return restored


def _drop_unused(model: onnx.ModelProto, op_types: set[str], outputs: set[str]) -> None:
    """Remove nodes of ``op_types`` whose outputs nobody reads (until none are left), then the
    initializers (scales, zero points) nothing reads any more."""
    while True:
        used = {name for node in model.graph.node for name in node.input} | outputs
        dead = [n for n in model.graph.node if n.op_type in op_types and not any(o in used for o in n.output)]
        if not dead:
            break
        for node in dead:
            model.graph.node.remove(node)
    used = {name for node in model.graph.node for name in node.input}
    for init in [i for i in model.graph.initializer if i.name not in used]:
        model.graph.initializer.remove(init)


def with_float_nodes(quantized: onnx.ModelProto, fp32: onnx.ModelProto, nodes: set[str]) -> onnx.ModelProto:
    """A copy of ``quantized`` in which ``nodes`` read their FP32 inputs (weights, bias and
    activations) again, i.e. run in float; the float consumers of their outputs read the float
    tensor again (the cpu target quantises conv outputs too); Q/DQ nobody reads are dropped.

    This is the graph quantising without those nodes, at the cost of a graph edit instead of a
    quantisation run (exactly so for the tensorrt target's Q/DQ on conv inputs only).
    """
    model = onnx.ModelProto()
    model.CopyFrom(quantized)
    originals = {n.name: n for n in fp32.graph.node if n.name in nodes}
    initializers = {i.name for i in model.graph.initializer}
    produced = {o for n in model.graph.node for o in n.output}
    fp32_weights = {i.name: i for i in fp32.graph.initializer}
    for node in model.graph.node:
        source = originals.get(node.name)
        if source is None:
            continue
        del node.input[:]
        for name in source.input:
            if name in fp32_weights and name not in initializers:
                # Absent, or (a cpu-target bias) the output of its DequantizeLinear: the FP32 copy.
                copy = onnx.TensorProto()
                copy.CopyFrom(fp32_weights[name])
                copy.name = f"{name}_float" if name in produced else name
                model.graph.initializer.append(copy)
                initializers.add(copy.name)
                name = copy.name
            elif f"{name}_float" in initializers:
                name = f"{name}_float"
            node.input.append(name)
    producer = {out: node for node in model.graph.node for out in node.output}
    still = {n.name for n in model.graph.node if n.op_type in QUANTIZED_OPS and n.input[1] in producer
             and producer[n.input[1]].op_type == "DequantizeLinear"}  # convs whose weights stay INT8
    keep_float_inputs(model, still, output_qdq=True)  # also drops the Q/DQ left unread
    return model
