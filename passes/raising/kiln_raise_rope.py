"""kiln-raise-rope: rotary position embeddings written out in arithmetic → `kiln.rope`.

Before → after (products and the sum in either operand order):
    x · cos + cat(-x[..., D/2:], x[..., :D/2]) · sin                   (HF Llama rotate_half)
                                              → kiln.rope(x, cos, sin) {interleaved = false}
    x · cos + flatten(stack(-x[..., 1::2], x[..., ::2]), -2) · sin     (GPT-J rotate_every_two;
      the stack arrives as cat of unsqueezes, the flatten as a view)
                                              → kiln.rope(x, cos, sin) {interleaved = true}
cos and sin are any values (constant tables, or computed from position ids) of x's dtype with one
shape that broadcasts to x and ends in D. The rotate's ops must have no other use; x may.
Leaves alone: halves of other sizes or swapped signs (cat(x2, -x1) is a rotation the other way),
slices of another axis, products that broadcast x to a larger shape.
Needs nothing before it; kiln-merge-ropes later merges the q and k rotations of one projection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from kiln.bindings import ir
from kiln.dialects import RopeOp, bool_attr
from kiln.passes.base import KilnPass, collect_ops, erase_if_dead
from kiln.passes.matching import only_use, producer
from kiln.torch_ir import constant_or, tensor_info

INT64_MAX = (1 << 63) - 1


@dataclass(frozen=True)
class RopeMatch:
    root: ir.Operation
    input: ir.Value
    cos: ir.Value
    sin: ir.Value
    interleaved: bool
    matched_ops: tuple


def _is_last(dim, rank: int) -> bool:
    return isinstance(dim, int) and not isinstance(dim, bool) and dim % rank == rank - 1


@dataclass(frozen=True)
class LastAxisSlice:
    """A single-use slice of `source`'s last axis, bounds constant (end clamped to the axis)."""

    source: ir.Value
    start: int
    end: int
    step: int
    op: ir.Operation

    @property
    def bounds(self) -> tuple[int, int, int]:
        return self.start, self.end, self.step


@dataclass(frozen=True)
class Negation:
    operand: ir.Value
    op: ir.Operation


@dataclass(frozen=True)
class CatOfTwo:
    """A single-use cat of two tensors on the last axis; `ops`: the cat and its list."""

    first: ir.Value
    second: ir.Value
    ops: tuple


@dataclass(frozen=True)
class Rotation:
    """A rotate-half or interleaved rotation of `input`; `ops`: the ops it is built of."""

    input: ir.Value
    ops: tuple


@dataclass(frozen=True)
class Product:
    lhs: ir.Value
    rhs: ir.Value
    op: ir.Operation


def _last_axis_slice(value: ir.Value) -> Optional[LastAxisSlice]:
    op = producer(value, "torch.aten.slice.Tensor")
    if op is None or not only_use(value):
        return None
    source = op.operands[0]
    info = tensor_info(source)
    start, end, step = (constant_or(op.operands[i], None) for i in (2, 3, 4))
    if info is None or info.shape[-1] is None or not _is_last(constant_or(op.operands[1], None),
                                                              info.rank):
        return None
    if not all(isinstance(v, int) for v in (start, end, step)):
        return None
    return LastAxisSlice(source, start, min(end, info.shape[-1]), step, op)


def _negated(value: ir.Value) -> Optional[Negation]:
    op = producer(value, "torch.aten.neg")
    return Negation(op.operands[0], op) if op is not None and only_use(value) else None


def _cat_of_two(value: ir.Value, rank: int) -> Optional[CatOfTwo]:
    cat = producer(value, "torch.aten.cat")
    if cat is None or not only_use(value) or not _is_last(constant_or(cat.operands[1], None),
                                                          rank):
        return None
    items = producer(cat.operands[0], "torch.prim.ListConstruct")
    if items is None or len(items.operands) != 2 or not only_use(items.results[0]):
        return None
    return CatOfTwo(items.operands[0], items.operands[1], (cat, items))


def match_rotate_half(value: ir.Value) -> Optional[Rotation]:
    """x for cat(-x[..., D/2:], x[..., :D/2]) on the last axis."""
    info = tensor_info(value)
    if info is None:
        return None
    parts = _cat_of_two(value, info.rank)
    if parts is None:
        return None
    negated = _negated(parts.first)
    high = _last_axis_slice(negated.operand) if negated else None
    low = _last_axis_slice(parts.second)
    if high is None or low is None or high.source != low.source:
        return None
    x, depth = high.source, tensor_info(high.source).shape[-1]
    half = depth // 2
    if depth % 2 or (high.bounds, low.bounds) != ((half, depth, 1), (0, half, 1)):
        return None
    return Rotation(x, parts.ops + (negated.op, high.op, low.op))


