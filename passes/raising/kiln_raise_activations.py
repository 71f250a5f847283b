"""kiln-raise-activations: activations written out in arithmetic → their torch op.

Before → after (factors in any order and grouping; constants matched within 1e-4 relative):
    0.5 · x · (1 + erf(x · 0.70710678))   or  x / 1.41421356 inside erf  → torch.aten.gelu(x, "none")
    0.5 · x · (1 + tanh(0.79788456 · (x + 0.044715 · x³)))  (pow 3 or x·x·x)
                                                                  → torch.aten.gelu(x, "tanh")
    x · sigmoid(x)                                                → torch.aten.silu(x)
GPT-2's `gelu_new` and hand-written GELUs are of this kind. Run before kiln-raise-linear, which
then folds the activation into the linear layer before it. Intermediates with other uses are
left alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from kiln.bindings import ir
from kiln.passes.base import KilnPass, collect_ops, erase_if_dead
from kiln.passes.matching import literal_array, only_use, producer
from kiln.torch_ir import TorchBuilder, constant_or, tensor_info

SQRT_HALF = math.sqrt(0.5)
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
CUBIC = 0.044715


def _close(value: Optional[float], target: float) -> bool:
    return value is not None and abs(value - target) <= 1e-4 * abs(target)


def _scalar(value: ir.Value) -> Optional[float]:
    constant = constant_or(value, None)
    if isinstance(constant, (int, float)) and not isinstance(constant, bool):
        return float(constant)
    array = literal_array(value)
    return float(array) if array is not None and array.size == 1 else None


def factors(value: ir.Value, ops: list, root: bool = True) -> tuple[float, list[ir.Value]]:
    """value = constant · Π tensors, through single-use mul/div chains (ops collects them)."""
    op = producer(value, "torch.aten.mul.Tensor", "torch.aten.mul.Scalar",
                  "torch.aten.div.Scalar")
    if op is None or (not root and not only_use(value)):
        scalar = _scalar(value)
        return (scalar, []) if scalar is not None else (1.0, [value])
    ops.append(op)
    left_c, left = factors(op.operands[0], ops, False)
    if op.name == "torch.aten.mul.Tensor":
        right_c, right = factors(op.operands[1], ops, False)
        return left_c * right_c, left + right
    constant = _scalar(op.operands[1])
    if constant is None or constant == 0:
        return 1.0, [value]
    return left_c * (constant if op.name.endswith("mul.Scalar") else 1.0 / constant), left


def _one_plus(value: ir.Value, ops: list) -> Optional[ir.Value]:
    """f for `1 + f` (add.Scalar(f, 1) or add.Tensor with a literal 1, either side)."""
    op = producer(value, "torch.aten.add.Scalar", "torch.aten.add.Tensor")
    if op is None or not only_use(value) or constant_or(op.operands[2], None) != 1:
        return None
    a, b = op.operands[0], op.operands[1]
    for term, one in ((a, b), (b, a)):
        if _close(_scalar(one), 1.0) and (op.name.endswith("Tensor") or one is b):
            ops.append(op)
            return term
    return None


def _is_scaled(value: ir.Value, x: ir.Value, scale: float, ops: list) -> bool:
    constant, tensors = factors(value, ops, root=False) if only_use(value) else (1.0, [value])
    return tensors == [x] and _close(constant, scale)


def _is_cube(value: ir.Value, x: ir.Value, ops: list) -> bool:
    pow_op = producer(value, "torch.aten.pow.Tensor_Scalar")
    if pow_op is not None:
        if pow_op.operands[0] == x and _close(_scalar(pow_op.operands[1]), 3.0):
            ops.append(pow_op)
            return True
        return False
    constant, tensors = factors(value, ops, root=False)
    return _close(constant, 1.0) and tensors == [x, x, x]


@dataclass(frozen=True)
class ActivationMatch:
    """An activation written as arithmetic on `input`: `kind` ("gelu_none", "gelu_tanh",
    "silu") and the ops it replaces."""

    input: ir.Value
    kind: str
    ops: tuple


def match_gelu(root: ir.Operation) -> Optional[ActivationMatch]:
    ops: list = []
    constant, tensors = factors(root.results[0], ops)
    if not _close(constant, 0.5) or len(tensors) != 2:
        return None
    for x, other in ((tensors[0], tensors[1]), (tensors[1], tensors[0])):
        inner_ops = list(ops)
        f = _one_plus(other, inner_ops)
        if f is None:
            continue
        erf = producer(f, "torch.aten.erf")
        if erf is not None and only_use(f) and _is_scaled(erf.operands[0], x, SQRT_HALF,
                                                          inner_ops):
            return ActivationMatch(x, "gelu_none", tuple(inner_ops + [erf]))
        tanh = producer(f, "torch.aten.tanh")
        if tanh is None or not only_use(f):
            continue
        k, inner = factors(tanh.operands[0], inner_ops, root=False)
        if not _close(k, SQRT_2_OVER_PI) or len(inner) != 1:
            continue
        add = producer(inner[0], "torch.aten.add.Tensor")
        if add is None or constant_or(add.operands[2], None) != 1:
            continue
        for lin, cubic in ((add.operands[0], add.operands[1]),
                           (add.operands[1], add.operands[0])):
            cubic_ops: list = []
            c, cube = factors(cubic, cubic_ops, root=False)
            if lin == x and _close(c, CUBIC) and (cube == [x, x, x] or (
                    len(cube) == 1 and _is_cube(cube[0], x, cubic_ops))):
                return ActivationMatch(x, "gelu_tanh", tuple(inner_ops + [tanh, add] + cubic_ops))
    return None


def match_silu(root: ir.Operation) -> Optional[ActivationMatch]:
    if root.name != "torch.aten.mul.Tensor":
        return None
    a, b = root.operands[0], root.operands[1]
    for x, s in ((a, b), (b, a)):
        sigmoid = producer(s, "torch.aten.sigmoid")
        if sigmoid is not None and sigmoid.operands[0] == x and only_use(s):
            return ActivationMatch(x, "silu", (root, sigmoid))
    return None


@dataclass
class RaiseActivations(KilnPass):
    name = "kiln-raise-activations"
    summary = "Raise arithmetic GELU (erf, tanh) and x·sigmoid(x) to aten.gelu / aten.silu"

    def apply(self, module: ir.Operation) -> None:
        # Outermost mul first (reverse order); a match claims its ops so that the inner muls of
        # a GELU are not matched again. Rewrites happen after all matching: nothing is erased
        # while ops are still being inspected.
        claimed: set = set()
        matches = []
        for op in reversed(collect_ops(module, ("torch.aten.mul.Tensor",
                                                "torch.aten.mul.Scalar"))):
            if op in claimed:
                continue
            match = match_gelu(op) or match_silu(op)
            if match is None or tensor_info(match.input) != tensor_info(op.results[0]) or \
                    claimed & set(match.ops):
                continue
            claimed.update(match.ops)
            claimed.add(op)
            matches.append((op, match))
        for op, match in matches:
            info = tensor_info(op.results[0])
            self.record(f"activation/{match.kind}", "", op)
            with ir.InsertionPoint(op), op.location:
                b = TorchBuilder(op.location)
                new = b.aten("silu", info, match.input) if match.kind == "silu" else \
                    b.aten("gelu", info, match.input, b.str(match.kind.removeprefix("gelu_")))
            op.results[0].replace_all_uses_with(new)
            erase_if_dead([op] + [m for m in match.ops if m != op])
