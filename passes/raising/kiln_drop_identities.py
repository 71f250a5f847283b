"""kiln-drop-identities: remove ops that do nothing to a value tensor, so matchers see through.

Before → after (each only when the result type equals the input type):
    torch.aten.clone / contiguous / alias / detach (x)          → x
    torch.aten.dropout(x, p, train)  with train = false or p = 0 → x
    torch.aten.to.dtype / _to_copy / type_as to x's own dtype   → x
Value tensors are immutable, so a clone is an identity. Model code is full of these between the
ops Kiln matches (`dropout` after softmax, `.contiguous()` after a transpose, `.to(q.dtype)`
after an f32 softmax in an f32 model). Runs first in kiln-raise-pipeline; needs nothing before.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kiln.bindings import ir
from kiln.passes.base import KilnPass, collect_ops
from kiln.torch_ir import constant_or

ALWAYS_IDENTITY = ("torch.aten.clone", "torch.aten.contiguous", "torch.aten.alias",
                   "torch.aten.detach")
SAME_TYPE_CASTS = ("torch.aten.to.dtype", "torch.aten._to_copy", "torch.aten.type_as")
DROPOUT = "torch.aten.dropout"


def is_identity(op: ir.Operation) -> bool:
    if len(op.results) != 1 or not op.operands or op.results[0].type != op.operands[0].type:
        return False
    if op.name in ALWAYS_IDENTITY or op.name in SAME_TYPE_CASTS:
        return True
    if op.name == DROPOUT:
        p, train = constant_or(op.operands[1], None), constant_or(op.operands[2], None)
        return train is False or p == 0.0
    return False


@dataclass
class DropIdentities(KilnPass):
    name = "kiln-drop-identities"
    summary = "Remove clone/contiguous/eval dropout/same-dtype casts (canonicalize for matching)"
    removed: int = field(default=0, init=False)

    def apply(self, module: ir.Operation) -> None:
        for op in collect_ops(module, ALWAYS_IDENTITY + SAME_TYPE_CASTS + (DROPOUT,)):
            if is_identity(op):
                op.results[0].replace_all_uses_with(op.operands[0])
                op.erase()
                self.removed += 1
