"""kiln-merge-linears: the Q/K/V projections of an attention (separate `kiln.linear`s that read
one input) → one `kiln.linear` over their weights concatenated, and a slice of it per original.

Before → after:
    %q = kiln.linear(%x, %Wq, %bq)   %k = kiln.linear(%x, %Wk, %bk)   %v = kiln.linear(%x, %Wv, %bv)
→
    %W = torch.aten.cat([%Wq, %Wk, %Wv], out-features axis)   (%b likewise)
    %qkv = kiln.linear(%x, %W, %b)
    %q = torch.aten.slice.Tensor(%qkv, -1, 0, Nq, 1)  ...

Weights and biases must be literals: the `cat` is of constants only, and IREE's const-eval
computes it at compile time, so the artifact holds the concatenated weights and no copy runs
per call (measured: docs/decisions.md). Merged together: linears with the same input value,
weight layout, activation, dtype and in-features, all with a bias or all without, in one block,
whose results are each used only by an attention head split (view [..., H, D] → permute to
heads-first, with one D for the group). Run kiln-hoist-head-split after it: it turns those
slices into slices of whole heads, which IREE reads in place; a last-axis slice that is
reshaped costs a copy dispatch, which is why results used any other way are not merged.

Leaves alone: a lone projection, non-constant weights, different activations (Llama's gate/up:
kiln-raise-swiglu merges those), projections in different blocks, dynamic shapes (their slices
could not become head slices: see passes.matching.match_head_split).
Runs after kiln-raise-linear.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from kiln.bindings import ir
from kiln.dialects import LinearOp
from kiln.passes.base import KilnPass, collect_ops, erase_if_dead
from kiln.passes.matching import match_head_split, producer
from kiln.torch_ir import TensorInfo, TorchBuilder, tensor_info, vtensor_type

LITERAL = "torch.vtensor.literal"


@dataclass(frozen=True)
class LinearParts:
    op: ir.Operation
    input: ir.Value
    weight: ir.Value
    bias: Optional[ir.Value]
    activation: str
    weight_layout: str
    out_features: int


def linear_parts(op: ir.Operation) -> LinearParts:
    segments = list(ir.DenseI32ArrayAttr(op.attributes["operandSegmentSizes"]))
    bias = op.operands[2] if segments[2] else None
    layout = ir.StringAttr(op.attributes["weight_layout"]).value
    weight = tensor_info(op.operands[1])
    return LinearParts(op, op.operands[0], op.operands[1], bias,
                       ir.StringAttr(op.attributes["activation"]).value, layout,
                       weight.shape[0] if layout == "out_in" else weight.shape[1])


def _constant(value: Optional[ir.Value]) -> bool:
    return value is None or producer(value, LITERAL) is not None


def merge_key(parts: LinearParts) -> Optional[tuple]:
    """Linears with equal keys can be merged; None for one that cannot take part."""
    if not (_constant(parts.weight) and _constant(parts.bias)) or parts.out_features is None:
        return None
    split = match_head_split(parts.op.results[0])
    if not split:
        return None
    weight = tensor_info(parts.weight)
    in_features = weight.shape[1] if parts.weight_layout == "out_in" else weight.shape[0]
    return (parts.input, parts.weight_layout, parts.activation, weight.dtype, in_features,
            parts.bias is not None, parts.op.block, split.head_dim)


def concat_parameters(group: list[LinearParts],
                      before: ir.Operation) -> tuple[ir.Value, Optional[ir.Value]]:
    """(weight, bias) of the group's linears concatenated on the out-features axis, built
    before `before` (the literals they read move above it when defined later)."""
    for parts in group:
        for constant in (parts.weight, parts.bias):
            op = producer(constant, LITERAL) if constant is not None else None
            if op is not None and op.block == before.block and not op.is_before_in_block(before):
                op.move_before(before)  # a literal has no operands: it can move up freely
    total = sum(p.out_features for p in group)
    weight = tensor_info(group[0].weight)
    axis = 0 if group[0].weight_layout == "out_in" else 1
    weight_shape = list(weight.shape)
    weight_shape[axis] = total
    with ir.InsertionPoint(before), before.location:
        b = TorchBuilder(before.location)
        weights = b.cat([p.weight for p in group], axis,
                        TensorInfo(tuple(weight_shape), weight.dtype))
        bias = None
        if group[0].bias is not None:
            bias = b.cat([p.bias for p in group], 0,
                         TensorInfo((total,), tensor_info(group[0].bias).dtype))
    return weights, bias


def merge(group: list[LinearParts]) -> ir.Operation:
    """Build the merged linear before the group's first op; returns it."""
    first = group[0].op
    weights, bias = concat_parameters(group, first)
    out = tensor_info(first.results[0])
    total = sum(p.out_features for p in group)
    with ir.InsertionPoint(first), first.location:
        b = TorchBuilder(first.location)
        merged = LinearOp(group[0].input, weights,
                          activation=ir.StringAttr.get(group[0].activation),
                          weight_layout=ir.StringAttr.get(group[0].weight_layout),
                          result=vtensor_type(out.shape[:-1] + (total,), out.dtype),
                          bias=bias)
        offset = 0
        for parts in group:
            piece = b.slice(merged.result, -1, offset, offset + parts.out_features,
                            tensor_info(parts.op.results[0]))
            parts.op.results[0].replace_all_uses_with(piece)
            offset += parts.out_features
    return merged


@dataclass
class MergeLinears(KilnPass):
    name = "kiln-merge-linears"
    summary = "Merge Q/K/V projections that read one input into one kiln.linear (+ slices)"

    def apply(self, module: ir.Operation) -> None:
        groups: dict[tuple, list[LinearParts]] = {}
        for op in collect_ops(module, "kiln.linear"):
            parts = linear_parts(op)
            key = merge_key(parts)
            if key is not None:
                groups.setdefault(key, []).append(parts)
        for group in groups.values():
            if len(group) < 2:
                continue
            sizes = "+".join(str(p.out_features) for p in group)
            self.record("merge/linears", f"{len(group)} linears, out features {sizes}",
                        group[0].op)
            merge(group)
            erase_if_dead([p.op for p in group])
