"""What kiln-select-cuda-kernels folds into its kernels beyond the op itself (issue 14): the
analyses over torch IR that let a decoder layer run as a handful of kernel launches.

* Strided operands (`trace_strided`): q, k and v of an attention as views (offset and strides
  in elements) of the buffer they were sliced from — typically the fused QKV projection's output
  behind `view`, `permute`/`transpose` and head `slice`s — and the `kiln.rope` applied on the
  way, so that the attention kernel reads them in place and rotates them while loading.
* Output layout (`merged_heads_use`): an attention whose result is only permuted to [B, S, H, D]
  (for the output projection) writes that layout itself.
* Residual sums (`split_residual_norm`): `kiln.add_*_norm(x, linear(...))` becomes
  `aten.add` + `kiln.*_norm`, so the GEMM's residual epilogue takes the add.
* Decode cache writes (`decode_cache_write`): a KV cache operand of a decode attention that is
  `where(slot == position, new row, cache)` (kiln.kv_cache's decode step for CUDA) — the
  attention kernel writes the row into the cache in place and attends over it.
* Norm folding (`foldable_norm`): a `kiln.rms_norm` / `kiln.layer_norm` whose every use is the
  input of a kernel linear (through views that keep the last axis) is computed in those GEMMs'
  prologue; the norm op then goes away.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

from kiln.bindings import ir
from kiln.torch_ir import TensorInfo, TorchBuilder, constant_or, defining_op, tensor_info

VIEW_OPS = ("torch.aten.view", "torch.aten.reshape", "torch.aten._unsafe_view")
NORM_OPS = ("kiln.rms_norm", "kiln.layer_norm")
ADD_NORM_OPS = {"kiln.add_rms_norm": "kiln.rms_norm", "kiln.add_layer_norm": "kiln.layer_norm"}


# ---------------------------------------------------------------------------------------------
# Strided layouts


@dataclass(frozen=True)
class Layout:
    """Where the elements of a tensor lie in a flat buffer: element i is at
    offset + Σ index[d]·strides[d]."""

    shape: tuple[int, ...]
    strides: tuple[int, ...]
    offset: int = 0

    @staticmethod
    def contiguous(shape) -> "Layout":
        strides, step = [], 1
        for dim in reversed(shape):
            strides.append(step)
            step *= dim
        return Layout(tuple(shape), tuple(reversed(strides)), 0)

    def view(self, shape) -> Optional["Layout"]:
        """The layout of a view to `shape`, or None where a view would need a copy (the
        size-grouping rule torch applies to `view`)."""
        shape = tuple(shape)
        if math.prod(shape) != math.prod(self.shape):
            return None
        if not shape or not self.shape or math.prod(shape) == 0:
            return Layout(shape, Layout.contiguous(shape).strides, self.offset)
        old = [(d, s) for d, s in zip(self.shape, self.strides) if d != 1]
        new_strides = [0] * len(shape)
        # Group the old dims into runs that are contiguous with each other, then hand each run
        # to the new dims whose sizes multiply to the run's size.
        runs, current = [], []
        for d, s in old:
            if current and current[-1][1] != d * s:
                runs.append(current)
                current = []
            current.append((d, s))
        if current:
            runs.append(current)
        position = len(shape) - 1
        for run in reversed(runs):
            size = math.prod(d for d, _ in run)
            base = run[-1][1]
            covered = 1
            while position >= 0 and (covered < size or shape[position] == 1):
                new_strides[position] = covered * base
                covered *= shape[position]
                position -= 1
            if covered != size:
                return None
        while position >= 0:
            if shape[position] != 1:
                return None
            new_strides[position] = 1
            position -= 1
        return Layout(shape, tuple(new_strides), self.offset)

    def permute(self, dims) -> Optional["Layout"]:
        rank = len(self.shape)
        dims = [d % rank for d in dims]
        if sorted(dims) != list(range(rank)):
            return None
        return Layout(tuple(self.shape[d] for d in dims), tuple(self.strides[d] for d in dims),
                      self.offset)

    def slice(self, dim: int, start: int, end: int, step: int) -> Optional["Layout"]:
        rank = len(self.shape)
        dim %= rank
        size = self.shape[dim]
        start = start + size if start < 0 else start
        end = size if end is None or end > size else (end + size if end < 0 else end)
        if step != 1 or not 0 <= start <= end <= size:
            return None
        shape = self.shape[:dim] + (end - start,) + self.shape[dim + 1:]
        return Layout(shape, self.strides, self.offset + start * self.strides[dim])


@dataclass(frozen=True)
class Rope:
    """A kiln.rope on the way from a buffer to an attention operand."""

    op: ir.Operation
    cos: ir.Value
    sin: ir.Value


@dataclass(frozen=True)
class StridedOperand:
    """An attention operand [B, H, S, D] read from `base` through `layout` (last stride 1),
    rotated by `rope` (None: not rotated) on the way."""

    base: ir.Value
    layout: Layout
    rope: Optional[Rope]
    chain: tuple[ir.Operation, ...]  # the ops between base and operand (left for IREE's DCE)


def _int_list(value: ir.Value) -> Optional[list]:
    items = constant_or(value, None)
    if not isinstance(items, list) or not all(isinstance(i, int) for i in items):
        return None
    return items


def _step(layout: Layout, op: ir.Operation) -> Optional[Layout]:
    """The layout after one view-like op, or None when it is not a view of its input."""
    name = op.name
    out = tensor_info(op.results[0])
    if out is None or None in out.shape:
        return None
    if name in VIEW_OPS:
        result = layout.view(out.shape)
    elif name == "torch.aten.permute":
        dims = _int_list(op.operands[1])
        result = layout.permute(dims) if dims is not None else None
    elif name == "torch.aten.transpose.int":
        a, b = constant_or(op.operands[1], None), constant_or(op.operands[2], None)
        if not isinstance(a, int) or not isinstance(b, int):
            return None
        dims = list(range(len(layout.shape)))
        a, b = a % len(dims), b % len(dims)
        dims[a], dims[b] = dims[b], dims[a]
        result = layout.permute(dims)
    elif name == "torch.aten.slice.Tensor":
        dim, start, end, step = (constant_or(v, "?") for v in op.operands[1:5])
        if not all(isinstance(v, int) for v in (dim, start, step)) or \
                not (end is None or isinstance(end, int)):
            return None
        result = layout.slice(dim, start, end, step)
    else:
        return None
    if result is None or result.shape != tuple(out.shape):
        return None
    return result


_TRACED = VIEW_OPS + ("torch.aten.permute", "torch.aten.transpose.int",
                      "torch.aten.slice.Tensor")


def _rope_table(op: ir.Operation, x: TensorInfo) -> Optional[tuple]:
    """(cos, sin) of a rotate-half kiln.rope of x [B, H, S, D] whose tables are
    [1 or B, 1, S, D] (positions along x's sequence axis), else None."""
    if ir.BoolAttr(op.attributes["interleaved"]).value or x.rank != 4:
        return None
    table = tensor_info(op.operands[1])
    if table is None or tensor_info(op.operands[2]) != table or table.rank != 4 or \
            None in table.shape:
        return None
    b, _, s, d = x.shape
    if table.shape[0] not in (1, b) or table.shape[1] != 1 or table.shape[2:] != (s, d):
        return None
    return op.operands[1], op.operands[2]


def trace_strided(value: ir.Value, allow_rope: bool = True) -> Optional[StridedOperand]:
    """`value` [B, H, S, D] as a strided view of the value it was cut from (see the module
    docstring), or None when it is not a view of anything (it is then its own buffer)."""
    info = tensor_info(value)
    if info is None or info.rank != 4 or None in info.shape:
        return None
    chain: list[ir.Operation] = []
    rope: Optional[Rope] = None
    after_rope: list[ir.Operation] = []
    current = value
    while True:
        op = defining_op(current)
        if op is None:
            break
        if op.name in _TRACED:
            chain.append(op)
            current = op.operands[0]
        elif op.name == "kiln.rope" and rope is None and allow_rope:
            table = _rope_table(op, tensor_info(op.operands[0]))
            if table is None:
                break
            rope = Rope(op, *table)
            after_rope = list(chain)
            chain.append(op)
            current = op.operands[0]
        else:
            break
    if not chain:
        return None
    base = current
    base_info = tensor_info(base)
    if base_info is None or None in base_info.shape:
        return None
    layout = Layout.contiguous(base_info.shape)
    for op in reversed(chain):
        if op.name == "kiln.rope":
            continue
        layout = _step(layout, op)
        if layout is None:
            return None
    if layout.strides[-1] != 1 and layout.shape[-1] != 1:
        return None
    if rope is not None:
        # Between the rope and the operand only whole heads may be cut (the rotary positions
        # stay the sequence index), and the rope's input must have the operand's S and D.
        for op in after_rope:
            if op.name == "torch.aten.slice.Tensor":
                if constant_or(op.operands[1], None) not in (1, -3):
                    return None
            elif op.name in VIEW_OPS:
                if tuple(tensor_info(op.results[0]).shape) != \
                        tuple(tensor_info(op.operands[0]).shape):
                    return None
            else:
                return None
        rope_input = tensor_info(rope.op.operands[0])
        if rope_input.shape[0] != info.shape[0] or rope_input.shape[2:] != info.shape[2:]:
            return None
    return StridedOperand(base, layout, rope, tuple(chain))


@dataclass(frozen=True)
class CacheWrite:
    """`where(slot == position, new, cache)`: one new row [B, H, 1, D] per head written at
    slot `position` (int64 [1]) of `cache` [B, H, S, D] — a decode step's cache update."""

    op: ir.Operation
    cache: ir.Value
    new: ir.Value
    position: ir.Value
    chain: tuple[ir.Operation, ...]  # the condition's ops (left for IREE's DCE)


def decode_cache_write(value: ir.Value) -> Optional[CacheWrite]:
    """`value` as a CacheWrite, or None: `aten.where.self(cond, new, cache)` with cache of
    `value`'s static type, new [B, H, 1, D] of its dtype, and cond [1, 1, S, 1] an unsqueezed /
    viewed `aten.eq.Tensor` of the literal 0, 1, ..., S-1 and an int64 [1] position (either
    order). Any other form (a scatter, a select over several rows) is not one."""
    import numpy as np

    from kiln.passes.matching import literal_array

    op = defining_op(value)
    if op is None or op.name != "torch.aten.where.self":
        return None
    cond, new, cache = op.operands
    out, new_info, cache_info = tensor_info(value), tensor_info(new), tensor_info(cache)
    if out is None or out.rank != 4 or None in out.shape or cache_info != out or \
            new_info is None or new_info.dtype != out.dtype or \
            tuple(new_info.shape) != (out.shape[0], out.shape[1], 1, out.shape[3]):
        return None
    slots = out.shape[2]
    cond_info = tensor_info(cond)
    if cond_info is None or cond_info.dtype != "i1" or tuple(cond_info.shape) != (1, 1, slots, 1):
        return None
    chain, current = [], cond
    while (step := defining_op(current)) is not None and \
            step.name in ("torch.aten.unsqueeze",) + VIEW_OPS:
        chain.append(step)
        current = step.operands[0]
    equal = defining_op(current)
    if equal is None or equal.name != "torch.aten.eq.Tensor" or \
            tuple(tensor_info(current).shape) not in ((slots,), (1, slots)):
        return None
    chain.append(equal)
    for literal, position in (equal.operands, reversed(list(equal.operands))):
        array = literal_array(literal)
        position_info = tensor_info(position)
        if array is not None and array.size == slots and \
                np.array_equal(array.reshape(-1), np.arange(slots)) and \
                position_info is not None and position_info.dtype == "si64" and \
                tuple(position_info.shape) == (1,):
            return CacheWrite(op, cache, new, position, tuple(chain))
    return None


def merged_heads_use(result: ir.Value) -> Optional[ir.Operation]:
    """The `permute(0, 2, 1, 3)` / `transpose(1, 2)` that is the only use of an attention
    result [B, H, S, D] (behind views that keep its shape), or None."""
    current = result
    while True:
        uses = list(current.uses)
        if len(uses) != 1:
            return None
        op = uses[0].owner.operation
        if op.name in VIEW_OPS and tensor_info(op.results[0]) == tensor_info(current):
            current = op.results[0]
            continue
        if op.name == "torch.aten.permute" and \
                [d % 4 for d in (_int_list(op.operands[1]) or [])] == [0, 2, 1, 3]:
            return op
        if op.name == "torch.aten.transpose.int" and \
                {constant_or(v, None) % 4 for v in op.operands[1:3]
                 if isinstance(constant_or(v, None), int)} == {1, 2}:
            return op
        return None


# ---------------------------------------------------------------------------------------------
# Residual sums and norms


def through_views(value: ir.Value) -> tuple[ir.Value, list[ir.Operation]]:
    """Follow `value` through single-use views: (the last value, the views)."""
    views = []
    current = value
    while True:
        uses = list(current.uses)
        if len(uses) != 1 or uses[0].owner.operation.name not in VIEW_OPS:
            return current, views
        views.append(uses[0].owner.operation)
        current = uses[0].owner.operation.results[0]


def view_source(value: ir.Value) -> ir.Value:
    """The value `value` is a chain of views of."""
    current = value
    while True:
        op = defining_op(current)
        if op is None or op.name not in VIEW_OPS:
            return current
        current = op.operands[0]


def producing_linear(value: ir.Value) -> Optional[ir.Operation]:
    """The kiln.linear that `value` is (or is a chain of views of), each step having no other
    use, or None."""
    if len(list(value.uses)) != 1:
        return None
    current = value
    while True:
        op = defining_op(current)
        if op is None:
            return None
        if op.name == "kiln.linear":
            return op
        if op.name not in VIEW_OPS or len(list(op.operands[0].uses)) != 1:
            return None
        current = op.operands[0]


def norm_parameters(op: ir.Operation, first: int) -> tuple[Optional[ir.Value],
                                                           Optional[ir.Value]]:
    """(weight, bias) of a norm op whose optional operands start at operand `first`."""
    operands = list(op.operands)[first:]
    segments = list(ir.DenseI32ArrayAttr(op.attributes["operandSegmentSizes"]))[first:]
    weight = operands[0] if segments and segments[0] else None
    bias = operands[segments[0]] if len(segments) > 1 and segments[1] else None
    return weight, bias


def split_residual_norm(op: ir.Operation, eligible: Callable[[ir.Operation], bool]
                        ) -> Optional[ir.Operation]:
    """`kiln.add_*_norm(x, r)` with x or r the result of a kernel linear (`eligible`) whose
    only use is this op → `s = aten.add(x, r)` and `kiln.*_norm(s)`; the new norm op when
    rewritten (`op` is erased), else None."""
    x, r = op.operands[0], op.operands[1]
    total = tensor_info(op.results[1])
    if tensor_info(x) != total or tensor_info(r) != total or None in total.shape:
        return None
    if not any(linear is not None and eligible(linear)
               for linear in (producing_linear(x), producing_linear(r))):
        return None
    weight, bias = norm_parameters(op, 2)
    with ir.InsertionPoint(op), op.location:
        b = TorchBuilder(op.location)
        summed = b.aten("add.Tensor", total, x, r, b.int(1))
        operands = [summed] + [v for v in (weight, bias) if v is not None]
        segments = [1, int(weight is not None)] + \
            ([int(bias is not None)] if op.name == "kiln.add_layer_norm" else [])
        norm = ir.Operation.create(
            ADD_NORM_OPS[op.name], results=[op.results[0].type], operands=operands,
            attributes={"epsilon": op.attributes["epsilon"],
                        "operandSegmentSizes": ir.DenseI32ArrayAttr.get(segments)},
            loc=op.location)
    op.results[0].replace_all_uses_with(norm.results[0])
    op.results[1].replace_all_uses_with(summed)
    op.erase()
    return norm


@dataclass(frozen=True)
class FoldedNorm:
    """A norm computed in the prologue of the GEMMs that consume it. Its operands are read
    from the op when asked: earlier rewrites may have replaced them."""

    op: ir.Operation
    kind: str  # "rms" | "layer"
    epsilon: float

    @property
    def input(self) -> ir.Value:
        return self.op.operands[0]

    @property
    def weight(self) -> Optional[ir.Value]:
        return norm_parameters(self.op, 1)[0]

    @property
    def bias(self) -> Optional[ir.Value]:
        return norm_parameters(self.op, 1)[1]


def foldable_norm(op: ir.Operation, eligible: Callable[[ir.Operation], bool]
                  ) -> Optional[FoldedNorm]:
    """The norm as a GEMM prologue when every use of its result is the input of an `eligible`
    kernel linear (through views that keep the last axis), else None."""
    x, out = tensor_info(op.operands[0]), tensor_info(op.results[0])
    if x is None or out is None or x.dtype != out.dtype or None in x.shape:
        return None
    weight, bias = norm_parameters(op, 1)
    for parameter in (weight, bias):
        if parameter is not None and tensor_info(parameter).shape != (x.shape[-1],):
            return None
    consumers = []

    def visit(value: ir.Value) -> bool:
        uses = list(value.uses)
        if not uses:
            return True
        for use in uses:
            user = use.owner.operation
            if user.name in VIEW_OPS and tensor_info(user.results[0]).shape[-1:] == \
                    tensor_info(value).shape[-1:]:
                if not visit(user.results[0]):
                    return False
            elif user.name == "kiln.linear" and use.operand_number == 0:
                consumers.append(user)
            else:
                return False
        return True

    if not visit(op.results[0]) or not consumers or not all(eligible(c) for c in consumers):
        return None
    kind = "rms" if op.name == "kiln.rms_norm" else "layer"
    return FoldedNorm(op, kind, ir.FloatAttr(op.attributes["epsilon"]).value)


def concat_parts(value: Optional[ir.Value], axis: int) -> Optional[list[ir.Value]]:
    """The 2-3 static tensors whose `aten.cat` along `axis` `value` is (the merged q/k/v or
    gate/up weights and biases of kiln-merge-linears / kiln-raise-swiglu), or None."""
    op = defining_op(value) if value is not None else None
    if op is None or op.name != "torch.aten.cat":
        return None
    info = tensor_info(value)
    dim = constant_or(op.operands[1], None)
    listed = defining_op(op.operands[0])
    if not isinstance(dim, int) or info is None or dim % info.rank != axis or \
            listed is None or listed.name != "torch.prim.ListConstruct":
        return None
    parts = list(listed.operands)
    infos = [tensor_info(p) for p in parts]
    if not 2 <= len(parts) <= 3 or any(i is None or None in i.shape or i.rank != info.rank or
                                       i.dtype != info.dtype for i in infos):
        return None
    return parts
