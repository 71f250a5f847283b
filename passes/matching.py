"""Shared vocabulary of Kiln's matchers: a no-match reason and small predicates over torch IR."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from kiln.bindings import ir
from kiln.dtypes import DTYPES
from kiln.torch_ir import constant_or, defining_op, single_use, tensor_info


@dataclass(frozen=True)
class NoMatch:
    """Why a matcher declined; reported for ops a user would expect to be rewritten."""

    reason: str

    def __bool__(self) -> bool:
        return False


def producer(value: ir.Value, *names: str) -> Optional[ir.Operation]:
    """The op defining `value` if it is one of `names`, else None."""
    op = defining_op(value)
    return op if op is not None and op.name in names else None


def is_last_axis(dim_value: ir.Value, rank: int) -> bool:
    dim = constant_or(dim_value, None)
    return isinstance(dim, int) and dim in (-1, rank - 1)


def swaps_last_two(op: ir.Operation) -> bool:
    """True for transpose(-2, -1) / permute(..., n-1, n-2): the kᵀ of q·kᵀ."""
    rank = tensor_info(op.operands[0]).rank
    if op.name == "torch.aten.transpose.int":
        dims = {d % rank for d in (constant_or(op.operands[1], None),
                                   constant_or(op.operands[2], None))
                if isinstance(d, int) and not isinstance(d, bool)}
        return dims == {rank - 1, rank - 2}
    if op.name == "torch.aten.permute":
        perm = constant_or(op.operands[1], None)
        expected = list(range(rank - 2)) + [rank - 1, rank - 2]
        return isinstance(perm, list) and [p % rank for p in perm] == expected
    return False


def only_use(value: ir.Value) -> bool:
    return single_use(value)


# A masked-out score must be at least this negative to count as "masked" (HF uses finfo.min,
# older code -10000; -inf is the ideal). Softmax then gives it exp(-1e4) ≈ 0.
MASKED_SCORE_BOUND = -1.0e4


# The dtypes `literal_array` reads: real ones numpy has built in (a bf16 literal stays unread).
NUMPY_DTYPES = {d.mlir: d.numpy for d in DTYPES if d.numpy_native and d.kind != "complex"}


def literal_array(value: ir.Value):
    """The numpy value of a readable torch literal, converted to `value`'s own dtype when it is
    reached through dtype conversions (a bool tril cast to f32 reads as 1.0/0.0), else None."""
    import numpy as np

    info = tensor_info(value)
    if info is None or info.dtype not in NUMPY_DTYPES:
        return None
    op = defining_op(value)
    while op is not None and op.name in ("torch.prims.convert_element_type",
                                         "torch.aten.to.dtype", "torch.aten._to_copy"):
        op = defining_op(op.operands[0])
    if op is None or op.name != "torch.vtensor.literal":
        return None
    attr = op.attributes["value"]
    if not isinstance(attr, ir.DenseElementsAttr):
        try:
            attr = ir.DenseElementsAttr(attr)
        except (TypeError, ValueError):
            return None  # a dense_resource blob (model weights): not readable here
    return np.array(attr).astype(NUMPY_DTYPES[info.dtype])


def unwrap_prefix_slices(value: ir.Value) -> tuple[ir.Value, bool]:
    """`value` without slices that keep a prefix [0, n) of a dim (`bias[:S, :S]`), and whether
    any were removed. A top-left block of a causal (or all-keep) mask is causal (all-keep)."""
    sliced = False
    while (op := defining_op(value)) is not None and op.name == "torch.aten.slice.Tensor":
        start, step = constant_or(op.operands[2], None), constant_or(op.operands[4], None)
        if start not in (0, None) or step != 1:
            break
        value, sliced = op.operands[0], True
    return value, sliced


def classify_mask(mask, query_len: Optional[int], key_len: Optional[int]) -> str:
    """'none' (masks nothing), 'causal' (masks exactly key j > query i, top-left aligned), or
    'general', for a constant mask array: bool (True = keep) or additive float."""
    import numpy as np

    if mask is None or query_len is None or key_len is None:
        return "general"
    if mask.dtype == np.bool_ or mask.dtype == np.uint8:
        keep = mask.astype(bool)
    else:
        if not np.all((mask == 0) | (mask <= MASKED_SCORE_BOUND)):
            return "general"  # a bias (e.g. T5 positions, ALiBi), not a mask
        keep = mask == 0
    try:
        keep = np.broadcast_to(keep, keep.shape[:-2] + (query_len, key_len))
    except ValueError:
        return "general"
    if keep.all():
        return "none"
    causal = np.tril(np.ones((query_len, key_len), dtype=bool))
    return "causal" if np.all(keep == causal) else "general"


def permutation_of(op: ir.Operation) -> Optional[tuple[int, ...]]:
    """The axis permutation of a constant `permute` or `transpose.int` (non-negative axes), or
    None."""
    info = tensor_info(op.operands[0])
    if info is None:
        return None
    rank = info.rank
    if op.name == "torch.aten.permute":
        perm = constant_or(op.operands[1], None)
        if not isinstance(perm, list) or sorted(p % rank for p in perm) != list(range(rank)):
            return None
        return tuple(p % rank for p in perm)
    if op.name == "torch.aten.transpose.int":
        a, b = constant_or(op.operands[1], None), constant_or(op.operands[2], None)
        if not (isinstance(a, int) and isinstance(b, int)) or isinstance(a, bool) or \
                isinstance(b, bool):
            return None
        perm = list(range(rank))
        perm[a % rank], perm[b % rank] = perm[b % rank], perm[a % rank]
        return tuple(perm)
    return None


@dataclass(frozen=True)
class HeadSplit:
    """An attention projection's head split of a value [..., H·D]: a view to [..., H, D] and a
    permute that puts the heads axis before the sequence axis and keeps D last (BSHD → BHSD)."""

    view: ir.Operation
    permute: ir.Operation
    heads: int
    head_dim: int
    perm: tuple[int, ...]

    @property
    def heads_axis(self) -> int:
        """Where the heads axis is after the permute."""
        return self.perm.index(len(self.perm) - 2)

    @property
    def leading_sizes(self) -> list[ir.Value]:
        """The view's size operands before [H, D] (batch, sequence: constants or sizes)."""
        return list(defining_op(self.view.operands[1]).operands)[:-2]


