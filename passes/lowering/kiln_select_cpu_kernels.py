"""kiln-select-cpu-kernels: the dense product of each f32 `kiln.linear` that Kiln's CPU GEMM
takes becomes a call of it (kiln.cpu_kernels); bias and activation stay torch ops for IREE, or
with option fold_epilogues go into the kernel's store (kiln.cpu_kernels.Epilogue; the compiler
sets it by the host's kind, kiln.targets.HOST_CPU_EPILOGUES, measured; kiln.cpu_kernels.
FOLD_EPILOGUES overrides it).

Before (target cpu, option cpu_kernels="on"):
    %y = kiln.linear(%x, %w, %b) {activation = "gelu_tanh", weight_layout = "out_in"}
         : (!torch.vtensor<[1,128,768],f32>, !torch.vtensor<[3072,768],f32>, ...) -> ...
After:
    %x2 = torch.aten.view %x, [128, 768]
    %wp = torch.aten.permute (torch.aten.view %w, [64, 48, 768]), [0, 2, 1]   (panels)
    %g  = func.call @kiln_cpu_gemm_128x768x3072(%x2, %wp) (through torch_c builtin tensors)
    %y  = gelu_tanh(torch.aten.view %g, [1, 128, 3072] + %b)
    func.func private @kiln_cpu_gemm_128x768x3072(...) attributes {kiln.cpu_gemm = "128x768x3072"}
With fold_epilogues:
    %g  = func.call @kiln_cpu_gemm_128x768x3072_bias_gelu_tanh(%x2, %wp, %b)
    %y  = torch.aten.view %g, [1, 128, 3072]
    func.func private @kiln_cpu_gemm_128x768x3072_bias_gelu_tanh(...)
        attributes {kiln.cpu_epilogue = "bias,gelu_tanh", kiln.cpu_gemm = "128x768x3072"}

Decode rows (M ≤ 4) of a weight stored [out, in] call the matrix-vector kernel instead, on the
weight as it is (`kiln_cpu_gemv_MxKxN`, attribute `kiln.cpu_gemv`; no packed copy).

Panels are 48 columns where N is a multiple of 48, else 32 (`kiln.cpu_kernels.gemm_panel`;
option `lanes` = 8, the AVX2 hosts' width: 24 or 16, and the declaration carries
`kiln.cpu_lanes = 8`). Columns that do not fill a panel (GPT-2's vocabulary of 50257) are
padded with zero weights and bias (`torch.aten.constant_pad_nd` on the constants: IREE folds
them) and the padding's results sliced off.

The declaration's body is written into the text handed to IREE by
`kiln.cpu_kernels.render_cpu_gemm_calls`. The linear is lowered by convert-kiln-to-torch's
`lower_linear` with this pass's product, so a SwiGLU linear becomes two GEMMs (gate, up; SiLU
in the gate's store with fold_epilogues) and their product. Linears the kernel does not take (dtype, dynamic shapes, sizes:
`kiln.cpu_kernels.gemm_problem`) are recorded with the reason and left for
convert-kiln-to-torch, which must run after this pass.

Attention (option `attention`: the compiler's; "cpu_kernel", or "auto" while
`kiln.cpu_attention.ATTENTION_DEFAULT` is on): an f32 `kiln.attention` the CPU attention kernel
takes (`kiln.cpu_attention.attention_problem`) becomes

    %kt = torch.aten.transpose.int %k, -2, -1                   [B, Hkv, D, Sk]
    %o  = func.call @kiln_cpu_attention_<hash>(%q, %kt, %v[, %mask])   [B, Sq, Hq, D]
    %y  = torch.aten.permute %o, [0, 2, 1, 3]                   [B, Hq, Sq, D]
    func.func private @kiln_cpu_attention_<hash>(...) attributes {kiln.cpu_attention = "<spec>"}

(a boolean mask first becomes the additive 0 / -inf one; a mask of lower rank is viewed at rank
4). Refused attentions are recorded ("decomposed: <reason>") and decomposed by
convert-kiln-to-torch.

Convolutions (option `convolutions`): an f32 2-D `torch.aten.convolution` (groups 1, dilation
1, static shapes) becomes a call of Kiln's implicit-GEMM convolution (kiln.cpu_conv):

    %xp = view(constant_pad_nd(permute(%x, [0, 2, 3, 1]), [0, Cp-C, pw, pw, ph, ph]), [L])
    %wp = permute(view(permute(pad(%w), [2, 3, 1, 0]), [K, F/W, W]), [1, 0, 2])   (panels)
    %o  = func.call @kiln_cpu_conv_<key>(%xp, %wp)              [pixels (padded), F (padded)]
    %y  = permute(view(slice(%o), [N, OH, OW, F]), [0, 3, 1, 2]) [+ bias]
    func.func private @kiln_cpu_conv_<key>(...) attributes {kiln.cpu_conv = "<key>"}

The layout changes and the padding are IREE's copies (fused with the elementwise ops around).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from kiln.bindings import ir
from kiln.cpu_attention import (ATTENTION_ATTR, ATTENTION_DEFAULT, ATTENTION_KERNEL,
                                CPU_ATTENTION_TAKEN, AttentionSpec, attention_problem,
                                operand_shapes)
from kiln.cpu_conv import CONV_ATTR, CPU_CONV_TAKEN, ConvSpec
from kiln.cpu_conv import MIN_MACS as MIN_CONV_MACS
from kiln.cpu_conv import operand_types as conv_operand_types
from kiln.cpu_kernels import (CPU_KERNEL_TAKEN, EPILOGUE_ATTR, GEMM_ATTR, GEMM_PREFIX, GEMV_ATTR,
                              GEMV_PREFIX, LANES_ATTR, MIN_GEMV_WEIGHTS, MIN_MACS, Epilogue,
                              gemm_panel, gemm_problem, gemv_problem, packed_weight_shape,
                              register_tiles, shape_key)
from kiln.passes.base import KilnPass, PassError, collect_ops
from kiln.passes.lowering.convert_kiln_to_torch import linear_activation, lower_linear
from kiln.torch_ir import TensorInfo, TorchBuilder, constant_or, tensor_info


def _problem(op: ir.Operation, min_macs: int, min_gemv_weights: int,
             lanes: int) -> Optional[str]:
    x, weight, out = (tensor_info(op.operands[0]), tensor_info(op.operands[1]),
                      tensor_info(op.results[0]))
    if {x.dtype, weight.dtype, out.dtype} != {"f32"}:
        return f"dtype {x.dtype} (the kernel is f32)"
    if None in x.shape or None in out.shape or None in weight.shape:
        return "dynamic shape"
    m, k, n = math.prod(x.shape[:-1]), x.shape[-1], out.shape[-1]
    layout = ir.StringAttr(op.attributes["weight_layout"]).value
    if _takes_gemv(m, k, n, layout, min_gemv_weights, lanes):
        return None
    return gemm_problem(m, k, n, min_macs, min_gemv_weights, lanes)


def _attention_spec(op: ir.Operation):
    """The AttentionSpec of a kiln.attention the CPU kernel takes, or why it does not."""
    q, k, v = (tensor_info(op.operands[i]) for i in range(3))
    out = tensor_info(op.results[0])
    mask = tensor_info(op.operands[3]) if len(op.operands) > 3 else None
    infos = (q, k, v, out) + ((mask,) if mask else ())
    if any(info.dtype != "f32" for info in infos[:4]) or (mask and mask.dtype not in ("f32",
                                                                                   "i1")):
        return ("dtype " + "/".join(sorted({info.dtype for info in infos})) +
                " (the kernel is f32, with an f32 or boolean mask)")
    if any(None in info.shape for info in infos):
        return "dynamic shape"
    if q.rank != 4 or k.rank != 4 or v.rank != 4:
        return f"rank {q.rank} (the kernel takes [batch, heads, length, head dim])"
    batch, heads, q_len, dim = q.shape
    if k.shape[0] != batch or v.shape[:3] != k.shape[:3] or k.shape[3] != dim or \
            v.shape[3] != dim:
        return f"q {list(q.shape)}, k {list(k.shape)}, v {list(v.shape)}"
    mask_shape = None
    if mask is not None:
        if mask.rank > 4:
            return f"mask of rank {mask.rank}"
        mask_shape = (1,) * (4 - mask.rank) + tuple(mask.shape)
    spec = AttentionSpec(batch, heads, k.shape[1], q_len, k.shape[2], dim,
                         scale=ir.FloatAttr(op.attributes["scale"]).value,
                         causal=ir.BoolAttr(op.attributes["causal"]).value,
                         mask_shape=mask_shape)
    return attention_problem(spec) or spec


def _conv_spec(op: ir.Operation, lanes: int, min_macs: int):
    """(ConvSpec, padding) of a torch.aten.convolution the CPU convolution kernel takes, or
    why it does not."""
    x, w, out = (tensor_info(op.operands[0]), tensor_info(op.operands[1]),
                 tensor_info(op.results[0]))
    stride, padding, dilation, transposed, groups = (constant_or(op.operands[i], None)
                                                     for i in (3, 4, 5, 6, 8))
    if None in (x, w, out) or {x.dtype, w.dtype, out.dtype} != {"f32"}:
        return "dtype (the kernel is f32)"
    if x.rank != 4 or w.rank != 4 or None in x.shape or None in w.shape or None in out.shape:
        return "not a 2-D convolution of static shape"
    if None in (stride, padding, dilation, transposed, groups) or transposed or groups != 1:
        return "transposed, grouped, or with non-constant parameters"
    if any(d != 1 for d in dilation):
        return f"dilation {list(dilation)}"
    try:
        spec = ConvSpec.of(x.shape, w.shape, tuple(stride), tuple(padding), lanes)
    except ValueError as error:
        return str(error)
    if (spec.out_h, spec.out_w) != tuple(out.shape[2:]):
        return f"output {list(out.shape)} does not follow from the input and padding"
    if spec.macs < min_macs:
        return f"{spec.macs} multiply-adds are below {min_macs}"
    return spec, tuple(padding)


def _takes_gemv(m: int, k: int, n: int, layout: str, min_weights: int, lanes: int) -> bool:
    """The matrix-vector kernel reads a weight stored [out, in] as it is (decode rows)."""
    return layout == "out_in" and gemv_problem(m, k, n, min_weights, lanes) is None


@dataclass
class SelectCpuKernels(KilnPass):
    name = "kiln-select-cpu-kernels"
    summary = ("Replace the product of f32 kiln.linear ops by calls of Kiln's CPU GEMM where it "
               "takes the shape")
    min_macs: int = MIN_MACS  # smaller products stay with IREE (lit tests set 0)
    min_gemv_weights: int = MIN_GEMV_WEIGHTS  # likewise for the matrix-vector kernel
    # kiln.attention through Kiln's CPU attention kernel (kiln.cpu_attention): "cpu_kernel"
    # takes it, "auto" as kiln.cpu_attention.ATTENTION_DEFAULT says, anything else (the other
    # lowerings convert-kiln-to-torch knows) leaves it alone. The compiler's `attention` option.
    attention: str = "auto"
    # f32 per vector register of the target CPU (kiln.targets.cpu_vector_lanes): 16 for
    # AVX-512, 8 for AVX2; the kernels' register tiles are kiln.cpu_kernels.REGISTER_TILES'.
    lanes: int = 16
    # bias and activation in the kernels' stores (kiln.cpu_kernels.FOLD_EPILOGUES: measured off)
    fold_epilogues: bool = False
    # f32 convolutions through Kiln's implicit-GEMM kernel (kiln.cpu_conv): the compile target's
    # cpu_convolutions (kiln.targets.HOST_CPU_CONVOLUTIONS)
    convolutions: bool = False
    min_conv_macs: int = MIN_CONV_MACS  # smaller convolutions stay with IREE (lit tests set 0)

    def apply(self, module: ir.Operation) -> None:
        # torch_c ops are created unregistered (as in kiln-select-cuda-kernels)
        module.context.allow_unregistered_dialects = True
        try:  # a vector width without register tiles is refused before any rewrite
            register_tiles(self.lanes)
        except ValueError as error:
            raise PassError(f"{self.name}: {error}") from None
        self._body = module.regions[0].blocks[0]
        self._declared: set[str] = set()
        for op in collect_ops(module, ("kiln.linear",)):
            reason = _problem(op, self.min_macs, self.min_gemv_weights, self.lanes)
            if reason is not None:
                self.record(op.name, f"IREE codegen: {reason}", op)
                continue
            with ir.InsertionPoint(op), op.location:
                value = lower_linear(op, dense=self._dense)
            self.record(op.name, CPU_KERNEL_TAKEN, op)
            op.results[0].replace_all_uses_with(value)
            op.erase()
        if self.attention == ATTENTION_KERNEL or (self.attention == "auto" and
                                                  ATTENTION_DEFAULT):
            for op in collect_ops(module, ("kiln.attention",)):
                self._select_attention(op)
        if self.convolutions:
            for op in collect_ops(module, ("torch.aten.convolution",)):
                self._select_convolution(op)

    def _select_convolution(self, op: ir.Operation) -> None:
        """A call of the CPU convolution kernel in place of `op`, or a recorded reason why not
        (IREE's convolution then)."""
        found = _conv_spec(op, self.lanes, self.min_conv_macs)
        if isinstance(found, str):
            self.record(op.name, f"IREE codegen: {found}", op)
            return
        spec, (pad_h, pad_w) = found
        from kiln.passes.lowering.kiln_select_cuda_kernels import _from_builtin

        x, weight, bias = op.operands[0], op.operands[1], op.operands[2]
        n, c, h, wd = tensor_info(x).shape
        f, _, kh, kw = tensor_info(weight).shape
        out = tensor_info(op.results[0])
        b = TorchBuilder(op.location)
        with ir.InsertionPoint(op), op.location:
            nhwc = b.aten("permute", TensorInfo((n, h, wd, c), "f32"), x,
                          b.int_list([0, 2, 3, 1]))
            padded = b.aten("constant_pad_nd", TensorInfo(
                (n, spec.height, spec.width, spec.channels), "f32"), nhwc,
                b.int_list([0, spec.channels - c, pad_w, pad_w, pad_h, pad_h]), b.float(0.0))
            flat = b.view(padded, (spec.input_length,))
            if (spec.features, spec.channels) != (f, c):  # zero output and input channels
                weight = b.aten("constant_pad_nd", TensorInfo(
                    (spec.features, spec.channels, kh, kw), "f32"), weight,
                    b.int_list([0, 0, 0, 0, 0, spec.channels - c, 0, spec.features - f]),
                    b.float(0.0))
            hwcf = b.aten("permute", TensorInfo((kh, kw, spec.channels, spec.features), "f32"),
                          weight, b.int_list([2, 3, 1, 0]))
            grouped = b.view(hwcf, (spec.reduction, spec.panels, spec.panel))
            packed = b.aten("permute", TensorInfo(spec.packed_weight_shape(), "f32"), grouped,
                            b.int_list([1, 0, 2]))
            types = [ir.Type.parse(t) for t in conv_operand_types(spec)]
            call = self._kernel_call(b, spec.name(), [flat, packed], types[:2], types[2],
                                     {CONV_ATTR: ir.StringAttr.get(spec.key())})
            y = _from_builtin(b, call, TensorInfo((spec.padded_pixels, spec.features), "f32"))
            if spec.padded_pixels != spec.pixels:  # the last tile's repeated pixels
                y = b.slice(y, 0, 0, spec.pixels, TensorInfo((spec.pixels, spec.features), "f32"))
            if spec.features != f:  # the padding channels
                y = b.slice(y, 1, 0, f, TensorInfo((spec.pixels, f), "f32"))
            y = b.view(y, (n, out.shape[2], out.shape[3], f))
            y = b.aten("permute", TensorInfo(tuple(out.shape), "f32"), y,
                       b.int_list([0, 3, 1, 2]))
            if tensor_info(bias) is not None:
                y = b.aten("add.Tensor", TensorInfo(tuple(out.shape), "f32"), y,
                           b.view(bias, (f, 1, 1)), b.int(1))
        self.record(op.name, CPU_CONV_TAKEN, op)
        op.results[0].replace_all_uses_with(y)
        op.erase()

    def _select_attention(self, op: ir.Operation) -> None:
        """A call of the CPU attention kernel in place of `op`, or a recorded reason why not
        (convert-kiln-to-torch then decomposes it)."""
        spec_or_reason = _attention_spec(op)
        if isinstance(spec_or_reason, str):
            self.record(op.name, f"decomposed: {spec_or_reason}", op)
            return
        spec = spec_or_reason
        from kiln.passes.lowering.kiln_select_cuda_kernels import _from_builtin

        q, k, v = op.operands[0], op.operands[1], op.operands[2]
        b = TorchBuilder(op.location)
        with ir.InsertionPoint(op), op.location:
            shapes = operand_shapes(spec)
            # Kᵀ [B, Hkv, D, Sk]: the kernel's score vectors are 16 keys of one row of Kᵀ.
            operands = [q, b.aten("transpose.int", TensorInfo(shapes[1], "f32"), k, b.int(-2),
                                  b.int(-1)), v]
            if spec.mask_shape is not None:
                mask = op.operands[3]
                if tensor_info(mask).dtype == "i1":  # true = attend: 0, else -inf (as SDPA)
                    mask = b.aten("where.Scalar", TensorInfo(tensor_info(mask).shape, "f32"),
                                  mask, b.float(0.0), b.float(float("-inf")))
                if tensor_info(mask).shape != spec.mask_shape:
                    mask = b.view(mask, spec.mask_shape)
                operands.append(mask)
            types = [ir.RankedTensorType.get(list(shape), ir.F32Type.get()) for shape in shapes]
            call = self._kernel_call(b, spec.name(), operands, types[:-1], types[-1],
                                     {ATTENTION_ATTR: ir.StringAttr.get(spec.key())})
            value = b.aten("permute", TensorInfo(tensor_info(op.results[0]).shape, "f32"),
                           _from_builtin(b, call, TensorInfo(shapes[-1], "f32")),
                           b.int_list([0, 2, 1, 3]))
        self.record(op.name, CPU_ATTENTION_TAKEN, op)
        op.results[0].replace_all_uses_with(value)
        op.erase()

    def _dense(self, b: TorchBuilder, x: ir.Value, weight: ir.Value, bias, layout: str,
               out: TensorInfo, activation: str = "none") -> ir.Value:
        """activation(x · Wᵀ + bias) (out_in) or activation(x · W + bias) (in_out) through the
        kernel: bias and activation in its store (fold_epilogues), else as torch ops after it."""
        x_info = tensor_info(x)
        m, k, n = math.prod(x_info.shape[:-1]), x_info.shape[-1], out.shape[-1]
        fold = self.fold_epilogues
        epilogue = Epilogue(bias is not None, activation) if fold else Epilogue()
        if _takes_gemv(m, k, n, layout, self.min_gemv_weights, self.lanes):
            product = self._call(b, (m, k, n), b.view(x, (m, k)), weight, gemv=True,
                                 bias=bias, epilogue=epilogue)
            return self._rest(b, b.view(product, tuple(out.shape)), bias, activation, out, fold)
        panel = gemm_panel(m, n, self.lanes)  # e.g. 32 or 48 columns of 16-float vectors
        padded = -(-n // panel) * panel  # columns padded to whole panels with zero weights
        panels = padded // panel
        if layout == "out_in":  # W [n, k] → [n/32, 32, k] → [n/32, k, 32] (32: the panel)
            if padded != n:
                weight = b.aten("constant_pad_nd", TensorInfo((padded, k), "f32"), weight,
                                b.int_list([0, 0, 0, padded - n]), b.float(0.0))
            grouped, order = b.view(weight, (panels, panel, k)), (0, 2, 1)
        else:  # W [k, n] → [k, n/32, 32] → [n/32, k, 32]
            if padded != n:
                weight = b.aten("constant_pad_nd", TensorInfo((k, padded), "f32"), weight,
                                b.int_list([0, padded - n]), b.float(0.0))
            grouped, order = b.view(weight, (k, panels, panel)), (1, 0, 2)
        packed = b.aten("permute", TensorInfo(packed_weight_shape(k, padded, panel), "f32"),
                        grouped, b.int_list(order))
        kernel_bias = bias
        if epilogue.bias and padded != n:  # the padding columns add 0
            kernel_bias = b.aten("constant_pad_nd", TensorInfo((padded,), "f32"), bias,
                                 b.int_list([0, padded - n]), b.float(0.0))
        product = self._call(b, (m, k, padded), b.view(x, (m, k)), packed, gemv=False,
                             panel=panel, bias=kernel_bias, epilogue=epilogue)
        if padded != n:  # the padding columns' results are dropped
            product = b.slice(product, 1, 0, n, TensorInfo((m, n), "f32"))
        return self._rest(b, b.view(product, tuple(out.shape)), bias, activation, out, fold)

    @staticmethod
    def _rest(b: TorchBuilder, y: ir.Value, bias, activation: str, out: TensorInfo,
              folded: bool) -> ir.Value:
        """What the kernel's store did not do: + bias and the activation, as torch ops."""
        if folded:
            return y
        if bias is not None:
            y = b.aten("add.Tensor", out, y, bias, b.int(1))
        return linear_activation(b, out, y, activation)

    def _call(self, b: TorchBuilder, shape: tuple[int, int, int], a: ir.Value,
              weight: ir.Value, gemv: bool, panel: int = 0, bias=None,
              epilogue: Epilogue = Epilogue()) -> ir.Value:
        """A call of the GEMM (weight packed in panels) or the GEMV (weight [n, k]), with
        `epilogue` in its store (`bias`: [n], when the epilogue adds one)."""
        from kiln.passes.lowering.kiln_select_cuda_kernels import _from_builtin

        m, k, n = shape
        name = (GEMV_PREFIX if gemv else GEMM_PREFIX) + shape_key(m, k, n) + epilogue.suffix
        f32 = ir.F32Type.get()
        a_type = ir.RankedTensorType.get([m, k], f32)
        b_type = ir.RankedTensorType.get(
            [n, k] if gemv else list(packed_weight_shape(k, n, panel)), f32)
        c_type = ir.RankedTensorType.get([m, n], f32)
        operand_types = [a_type, b_type] + ([ir.RankedTensorType.get([n], f32)]
                                            if epilogue.bias else [])
        attributes = {GEMV_ATTR if gemv else GEMM_ATTR: ir.StringAttr.get(shape_key(m, k, n))}
        if self.lanes != 16:
            attributes[LANES_ATTR] = ir.IntegerAttr.get(ir.IntegerType.get_signless(64),
                                                        self.lanes)
        if epilogue.attribute:
            attributes[EPILOGUE_ATTR] = ir.StringAttr.get(epilogue.attribute)
        call = self._kernel_call(b, name, [a, weight] + ([bias] if epilogue.bias else []),
                                 operand_types, c_type, attributes)
        return _from_builtin(b, call, TensorInfo((m, n), "f32"))

    def _kernel_call(self, b: TorchBuilder, name: str, operands: list, input_types: list,
                     result_type: ir.Type, attributes: dict) -> ir.Value:
        """A call of the kernel declaration `name` (declared once, at the module's start, with
        `attributes`: what render_cpu_*_calls read) on `operands` (torch tensors, passed as
        builtin tensors); its builtin result."""
        from kiln.passes.lowering.kiln_select_cuda_kernels import _builtin

        if name not in self._declared:
            with ir.InsertionPoint.at_block_begin(self._body):
                ir.Operation.create("func.func", regions=1, attributes={
                    "sym_name": ir.StringAttr.get(name),
                    "sym_visibility": ir.StringAttr.get("private"),
                    "function_type": ir.TypeAttr.get(ir.FunctionType.get(input_types,
                                                                          [result_type])),
                    **attributes})
            self._declared.add(name)
        return ir.Operation.create("func.call", results=[result_type],
                                   operands=[_builtin(b, x) for x in operands],
                                   attributes={"callee": ir.FlatSymbolRefAttr.get(name)},
                                   loc=b.location).result
