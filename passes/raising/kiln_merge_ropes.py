"""kiln-merge-ropes: `kiln.rope`s of adjacent slices of one tensor → one `kiln.rope` of their
union, sliced.

Before → after (q and k heads of a merged QKV projection, after kiln-hoist-head-split):
    %q = slice(%qkv, 1, 0, 4)    %qr = kiln.rope(%q, %cos, %sin)
    %k = slice(%qkv, 1, 4, 6)    %kr = kiln.rope(%k, %cos, %sin)
→
    %qk = slice(%qkv, 1, 0, 6)   %qkr = kiln.rope(%qk, %cos, %sin)
    %qr = slice(%qkr, 1, 0, 4)   %kr = slice(%qkr, 1, 4, 6)

Why: each kiln.rope is one elementwise dispatch in IREE; the union is one (Llama: 2 → 1 per
layer, docs/fusion.md), and the slices of whole heads that follow are read in place.
Merged together: ropes with the same cos, sin and form, whose inputs are step-1 slices of one
source on one axis other than the last, with ranges that touch; cos and sin must not vary
along that axis (size 1 there, or lower rank), so one table serves the union; every axis before
the sliced one has size 1, so that the slices of the union are contiguous (at batch 2 they are
copies: Llama 15 dispatches per layer merged vs 14 apart).
Leaves alone: a lone rope, ranges with gaps, ropes of different tables, batch > 1.
Runs after kiln-raise-rope and kiln-hoist-head-split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from kiln.bindings import ir
from kiln.dialects import RopeOp, bool_attr
from kiln.passes.base import KilnPass, collect_ops, erase_if_dead
from kiln.passes.matching import producer
from kiln.torch_ir import TensorInfo, TorchBuilder, constant_or, tensor_info, vtensor_type


@dataclass(frozen=True)
class RopeOfSlice:
    rope: ir.Operation
    slice: ir.Operation
    source: ir.Value
    axis: int
    start: int
    end: int


def rope_of_slice(rope: ir.Operation) -> Optional[RopeOfSlice]:
    cut = producer(rope.operands[0], "torch.aten.slice.Tensor")
    if cut is None:
        return None
    source, axis, start, end, step = cut.operands
    info = tensor_info(source)
    axis, start, end = (constant_or(v, None) for v in (axis, start, end))
    if info is None or constant_or(step, None) != 1 or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in (axis, start, end)):
        return None
    axis %= info.rank
    if axis == info.rank - 1 or info.shape[axis] is None or any(d != 1 for d in
                                                                info.shape[:axis]):
        return None  # a slice of the union would not be contiguous: a copy (batch > 1)
    end = min(end, info.shape[axis])
    table = tensor_info(rope.operands[1])
    from_right = info.rank - axis
    if table.rank >= from_right and table.shape[table.rank - from_right] != 1:
        return None  # the table differs along the sliced axis
    return RopeOfSlice(rope, cut, source, axis, start, end)


def _table_key(value: ir.Value):
    """Equal for one table: the same value, or literals of one (uniqued) attribute, since the
    importer gives each use of a folded constant its own literal op until canonicalize."""
    literal = producer(value, "torch.vtensor.literal")
    return (literal.attributes["value"], str(value.type)) if literal is not None else value


def _key(item: RopeOfSlice) -> tuple:
    rope = item.rope
    return (item.source, item.axis, _table_key(rope.operands[1]), _table_key(rope.operands[2]),
            ir.BoolAttr(rope.attributes["interleaved"]).value)


def touching_runs(items: list[RopeOfSlice]) -> list[list[RopeOfSlice]]:
    """Runs of two or more ranges that follow each other without gap or overlap."""
    runs: list[list[RopeOfSlice]] = []
    for item in sorted(items, key=lambda i: i.start):
        if runs and runs[-1][-1].end == item.start:
            runs[-1].append(item)
        else:
            runs.append([item])
    return [run for run in runs if len(run) > 1]


@dataclass
class MergeRopes(KilnPass):
    name = "kiln-merge-ropes"
    summary = "Merge kiln.rope ops of adjacent slices of one tensor (q and k heads) into one"

    def apply(self, module: ir.Operation) -> None:
        groups: dict[tuple, list[RopeOfSlice]] = {}
        for op in collect_ops(module, "kiln.rope"):
            item = rope_of_slice(op)
            if item is not None:
                groups.setdefault(_key(item), []).append(item)
        for items in groups.values():
            for run in touching_runs(items):
                self._merge(run)

    def _merge(self, run: list[RopeOfSlice]) -> None:
        first = run[0].rope
        for item in run[1:]:
            if item.rope.is_before_in_block(first):
                first = item.rope
        source, axis = tensor_info(run[0].source), run[0].axis
        start, end = run[0].start, run[-1].end
        union_shape = list(source.shape)
        union_shape[axis] = end - start
        union = TensorInfo(tuple(union_shape), source.dtype)
        with ir.InsertionPoint(first), first.location:
            b = TorchBuilder(first.location)
            cut = b.slice(run[0].source, axis, start, end, union)
            interleaved = bool_attr(ir.BoolAttr(first.attributes["interleaved"]).value)
            merged = RopeOp(cut, first.operands[1], first.operands[2], interleaved,
                            vtensor_type(union.shape, union.dtype))
            for item in run:
                piece = b.slice(merged.result, axis, item.start - start, item.end - start,
                                tensor_info(item.rope.results[0]))
                item.rope.results[0].replace_all_uses_with(piece)
        self.record("rope/merged", f"{len(run)} ropes of {source} on axis {axis}, "
                    f"[{start}, {end})", first)
        erase_if_dead([op for item in run for op in (item.rope, item.slice)])
