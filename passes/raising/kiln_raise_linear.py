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
    """The linear rooted at `op`, if kiln.linear can take it (float input and weight: integer
    linears stay aten ops)."""
    match = _match_linear_form(op)
    if match is None:
        return None
    x, w = tensor_info(match.input), tensor_info(match.weight)
    if x is None or w is None or not (x.is_float and w.is_float):
        return None
    return match


def _match_linear_form(op: ir.Operation) -> Optional[LinearMatch]:
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


def _activation_after(linear: ir.Operation):
    """(activation op, view between) when the linear's only use is an activation, directly or
    through one single-use view/reshape; (None, None) otherwise."""
    users = [use.owner.operation for use in linear.results[0].uses]
    if len(users) != 1:
        return None, None
    if activation_of(users[0]):
        return users[0], None
    if users[0].name in ("torch.aten.view", "torch.aten.reshape"):
        after = [use.owner.operation for use in users[0].results[0].uses]
        if len(after) == 1 and activation_of(after[0]):
            return after[0], users[0]
    return None, None


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
            activation_op, reshape = _activation_after(match.root)
            activation = activation_of(activation_op) if activation_op is not None else "none"
            self.record(f"linear/{match.form}", f"activation={activation}", match.root)
            # The new op replaces the linear; the activation folds into it. With a view between
            # them (GPT-2's Conv1D: addmm → view → gelu) the view stays, after the new op.
            with ir.InsertionPoint(match.root), match.root.location:
                new = LinearOp(match.input, match.weight,
                               activation=ir.StringAttr.get(activation),
                               weight_layout=ir.StringAttr.get(match.weight_layout),
                               result=match.root.results[0].type, bias=match.bias)
            match.root.results[0].replace_all_uses_with(new.result)
            if activation_op is not None:
                folded_into = reshape.results[0] if reshape is not None else new.result
                activation_op.results[0].replace_all_uses_with(folded_into)
            erase_if_dead(([activation_op] if activation_op is not None else []) +
                          list(match.matched_ops))
