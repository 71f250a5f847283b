"""kiln-unstride-pointwise-conv: a 1×1 convolution with stride s becomes a strided slice of its
input followed by a stride-1 1×1 convolution (target cuda).

Before:
    %y = torch.aten.convolution %x, %w (16x8x1x1), %b, stride [2, 2], padding [0, 0], ...
After:
    %xs = torch.aten.slice.Tensor %x, dim 2, 0, H, step 2 ; slice dim 3 likewise
    %y  = torch.aten.convolution %xs, %w, %b, stride [1, 1], padding [0, 0], ...

Why: IREE 3.13's CUDA code for a strided 1×1 convolution (ResNet's downsample) is wrong in f16
on an H200: max error 1.98 at output scale 1.9 for conv1x1/s2 + batch norm, with or without
`--iree-codegen-llvmgpu-use-igemm=false`, while 3×3 and 7×7/s2 convolutions, the same IR on the
CPU, and eager are right (bench/gpu/f16_accuracy.py, docs/decisions.md). The rewrite computes
the same values: a 1×1 kernel at stride s reads exactly the pixels the slice keeps
(out = ⌊(H − 1)/s⌋ + 1 = len(range(0, H, s))).

Leaves alone: other kernel sizes, padding, transposed or grouped-with-dilation forms, dynamic
spatial dims. Run on the torch ops after convert-kiln-to-torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from kiln.bindings import ir
from kiln.passes.base import KilnPass, collect_ops
from kiln.torch_ir import TensorInfo, TorchBuilder, constant_or, tensor_info


@dataclass
class UnstridePointwiseConv(KilnPass):
    name = "kiln-unstride-pointwise-conv"
    summary = ("1x1 strided convolution → strided slice + 1x1 stride-1 convolution (works around "
               "IREE 3.13's wrong CUDA code for it)")

    def apply(self, module: ir.Operation) -> None:
        for op in collect_ops(module, "torch.aten.convolution"):
            x, w = tensor_info(op.operands[0]), tensor_info(op.operands[1])
            stride = constant_or(op.operands[3], None)
            padding = constant_or(op.operands[4], None)
            transposed = constant_or(op.operands[6], None)
            if None in (stride, padding, transposed) or transposed or x is None or w is None:
                continue
            spatial = len(stride)
            if spatial == 0 or x.rank != spatial + 2 or any(p != 0 for p in padding):
                continue
            if tuple(w.shape[2:]) != (1,) * spatial or all(s == 1 for s in stride):
                continue
            if any(d is None for d in x.shape[2:]):
                continue
            with ir.InsertionPoint(op), op.location:
                b = TorchBuilder(op.location)
                value, shape = op.operands[0], list(x.shape)
                for axis, step in enumerate(stride):
                    if step == 1:
                        continue
                    dim = axis + 2
                    size = shape[dim]
                    shape[dim] = len(range(0, size, step))
                    value = b.aten("slice.Tensor", TensorInfo(tuple(shape), x.dtype), value,
                                   b.int(dim), b.int(0), b.int(size), b.int(step))
                ones = b.int_list([1] * spatial)
                operands = list(op.operands)
                operands[0], operands[3] = value, ones
                new = ir.Operation.create("torch.aten.convolution",
                                          results=[op.results[0].type], operands=operands,
                                          loc=op.location)
            self.record("conv1x1", f"stride {list(stride)} → slice + stride 1", op)
            op.results[0].replace_all_uses_with(new.results[0])
            op.erase()
