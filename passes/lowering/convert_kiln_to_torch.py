"""convert-kiln-to-torch: lower every `kiln.*` op to torch-dialect ops IREE's torch input takes.

How `kiln.attention` is lowered is a per-target choice made from measurements
(docs/decisions.md):
  decomposed  matmul(q, kᵀ) → f32 scale/mask/softmax → matmul with v. IREE fuses the softmax
              and forms plain GEMMs, which it compiles well on CPU.
  fused       torch.aten.scaled_dot_product_attention, which IREE turns into its own
              `iree_linalg_ext.attention` op (slow on CPU: 1.5-12x, docs/attention.md).
`kiln.linear` becomes aten.linear / addmm / matmul (+ bias add) followed by its activation (for
the gated "swiglu", SiLU of the first half times the second).
`kiln.rope` becomes x·cos + x[..., indices]·(sin·signs), a gather IREE fuses into one dispatch.
`kiln.layer_norm` / `kiln.rms_norm` become f32 mean/rsqrt arithmetic (one reduction dispatch;
this also sidesteps IREE's CPU failures on bf16 and dynamic-shape `native_layer_norm`);
`kiln.add_layer_norm` / `kiln.add_rms_norm` the residual add and the same arithmetic.

Must run last in Kiln's pipeline: IREE does not know the kiln dialect. Leaves torch ops alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kiln.bindings import ir
from kiln.cpu_attention import ATTENTION_KERNEL
from kiln.passes.base import KilnPass, PassError, collect_ops, source_location
from kiln.torch_ir import (TensorInfo, TorchBuilder, broadcast_shapes, defining_op,
                            tensor_info)

# Default attention lowering per target; see docs/decisions.md for the measurements.
ATTENTION_STRATEGY_BY_TARGET = {"cpu": "decomposed", "cuda": "decomposed"}
ATTENTION_STRATEGIES = ("decomposed", "fused")


def attention_strategy(target: str, requested: str) -> str:
    if requested == ATTENTION_KERNEL:  # what kiln-select-cpu-kernels left (kiln.cpu_attention)
        return "decomposed"
    if requested != "auto":
        if requested not in ATTENTION_STRATEGIES:
            raise PassError(f"unknown attention lowering '{requested}'; choose auto or one of "
                            f"{', '.join(ATTENTION_STRATEGIES)}")
        return requested
    targets = [t for t in target.split(",") if t]
    unknown = [t for t in targets if t not in ATTENTION_STRATEGY_BY_TARGET]
    if unknown or not targets:
        raise PassError(f"unknown target '{target}' for convert-kiln-to-torch; use cpu, cuda "
                        f"or cpu,cuda")
    strategies = {ATTENTION_STRATEGY_BY_TARGET[t] for t in targets}
    # One artifact for several targets: the decomposed form is correct and fast everywhere.
    return strategies.pop() if len(strategies) == 1 else "decomposed"


def lower_linear(op: ir.Operation, dense=None) -> ir.Value:
    """`kiln.linear` as torch ops; `dense(b, x, weight, bias, layout, out, activation)` computes
    each product + bias and its activation (one of kiln.linear's but swiglu, or "none";
    default: the torch ops IREE matches best; kiln-select-cpu-kernels passes Kiln's CPU GEMM,
    which folds them into its store)."""
    dense = dense or _dense
    x, weight = op.operands[0], op.operands[1]
    bias = op.operands[2] if len(op.operands) > 2 else None
    activation = ir.StringAttr(op.attributes["activation"]).value
    layout = ir.StringAttr(op.attributes["weight_layout"]).value
    out = tensor_info(op.results[0])
    b = TorchBuilder(op.location)
    if activation == "swiglu":
        # Two linears, SiLU(gate) · up: IREE fuses the product into the second matmul, 3
        # dispatches per MLP like one matmul over both halves + an elementwise dispatch, and
        # without the [..., 2N] intermediate (docs/decisions.md).
        axis = 0 if layout == "out_in" else 1
        gate_w, up_w = _halves(b, weight, axis)
        gate_b, up_b = _halves(b, bias, 0) if bias is not None else (None, None)
        gate = dense(b, x, gate_w, gate_b, layout, out, "silu")
        return b.aten("mul.Tensor", out, gate, dense(b, x, up_w, up_b, layout, out, "none"))
    return dense(b, x, weight, bias, layout, out, activation)


def linear_activation(b: TorchBuilder, out: TensorInfo, y: ir.Value, activation: str) -> ir.Value:
    """`kiln.linear`'s activation (other than swiglu) applied to its dense result `y`."""
    if activation == "gelu":
        return b.aten("gelu", out, y, b.str("none"))
    if activation == "gelu_tanh":
        return _gelu_tanh(b, out, y)
    if activation in ("relu", "silu"):
        return b.aten(activation, out, y)
    return y


