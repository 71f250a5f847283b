"""Kernel calls as kiln/torch ops: what a kernel spec computes, written independently of the
kernels, so that kiln-select-cuda-kernels{emulate=true} can be compiled for the CPU and run
against eager PyTorch (tests/test_cuda_kernel_fusion.py). That checks, without a GPU, what the
pass wires into each call — operand order, strided q/k/v views of the QKV buffer, rotary tables,
folded norms, residual and SwiGLU epilogues, the output layout — while the kernels' own numerics
are checked in Triton's interpreter (kiln.kernels.selfcheck) and on the GPU.

`emulate(builder, arguments, values, result)` returns a torch value of `result`'s type computed
from the call's operand values (the plan's inputs, in order; a bool mask still as i1); for a
decode attention that writes its KV cache (`new_kv`), the tuple (result, k cache, v cache) with
the new rows selected into the caches at the slot operand.
"""

from __future__ import annotations

import math

import numpy as np

from kiln.bindings import ir
from kiln.torch_ir import TensorInfo, TorchBuilder, tensor_info, vtensor_type


def _kiln(name: str, result: TensorInfo, operands: list, attributes: dict,
          location) -> ir.Value:
    return ir.Operation.create(f"kiln.{name}", results=[vtensor_type(result.shape, result.dtype)],
                               operands=operands, attributes=attributes, loc=location).result


def _segments(*counts: int) -> ir.Attribute:
    return ir.DenseI32ArrayAttr.get(list(counts))


def emulate(b: TorchBuilder, builder: str, arguments: dict, values: list,
            result: TensorInfo, location) -> ir.Value:
    if builder == "linear":
        return _linear(b, arguments, values, result, location)
    return _attention(b, arguments, values, result, location)


def _linear(b, args, values, result, location) -> ir.Value:
    parts = len(args.get("weight_parts") or (0,))
    x, weights = values[0], list(values[1:1 + parts])
    rest = list(values[1 + parts:])
    weight = weights[0] if parts == 1 else _cat(b, weights, 0)
    bias = None
    if args["has_bias"]:
        biases = [rest.pop(0) for _ in range(len(args.get("bias_parts") or (0,)))]
        bias = biases[0] if len(biases) == 1 else _cat(b, biases, 0)
    residual = rest.pop(0) if args.get("has_residual") else None
    norm = args.get("norm")
    if norm is not None:
        norm_weight = rest.pop(0) if args.get("has_norm_weight") else None
        norm_bias = rest.pop(0) if args.get("has_norm_bias") else None
        epsilon = ir.FloatAttr.get_f64(float(args.get("norm_eps", 1e-5)))
        info = tensor_info(x)
        if norm == "rms":
            operands = [x] + ([norm_weight] if norm_weight is not None else [])
            x = _kiln("rms_norm", info, operands, {
                "epsilon": epsilon, "operandSegmentSizes": _segments(1, len(operands) - 1)},
                location)
        else:
            operands = [x] + [v for v in (norm_weight, norm_bias) if v is not None]
            x = _kiln("layer_norm", info, operands, {
                "epsilon": epsilon, "operandSegmentSizes": _segments(
                    1, int(norm_weight is not None), int(norm_bias is not None))}, location)
    operands = [x, weight] + ([bias] if bias is not None else [])
    y = _kiln("linear", result, operands, {
        "activation": ir.StringAttr.get(args["activation"]),
        "weight_layout": ir.StringAttr.get(args["weight_layout"]),
        "operandSegmentSizes": _segments(1, 1, int(bias is not None))}, location)
    if residual is not None:
        y = b.aten("add.Tensor", result, y, residual, b.int(1))
    return y


def _cat(b, values: list, axis: int) -> ir.Value:
    infos = [tensor_info(v) for v in values]
    shape = list(infos[0].shape)
    shape[axis] = sum(i.shape[axis] for i in infos)
    return b.cat(values, axis, TensorInfo(tuple(shape), infos[0].dtype))


