"""Shared vocabulary of Kiln's matchers: a no-match reason and small predicates over torch IR."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from kiln.bindings import ir
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
        dims = {d % rank for d in (constant_or(op.operands[1], 0), constant_or(op.operands[2], 0))
                if isinstance(d, int)}
        return dims == {rank - 1, rank - 2}
    if op.name == "torch.aten.permute":
        perm = constant_or(op.operands[1], None)
        expected = list(range(rank - 2)) + [rank - 1, rank - 2]
        return isinstance(perm, list) and [p % rank for p in perm] == expected
    return False


def only_use(value: ir.Value) -> bool:
    return single_use(value)