def _dense(b: TorchBuilder, x: ir.Value, weight: ir.Value, bias, layout: str,
           out: TensorInfo, activation: str = "none") -> ir.Value:
    """activation(x · Wᵀ + b) (out_in) or activation(x · W + b) (in_out) as the torch ops IREE
    matches best."""
    if layout == "out_in":
        y = b.aten("linear", out, x, weight, bias if bias is not None else b.none())
    elif bias is not None and tensor_info(x).rank == 2:
        one = b.int(1)
        y = b.aten("addmm", out, bias, x, weight, one, one)
    else:
        y = b.aten("matmul", out, x, weight)
        if bias is not None:
            y = b.aten("add.Tensor", out, y, bias, b.int(1))
    return linear_activation(b, out, y, activation)


def _halves(b: TorchBuilder, value: ir.Value, axis: int) -> tuple[ir.Value, ir.Value]:
    """The two halves of `value` along `axis`: the parts of an aten.cat of two equal halves
    (what kiln-raise-swiglu builds from the gate and up weights: no copy, nothing for IREE to
    evaluate), else slices."""
    info = tensor_info(value)
    half = info.shape[axis] // 2
    shape = list(info.shape)
    shape[axis] = half
    part = TensorInfo(tuple(shape), info.dtype)
    cat = defining_op(value)
    if cat is not None and cat.name == "torch.aten.cat":
        items = defining_op(cat.operands[0])
        if items is not None and items.name == "torch.prim.ListConstruct" and \
                len(items.operands) == 2 and all(tensor_info(v) == part for v in items.operands):
            return items.operands[0], items.operands[1]
    return (b.slice(value, axis, 0, half, part), b.slice(value, axis, half, 2 * half, part))


def _gelu_tanh(b: TorchBuilder, out: TensorInfo, x: ir.Value) -> ir.Value:
    """0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) as arithmetic, what GPT-2's gelu_new computes:
    through aten.gelu(approximate="tanh") a 2-layer d=64 GPT-2 differed from eager by 1.2e-5
    (max abs on logits; 1e-4 relative on GPT-2 small, bench/run_suite.py), this way by 2.7e-7."""
    cube = b.aten("mul.Tensor", out, b.aten("mul.Tensor", out, x, x), x)
    inner = b.aten("add.Tensor", out, x, b.aten("mul.Scalar", out, cube, b.float(0.044715)),
                   b.int(1))
    tanh = b.aten("tanh", out, b.aten("mul.Scalar", out, inner,
                                      b.float(math.sqrt(2.0 / math.pi))))
    return b.aten("mul.Tensor", out, b.aten("mul.Scalar", out, x, b.float(0.5)),
                  b.aten("add.Scalar", out, tanh, b.float(1.0), b.int(1)))


def statistics_dtype(dtype: str) -> str:
    """The dtype norms and softmax compute their statistics in: f32, or f64 for f64 inputs
    (rounding an f64 model's softmax to f32 lost its precision: 1e-6 errors; conformance)."""
    return "f64" if dtype == "f64" else "f32"


