"""A pipeline that fails writes the IR from before it (a clone taken at the start, printed only
on failure, weights elided) and a kiln-opt command (kiln.pipelines.Pipeline.run)."""

import re
from dataclasses import dataclass

import numpy as np
import pytest

from kiln.bindings import ir
from kiln.dialects import make_context
from kiln.errors import KilnCompileError
from kiln.passes import KilnPass
from kiln.pipelines import Pipeline


@dataclass
class RenameThenFail(KilnPass):
    """Changes the module, then fails: the reproducer must hold the IR from before."""

    name = "test-rename-then-fail"
    summary = "test only"

    def apply(self, module: ir.Operation) -> None:
        for op in module.regions[0].blocks[0].operations:
            op.attributes["sym_name"] = ir.StringAttr.get("renamed")
        raise RuntimeError("the pass failed on purpose")


def _module_with_weight(context) -> ir.Module:
    with context, ir.Location.unknown():
        weight_type = ir.RankedTensorType.get([256, 256], ir.F32Type.get())
        weight = ir.DenseResourceElementsAttr.get_from_buffer(
            np.full((256, 256), 0.25, np.float32), "big_weight", weight_type)
        module = ir.Module.parse(
            "func.func @original(%x: tensor<256x256xf32>) -> tensor<256x256xf32> {\n"
            "  return %x : tensor<256x256xf32>\n}")
        function = module.body.operations[0]
        with ir.InsertionPoint.at_block_begin(function.regions[0].blocks[0]):
            ir.Operation.create("arith.constant", results=[weight_type],
                                attributes={"value": weight})
        return module


def test_failed_pipeline_writes_the_ir_from_before_it_without_weights():
    context = make_context()
    module = _module_with_weight(context)
    with pytest.raises(KilnCompileError) as info:
        Pipeline("test-pipeline", [RenameThenFail()]).run(module)
    message = str(info.value)
    assert "the pass failed on purpose" in message
    path = re.search(r"kiln-opt (\S+\.mlir)", message).group(1)
    text = open(path).read()
    assert "@original" in text and "renamed" not in text  # before the pass changed it
    assert "dense_resource<big_weight>" in text and "0x04000000" not in text  # blob elided
    with context:
        ir.Module.parse(text)  # kiln-opt can read it
