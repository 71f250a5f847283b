"""kiln-pointwise-conv-to-matmul: a 1×1 convolution (NCHW, groups 1, no padding) becomes a
matmul over the channels; a stride s first slices every s-th pixel (target cuda).

Before:
    %y = torch.aten.convolution %x [N,C,H,W], %w [F,C,1,1], %b, stride [s, s], padding [0, 0], ...
After:
    %xs = slice(x, dim 2, step s) → slice(dim 3, step s)         [N,C,H',W']
    %y  = view(matmul(view(%w, [F,C]), view(%xs, [N,C,H'·W'])) [+ view(%b, [F,1])], [N,F,H',W'])

Why: IREE 3.13's CUDA code for 1×1 convolutions is wrong in f16 on an H200 (ResNet's
downsample conv1x1/s2 + batch norm: max error 1.98 at output scale 1.9, relative 1.03, with or
without `--iree-codegen-llvmgpu-use-igemm=false`; slicing away the stride alone changed nothing:
same error to three digits), while 3×3 and 7×7 convolutions, the same IR on the CPU, and
eager are right (bench/gpu/f16_accuracy.py, docs/decisions.md). Matmuls of this form are right
on CUDA (GPT-2, Llama, BERT). The rewrite computes the same values: a 1×1 kernel at stride s
reads exactly the pixels the slices keep (⌊(H − 1)/s⌋ + 1 = len(range(0, H, s))).

Leaves alone: other kernel sizes, padding, transposed or grouped convolutions, dynamic dims.
Runs on the torch ops after convert-kiln-to-torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from kiln.bindings import ir
from kiln.passes.base import KilnPass, collect_ops
from kiln.torch_ir import TensorInfo, TorchBuilder, constant_or, tensor_info


def _pointwise(op: ir.Operation):
    """(x info, w info, stride) of a convertible 1×1 convolution, else None."""
    x, w = tensor_info(op.operands[0]), tensor_info(op.operands[1])
    stride = constant_or(op.operands[3], None)
    padding = constant_or(op.operands[4], None)
    transposed = constant_or(op.operands[6], None)
    groups = constant_or(op.operands[8], None)
    if None in (x, w, stride, padding, transposed, groups) or transposed or groups != 1:
        return None
    if len(stride) != 2 or x.rank != 4 or any(p != 0 for p in padding):
        return None
    if tuple(w.shape[2:]) != (1, 1) or None in x.shape or None in w.shape:
        return None
    return x, w, stride


@dataclass
class PointwiseConvToMatmul(KilnPass):
    name = "kiln-pointwise-conv-to-matmul"
    summary = ("1x1 convolution → [strided slices +] matmul over channels (works around "
               "IREE 3.13's wrong CUDA code for 1x1 convolutions)")

    def apply(self, module: ir.Operation) -> None:
        for op in collect_ops(module, "torch.aten.convolution"):
            found = _pointwise(op)
            if found is None:
                continue
            x, w, stride = found
            out = tensor_info(op.results[0])
            bias = op.operands[2]
            with ir.InsertionPoint(op), op.location:
                b = TorchBuilder(op.location)
                value, shape = op.operands[0], list(x.shape)
                for axis, step in enumerate(stride):
                    if step != 1:
                        dim, size = axis + 2, shape[axis + 2]
                        shape[dim] = len(range(0, size, step))
                        value = b.aten("slice.Tensor", TensorInfo(tuple(shape), x.dtype), value,
                                       b.int(dim), b.int(0), b.int(size), b.int(step))
                n, c, h, wd = shape
                f = w.shape[0]
                flat = b.view(value, (n, c, h * wd))
                weight = b.view(op.operands[1], (f, c))
                y = b.aten("matmul", TensorInfo((n, f, h * wd), out.dtype), weight, flat)
                if tensor_info(bias) is not None:
                    column = b.view(bias, (f, 1))
                    y = b.aten("add.Tensor", TensorInfo((n, f, h * wd), out.dtype), y, column,
                               b.int(1))
                y = b.view(y, (n, f, h, wd))
            self.record("conv1x1", f"stride {list(stride)} → matmul {f}x{c} · {c}x{h * wd}", op)
            op.results[0].replace_all_uses_with(y)
            op.erase()