def _normalize_last_axis(b: TorchBuilder, x: ir.Value, eps: float, center: bool) -> ir.Value:
    """f32 (f64 for f64 inputs) (x - mean) / sqrt(var + eps) (center) or x / sqrt(mean(x²) +
    eps) over the last axis: one reduction IREE fuses with its elementwise neighbours."""
    info = tensor_info(x)
    acc = statistics_dtype(info.dtype)
    xf = b.cast(x, acc)
    f32 = TensorInfo(info.shape, acc)
    stats = TensorInfo(info.shape[:-1] + (1,), acc)
    last, keep, none = b.int_list([-1]), b.bool(True), b.none()
    if center:
        mean = b.aten("mean.dim", stats, xf, last, keep, none)
        xf = b.aten("sub.Tensor", f32, xf, mean, b.int(1))
    power = b.aten("mean.dim", stats, b.aten("mul.Tensor", f32, xf, xf), last, b.bool(True),
                   b.none())
    inverse = b.aten("rsqrt", stats, b.aten("add.Scalar", stats, power, b.float(eps), b.int(1)))
    return b.aten("mul.Tensor", f32, xf, inverse)


def _norm_parameters(op: ir.Operation, first: int) -> tuple:
    """(weight, bias) of a norm op whose optional operands start at operand `first`."""
    operands = list(op.operands)[first:]
    segments = list(ir.DenseI32ArrayAttr(op.attributes["operandSegmentSizes"]))[first:]
    weight = operands[0] if segments[0] else None
    bias = operands[segments[0]] if len(segments) > 1 and segments[1] else None
    return weight, bias


def _layer_norm(b: TorchBuilder, op: ir.Operation, x: ir.Value, weight, bias) -> ir.Value:
    out = tensor_info(op.results[0])
    y = _normalize_last_axis(b, x, ir.FloatAttr(op.attributes["epsilon"]).value, center=True)
    acc = tensor_info(y).dtype
    f32 = TensorInfo(out.shape, acc)
    if weight is not None:
        y = b.aten("mul.Tensor", f32, y, b.cast(weight, acc))
    if bias is not None:
        y = b.aten("add.Tensor", f32, y, b.cast(bias, acc), b.int(1))
    return b.cast(y, out.dtype)


def _rms_norm(b: TorchBuilder, op: ir.Operation, x: ir.Value, weight) -> ir.Value:
    """As Llama computes it: normalize in f32, cast to the input dtype, then · weight."""
    out = tensor_info(op.results[0])
    y = _normalize_last_axis(b, x, ir.FloatAttr(op.attributes["epsilon"]).value, center=False)
    # Llama rounds to the input dtype before the weight; an f32 result (T5 with an f32 weight)
    # keeps the f32 value.
    x_dtype = tensor_info(x).dtype
    y = b.cast(y, x_dtype if out.dtype == x_dtype else out.dtype)
    if weight is not None:
        y = b.aten("mul.Tensor", out, y, weight)
    return b.cast(y, out.dtype)


def lower_layer_norm(op: ir.Operation) -> ir.Value:
    return _layer_norm(TorchBuilder(op.location), op, op.operands[0], *_norm_parameters(op, 1))


def lower_rms_norm(op: ir.Operation) -> ir.Value:
    return _rms_norm(TorchBuilder(op.location), op, op.operands[0], _norm_parameters(op, 1)[0])


def _residual_sum(b: TorchBuilder, op: ir.Operation) -> ir.Value:
    return b.aten("add.Tensor", tensor_info(op.results[1]), op.operands[0], op.operands[1],
                  b.int(1))


def lower_add_layer_norm(op: ir.Operation) -> tuple[ir.Value, ir.Value]:
    """(norm(x + r), x + r): the add and the norm IREE fuses into one reduction dispatch."""
    b = TorchBuilder(op.location)
    total = _residual_sum(b, op)
    return _layer_norm(b, op, total, *_norm_parameters(op, 2)), total


def lower_add_rms_norm(op: ir.Operation) -> tuple[ir.Value, ir.Value]:
    b = TorchBuilder(op.location)
    total = _residual_sum(b, op)
    return _rms_norm(b, op, total, _norm_parameters(op, 2)[0]), total


