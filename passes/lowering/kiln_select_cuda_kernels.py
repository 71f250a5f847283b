"""kiln-select-cuda-kernels: give each `kiln.linear` / `kiln.attention` a library kernel where one
supports its shape and dtype; the rest stay for IREE's own code generation.

Before (target cuda):
    %y = kiln.linear(%x, %w, %b) {activation = "gelu_tanh", weight_layout = "in_out"}
         : (!torch.vtensor<[1,128,768],f16>, ...) -> !torch.vtensor<[1,128,3072],f16>
After:
    %x2 = torch.aten.view %x, [128, 768]
    %xb = torch_c.to_builtin_tensor %x2 ...            (and %w, %b)
    %yb = func.call @kiln_kernel_0(%xb, %wb, %bb) : (...) -> tensor<128x3072xf16>
    %y  = torch.aten.view (torch_c.from_builtin_tensor %yb), [1, 128, 3072]
    func.func private @kiln_kernel_0(...) attributes {kiln.kernel = "linear(m=128, ...)"}

The declaration's body (dispatches of ahead-of-time compiled Triton kernels for the pass's
`arch`: sm_90a by default, sm_80 / sm_86 / sm_87 / sm_89 on request) is
written into the text handed to IREE by `kiln.cuda_kernels.render_kernel_calls`, since
torch-mlir's MLIR has no `flow`/`hal` ops. Equal specs share one declaration.

Supported: static shapes; f16 / bf16; linear with its bias and activation and a weight of at
least `min_linear_weight_elements` (smaller GEMMs measured faster in IREE); attention of rank 4
(rank 3 gets a leading 1) with scale, causal, grouped kv heads and a bool or additive mask
(bool masks travel as int8). Whatever the kernel library declines (`KernelUnsupported`) is
recorded with the library's reason and left for convert-kiln-to-torch. Must run before it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kiln.bindings import ir
from kiln.cuda_kernels import (KERNEL_ATTR, KERNEL_PREFIX, build_plan, encode_spec,
                               plan_buffer_types, plan_problem)
from kiln.passes.base import KilnPass, collect_ops
from kiln.torch_ir import TensorInfo, TorchBuilder, constant_or, tensor_info, vtensor_type

KERNEL_DTYPES = ("f16", "bf16")
_ELEMENT = {"f16": ir.F16Type.get, "bf16": ir.BF16Type.get, "f32": ir.F32Type.get,
            "si8": lambda: ir.IntegerType.get_signless(8)}
_KERNEL_DTYPE = {"f16": "f16", "bf16": "bf16", "f32": "f32", "si8": "i8"}


class Unsupported(Exception):
    """Why an op keeps IREE's code generation."""


def _static(info: TensorInfo, role: str) -> tuple[int, ...]:
    if None in info.shape:
        raise Unsupported(f"{role} has a dynamic shape {info}")
    return tuple(info.shape)


def _builtin(b: TorchBuilder, value: ir.Value) -> ir.Value:
    info = tensor_info(value)
    tensor = ir.RankedTensorType.get(list(info.shape), _ELEMENT[info.dtype]())
    return ir.Operation.create("torch_c.to_builtin_tensor", results=[tensor], operands=[value],
                               loc=b.location).result


def _from_builtin(b: TorchBuilder, value: ir.Value, info: TensorInfo) -> ir.Value:
    return ir.Operation.create("torch_c.from_builtin_tensor",
                               results=[vtensor_type(info.shape, info.dtype)], operands=[value],
                               loc=b.location).result


# Linears whose weight has fewer elements stay with IREE. Measured on an H200 (docs/kernels.md,
# bench/gpu/kernel_artifacts.py): whole small models (hidden 128, every weight <= 128x512 =
# 65536 elements, each GEMM a split-K pair of launches) ran 0.03-0.07 ms slower with kernels
# (TinyGPT 0.190 vs 0.122 ms), while GPT-2 small / Llama-style / BERT-base (weights >= 768x768)
# ran 1.4-9x faster. The boundary between the two was not swept.
MIN_LINEAR_WEIGHT_ELEMENTS = 1 << 18


