"""kiln-raise-norms: layer norms and RMS norms → `kiln.layer_norm` / `kiln.rms_norm`.

Before → after:
    torch.aten.native_layer_norm(x, [D], w?, b?, eps)   (only result 0 used)
    torch.aten.layer_norm(x, [D], w?, b?, eps, cudnn)    → kiln.layer_norm(x, w?, b?) {epsilon}
    [w ·] [cast] (xf · rsqrt(mean(xf², -1, keepdim) + eps)),  xf = x or x cast to f32
        (pow 2 or xf·xf; add.Scalar or add.Tensor of a 0-d literal; w a 1-D constant on either
        side; the Llama / T5 / Mistral form)                → kiln.rms_norm(x, w?) {epsilon}
Leaves alone: norms over several axes, eps outside (0, 1e-3], intermediates with other uses.
Needs nothing before it; kiln-drop-identities makes f32 models' casts disappear first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from kiln.bindings import ir
from kiln.dialects import LayerNormOp, RmsNormOp
from kiln.passes.base import KilnPass, collect_ops, erase_if_dead
from kiln.passes.matching import literal_array, only_use, producer
from kiln.torch_ir import constant_or, tensor_info

CASTS = ("torch.aten.to.dtype", "torch.aten._to_copy")
MAX_EPSILON = 1e-3


def _last_axis_only(dims, rank: int) -> bool:
    return isinstance(dims, list) and len(dims) == 1 and dims[0] % rank == rank - 1


@dataclass(frozen=True)
class NormMatch:
    root: ir.Operation
    kind: str  # "layer_norm" | "rms_norm"
    input: ir.Value
    weight: Optional[ir.Value]
    bias: Optional[ir.Value]
    epsilon: float
    matched_ops: tuple


def match_layer_norm(op: ir.Operation) -> Optional[NormMatch]:
    x, shape, w, b, eps = op.operands[:5]
    info = tensor_info(x)
    normalized = constant_or(shape, None)
    if info is None or not isinstance(normalized, list) or len(normalized) != 1 or \
            normalized[0] != info.shape[-1]:
        return None
    epsilon = constant_or(eps, None)
    if not isinstance(epsilon, float) or not 0 < epsilon <= MAX_EPSILON:
        return None
    if op.name == "torch.aten.native_layer_norm" and any(list(r.uses) for r in op.results[1:]):
        return None
    weight = None if constant_or(w, LookupError) is None else w
    bias = None if constant_or(b, LookupError) is None else b
    return NormMatch(op, "layer_norm", x, weight, bias, epsilon, (op,))


def _epsilon_of(add: ir.Operation) -> Optional[float]:
    if add.name == "torch.aten.add.Scalar":
        if constant_or(add.operands[2], None) != 1:
            return None
        value = constant_or(add.operands[1], None)
    else:
        if constant_or(add.operands[2], None) != 1:
            return None
        array = literal_array(add.operands[1])
        value = float(array) if array is not None and array.size == 1 else None
    return float(value) if isinstance(value, (int, float)) and 0 < value <= MAX_EPSILON else None


def match_rms_norm(rsqrt: ir.Operation) -> Optional[NormMatch]:
    """From the rsqrt outward: rsqrt(mean(xf²) + eps) → xf · it → [cast] → [· w]."""
    add = producer(rsqrt.operands[0], "torch.aten.add.Scalar", "torch.aten.add.Tensor")
    if add is None or not only_use(add.result) or (epsilon := _epsilon_of(add)) is None:
        return None
    mean = producer(add.operands[0], "torch.aten.mean.dim")
    if mean is None or not only_use(mean.result) or constant_or(mean.operands[2], None) is not True:
        return None
    square = producer(mean.operands[0], "torch.aten.pow.Tensor_Scalar", "torch.aten.mul.Tensor")
    if square is None or not only_use(square.result):
        return None
    xf = square.operands[0]
    if square.name == "torch.aten.pow.Tensor_Scalar" and constant_or(square.operands[1],
                                                                        None) != 2:
        return None
    if square.name == "torch.aten.mul.Tensor" and square.operands[1] != xf:
        return None
    if not _last_axis_only(constant_or(mean.operands[1], None), tensor_info(xf).rank):
        return None
    upcast = producer(xf, *CASTS)
    source = upcast.operands[0] if upcast is not None and tensor_info(xf).dtype == "f32" else xf
    users = [u.owner.operation for u in rsqrt.result.uses]
    # T5 multiplies the un-cast input by the f32 rsqrt (same value: the cast is exact).
    if len(users) != 1 or users[0].name != "torch.aten.mul.Tensor" or not (
            {xf, source} & {users[0].operands[0], users[0].operands[1]}):
        return None
    normalized = users[0]
    matched = [normalized, rsqrt, add, mean, square]
    root = normalized
    cast = _single_user(root, CASTS)
    if cast is not None:
        root = cast
        matched.insert(0, cast)
    weight = None
    scale = _single_user(root, ("torch.aten.mul.Tensor",))
    if scale is not None:
        other = scale.operands[1] if scale.operands[0] == root.results[0] else scale.operands[0]
        info = tensor_info(other)
        if info is not None and info.rank == 1 and info.shape[0] == tensor_info(xf).shape[-1] \
                and producer(other, "torch.vtensor.literal") is not None:
            weight, root = other, scale
            matched.insert(0, scale)
    return NormMatch(root, "rms_norm", source, weight, None, epsilon, tuple(matched))


def _single_user(op: ir.Operation, names: tuple[str, ...]) -> Optional[ir.Operation]:
    uses = list(op.results[0].uses)
    if len(uses) == 1 and uses[0].owner.operation.name in names:
        return uses[0].owner.operation
    return None


def rewrite_norm(match: NormMatch) -> None:
    with ir.InsertionPoint(match.root), match.root.location:
        eps = ir.FloatAttr.get_f64(match.epsilon)
        result_type = match.root.results[0].type
        if match.kind == "layer_norm":
            new = LayerNormOp(match.input, eps, result_type, weight=match.weight,
                              bias=match.bias)
        else:
            new = RmsNormOp(match.input, eps, result_type, weight=match.weight)
    match.root.results[0].replace_all_uses_with(new.result)
    erase_if_dead(list(match.matched_ops))


@dataclass
class RaiseNorms(KilnPass):
    name = "kiln-raise-norms"
    summary = "Raise layer norms and RMS norms to kiln.layer_norm / kiln.rms_norm"

    def apply(self, module: ir.Operation) -> None:
        roots = ("torch.aten.native_layer_norm", "torch.aten.layer_norm", "torch.aten.rsqrt")
        for op in collect_ops(module, roots):
            match = match_rms_norm(op) if op.name == "torch.aten.rsqrt" else match_layer_norm(op)
            if match is None:
                continue
            detail = f"eps={match.epsilon:g}" + (", weight" if match.weight is not None else "")
            self.record(f"norm/{match.kind}", detail, op)
            rewrite_norm(match)
