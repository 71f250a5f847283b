"""kiln-raise-swiglu: the gated MLP SiLU(x·Wgᵀ) · (x·Wuᵀ) → one `kiln.linear` with the gated
activation "swiglu" over the gate and up weights concatenated.

Before → after (the product in either order):
    %g = kiln.linear(%x, %Wg[, %bg]) {activation = "silu"}      (Llama, Mistral, Qwen: after
    %u = kiln.linear(%x, %Wu[, %bu]) {activation = "none"}       kiln-raise-linear folded the
    %h = torch.aten.mul.Tensor %g, %u                             SiLU into gate_proj)
  → %W = torch.aten.cat([%Wg, %Wu], out-features axis)   (%b likewise)
    %h = kiln.linear(%x, %W[, %b]) {activation = "swiglu"}
and one projection already fused, split in halves (Phi-3's gate_up_proj + chunk):
    %y = kiln.linear(%x, %W) {activation = "none"}                 [..., 2N]
    %h = silu(%y[..., :N]) · %y[..., N:]      (slices, or split + ListUnpack, of the last axis)
  → %h = kiln.linear(%x, %W) {activation = "swiglu"}

Weights (and biases) of the two-linear form must be literals: the cat is of constants, which
IREE's const-eval computes at compile time (as for kiln-merge-linears). One op gives a kernel
library one GEMM with a gated epilogue; on the CPU it lowers to one matmul + one elementwise
dispatch, the same count and time as the two linears (docs/decisions.md).
Leaves alone: gate or up with other uses, other activations (GELU-gated MLPs), different
inputs, layouts or dtypes, non-constant weights in the two-linear form.
Runs after kiln-raise-linear.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from kiln.bindings import ir
from kiln.dialects import LinearOp
from kiln.passes.base import KilnPass, collect_ops, erase_if_dead
from kiln.passes.matching import only_use, producer
from kiln.passes.raising.kiln_hoist_head_split import pieces_of_slice, pieces_of_split
from kiln.passes.raising.kiln_merge_linears import (LITERAL, LinearParts, concat_parameters,
                                                    linear_parts)
from kiln.torch_ir import tensor_info

SPLITS = ("torch.aten.split_with_sizes", "torch.aten.split.Tensor")


@dataclass(frozen=True)
class SwigluMatch:
    root: ir.Operation  # the mul
    form: str  # "gate+up" | "halves"
    gate: Optional[LinearParts]  # gate+up: the two linears
    up: Optional[LinearParts]
    fused: Optional[LinearParts]  # halves: the projection of both
    matched_ops: tuple


def _linear(value: ir.Value) -> Optional[LinearParts]:
    op = producer(value, "kiln.linear")
    return linear_parts(op) if op is not None and only_use(value) else None


def _constant(value: Optional[ir.Value]) -> bool:
    return value is None or producer(value, LITERAL) is not None


def match_gate_up(mul: ir.Operation) -> Optional[SwigluMatch]:
    a, b = _linear(mul.operands[0]), _linear(mul.operands[1])
    if a is None or b is None:
        return None
    for gate, up in ((a, b), (b, a)):
        if gate.activation != "silu" or up.activation != "none":
            continue
        same = gate.input == up.input and gate.weight_layout == up.weight_layout and \
            tensor_info(gate.weight) == tensor_info(up.weight) and \
            (gate.bias is None) == (up.bias is None)
        if same and all(_constant(v) for v in (gate.weight, up.weight, gate.bias, up.bias)):
            return SwigluMatch(mul, "gate+up", gate, up, None, (mul, gate.op, up.op))
    return None


@dataclass(frozen=True)
class SlicedPiece:
    """`value` as a single-use last-axis slice or unpacked split piece of `source`; `ops`: the
    slice, or the unpack and its split (the op that reads `source` last)."""

    source: ir.Value
    offset: int
    size: int
    ops: tuple


def _sliced_piece(value: ir.Value) -> Optional[SlicedPiece]:
    if not only_use(value):
        return None
    op = producer(value, "torch.aten.slice.Tensor", "torch.prim.ListUnpack")
    if op is None:
        return None
    if op.name == "torch.prim.ListUnpack":
        split = producer(op.operands[0], *SPLITS)
        pieces = pieces_of_split(split) if split is not None else []
        ops = (op, split)
    else:
        pieces, ops = pieces_of_slice(op), (op,)
    piece = next((p for p in pieces if p.value == value), None)
    return SlicedPiece(piece.source, piece.offset, piece.size, ops) if piece is not None \
        else None


def match_halves(mul: ir.Operation) -> Optional[SwigluMatch]:
    for activated, other in ((mul.operands[0], mul.operands[1]),
                             (mul.operands[1], mul.operands[0])):
        silu = producer(activated, "torch.aten.silu")
        if silu is None or not only_use(activated):
            continue
        gate, up = _sliced_piece(silu.operands[0]), _sliced_piece(other)
        if gate is None or up is None or gate.source != up.source:
            continue
        source = gate.source
        fused = producer(source, "kiln.linear")
        if fused is None:
            continue
        parts = linear_parts(fused)
        if parts.out_features is None or parts.out_features % 2:
            continue
        half = parts.out_features // 2
        users = {use.owner.operation for use in source.uses}
        if parts.activation != "none" or \
                ((gate.offset, gate.size), (up.offset, up.size)) != ((0, half), (half, half)) or \
                not users <= {gate.ops[-1], up.ops[-1]}:
            continue
        ops = [mul, silu, *gate.ops, *(op for op in up.ops if op not in gate.ops), fused]
        return SwigluMatch(mul, "halves", None, None, parts, tuple(ops))
    return None


@dataclass
class RaiseSwiglu(KilnPass):
    name = "kiln-raise-swiglu"
    summary = "Raise SiLU(gate(x))·up(x) to one kiln.linear with the gated activation swiglu"

    def apply(self, module: ir.Operation) -> None:
        for op in collect_ops(module, "torch.aten.mul.Tensor"):
            match = match_gate_up(op) or match_halves(op)
            if match is None:
                continue
            parts = match.fused or match.gate
            self.record(f"swiglu/{match.form}", f"out features {2 * parts.out_features}"
                        if match.form == "gate+up" else f"out features {parts.out_features}",
                        op)
            if match.form == "gate+up":
                weight, bias = concat_parameters([match.gate, match.up], op)
            else:
                weight, bias = parts.weight, parts.bias
            with ir.InsertionPoint(op), op.location:
                new = LinearOp(parts.input, weight, activation=ir.StringAttr.get("swiglu"),
                               weight_layout=ir.StringAttr.get(parts.weight_layout),
                               result=op.results[0].type, bias=bias)
            op.results[0].replace_all_uses_with(new.result)
            erase_if_dead(list(match.matched_ops))