def linear_spec(op: ir.Operation, min_weight_elements: int = MIN_LINEAR_WEIGHT_ELEMENTS
                ) -> tuple[dict, list[ir.Value]]:
    """kiln.linear → kernel spec arguments and the operands in the plan's input order."""
    x, w = tensor_info(op.operands[0]), tensor_info(op.operands[1])
    bias = op.operands[2] if len(op.operands) > 2 else None
    if x.dtype not in KERNEL_DTYPES:
        raise Unsupported(f"dtype {x.dtype} (kernels: {', '.join(KERNEL_DTYPES)})")
    shape_x, shape_w = _static(x, "input"), _static(w, "weight")
    if w.dtype != x.dtype or (bias is not None and tensor_info(bias).dtype != x.dtype):
        raise Unsupported(f"mixed dtypes: input {x}, weight {w}" +
                          (f", bias {tensor_info(bias)}" if bias is not None else ""))
    if bias is not None and tensor_info(bias).rank != 1:
        raise Unsupported(f"bias of rank {tensor_info(bias).rank}")
    layout = ir.StringAttr(op.attributes["weight_layout"]).value
    n, k = (shape_w[0], shape_w[1]) if layout == "out_in" else (shape_w[1], shape_w[0])
    m = math.prod(shape_x[:-1])
    if n * k < min_weight_elements:
        raise Unsupported(f"weight {n}x{k} is below the measured kernel threshold "
                          f"({min_weight_elements} elements)")
    args = dict(m=m, n=n, k=k, dtype=x.dtype, weight_layout=layout, has_bias=bias is not None,
                activation=ir.StringAttr(op.attributes["activation"]).value)
    return args, [op.operands[0], op.operands[1]] + ([bias] if bias is not None else [])


def attention_spec(op: ir.Operation) -> tuple[dict, list[ir.Value]]:
    q, k, v = (tensor_info(op.operands[i]) for i in range(3))
    mask = op.operands[3] if len(op.operands) > 3 else None
    if q.dtype not in KERNEL_DTYPES:
        raise Unsupported(f"dtype {q.dtype} (kernels: {', '.join(KERNEL_DTYPES)})")
    if q.rank not in (3, 4):
        raise Unsupported(f"query of rank {q.rank}")
    shapes = [(1,) * (4 - t.rank) + _static(t, role) for t, role in
              ((q, "query"), (k, "key"), (v, "value"))]
    (b, hq, sq, d), (_, hkv, sk, _), (_, _, _, dv) = shapes
    if dv != d:
        raise Unsupported(f"value head dim {dv} differs from query head dim {d}")
    args = dict(b=b, hq=hq, hkv=hkv, sq=sq, sk=sk, d=d, dtype=q.dtype,
                scale=ir.FloatAttr(op.attributes["scale"]).value,
                causal=ir.BoolAttr(op.attributes["causal"]).value)
    if mask is not None:
        info = tensor_info(mask)
        shape = _static(info, "mask")
        if info.rank > 4:
            raise Unsupported(f"mask of rank {info.rank}")
        kind = "bool" if info.dtype == "i1" else "additive"
        if kind == "additive" and info.dtype not in ("f16", "bf16", "f32"):
            raise Unsupported(f"mask dtype {info.dtype}")
        args.update(mask_shape=(1,) * (4 - info.rank) + shape, mask_kind=kind,
                    mask_dtype="i8" if kind == "bool" else _KERNEL_DTYPE[info.dtype])
    return args, [op.operands[i] for i in range(len(op.operands))]


def _residual_add(op: ir.Operation):
    """(the add, r) when the linear's only use is `aten.add.Tensor(linear, r, 1)` (either
    order) with r of the result's exact static shape and dtype, else None."""
    result = op.results[0]
    uses = list(result.uses)
    if len(uses) != 1:
        return None
    add = uses[0].owner.operation
    if add.name != "torch.aten.add.Tensor" or constant_or(add.operands[2], None) != 1:
        return None
    lhs, rhs = add.operands[0], add.operands[1]
    other = rhs if lhs == result else lhs if rhs == result else None
    if other is None or other == result:
        return None
    out, info = tensor_info(result), tensor_info(other)
    if info is None or info != out or None in info.shape or tensor_info(add.results[0]) != out:
        return None
    return add, other


SPECS = {"kiln.linear": ("linear", linear_spec), "kiln.attention": ("attention", attention_spec)}


