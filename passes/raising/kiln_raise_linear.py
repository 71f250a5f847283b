"""kiln-raise-linear: dense layers and their activation → one `kiln.linear` op.

Before → after:
    torch.aten.linear(x, w, b?)                       → kiln.linear {weight_layout = "out_in"}
    torch.aten.addmm(b, x, w, beta=1, alpha=1)        → kiln.linear {weight_layout = "in_out"}
    torch.aten.add.Tensor(torch.aten.matmul(x, W), B) → kiln.linear {weight_layout = "in_out"}
      (W a 2-D constant, B a 1-D constant: weights, not activations)
    then gelu / gelu(tanh) / relu / silu of a single-use kiln.linear → its `activation`.

Leaves alone: matmuls of two activations (attention's q·kᵀ; run kiln-raise-attention first so
those are gone), addmm with beta/alpha != 1, linears whose result has other users when folding
an activation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from kiln.bindings import ir
from kiln.dialects import LinearOp
from kiln.passes.base import KilnPass, collect_ops, erase_if_dead
from kiln.passes.matching import only_use, producer
from kiln.torch_ir import constant_or, tensor_info

ACTIVATION_OPS = {"torch.aten.gelu": None, "torch.aten.relu": "relu", "torch.aten.silu": "silu"}
LITERAL = "torch.vtensor.literal"


@dataclass(frozen=True)
class LinearMatch:
    root: ir.Operation
    input: ir.Value
    weight: ir.Value
    bias: Optional[ir.Value]
    weight_layout: str
    form: str
    matched_ops: tuple


def _bias_fits(bias: ir.Value, weight: ir.Value, layout: str) -> bool:
    """kiln.linear's bias is exactly [out_features] of the weight's dtype (no broadcasting)."""
    b, w = tensor_info(bias), tensor_info(weight)
    if b is None or w is None or w.rank != 2 or b.rank != 1 or b.dtype != w.dtype:
        return False
    out_features = w.shape[0] if layout == "out_in" else w.shape[1]
    return b.shape[0] == out_features and out_features is not None


def match_linear(op: ir.Operation) -> Optional[LinearMatch]:
    if op.name == "torch.aten.linear":
        x, w, b = op.operands
        if tensor_info(w) is None or tensor_info(w).rank != 2:
            return None
        bias = None if constant_or(b, LookupError) is None else b
        if bias is not None and not _bias_fits(bias, w, "out_in"):
            return None
        return LinearMatch(op, x, w, bias, "out_in", "linear", (op,))
    if op.name == "torch.aten.addmm":
        b, x, w, beta, alpha = op.operands
        if constant_or(beta, None) != 1 or constant_or(alpha, None) != 1:
            return None
        if not _bias_fits(b, w, "in_out"):
            return None
        return LinearMatch(op, x, w, b, "in_out", "addmm", (op,))
    if op.name == "torch.aten.add.Tensor":
        return _match_matmul_plus_bias(op)
    return None


def _match_matmul_plus_bias(add: ir.Operation) -> Optional[LinearMatch]:
    if constant_or(add.operands[2], None) != 1:
        return None
    for product, bias in ((add.operands[0], add.operands[1]), (add.operands[1], add.operands[0])):
        matmul = producer(product, "torch.aten.matmul")
        if matmul is None or not only_use(matmul.result) or producer(bias, LITERAL) is None:
            continue
        weight = matmul.operands[1]
        if producer(weight, LITERAL) is None or not _bias_fits(bias, weight, "in_out"):
            continue
        return LinearMatch(add, matmul.operands[0], weight, bias, "in_out", "matmul+bias",
                           (add, matmul))
    return None


def activation_of(op: ir.Operation) -> Optional[str]:
    if op.name == "torch.aten.gelu":
        approximate = constant_or(op.operands[1], None)
        return {"none": "gelu", "tanh": "gelu_tanh"}.get(approximate)
    return ACTIVATION_OPS.get(op.name)


@dataclass
class RaiseLinear(KilnPass):
    name = "kiln-raise-linear"
    summary = "Raise linear/addmm/matmul+bias (+gelu/relu/silu) to kiln.linear"

    def apply(self, module: ir.Operation) -> None:
        roots = ("torch.aten.linear", "torch.aten.addmm", "torch.aten.add.Tensor")
        for op in collect_ops(module, roots):
            match = match_linear(op)
            if match is None:
                continue
            root, activation = match.root, "none"
            users = [use.owner for use in match.root.results[0].uses]
            if len(users) == 1 and activation_of(users[0].operation):
                root = users[0].operation
                activation = activation_of(root)
            self.record(f"linear/{match.form}", f"activation={activation}", match.root)
            with ir.InsertionPoint(root), root.location:
                new = LinearOp(match.input, match.weight,
                               activation=ir.StringAttr.get(activation),
                               weight_layout=ir.StringAttr.get(match.weight_layout),
                               result=root.results[0].type, bias=match.bias)
            root.results[0].replace_all_uses_with(new.result)
            erase_if_dead(([root] if root is not match.root else []) + list(match.matched_ops))
