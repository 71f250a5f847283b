"""kiln-raise-attention: attention written in model code → one `kiln.attention` op.

Before → after:
    torch.aten.scaled_dot_product_attention(q, k, v, mask, 0.0, causal, scale, gqa)
    matmul(softmax(S), v), S built from matmul(q, kᵀ) by any nesting of
        scale      mul.Scalar / div.Scalar on the scores, on q, or on k (d^-0.25 each)
        additive   add.Tensor(S, bias_or_mask), several terms allowed (T5: bias + mask)
        boolean    where(keep, S, fill) / where(drop, fill, S) / masked_fill(S, drop, fill),
                   fill <= -1e4 (-inf, finfo.min, -1e9, -1e4 as models write it)
        dtype      cast to f32 before the softmax and back after (f32 softmax in f16 models)
    and matmul or bmm (3-D [B·H, S, D] views) for both products
        →  kiln.attention(q, k, v[, mask]) {scale, causal}
K and V repeated for grouped-query attention (`repeat_kv`: unsqueeze → expand → reshape) are
unwrapped: kiln.attention keeps the kv heads. A constant mask term is read: one that masks
nothing is dropped, one that masks exactly the future becomes `causal = true`.
Guards: dropout 0, constant scale, last-axis softmax, fills <= -1e4, every intermediate
single-use; a softmax that fails one is left alone and reported with the reason. Needs
kiln-drop-identities first (dropout/clone between softmax and matmul).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

from kiln.bindings import ir
from kiln.dialects import AttentionOp, attention_type_problem, bool_attr
from kiln.passes.base import KilnPass, collect_ops, erase_if_dead, source_location
from kiln.passes.matching import (MASKED_SCORE_BOUND, NoMatch, classify_mask, is_last_axis,
                                  literal_array, only_use, producer, swaps_last_two,
                                  unwrap_prefix_slices)
from kiln.torch_ir import TensorInfo, TorchBuilder, broadcast_shapes, constant_or, tensor_info

SOFTMAX_OPS = ("torch.aten._softmax", "torch.aten.softmax.int")
MATMUL_OPS = ("torch.aten.matmul", "torch.aten.bmm")
SCALE_OPS = ("torch.aten.mul.Scalar", "torch.aten.div.Scalar")
CAST_OPS = ("torch.aten.to.dtype", "torch.aten._to_copy")
SDPA_OP = "torch.aten.scaled_dot_product_attention"
WHERE_OPS = ("torch.aten.where.self", "torch.aten.where.ScalarOther",
             "torch.aten.where.ScalarSelf")


@dataclass(frozen=True)
class MaskTerm:
    value: ir.Value
    kind: str  # "add" (additive), "keep" (bool, true = attend), "drop" (bool, true = masked)


@dataclass(frozen=True)
class AttentionMatch:
    root: ir.Operation
    query: ir.Value
    key: ir.Value
    value: ir.Value
    masks: tuple  # MaskTerm, ...
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
    if scale_value is None:
        head_dim = tensor_info(q).shape[-1]
        if head_dim is None:
            return NoMatch("SDPA default scale needs a static head dim")
        scale_value = 1.0 / math.sqrt(head_dim)
    masks = ()
    if constant_or(mask, LookupError) is not None:
        kind = "keep" if tensor_info(mask).dtype == "i1" else "add"
        masks = (MaskTerm(mask, kind),)
    if causal and masks:
        return NoMatch("SDPA with both is_causal and attn_mask")
    k, v = unwrap_repeat_kv_pair(k, v)
    return AttentionMatch(op, q, k, v, masks, float(scale_value), causal, "sdpa", (op,))


def _scale_factor(op: ir.Operation) -> Optional[float]:
    factor = constant_or(op.operands[1], None)
    if not isinstance(factor, (int, float)) or isinstance(factor, bool) or factor == 0:
        return None
    return float(factor) if op.name.endswith("mul.Scalar") else 1.0 / float(factor)


def _fill_is_masking(value: ir.Value) -> bool:
    fill = constant_or(value, None)
    if fill is None:
        array = literal_array(value)
        fill = float(array.max()) if array is not None and array.size else None
    return isinstance(fill, (int, float)) and fill <= MASKED_SCORE_BOUND


def leads_to_scores(value: ir.Value, depth: int = 0) -> bool:
    """Whether `value` is q·kᵀ under scales, additive terms and boolean fills."""
    if depth > 16:
        return False
    if producer(value, *MATMUL_OPS) is not None:
        return True
    op = producer(value, *SCALE_OPS, "torch.aten.add.Tensor", *WHERE_OPS,
                  "torch.aten.masked_fill.Scalar", "torch.aten.masked_fill.Tensor")
    if op is None:
        return False
    candidates = {"torch.aten.add.Tensor": op.operands[:2],
                  "torch.aten.where.self": op.operands[1:3],
                  "torch.aten.where.ScalarOther": op.operands[1:2],
                  "torch.aten.where.ScalarSelf": op.operands[2:3]}.get(op.name, op.operands[:1])
    return any(leads_to_scores(c, depth + 1) for c in candidates)


@dataclass(frozen=True)
class PeeledScores:
    """The softmax input peeled down to q·kᵀ: the matmul, the scale applied to its result and
    the mask terms met on the way (outermost first)."""

    qk_matmul: ir.Operation
    scale: float
    masks: tuple  # MaskTerm, ...


def _peel_scores(scores: ir.Value, matched: list) -> PeeledScores | NoMatch:
    """Strip scales, additive terms and boolean fills down to q·kᵀ."""
    scale, terms = 1.0, []
    while True:
        if not only_use(scores) and matched:
            return NoMatch("an intermediate of the attention scores has other uses")
        op = producer(scores, *MATMUL_OPS)
        if op is not None:
            return PeeledScores(op, scale, tuple(terms))
        op = producer(scores, *SCALE_OPS)
        if op is not None:
            factor = _scale_factor(op)
            if factor is None:
                return NoMatch("scores scaled by a non-constant")
            scale *= factor
            scores = op.operands[0]
        elif (op := producer(scores, "torch.aten.add.Tensor")) is not None:
            if constant_or(op.operands[2], None) != 1:
                return NoMatch("mask add with alpha != 1")
            lhs, rhs = op.operands[0], op.operands[1]
            if leads_to_scores(lhs):
                scores, term = lhs, rhs
            elif leads_to_scores(rhs):
                scores, term = rhs, lhs
            else:
                return NoMatch("softmax input is an add without a q·kᵀ operand")
            if not tensor_info(term).is_float:
                # torch adds a bool/int tensor as numbers (+1 where true): not a keep-mask.
                return NoMatch(f"additive mask of non-float dtype {tensor_info(term).dtype}")
            if scale != 1.0:
                return NoMatch("a mask or bias is added before the scores are scaled")
            terms.append(MaskTerm(term, "add"))
        elif (op := producer(scores, *WHERE_OPS)) is not None:
            # where(keep, S, fill) keeps where true; where(drop, fill, S) is masked_fill's
            # decomposition (masked_fill(S, drop, -inf) → where.self(drop, -inf, S)).
            cond, on_true, on_false = op.operands[:3]
            if op.name != "torch.aten.where.ScalarSelf" and leads_to_scores(on_true):
                kind, fill, scores = "keep", on_false, on_true
            elif op.name != "torch.aten.where.ScalarOther" and leads_to_scores(on_false):
                kind, fill, scores = "drop", on_true, on_false
            else:
                return NoMatch("where() with no q·kᵀ branch")
            if not _fill_is_masking(fill):
                return NoMatch("where() fill is not a large negative constant")
            if scale != 1.0:
                return NoMatch("a mask is applied before the scores are scaled")
            terms.append(MaskTerm(cond, kind))
        elif (op := producer(scores, "torch.aten.masked_fill.Scalar",
                             "torch.aten.masked_fill.Tensor")) is not None:
            if not _fill_is_masking(op.operands[2]):
                return NoMatch("masked_fill value is not a large negative constant")
            if scale != 1.0:
                return NoMatch("a mask is applied before the scores are scaled")
            terms.append(MaskTerm(op.operands[1], "drop"))
            scores = op.operands[0]
        else:
            return NoMatch("softmax input is not built from a q·kᵀ matmul")
        matched.append(op)


def _peel_scale(value: ir.Value, matched: list) -> tuple[ir.Value, float]:
    """q·c or k·c before the product (scale applied to q, or d^-0.25 to both q and k)."""
    op = producer(value, *SCALE_OPS)
    if op is not None and only_use(value) and _scale_factor(op) is not None:
        matched.append(op)
        return op.operands[0], _scale_factor(op)
    return value, 1.0


def match_softmax_attention(output_matmul: ir.Operation) -> AttentionMatch | NoMatch | None:
    """matmul(softmax(...), v); None when the matmul does not consume a softmax at all."""
    matched = [output_matmul]
    probs = output_matmul.operands[0]
    downcast = producer(probs, *CAST_OPS)
    if downcast is not None and producer(downcast.operands[0], *SOFTMAX_OPS) is not None:
        if not only_use(probs):
            return NoMatch("softmax result has other uses")
        matched.append(downcast)
        probs = downcast.operands[0]
    softmax = producer(probs, *SOFTMAX_OPS)
    if softmax is None:
        return None
    scores = softmax.operands[0]
    info = tensor_info(scores)
    if info is None or not is_last_axis(softmax.operands[1], info.rank):
        return NoMatch("softmax is not over the last axis")
    if softmax.name == "torch.aten._softmax" and constant_or(softmax.operands[2], None) is not False:
        return NoMatch("softmax with half_to_float")
    if not only_use(softmax.result):
        return NoMatch("softmax result has other uses")
    matched.append(softmax)
    upcast = producer(scores, *CAST_OPS)
    if upcast is not None and only_use(scores):
        matched.append(upcast)
        scores = upcast.operands[0]
    if not only_use(scores):
        return NoMatch("softmax input has other uses")

    peeled = _peel_scores(scores, matched)
    if isinstance(peeled, NoMatch):
        return peeled
    qk = peeled.qk_matmul
    if not only_use(qk.result):
        return NoMatch("q·kᵀ scores have other uses")
    matched.append(qk)
    query, q_scale = _peel_scale(qk.operands[0], matched)
    key_t, kt_scale = _peel_scale(qk.operands[1], matched)
    transpose = producer(key_t, "torch.aten.transpose.int", "torch.aten.permute")
    if transpose is None or not swaps_last_two(transpose):
        return NoMatch("right operand of q·kᵀ is not a transpose of the last two axes")
    if only_use(transpose.result):
        matched.append(transpose)
    key, k_scale = _peel_scale(transpose.operands[0], matched)
    value = output_matmul.operands[1]
    if tensor_info(query).dtype != tensor_info(key).dtype or \
            tensor_info(key).dtype != tensor_info(value).dtype:
        return NoMatch("q, k and v dtypes differ")
    key, value = unwrap_repeat_kv_pair(key, value)
    return AttentionMatch(output_matmul, query, key, value,
                          tuple(reversed(peeled.masks)),
                          peeled.scale * q_scale * kt_scale * k_scale, False,
                          "softmax", tuple(matched))


def unwrap_repeat_kv_pair(key: ir.Value, value: ir.Value) -> tuple[ir.Value, ir.Value]:
    """Both K and V unwrapped to the same kv heads, or both left as they are."""
    k, v = unwrap_repeat_kv(key), unwrap_repeat_kv(value)
    if (k is key) != (v is value) or tensor_info(k).shape[:-2] != tensor_info(v).shape[:-2]:
        return key, value
    return k, v


def unwrap_repeat_kv(value: ir.Value) -> ir.Value:
    """[B, Hkv, S, D] repeated to [B, Hkv·G, S, D] by unsqueeze(2) → expand → reshape/view,
    or by repeat_interleave(G, dim=1): return the [B, Hkv, S, D] source (kiln.attention takes
    fewer kv heads than query heads)."""
    reshape = producer(value, "torch.aten.reshape", "torch.aten.view",
                       "torch.aten._unsafe_view")
    if reshape is not None:
        expand = producer(reshape.operands[0], "torch.aten.expand")
        unsqueeze = producer(expand.operands[0], "torch.aten.unsqueeze") if expand else None
        if unsqueeze is not None and constant_or(unsqueeze.operands[1], None) in (2, -3):
            source = unsqueeze.operands[0]
            src, out = tensor_info(source), tensor_info(value)
            if src and out and src.rank == 4 and out.rank == 4 and src.shape[0] == out.shape[0] \
                    and src.shape[2:] == out.shape[2:] and None not in (src.shape[1],
                                                                        out.shape[1]) \
                    and out.shape[1] % src.shape[1] == 0:
                return source
    interleave = producer(value, "torch.aten.repeat_interleave.self_int")
    if interleave is not None and tensor_info(value).rank == 4 and \
            constant_or(interleave.operands[2], None) in (1, -3):
        return interleave.operands[0]
    return value


def simplify_constant_masks(match: AttentionMatch) -> AttentionMatch | NoMatch:
    """Drop constant mask terms that mask nothing; turn a causal one into causal=true."""
    q, k = tensor_info(match.query), tensor_info(match.key)
    kept, causal = [], match.causal
    for term in match.masks:
        source, sliced = unwrap_prefix_slices(term.value)
        array = literal_array(source)
        if array is not None and term.kind == "drop":
            array = ~array.astype(bool)
        # A prefix slice of a constant mask is judged on the whole constant (its own lengths).
        lengths = array.shape[-2:] if sliced and array is not None and array.ndim >= 2 \
            else (q.shape[-2], k.shape[-2])
        kind = classify_mask(array, *lengths)
        if kind == "none":
            continue
        if kind == "causal" and not causal:
            causal = True
            continue
        kept.append(term)
    if sum(1 for t in kept if t.kind != "add") > 1 or (
            any(t.kind != "add" for t in kept) and any(t.kind == "add" for t in kept)):
        return NoMatch("mixed boolean and additive masks")
    return dataclasses.replace(match, masks=tuple(kept), causal=causal)


def _combined_mask_info(match: AttentionMatch) -> Optional[TensorInfo]:
    """The type `_combined_mask` will give the mask operand."""
    if not match.masks:
        return None
    if match.masks[0].kind != "add":
        return tensor_info(match.masks[0].value)
    infos = [tensor_info(t.value) for t in match.masks]
    shape = infos[0].shape
    for info in infos[1:]:
        shape = broadcast_shapes(shape, info.shape)
    dtypes = {i.dtype for i in infos}
    return TensorInfo(shape, dtypes.pop() if len(dtypes) == 1 else "f32")


def _combined_mask(match: AttentionMatch) -> Optional[ir.Value]:
    """One kiln mask operand from the terms: a bool keep-mask or a sum of additive terms."""
    if not match.masks:
        return None
    b = TorchBuilder(match.root.location)
    first = match.masks[0]
    if first.kind == "keep":
        return first.value
    if first.kind == "drop":
        return b.aten("logical_not", tensor_info(first.value), first.value)
    total = first.value
    for term in match.masks[1:]:
        a, c = tensor_info(total), tensor_info(term.value)
        shape = broadcast_shapes(a.shape, c.shape)
        dtype = a.dtype if a.dtype == c.dtype else "f32"
        total = b.aten("add.Tensor", TensorInfo(shape, dtype), total, term.value, b.int(1))
    return total


def rewrite_attention(match: AttentionMatch) -> ir.Operation:
    with ir.InsertionPoint(match.root), match.root.location:
        mask = _combined_mask(match)
        new = AttentionOp(match.query, match.key, match.value,
                          scale=ir.FloatAttr.get_f64(match.scale),
                          causal=bool_attr(match.causal),
                          result=match.root.results[0].type, mask=mask)
    match.root.results[0].replace_all_uses_with(new.result)
    erase_if_dead(list(match.matched_ops))
    return new.operation


@dataclass
class RaiseAttention(KilnPass):
    name = "kiln-raise-attention"
    summary = "Raise SDPA and every softmax(q·kᵀ)·v form to kiln.attention"

    def __post_init__(self):
        self.unmatched: list[tuple[str, str]] = []  # (reason, source location)

    def apply(self, module: ir.Operation) -> None:
        # Pre-order: a rewrite erases only producers of its root, which were visited already.
        for op in collect_ops(module, (SDPA_OP,) + MATMUL_OPS):
            match = match_sdpa(op) if op.name == SDPA_OP else match_softmax_attention(op)
            if match is None:
                continue
            if not isinstance(match, NoMatch):
                match = simplify_constant_masks(match)
            if not isinstance(match, NoMatch):
                problem = attention_type_problem(
                    tensor_info(match.query), tensor_info(match.key), tensor_info(match.value),
                    tensor_info(match.root.results[0]), _combined_mask_info(match))
                if problem:
                    match = NoMatch(f"operands kiln.attention cannot take: {problem}")
            if isinstance(match, NoMatch):
                self.unmatched.append((match.reason, source_location(op)))
                continue
            grouped = tensor_info(match.key).shape[-3:-2] != tensor_info(match.query).shape[-3:-2]
            detail = f"scale={match.scale:.6g}" + (", causal" if match.causal else "") + \
                (f", mask×{len(match.masks)}" if match.masks else "") + \
                (", grouped kv" if grouped and tensor_info(match.query).rank >= 3 else "")
            self.record(f"attention/{match.form}", detail, op)
            rewrite_attention(match)
        reported = {where for _, where in self.unmatched}
        for softmax in collect_ops(module, SOFTMAX_OPS):
            where = source_location(softmax)
            if where not in reported:
                self.unmatched.append(("softmax result does not feed a matmul (not attention, "
                                       "or attention written another way)", where))
