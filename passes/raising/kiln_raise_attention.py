"""kiln-raise-attention: attention written in model code → one `kiln.attention` op.

Before → after:
    torch.aten.scaled_dot_product_attention(q, k, v, mask, 0.0, causal, scale, gqa)
    torch.aten.matmul(softmax(scale · matmul(q, transpose(k)) [+ mask], dim=-1), v)
        →  kiln.attention(q, k, v[, mask]) {scale, causal}

Scale appears as `div.Scalar`, `mul.Scalar` or not at all (scale 1). The additive mask may be any
float tensor broadcastable to the scores (it is added as-is, so its values need no guard).
A constant mask is read: one that masks nothing is dropped, one that masks exactly the future
(bool tril, or 0 / <= -1e4 additive) becomes `causal = true` and is dropped.
Guards: dropout 0, constant scale, last-axis softmax, every intermediate single-use; a softmax
that fails one is left alone and reported with the reason. Runs on torch-dialect IR straight
from the importer (no prior pass needed).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

from kiln.bindings import ir
from kiln.dialects import AttentionOp, bool_attr
from kiln.passes.base import KilnPass, collect_ops, erase_if_dead, source_location
from kiln.passes.matching import (NoMatch, classify_mask, is_last_axis, literal_array, only_use,
                                  producer, swaps_last_two)
from kiln.torch_ir import constant_or, tensor_info

SOFTMAX_OPS = ("torch.aten._softmax", "torch.aten.softmax.int")
SDPA_OP = "torch.aten.scaled_dot_product_attention"


@dataclass(frozen=True)
class AttentionMatch:
    root: ir.Operation
    query: ir.Value
    key: ir.Value
    value: ir.Value
    mask: Optional[ir.Value]
    scale: float
    causal: bool
    form: str
    matched_ops: tuple  # consumers first, erased after the rewrite when dead


def match_sdpa(op: ir.Operation) -> AttentionMatch | NoMatch:
    operands = list(op.operands)
    if len(operands) < 7:
        return NoMatch(f"unexpected SDPA signature with {len(operands)} operands")
    q, k, v, mask, dropout, is_causal, scale = operands[:7]
    if constant_or(dropout, None) != 0.0:
        return NoMatch("SDPA with non-zero or non-constant dropout_p")
    causal = constant_or(is_causal, None)
    if not isinstance(causal, bool):
        return NoMatch("SDPA with non-constant is_causal")
    scale_value = constant_or(scale, LookupError)
    if scale_value is LookupError:
        return NoMatch("SDPA with a non-constant scale")
    head_dim = tensor_info(q).shape[-1]
    if scale_value is None:
        if head_dim is None:
            return NoMatch("SDPA default scale needs a static head dim")
        scale_value = 1.0 / math.sqrt(head_dim)
    mask_value = None if constant_or(mask, LookupError) is None else mask
    if causal and mask_value is not None:
        return NoMatch("SDPA with both is_causal and attn_mask")
    return AttentionMatch(op, q, k, v, mask_value, float(scale_value), causal, "sdpa", (op,))


def match_softmax_attention(output_matmul: ir.Operation) -> AttentionMatch | NoMatch | None:
    """matmul(softmax(...), v); None when the matmul does not consume a softmax at all."""
    softmax = producer(output_matmul.operands[0], *SOFTMAX_OPS)
    if softmax is None:
        return None
    scores = softmax.operands[0]
    info = tensor_info(scores)
    if info is None or not is_last_axis(softmax.operands[1], info.rank):
        return NoMatch("softmax is not over the last axis")
    if softmax.name == "torch.aten._softmax" and constant_or(softmax.operands[2], None) is not False:
        return NoMatch("softmax with half_to_float")
    if softmax.name == "torch.aten.softmax.int" and constant_or(softmax.operands[2], 0) is not None:
        return NoMatch("softmax with a dtype argument")
    if not only_use(softmax.result):
        return NoMatch("softmax result has other uses")
    matched = [output_matmul, softmax]

    mask = None
    add = producer(scores, "torch.aten.add.Tensor")
    if add is not None:
        if constant_or(add.operands[2], None) != 1:
            return NoMatch("mask add with alpha != 1")
        if not only_use(add.result):
            return NoMatch("masked scores have other uses")
        lhs, rhs = add.operands[0], add.operands[1]
        scores_side = lhs if _leads_to_qk(lhs) else rhs if _leads_to_qk(rhs) else None
        if scores_side is None:
            return NoMatch("softmax input is an add without a q·kᵀ operand")
        mask = rhs if scores_side == lhs else lhs
        scores = scores_side
        matched.append(add)

    scale = 1.0
    scale_op = producer(scores, "torch.aten.mul.Scalar", "torch.aten.div.Scalar")
    if scale_op is not None:
        factor = constant_or(scale_op.operands[1], None)
        if not isinstance(factor, (int, float)) or isinstance(factor, bool) or factor == 0:
            return NoMatch("scores scaled by a non-constant")
        if not only_use(scale_op.result):
            return NoMatch("scaled scores have other uses")
        scale = float(factor) if scale_op.name.endswith("mul.Scalar") else 1.0 / float(factor)
        scores = scale_op.operands[0]
        matched.append(scale_op)

    qk = producer(scores, "torch.aten.matmul")
    if qk is None:
        return NoMatch("softmax input is not a scaled q·kᵀ matmul")
    if not only_use(qk.result):
        return NoMatch("q·kᵀ scores have other uses")
    transpose = producer(qk.operands[1], "torch.aten.transpose.int", "torch.aten.permute")
    if transpose is None or not swaps_last_two(transpose):
        return NoMatch("right operand of q·kᵀ is not a transpose of the last two axes")
    matched.append(qk)
    if only_use(transpose.result):
        matched.append(transpose)
    return AttentionMatch(output_matmul, qk.operands[0], transpose.operands[0],
                          output_matmul.operands[1], mask, scale, False, "softmax",
                          tuple(matched))


def _leads_to_qk(value: ir.Value) -> bool:
    scaled = producer(value, "torch.aten.mul.Scalar", "torch.aten.div.Scalar")
    return producer(scaled.operands[0] if scaled else value, "torch.aten.matmul") is not None


def simplify_constant_mask(match: AttentionMatch) -> AttentionMatch:
    """A constant mask that masks nothing is dropped; a causal one becomes causal=true."""
    if match.mask is None:
        return match
    q, k = tensor_info(match.query), tensor_info(match.key)
    kind = classify_mask(literal_array(match.mask), q.shape[-2], k.shape[-2])
    if kind == "none":
        return dataclasses.replace(match, mask=None)
    if kind == "causal":
        return dataclasses.replace(match, mask=None, causal=True)
    return match


def rewrite_attention(match: AttentionMatch) -> ir.Operation:
    with ir.InsertionPoint(match.root), match.root.location:
        new = AttentionOp(match.query, match.key, match.value,
                          scale=ir.FloatAttr.get_f64(match.scale),
                          causal=bool_attr(match.causal),
                          result=match.root.results[0].type, mask=match.mask)
    match.root.results[0].replace_all_uses_with(new.result)
    erase_if_dead(list(match.matched_ops))
    return new.operation


@dataclass
class RaiseAttention(KilnPass):
    name = "kiln-raise-attention"
    summary = "Raise SDPA and matmul-softmax-matmul attention to kiln.attention"

    def __post_init__(self):
        self.unmatched: list[tuple[str, str]] = []  # (reason, source location)

    def apply(self, module: ir.Operation) -> None:
        # Pre-order: a rewrite erases only producers of its root, which were visited already.
        for op in collect_ops(module, (SDPA_OP, "torch.aten.matmul")):
            match = match_sdpa(op) if op.name == SDPA_OP else match_softmax_attention(op)
            if match is None:
                continue
            if isinstance(match, NoMatch):
                self.unmatched.append((match.reason, source_location(op)))
                continue
            match = simplify_constant_mask(match)
            detail = f"scale={match.scale:.6g}" + (", causal" if match.causal else "") + \
                (", mask" if match.mask is not None else "")
            self.record(f"attention/{match.form}", detail, op)
            rewrite_attention(match)
