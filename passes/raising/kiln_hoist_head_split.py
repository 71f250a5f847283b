"""kiln-hoist-head-split: slices of a fused Q/K/V projection → slices of whole heads.

A fused projection (GPT-2's `c_attn`, or what kiln-merge-linears made of separate q/k/v
projections) is sliced on its last axis, then each piece is split into heads:

    %q = slice(%qkv, -1, 0, 64)       %qkv : [B, S, 192]
    %q4 = view(%q, [B, S, 4, 16])
    %qh = permute(%q4, [0, 2, 1, 3])  : [B, 4, S, 16]
→
    %all = view(%qkv, [B, S, 12, 16])
    %allh = permute(%all, [0, 2, 1, 3])        (one per source, shared by its pieces)
    %qh = slice(%allh, 1, 0, 4)                : [B, 4, S, 16]

Why: IREE copies each last-axis slice that is reshaped (one `slow_memcpy` dispatch per piece,
docs/fusion.md), while the view and permute of the whole tensor fold into the projection's
matmul (written head-major) and a slice of whole heads is read in place (contiguous for
batch 1). Pieces come from `aten.slice.Tensor` (step 1) and from `split` / `split_with_sizes`
unpacked by `prim.ListUnpack`, all on the last axis; a piece is rewritten when its only use is
such a head split (passes.matching.match_head_split) and its offset is a whole number of heads.
Leaves alone: pieces used otherwise (they keep their slice), slices with a step, other axes,
dynamic shapes (IREE 3.13's CPU backend fails on whole-head slices of a dynamic length).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from kiln.bindings import ir
from kiln.passes.base import KilnPass, collect_ops, erase_if_dead
from kiln.passes.matching import HeadSplit, match_head_split
from kiln.torch_ir import TensorInfo, TorchBuilder, constant_or, tensor_info

SPLITS = ("torch.aten.split_with_sizes", "torch.aten.split.Tensor")
INT64_MAX = (1 << 63) - 1


@dataclass(frozen=True)
class Piece:
    """`value` = source[..., offset:offset + size], made by `op`."""

    value: ir.Value
    source: ir.Value
    offset: int
    size: int
    op: ir.Operation


def _last_axis(dim, rank: int) -> bool:
    return isinstance(dim, int) and not isinstance(dim, bool) and dim % rank == rank - 1


def pieces_of_slice(op: ir.Operation) -> list[Piece]:
    source, dim, start, end, step = op.operands
    info = tensor_info(source)
    start, end = constant_or(start, None), constant_or(end, None)
    if info is None or info.shape[-1] is None or constant_or(step, None) != 1 or \
            not _last_axis(constant_or(dim, None), info.rank):
        return []
    start = 0 if start is None else start
    end = info.shape[-1] if end is None or end == INT64_MAX else end
    if not (isinstance(start, int) and isinstance(end, int)) or not 0 <= start < end <= \
            info.shape[-1]:
        return []
    return [Piece(op.results[0], source, start, end - start, op)]


def pieces_of_split(op: ir.Operation) -> list[Piece]:
    """The unpacked results of split / split_with_sizes on the last axis."""
    source, sizes, dim = op.operands
    info = tensor_info(source)
    unpacks = [use.owner.operation for use in op.results[0].uses]
    if info is None or info.shape[-1] is None or len(unpacks) != 1 or \
            unpacks[0].name != "torch.prim.ListUnpack" or \
            not _last_axis(constant_or(dim, None), info.rank):
        return []
    sizes = constant_or(sizes, None)
    if op.name == "torch.aten.split.Tensor" and isinstance(sizes, int) and sizes > 0:
        total = info.shape[-1]
        sizes = [min(sizes, total - start) for start in range(0, total, sizes)]
    if not isinstance(sizes, list) or sum(sizes) != info.shape[-1] or \
            len(sizes) != len(unpacks[0].results):
        return []
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    return [Piece(value, source, offset, size, op)
            for value, offset, size in zip(unpacks[0].results, offsets, sizes)]


def _source_key(piece: Piece, split: HeadSplit) -> tuple:
    return (piece.source, split.perm, split.head_dim)


@dataclass
class HoistHeadSplit(KilnPass):
    name = "kiln-hoist-head-split"
    summary = "Split a fused QKV projection into heads before slicing it (no copies in IREE)"

    def apply(self, module: ir.Operation) -> None:
        groups: dict[tuple, list[tuple[Piece, HeadSplit]]] = {}
        for op in collect_ops(module, ("torch.aten.slice.Tensor",) + SPLITS):
            pieces = pieces_of_slice(op) if op.name == "torch.aten.slice.Tensor" else \
                pieces_of_split(op)
            for piece in pieces:
                split = match_head_split(piece.value)
                if split and piece.offset % split.head_dim == 0:
                    groups.setdefault(_source_key(piece, split), []).append((piece, split))
        for members in groups.values():
            self._rewrite(members)

    def _rewrite(self, members: list[tuple[Piece, HeadSplit]]) -> None:
        anchor = _earliest([split.view for _, split in members])
        first_piece, first_split = next((p, s) for p, s in members if s.view == anchor)
        source = tensor_info(first_piece.source)
        head_dim, perm = first_split.head_dim, first_split.perm
        all_heads = source.shape[-1] // head_dim
        viewed = TensorInfo(source.shape[:-1] + (all_heads, head_dim), source.dtype)
        permuted = TensorInfo(tuple(viewed.shape[p] for p in perm), source.dtype)
        with ir.InsertionPoint(anchor), anchor.location:
            b = TorchBuilder(anchor.location)
            sizes = first_split.leading_sizes + [b.int(all_heads), b.int(head_dim)]
            heads_view = b.aten("view", viewed, first_piece.source, b.list_of(sizes))
            heads_first = b.aten("permute", permuted, heads_view, b.int_list(list(perm)))
        dead: list[Optional[ir.Operation]] = []
        for piece, split in members:
            with ir.InsertionPoint(split.permute), split.permute.location:
                b = TorchBuilder(split.permute.location)
                start = piece.offset // head_dim
                heads = b.slice(heads_first, split.heads_axis, start, start + split.heads,
                                tensor_info(split.permute.results[0]))
            split.permute.results[0].replace_all_uses_with(heads)
            dead += [split.permute, split.view, piece.op]
            if piece.op.name in SPLITS:
                dead.append(next(use.owner.operation for use in piece.op.results[0].uses))
        self.record("head-split/hoisted", f"{len(members)} slices of {source} into "
                    f"{all_heads} heads of {head_dim}", anchor)
        erase_if_dead(_unique(dead))


def _earliest(ops: list[ir.Operation]) -> ir.Operation:
    first = ops[0]
    for op in ops[1:]:
        if op.is_before_in_block(first):
            first = op
    return first


def _unique(ops: list[ir.Operation]) -> list[ir.Operation]:
    seen: list[ir.Operation] = []
    for op in ops:
        if op not in seen:
            seen.append(op)
    return seen