def _gather_view(b, flat: ir.Value, view: tuple, shape: tuple, dtype: str) -> ir.Value:
    """flat[offset + i·sb + j·sh + s·ss + d] as a [b, h, s, d] tensor (constant indices)."""
    _, offset, sb, sh, ss = view
    nb, nh, ns, nd = shape
    index = (offset + np.arange(nb)[:, None, None, None] * sb +
             np.arange(nh)[None, :, None, None] * sh + np.arange(ns)[None, None, :, None] * ss +
             np.arange(nd)[None, None, None, :])
    picked = b.aten("index_select", TensorInfo((index.size,), dtype), flat, b.int(0),
                    b.si64_literal(index.reshape(-1)))
    return b.view(picked, shape)


def _attention(b, args, values, result, location) -> ir.Value:
    batch, hq, hkv, sq, sk, d = (args[k] for k in ("b", "hq", "hkv", "sq", "sk", "d"))
    dtype = result.dtype
    buffers = args.get("buffers")
    if buffers is None:
        operands = list(values[:3])
        rest = list(values[3:])
    else:
        flats = [b.view(v, (math.prod(tensor_info(v).shape),)) for v in values[:len(buffers)]]
        rest = list(values[len(buffers):])
        operands = [_gather_view(b, flats[view[0]], view, (batch, heads, length, d), dtype)
                    for view, heads, length in ((args["q_view"], hq, sq),
                                                (args["k_view"], hkv, sk),
                                                (args["v_view"], hkv, sk))]
    new_kv = args.get("new_kv")
    new_rows = []
    if new_kv:  # the rows written into the caches, [b, hkv, 1, d]
        new_rows = [_gather_view(b, flats[view[0]], view, (batch, hkv, 1, d), dtype)
                    for view in new_kv]
    mask = rest.pop(0) if args.get("mask_kind") else None
    if args.get("rope"):
        rope_q, rope_k, table, table_dtype = args["rope"]
        cos, sin = rest[:2]
        rest = rest[2:]
        # With new_kv the key rotated is the new row (position 0 of the table).
        rotated = [(operands, 0, rope_q, sq),
                   (new_rows, 0, rope_k, 1) if new_kv else (operands, 1, rope_k, sk)]
        for target, index, rotate, length in rotated:
            if not rotate:
                continue
            x = target[index]
            info = tensor_info(x)
            tables = []
            for value in (cos, sin):
                t = b.view(value, (table[0], 1, table[1], table[2]))
                if table[1] != length:
                    t = b.slice(t, 2, 0, length, TensorInfo((table[0], 1, length, table[2]),
                                                            tensor_info(value).dtype))
                tables.append(b.cast(t, info.dtype))
            target[index] = _kiln("rope", info, [x] + tables,
                                  {"interleaved": ir.BoolAttr.get(False)}, location)
    caches = []
    if new_kv:
        # where(slot == position, row, cache) over the cache buffers, as the step wrote it
        position = rest.pop(0)
        equal = b.aten("eq.Tensor", TensorInfo((sk,), "i1"), b.si64_literal(np.arange(sk)),
                       position)
        slot = b.view(equal, (1, 1, sk, 1))
        for view, row in zip((args["k_view"], args["v_view"]), new_rows):
            cache = b.view(values[view[0]], (batch, hkv, sk, d))
            caches.append(b.aten("where.self", TensorInfo((batch, hkv, sk, d), dtype), slot,
                                 row, cache))
        operands[1], operands[2] = caches
    out = TensorInfo((batch, hq, sq, d), dtype)
    operands = operands + ([mask] if mask is not None else [])
    y = _kiln("attention", out, operands, {
        "scale": ir.FloatAttr.get_f64(float(args["scale"])),
        "causal": ir.BoolAttr.get(bool(args["causal"])),
        "operandSegmentSizes": _segments(1, 1, 1, int(mask is not None))}, location)
    if args.get("out_layout") == "bshd":
        y = b.aten("permute", TensorInfo((batch, sq, hq, d), dtype), y, b.int_list([0, 2, 1, 3]))
    return (y, *caches) if new_kv else y