def match_head_split(value: ir.Value) -> "HeadSplit | NoMatch":
    """HeadSplit of `value` when its only use is such a view whose only use is such a permute,
    else NoMatch. The view must keep the leading dims.
    Static shapes only: with a dynamic sequence length, IREE 3.13's CPU backend fails to compile
    the q·kᵀ dispatch that reads a whole-head slice ("exceeded stack allocation limit"; TinyGPT,
    batch 1), so such projections keep their own layout (tests/test_fusion.py)."""
    info = tensor_info(value)
    uses = [use.owner.operation for use in value.uses]
    if info is None or None in info.shape:
        return NoMatch("dynamic shape")
    if len(uses) != 1 or uses[0].name not in ("torch.aten.view", "torch.aten.reshape"):
        return NoMatch("not used by one view alone")
    view = uses[0]
    viewed = tensor_info(view.results[0])
    sizes = producer(view.operands[1], "torch.prim.ListConstruct")
    if viewed is None or sizes is None or viewed.rank != info.rank + 1 or viewed.rank < 3:
        return NoMatch("the view does not split the last axis in two")
    heads, head_dim = viewed.shape[-2:]
    lead, source_lead = viewed.shape[:-2], info.shape[:-1]
    if heads is None or head_dim is None or info.shape[-1] != heads * head_dim or \
            any(a != b for a, b in zip(lead, source_lead)):
        return NoMatch(f"the view {info} → {viewed} is not [..., H·D] → [..., H, D]")
    after = [use.owner.operation for use in view.results[0].uses]
    if len(after) != 1 or after[0].name not in ("torch.aten.permute", "torch.aten.transpose.int"):
        return NoMatch("the heads view is not used by one permute alone")
    perm = permutation_of(after[0])
    rank = viewed.rank
    if perm is None or perm[-1] != rank - 1 or perm.index(rank - 2) > perm.index(rank - 3):
        return NoMatch("the permute does not move the heads axis before the sequence axis")
    return HeadSplit(view, after[0], heads, head_dim, perm)