@dataclass
class SelectCudaKernels(KilnPass):
    name = "kiln-select-cuda-kernels"
    summary = ("Replace kiln.linear / kiln.attention by calls of library CUDA kernels (PTX for "
               "`arch`) where a kernel supports the shape and dtype")
    min_linear_weight_elements: int = MIN_LINEAR_WEIGHT_ELEMENTS
    arch: str = "sm_90a"  # the kernels' PTX target (kiln.kernels.ARCHS; sm_90 means sm_90a)

    def apply(self, module: ir.Operation) -> None:
        # torch-mlir's Python build has no torch_c (TorchConversion) dialect; its ops are
        # created unregistered and printed in generic form, which IREE's torch input parses.
        module.context.allow_unregistered_dialects = True
        declarations: dict[str, str] = {}  # spec → function name
        body = module.regions[0].blocks[0]
        for op in collect_ops(module, tuple(SPECS)):
            builder, describe = SPECS[op.name]
            replaced = op
            try:
                arguments, operands = describe(op) if builder != "linear" else \
                    describe(op, self.min_linear_weight_elements)
                arguments["arch"] = self.arch
                residual = _residual_add(op) if builder == "linear" else None
                if residual is not None:
                    # linear(x) + r: the kernel's residual epilogue adds r (one launch, no
                    # separate elementwise dispatch reading the linear's output back).
                    replaced, r = residual
                    arguments["has_residual"] = True
                    operands = operands + [r]
                spec = encode_spec(builder, arguments)
                if spec not in declarations:
                    plan = self._plan(builder, arguments, self.arch)
                    declarations[spec] = self._declare(body, plan, spec, len(declarations))
            except Unsupported as reason:
                self.record(op.name, f"IREE codegen: {reason}", op)
                continue
            with ir.InsertionPoint(replaced), op.location:
                value = self._call(op, declarations[spec], operands, builder, arguments)
            self.record(op.name, f"kernel {declarations[spec]}: {spec}", op)
            replaced.results[0].replace_all_uses_with(value)
            if replaced is not op:
                replaced.erase()
            op.erase()

    @staticmethod
    def _plan(builder: str, arguments: dict, arch: str):
        from kiln.kernels import KernelUnsupported

        try:
            plan = build_plan(builder, arguments)
        except KernelUnsupported as reason:
            raise Unsupported(str(reason)) from None
        problem = plan_problem(plan, arch)
        if problem:
            raise Unsupported(problem)
        return plan

    @staticmethod
    def _declare(body: ir.Block, plan, spec: str, index: int) -> str:
        inputs, buffers = plan_buffer_types(plan)
        name = f"{KERNEL_PREFIX}{index}"
        types = [ir.Type.parse(t) for t in inputs.values()]
        function_type = ir.FunctionType.get(types, [ir.Type.parse(buffers["out"])])
        with ir.InsertionPoint.at_block_begin(body):
            ir.Operation.create("func.func", regions=1, attributes={
                "sym_name": ir.StringAttr.get(name),
                "sym_visibility": ir.StringAttr.get("private"),
                "function_type": ir.TypeAttr.get(function_type),
                KERNEL_ATTR: ir.StringAttr.get(spec)})
        return name

    @staticmethod
    def _call(op: ir.Operation, name: str, operands: list, builder: str, args: dict) -> ir.Value:
        b = TorchBuilder(op.location)
        out = tensor_info(op.results[0])
        if builder == "linear":
            x = b.view(operands[0], (args["m"], args["k"]))
            values = [x] + operands[1:]
            if args.get("has_residual"):
                values[-1] = b.view(values[-1], (args["m"], args["n"]))
            result = TensorInfo((args["m"], args["n"]), out.dtype)
        else:
            four = lambda v: b.view(v, (1,) * (4 - tensor_info(v).rank) +  # noqa: E731
                                   tuple(tensor_info(v).shape))
            values = [four(v) for v in operands[:3]]
            if len(operands) > 3:
                mask = four(operands[3])
                values.append(b.cast(mask, "si8") if tensor_info(mask).dtype == "i1" else mask)
            result = TensorInfo((args["b"], args["hq"], args["sq"], args["d"]), out.dtype)
        builtin = [_builtin(b, v) for v in values]
        call = ir.Operation.create(
            "func.call", results=[ir.RankedTensorType.get(list(result.shape),
                                                          _ELEMENT[result.dtype]())],
            operands=builtin, attributes={"callee": ir.FlatSymbolRefAttr.get(name)},
            loc=op.location).result
        return b.view(_from_builtin(b, call, result), tuple(out.shape))