def rotation_gather(depth: int, interleaved: bool):
    """(indices, signs) with rotate(x) = x[..., indices] · signs over a last axis of `depth`."""
    if interleaved:
        indices = np.arange(depth).reshape(-1, 2)[:, ::-1].reshape(-1)
        signs = np.tile(np.array([-1.0, 1.0], np.float32), depth // 2)
    else:
        half = depth // 2
        indices = np.concatenate([np.arange(half, depth), np.arange(half)])
        signs = np.repeat(np.array([-1.0, 1.0], np.float32), half)
    return indices, signs


def lower_rope(op: ir.Operation) -> ir.Value:
    """x·cos + rotate(x)·(sin·signs), not HF's slices + cat: IREE fuses it into one elementwise
    dispatch, while the cat of a slice of a merged QKV projection became copies and transposes
    (Llama, docs/fusion.md). The half rotation (Llama, GPT-NeoX) swaps the halves of the last
    axis as a flip of a [..., 2, D/2] view: an element's source differs from its own index
    only on the size-2 axis, so IREE's CPU code loads D/2 contiguous elements at a time.
    The gather it replaces (`index_select` with constant indices) loaded one scalar per element
    (zoo Llama b8 on the Intel Xeon: 17 ms of 521; docs/decisions.md "RoPE's half rotation
    as a flip, not a gather").
    Pairs (GPT-J's interleaved rotation) keep the gather."""
    x, cos, sin = op.operands[0], op.operands[1], op.operands[2]
    xi, table = tensor_info(x), tensor_info(sin)
    interleaved = ir.BoolAttr(op.attributes["interleaved"]).value
    indices, signs = rotation_gather(xi.shape[-1], interleaved)
    b = TorchBuilder(op.location)
    signed_sin = b.aten("mul.Tensor", table, sin, b.cast(b.f32_literal(signs), table.dtype))
    if interleaved:
        rotated = b.aten("index_select", xi, x, b.int(-1), b.si64_literal(indices))
        return b.aten("add.Tensor", xi, b.aten("mul.Tensor", xi, x, cos),
                      b.aten("mul.Tensor", xi, rotated, signed_sin), b.int(1))
    # Every operand in the [..., 2, D/2] view, so that IREE collapses the dimensions of the
    # whole expression alike and keeps the flip in its dispatch.
    x2, cos2, sin2 = (_split_halves(b, value) for value in (x, cos, signed_sin))
    x2i = tensor_info(x2)
    flipped = b.aten("flip", x2i, x2, b.int_list([xi.rank - 1]))
    rotated2 = b.aten("add.Tensor", x2i, b.aten("mul.Tensor", x2i, x2, cos2),
                      b.aten("mul.Tensor", x2i, flipped, sin2), b.int(1))
    return b.aten("reshape", xi, rotated2, b.size_list(_sizes(x)))


def _sizes(value: ir.Value) -> list:
    """`value`'s sizes for `TorchBuilder.size_list`: static ones as ints, dynamic ones read."""
    return [(value, axis) if size is None else size
            for axis, size in enumerate(tensor_info(value).shape)]


def _split_halves(b: TorchBuilder, value: ir.Value) -> ir.Value:
    """[..., D] viewed as [..., 2, D/2]."""
    info = tensor_info(value)
    *leading, depth = info.shape
    return b.aten("reshape", TensorInfo((*leading, 2, depth // 2), info.dtype), value,
                  b.size_list(_sizes(value)[:-1] + [2, depth // 2]))


def _expand_kv_heads(b: TorchBuilder, kv: ir.Value, query_heads, op) -> ir.Value:
    """[..., Hkv, S, D] → [..., Hq, S, D], kv head h serving query heads h·G … h·G+G-1."""
    info = tensor_info(kv)
    *batch, heads, length, dim = info.shape
    if heads is None or query_heads is None:
        raise PassError(f"kiln.attention at {source_location(op)}: grouped kv heads need static "
                        f"head counts (query heads {query_heads}, kv heads {heads})")
    group = query_heads // heads
    if group == 1:
        return kv
    rank = info.rank
    unsqueezed = b.aten("unsqueeze", TensorInfo((*batch, heads, 1, length, dim), info.dtype),
                        kv, b.int(rank - 2))
    expanded_shape = (*batch, heads, group, length, dim)
    expanded = b.aten("expand", TensorInfo(expanded_shape, info.dtype), unsqueezed,
                      b.int_list([-1 if d is None else d for d in expanded_shape]), b.bool(False))
    out_shape = (*batch, query_heads, length, dim)
    # Dynamic batch and length: each from kv's own size (two -1s would be ambiguous).
    sizes = [(kv, axis) if size is None else size for axis, size in
             enumerate((*batch, heads, length, dim))]
    sizes[rank - 3] = query_heads
    return b.aten("reshape", TensorInfo(out_shape, info.dtype), expanded, b.size_list(sizes))


def _causal_bias(b: TorchBuilder, op: ir.Operation, score_shape) -> ir.Value:
    """[Sq, Sk] f32 literal: 0 where key j <= query i, -inf above (top-left aligned)."""
    q_len, k_len = score_shape[-2], score_shape[-1]
    return b.f32_literal(np.triu(np.full((q_len, k_len), -np.inf, dtype=np.float32), k=1))


def _future_mask(b: TorchBuilder, q: ir.Value, k: ir.Value) -> ir.Value:
    """[Sq, Sk] bool, true where key j > query i, from the runtime lengths (dynamic shapes)."""
    qi, ki = tensor_info(q), tensor_info(k)
    q_len = b.aten_scalar("size.int", "!torch.int", q, b.int(qi.rank - 2))
    k_len = b.aten_scalar("size.int", "!torch.int", k, b.int(ki.rank - 2))
    none = b.none()

    def positions(length, shape):
        return b.aten("arange", TensorInfo(shape, "si64"), length, b.int(4), none, none, none)

    rows = b.aten("unsqueeze", TensorInfo((qi.shape[-2], 1), "si64"),
                  positions(q_len, (qi.shape[-2],)), b.int(1))
    cols = positions(k_len, (ki.shape[-2],))
    return b.aten("gt.Tensor", TensorInfo((qi.shape[-2], ki.shape[-2]), "i1"), cols, rows)


def _mask_future(b: TorchBuilder, op: ir.Operation, scores: ir.Value, q: ir.Value,
                 k: ir.Value) -> ir.Value:
    """f32 `scores` (or an additive mask) with -inf where key j > query i, broadcast to
    [..., Sq, Sk]: a literal bias when the lengths are static, computed from the runtime
    lengths when they are dynamic."""
    info = tensor_info(scores)
    lengths = (tensor_info(q).shape[-2], tensor_info(k).shape[-2])
    out = TensorInfo(broadcast_shapes(info.shape, lengths), info.dtype)
    if None not in lengths:
        return b.aten("add.Tensor", out, scores, b.cast(_causal_bias(b, op, lengths),
                                                        info.dtype), b.int(1))
    return b.aten("where.ScalarSelf", out, _future_mask(b, q, k), b.float(float("-inf")),
                  scores)


def lower_attention_decomposed(op: ir.Operation) -> ir.Value:
    q, k, v = op.operands[0], op.operands[1], op.operands[2]
    mask = op.operands[3] if len(op.operands) > 3 else None
    scale = ir.FloatAttr(op.attributes["scale"]).value
    causal = ir.BoolAttr(op.attributes["causal"]).value
    qi, out = tensor_info(q), tensor_info(op.results[0])
    b = TorchBuilder(op.location)
    group_rows = _grouped_query_rows(op)
    if group_rows is not None:
        # [B, Hq, Sq, D] → [B, Hkv, G·Sq, D]: the G query heads sharing a kv head become rows
        # of one product, so K and V are read once instead of being repeated G times.
        out_grouped = TensorInfo(group_rows + (out.shape[-1],), out.dtype)
        q = b.aten("reshape", TensorInfo(group_rows + (qi.shape[-1],), qi.dtype), q,
                   b.int_list([-1 if d is None else d for d in group_rows + (qi.shape[-1],)]))
        if mask is not None:
            mask = _grouped_mask(b, mask, group_rows, tensor_info(op.operands[0]))
        qi = tensor_info(q)
    elif qi.rank >= 3 and tensor_info(k).shape[-3] != qi.shape[-3]:
        k = _expand_kv_heads(b, k, qi.shape[-3], op)
        v = _expand_kv_heads(b, v, qi.shape[-3], op)
    ki = tensor_info(k)
    k_t = b.aten("transpose.int", TensorInfo(ki.shape[:-2] + (ki.shape[-1], ki.shape[-2]),
                                            ki.dtype), k, b.int(-2), b.int(-1))
    score_shape = qi.shape[:-1] + (ki.shape[-2],)
    scores = b.aten("matmul", TensorInfo(score_shape, qi.dtype), q, k_t)
    # Softmax statistics in f32 whatever the input dtype, as torch's SDPA kernels do (f64 for
    # f64 inputs).
    acc = statistics_dtype(qi.dtype)
    f32_scores = TensorInfo(score_shape, acc)
    scores = b.cast(scores, acc)
    if scale != 1.0:
        scores = b.aten("mul.Scalar", f32_scores, scores, b.float(scale))
    if mask is not None:
        mask_info = tensor_info(mask)
        if mask_info.dtype == "i1":
            scores = b.aten("where.ScalarOther", f32_scores, mask, scores, b.float(float("-inf")))
        else:
            scores = b.aten("add.Tensor", f32_scores, scores, b.cast(mask, acc), b.int(1))
    if causal and group_rows is not None:
        query_len = tensor_info(op.operands[0]).shape[-2]
        bias = np.tile(np.triu(np.full((query_len, ki.shape[-2]), -np.inf, np.float32), k=1),
                       (group_rows[-1] // query_len, 1))
        scores = b.aten("add.Tensor", f32_scores, scores, b.cast(b.f32_literal(bias), acc),
                        b.int(1))
    elif causal:
        scores = _mask_future(b, op, scores, q, k)
    probs = b.aten("_softmax", f32_scores, scores, b.int(-1), b.bool(False))
    probs = b.cast(probs, qi.dtype)
    if group_rows is None:
        return b.aten("matmul", out, probs, v)
    grouped = b.aten("matmul", out_grouped, probs, v)
    return b.aten("reshape", out, grouped, b.int_list([-1 if d is None else d
                                                       for d in out.shape]))


def _grouped_query_rows(op: ir.Operation):
    """[B, Hkv, G·Sq] when the G query heads that share a kv head can be the rows of one product
    (q viewed as [B, Hkv, G·Sq, D], no copy), so K and V are read once instead of repeated G
    times; None otherwise. Needs rank 4, static head counts, static lengths for a causal
    prefill (its causal bias is tiled per group) and a mask, if any, `_grouped_mask` can lay
    over those rows.
    A generator's decode (one token against a masked cache) repeated K and V before masks were
    taken: 1.7 of 17 ms per step of the zoo Llama on a 2-core Zen 3 (`iree-profile`:
    `elementwise_broadcast_4x3x10240`, two per layer).
    Measured on Llama (dispatches per layer, docs/fusion.md): with Q/K/V merged into one
    projection, grouped rows cost one transpose of the output back to [B, S, Hq·D] where the
    repeats of K and V cost two (12 vs 13); with separate projections the repeat of V had
    folded into its projection and the repeat was cheaper (15 vs 16, docs/decisions.md)."""
    q, k = tensor_info(op.operands[0]), tensor_info(op.operands[1])
    if q.rank != 4 or None in (q.shape[1], k.shape[1]):
        return None
    if k.shape[1] == q.shape[1] or q.shape[1] % k.shape[1]:
        return None
    causal = ir.BoolAttr(op.attributes["causal"]).value
    if q.shape[2] is None or (causal and k.shape[2] is None):
        return None
    if len(op.operands) > 3 and not _mask_groups(tensor_info(op.operands[3]), q):
        return None
    group = q.shape[1] // k.shape[1]
    return (q.shape[0], k.shape[1], group * q.shape[2])


def _mask_groups(mask: TensorInfo, q: TensorInfo) -> bool:
    """Whether a mask over the scores [B, Hq, Sq, Sk] can be laid over the grouped rows
    [B, Hkv, G·Sq, Sk]: rank 4, one head (every head's) with one query row or Sq of them, or
    Hq heads (viewed as Hkv groups of G) with Sq rows."""
    if mask.rank != 4:
        return False
    heads, rows = mask.shape[1], mask.shape[2]
    return (heads == 1 and rows in (1, q.shape[2])) or (heads == q.shape[1] and rows == q.shape[2])


def _grouped_mask(b: TorchBuilder, mask: ir.Value, group_rows, q: TensorInfo) -> ir.Value:
    """The mask of scores [B, Hq, Sq, Sk] for the grouped scores [B, Hkv, G·Sq, Sk], whose row
    g·Sq + s of kv head h is query head h·G + g, query s: a per-head mask is viewed that way;
    a mask shared by the heads keeps its one head and, with Sq > 1 rows, is tiled G times
    along the rows (one query row broadcasts as it is)."""
    info = tensor_info(mask)
    batch, heads, rows, keys = info.shape
    if heads != 1:
        shape = (batch, group_rows[1], group_rows[2], keys)
        sizes = [(mask, 0) if batch is None else batch, group_rows[1], group_rows[2],
                 (mask, 3) if keys is None else keys]
        return b.aten("reshape", TensorInfo(shape, info.dtype), mask, b.size_list(sizes))
    if rows == 1:
        return mask
    group = group_rows[2] // q.shape[2]
    return b.aten("repeat", TensorInfo((batch, 1, rows * group, keys), info.dtype), mask,
                  b.int_list([1, 1, group, 1]))


def lower_attention_fused(op: ir.Operation) -> ir.Value:
    q, k, v = op.operands[0], op.operands[1], op.operands[2]
    mask = op.operands[3] if len(op.operands) > 3 else None
    b = TorchBuilder(op.location)
    qi = tensor_info(q)
    if mask is not None:
        if tensor_info(mask).dtype not in ("i1", qi.dtype):
            mask = b.cast(mask, qi.dtype)
        mask_info = tensor_info(mask)
        while mask_info.rank < qi.rank:
            # IREE's SDPA conversion needs the mask at the scores' rank (it fails on a 2-D one).
            mask = b.aten("unsqueeze", TensorInfo((1,) + mask_info.shape, mask_info.dtype),
                          mask, b.int(0))
            mask_info = tensor_info(mask)
    causal = ir.BoolAttr(op.attributes["causal"]).value
    if causal and mask is not None:
        # SDPA takes is_causal or attn_mask, not both: fold the causal part into the mask.
        mask_info = tensor_info(mask)
        if mask_info.dtype == "i1":
            mask = b.aten("where.ScalarOther", TensorInfo(mask_info.shape, "f32"), mask,
                          b.float(0.0), b.float(float("-inf")))
        mask = b.cast(_mask_future(b, op, b.cast(mask, "f32"), q, k), qi.dtype)
        causal = False
    grouped = qi.rank >= 3 and tensor_info(k).shape[-3] != qi.shape[-3]
    return b.aten("scaled_dot_product_attention", tensor_info(op.results[0]), q, k, v,
                  mask if mask is not None else b.none(), b.float(0.0),
                  b.bool(causal),
                  b.float(ir.FloatAttr(op.attributes["scale"]).value), b.bool(grouped))


@dataclass
class ConvertKilnToTorch(KilnPass):
    name = "convert-kiln-to-torch"
    summary = "Lower kiln ops to torch-dialect ops for IREE (attention form chosen per target)"
    target: str = "cpu"
    attention: str = "auto"

    def apply(self, module: ir.Operation) -> None:
        strategy = attention_strategy(self.target, self.attention)
        lowerings = {"kiln.linear": lower_linear, "kiln.layer_norm": lower_layer_norm,
                     "kiln.rms_norm": lower_rms_norm, "kiln.rope": lower_rope,
                     "kiln.add_layer_norm": lower_add_layer_norm,
                     "kiln.add_rms_norm": lower_add_rms_norm}
        for op in collect_ops(module, ("kiln.attention",) + tuple(lowerings)):
            with ir.InsertionPoint(op), op.location:
                if op.name in lowerings:
                    value = lowerings[op.name](op)
                elif strategy == "fused":
                    value = lower_attention_fused(op)
                else:
                    value = lower_attention_decomposed(op)
            self.record(op.name, strategy if op.name == "kiln.attention" else "torch ops", op)
            values = value if isinstance(value, tuple) else (value,)  # add_*_norm: 2 results
            for result, replacement in zip(op.results, values):
                result.replace_all_uses_with(replacement)
            op.erase()
