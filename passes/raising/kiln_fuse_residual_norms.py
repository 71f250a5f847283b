"""kiln-fuse-residual-norms: a norm of a residual sum → one op that also returns the sum.

Before → after:
    %s = torch.aten.add.Tensor %x, %r, 1       (x, r and s of one type: the residual stream)
    %y = kiln.layer_norm(%s, %w?, %b?)  /  kiln.rms_norm(%s, %w?)
  → %y, %s = kiln.add_layer_norm(%x, %r, %w?, %b?)  /  kiln.add_rms_norm(%x, %r, %w?)
The sum's other uses (the next residual add of a pre-norm transformer) read the second result.

Why: the pre-norm step "add the block's output to the stream, normalize the stream" is one
kernel with two outputs in fused runtimes (vLLM's fused_add_rms_norm); as one op a kernel
library can take it whole. On the CPU the lowering is the same arithmetic as before and IREE
already forms one reduction dispatch with both outputs, so dispatch counts do not change.
Leaves alone: adds that broadcast (a bias), alpha != 1, norms of anything else.
Runs after kiln-raise-norms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from kiln.bindings import ir
from kiln.dialects import AddLayerNormOp, AddRmsNormOp
from kiln.passes.base import KilnPass, collect_ops
from kiln.passes.matching import producer
from kiln.torch_ir import constant_or, tensor_info

FUSED = {"kiln.layer_norm": AddLayerNormOp, "kiln.rms_norm": AddRmsNormOp}


@dataclass(frozen=True)
class ResidualNormMatch:
    norm: ir.Operation
    add: ir.Operation
    parameters: tuple  # the norm's weight / bias operands, in order


def match_residual_norm(norm: ir.Operation) -> Optional[ResidualNormMatch]:
    add = producer(norm.operands[0], "torch.aten.add.Tensor")
    if add is None or constant_or(add.operands[2], None) != 1:
        return None
    total = tensor_info(add.results[0])
    if not (tensor_info(add.operands[0]) == tensor_info(add.operands[1]) == total):
        return None
    parameters = tuple(norm.operands[1:])
    for value in parameters:
        op = producer(value, "torch.vtensor.literal")
        defined_before = isinstance(value, ir.BlockArgument) or op is not None or (
            value.owner.operation.block == add.block and
            value.owner.operation.is_before_in_block(add))
        if not defined_before:
            return None  # the fused op goes where the add is; its weights must be there
    return ResidualNormMatch(norm, add, parameters)


@dataclass
class FuseResidualNorms(KilnPass):
    name = "kiln-fuse-residual-norms"
    summary = "Fuse x + r → norm into kiln.add_layer_norm / kiln.add_rms_norm (norm and sum)"

    def apply(self, module: ir.Operation) -> None:
        for norm in collect_ops(module, tuple(FUSED)):
            match = match_residual_norm(norm)
            if match is None:
                continue
            add = match.add
            for value in match.parameters:
                literal = producer(value, "torch.vtensor.literal")
                if literal is not None and literal.block == add.block and \
                        not literal.is_before_in_block(add):
                    literal.move_before(add)  # a literal has no operands: it can move up
            segments = list(ir.DenseI32ArrayAttr(norm.attributes["operandSegmentSizes"]))
            weight, bias = self._split(match.parameters, segments)
            named = {"weight": weight, **({"bias": bias} if norm.name == "kiln.layer_norm"
                                          else {})}
            with ir.InsertionPoint(add), norm.location:
                fused = FUSED[norm.name](add.operands[0], add.operands[1],
                                         norm.attributes["epsilon"], norm.results[0].type,
                                         add.results[0].type, **named)
            # The fused op sits where the add was, so every use of the sum stays dominated.
            fused.operation.move_after(add)
            self.record(f"residual-norm/{norm.name.removeprefix('kiln.')}",
                        f"sum {tensor_info(add.results[0])}", norm)
            norm.results[0].replace_all_uses_with(fused.results[0])
            add.results[0].replace_all_uses_with(fused.results[1])
            norm.erase()
            add.erase()

    @staticmethod
    def _split(parameters: tuple, segments: list[int]) -> tuple:
        """(weight, bias) from the norm's optional operands and its segment sizes."""
        weight = parameters[0] if len(segments) > 1 and segments[1] else None
        bias = parameters[segments[1]] if len(segments) > 2 and segments[2] else None
        return weight, bias