def match_rotate_interleaved(value: ir.Value) -> Optional[Rotation]:
    """x for view(cat(unsqueeze(-x[..., 1::2], -1), unsqueeze(x[..., ::2], -1), -1), x.shape)."""
    view = producer(value, "torch.aten.view", "torch.aten.reshape")
    if view is None or not only_use(value):
        return None
    paired = tensor_info(view.operands[0])
    if paired is None or paired.rank < 2 or paired.shape[-1] != 2:
        return None
    parts = _cat_of_two(view.operands[0], paired.rank)
    if parts is None:
        return None
    halves, ops = [], [view, *parts.ops]
    for item in (parts.first, parts.second):
        unsqueeze = producer(item, "torch.aten.unsqueeze")
        if unsqueeze is None or not only_use(item) or not _is_last(
                constant_or(unsqueeze.operands[1], None), paired.rank):
            return None
        halves.append(unsqueeze.operands[0])
        ops.append(unsqueeze)
    negated = _negated(halves[0])
    odd = _last_axis_slice(negated.operand) if negated else None
    even = _last_axis_slice(halves[1])
    if odd is None or even is None or odd.source != even.source:
        return None
    x, depth = odd.source, tensor_info(odd.source).shape[-1]
    if depth % 2 or tensor_info(value) != tensor_info(x) or \
            (odd.bounds, even.bounds) != ((1, depth, 2), (0, depth, 2)):
        return None
    return Rotation(x, tuple(ops) + (negated.op, odd.op, even.op))


def _product(value: ir.Value) -> Optional[Product]:
    op = producer(value, "torch.aten.mul.Tensor")
    if op is None or not only_use(value):
        return None
    return Product(op.operands[0], op.operands[1], op)


def match_rope(add: ir.Operation) -> Optional[RopeMatch]:
    if constant_or(add.operands[2], None) != 1:
        return None
    products = [_product(add.operands[0]), _product(add.operands[1])]
    if None in products:
        return None
    for rotated, plain in ((products[0], products[1]), (products[1], products[0])):
        for rot, sin in ((rotated.lhs, rotated.rhs), (rotated.rhs, rotated.lhs)):
            for matcher, interleaved in ((match_rotate_half, False),
                                         (match_rotate_interleaved, True)):
                rotation = matcher(rot)
                if rotation is None:
                    continue
                x = rotation.input
                cos = plain.rhs if plain.lhs == x else plain.lhs if plain.rhs == x else None
                if cos is None or not _tables_fit(x, cos, sin, add):
                    continue
                return RopeMatch(add, x, cos, sin, interleaved,
                                 (add, rotated.op, plain.op) + rotation.ops)
    return None


def _tables_fit(x: ir.Value, cos: ir.Value, sin: ir.Value, add: ir.Operation) -> bool:
    """kiln.rope's rule: cos and sin of one shape and x's dtype, ending in D, no broadcast of
    x itself (the sum has x's type)."""
    xi, ci, si = tensor_info(x), tensor_info(cos), tensor_info(sin)
    if None in (xi, ci, si) or ci != si or ci.dtype != xi.dtype or ci.rank > xi.rank:
        return False
    if ci.shape[-1] != xi.shape[-1] or tensor_info(add.results[0]) != xi:
        return False
    return all(c in (1, d) for c, d in zip(reversed(ci.shape), reversed(xi.shape)))


@dataclass
class RaiseRope(KilnPass):
    name = "kiln-raise-rope"
    summary = "Raise x·cos + rotate(x)·sin (rotate-half or interleaved) to kiln.rope"

    def apply(self, module: ir.Operation) -> None:
        for op in collect_ops(module, "torch.aten.add.Tensor"):
            match = match_rope(op)
            if match is None:
                continue
            form = "interleaved" if match.interleaved else "rotate_half"
            self.record(f"rope/{form}", f"x {tensor_info(match.input)}", op)
            with ir.InsertionPoint(op), op.location:
                new = RopeOp(match.input, match.cos, match.sin, bool_attr(match.interleaved),
                             op.results[0].type)
            op.results[0].replace_all_uses_with(new.result)
            erase_if_dead(list(match.matched_ops))
