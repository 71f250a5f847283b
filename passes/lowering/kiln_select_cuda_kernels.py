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

Supported: static shapes; f16 / bf16; linear with its bias and activation (SwiGLU included) and a
weight of at least `min_linear_weight_elements` (smaller GEMMs measured faster in IREE);
attention of rank 4 (rank 3 gets a leading 1) with scale, causal, grouped kv heads and a bool or
additive mask (bool masks travel as int8). Whatever the kernel library declines
(`KernelUnsupported`) is recorded with the library's reason and left for convert-kiln-to-torch.
Must run before it.

Whole layers in few launches (`fuse`, issue 14; the analyses are in cuda_kernel_fusion.py):
    - `linear(x) + r` (also r + linear, and the sum inside `kiln.add_*_norm`, which is split into
      the add and the norm): the GEMM's residual epilogue adds r;
    - `kiln.rms_norm` / `kiln.layer_norm` whose every use is a kernel linear's input: the norm
      runs in those GEMMs' prologue and disappears;
    - attention q/k/v sliced from one buffer (the fused QKV projection, through view, permute
      and head slices) and rotated by `kiln.rope`: read in place and rotated while loading; a
      result only permuted to [B, S, H, D] is written in that layout;
    - decode (one query) whose k and v are `where(slot == position, new row, cache)` (the
      decode step of kiln.kv_cache): the kernel reads the new rows in place (rotated), writes
      them into the caches at the position and attends over them; the call returns the output
      and the two caches, tied to the cache operands so IREE updates them in place, and the
      selects' results are replaced by them (no pass over the cache, no RoPE or write
      dispatch).
`split_k=False` keeps every GEMM one launch (no split-K partials + reduce).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from kiln.bindings import ir
from kiln.cuda_kernels import (KERNEL_ATTR, KERNEL_PREFIX, build_plan, encode_spec,
                               plan_buffer_types, plan_problem)
from kiln.passes.base import KilnPass, collect_ops, erase_if_dead
from kiln.passes.lowering.cuda_kernel_fusion import (ADD_NORM_OPS, NORM_OPS, VIEW_OPS,
                                                     decode_cache_write, foldable_norm,
                                                     merged_heads_use,
                                                     split_residual_norm, through_views,
                                                     trace_strided, view_source)
from kiln.torch_ir import TensorInfo, TorchBuilder, constant_or, tensor_info, vtensor_type

KERNEL_DTYPES = ("f16", "bf16")
_ELEMENT = {"f16": ir.F16Type.get, "bf16": ir.BF16Type.get, "f32": ir.F32Type.get,
            "si8": lambda: ir.IntegerType.get_signless(8),
            "si64": lambda: ir.IntegerType.get_signless(64)}
_KERNEL_DTYPE = {"f16": "f16", "bf16": "bf16", "f32": "f32", "si8": "i8", "si64": "i64"}


class Unsupported(Exception):
    """Why an op keeps IREE's code generation."""


@dataclass(frozen=True)
class AttentionOperands:
    """How a fused attention call gets its operands: q/k/v (for a cache write: q, new k, new v)
    as traced views (None: their own buffer), the buffers passed, the rotary tables, and for a
    decode that writes its KV cache the two writes and the view chains from them to the
    attention (erased with it)."""

    traced: list
    bases: list
    tables: Optional[tuple]
    writes: tuple = ()
    feeders: tuple = ()


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
    activation = ir.StringAttr(op.attributes["activation"]).value
    width, k = (shape_w[0], shape_w[1]) if layout == "out_in" else (shape_w[1], shape_w[0])
    n = _static(tensor_info(op.results[0]), "result")[-1]
    if n != (width // 2 if activation == "swiglu" else width):
        raise Unsupported(f"result width {n} for a weight of {width} outputs ({activation})")
    m = math.prod(shape_x[:-1])
    if width * k < min_weight_elements:
        raise Unsupported(f"weight {width}x{k} is below the measured kernel threshold "
                          f"({min_weight_elements} elements)")
    args = dict(m=m, n=n, k=k, dtype=x.dtype, weight_layout=layout, has_bias=bias is not None,
                activation=activation)
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
    order; views of the linear's result in between) with r of the add's exact static shape and
    dtype and as many elements as the linear's result, else None."""
    result, _ = through_views(op.results[0])
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
    out, info, total = tensor_info(result), tensor_info(other), tensor_info(add.results[0])
    if info is None or info != out or None in info.shape or total != out:
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
    # Fold residual adds, norms, q/k/v slicing, RoPE and the head merge into the kernels.
    fuse: bool = True
    # Allow split-K GEMMs (partials + a reduce launch) where the config table chose them.
    split_k: bool = False
    # Tests: each call becomes the kiln/torch ops that compute its spec (any target, no Triton
    # compile; passes/lowering/cuda_kernel_emulation.py), to run the rewrites on the CPU.
    emulate: bool = False

    def apply(self, module: ir.Operation) -> None:
        # torch-mlir's Python build has no torch_c (TorchConversion) dialect; its ops are
        # created unregistered and printed in generic form, which IREE's torch input parses.
        module.context.allow_unregistered_dialects = True
        self._declarations: dict[str, str] = {}  # spec → function name
        self._body = module.regions[0].blocks[0]
        folded: dict = {}
        if self.fuse:
            for op in collect_ops(module, tuple(ADD_NORM_OPS)):
                kind = op.name
                norm = split_residual_norm(op, self._linear_fits)
                if norm is not None:
                    self.record(kind, "split: the residual add goes to a GEMM epilogue, "
                                "the norm to the GEMMs that read it", norm)
            for op in collect_ops(module, NORM_OPS):
                norm = foldable_norm(op, self._linear_fits)
                if norm is not None:
                    folded[op.results[0]] = norm
        for op in collect_ops(module, tuple(SPECS)):
            if op.name == "kiln.linear":
                self._linear(op, folded)
            else:
                self._attention(op)
        erase_if_dead([norm.op for norm in folded.values()])

    # -----------------------------------------------------------------------------------------

    def _linear_fits(self, op: ir.Operation) -> bool:
        """Whether the kernel library would take this linear (its spec; no compile)."""
        try:
            linear_spec(op, self.min_linear_weight_elements)
        except Unsupported:
            return False
        return True

    def _linear(self, op: ir.Operation, folded: dict) -> None:
        try:
            arguments, operands = linear_spec(op, self.min_linear_weight_elements)
        except Unsupported as reason:
            self.record(op.name, f"IREE codegen: {reason}", op)
            return
        arguments["arch"] = self.arch
        if not self.split_k:
            arguments["split_k"] = False
        weight = operands[1]
        bias = operands[2] if arguments["has_bias"] else None
        replaced, residual = op, None
        if self.fuse:
            found = _residual_add(op)
            if found is not None:
                # linear(x) + r: the kernel's residual epilogue adds r (one launch, no
                # separate elementwise dispatch reading the linear's output back).
                replaced, residual = found
                arguments["has_residual"] = True
        norm = folded.get(view_source(op.operands[0])) if self.fuse else None
        # Merged weights are read part by part whether or not the rest is fused: with external
        # weights a concatenation left in the artifact is copied at every load.
        weight_parts = _concat_parts(weight, 0) \
            if arguments["weight_layout"] == "out_in" else None
        bias_parts = _concat_parts(bias, 0) if weight_parts and bias is not None else None
        if bias_parts is not None and [tensor_info(v).shape[0] for v in bias_parts] != \
                [tensor_info(v).shape[0] for v in weight_parts]:
            bias_parts = None
        attempts = []
        for use_norm in ([True, False] if norm is not None else [False]):
            for use_parts in ([True, False] if weight_parts else [False]):
                args = dict(arguments)
                x, norm_values = operands[0], []
                if use_norm:
                    args.update(norm=norm.kind, norm_eps=norm.epsilon,
                                has_norm_weight=norm.weight is not None,
                                has_norm_bias=norm.bias is not None,
                                norm_dtype=_KERNEL_DTYPE.get(tensor_info(
                                    norm.weight if norm.weight is not None
                                    else norm.input).dtype))
                    x = norm.input
                    norm_values = [v for v in (norm.weight, norm.bias) if v is not None]
                weights, biases = [weight], [bias] if bias is not None else []
                if use_parts:
                    weights = weight_parts
                    args["weight_parts"] = tuple(tensor_info(v).shape[0] for v in weights)
                    if bias_parts is not None:
                        biases = bias_parts
                        args["bias_parts"] = args["weight_parts"]
                values = [x] + list(weights) + list(biases) + \
                    ([residual] if residual is not None else []) + norm_values
                attempts.append((args, values))
        for position, (args, values) in enumerate(attempts):
            try:
                name, spec = self._declaration("linear", args)
            except Unsupported as reason:
                if position + 1 < len(attempts):
                    continue
                self.record(op.name, f"IREE codegen: {reason}", op)
                return
            break
        with ir.InsertionPoint(replaced), op.location:
            value = self._call_linear(op, name, values, args, replaced)
        self.record(op.name, f"kernel {name}: {spec}", op)
        replaced.results[0].replace_all_uses_with(value)
        # The linear, the add it replaced and the views around them (x's views of a folded
        # norm, the result's views up to the add), and a concatenation of weights now read
        # part by part, are dead now.
        erase_if_dead(_unique([replaced] + _views_between(op.results[0], replaced) + [op] +
                              _views_before(op.operands[0]) + _producers(weight) +
                              (_producers(bias) if bias is not None else [])))

    def _attention(self, op: ir.Operation) -> None:
        try:
            arguments, operands = attention_spec(op)
        except Unsupported as reason:
            self.record(op.name, f"IREE codegen: {reason}", op)
            return
        arguments["arch"] = self.arch
        attempts = []
        if self.fuse:
            written = self._cache_write_attention(op, arguments)
            if written is not None:
                attempts.append(written)
            fused = self._strided_attention(op, arguments)
            if fused is not None:
                attempts.append(fused)
        attempts.append((arguments, None, op))
        for position, (args, strided, replaced) in enumerate(attempts):
            try:
                name, spec = self._declaration("attention", args)
            except Unsupported as reason:
                if position + 1 < len(attempts):
                    continue
                self.record(op.name, f"IREE codegen: {reason}", op)
                return
            break
        writes = strided.writes if strided is not None else ()
        # The call goes before the op it replaces (the attention, or the permute after it);
        # with cache writes before the attention itself, ahead of the selects' other uses.
        anchor = replaced if not writes else op
        with ir.InsertionPoint(anchor), op.location:
            value, caches = self._call_attention(op, name, operands, args, strided, replaced)
        self.record(op.name, f"kernel {name}: {spec}", op)
        replaced.results[0].replace_all_uses_with(value)
        dead = [replaced] + _views_between(op.results[0], replaced) + [op]
        if writes:
            # The attention and the views that led the selects to it go first, so that the
            # selects' remaining uses all follow the call; then the selects go too.
            erase_if_dead(_unique(dead + list(strided.feeders)))
            dead = []
            for write, cache in zip(writes, caches):
                write.op.results[0].replace_all_uses_with(cache)
                dead += [write.op] + list(write.chain)
        if strided is not None:  # the slices, permutes and ropes that fed q, k and v
            dead += [chained for operand in strided.traced if operand is not None
                     for chained in operand.chain]
        erase_if_dead(_unique(dead))

    def _strided_attention(self, op: ir.Operation, arguments: dict):
        """(spec arguments, AttentionOperands, op to replace) for reading q, k, v in place (and
        rotating them), or None when none of them is a view of anything."""
        traced = [trace_strided(op.operands[i]) for i in range(3)]
        ropes = _one_rope_table(traced, op.operands[1])
        if traced[2] is not None and traced[2].rope is not None:
            traced[2] = trace_strided(op.operands[2], allow_rope=False)
        merged = merged_heads_use(op.results[0])
        if all(t is None for t in traced) and merged is None:
            return None
        bases: list[ir.Value] = []
        views = _operand_views(traced, op.operands[:3], bases)
        args = dict(arguments)
        args["buffers"] = tuple(_buffer_shape(v) for v in bases)
        args["q_view"], args["k_view"], args["v_view"] = views
        tables = _rope_arguments(traced, ropes, args)
        args["out_layout"] = "bshd" if merged is not None else "bhsd"
        return args, AttentionOperands(traced, bases, tables), \
            merged if merged is not None else op

    def _cache_write_attention(self, op: ir.Operation, arguments: dict):
        """(spec arguments, AttentionOperands, op to replace) for a decode attention over
        caches written by `where(slot == position, new row, cache)`
        (cuda_kernel_fusion.decode_cache_write), or None when it is not one."""
        if arguments["sq"] != 1 or arguments["causal"]:
            return None
        writes = [decode_cache_write(op.operands[i]) for i in (1, 2)]
        if any(w is None for w in writes) or writes[0].position != writes[1].position or \
                writes[0].cache == writes[1].cache:
            return None
        # The call stands where the attention stood and its caches replace the selects'
        # results: every other use must come after it, or be a view chain (GQA's repeat)
        # that only fed the attention (erased with it).
        feeders = []
        for write in writes:
            chain = _feeds_only(write.op.results[0], op)
            if chain is None:
                return None
            feeders += chain
        traced = [trace_strided(op.operands[0]), trace_strided(writes[0].new),
                  trace_strided(writes[1].new, allow_rope=False)]
        ropes = _one_rope_table(traced, writes[0].new)
        bases: list[ir.Value] = []
        views = _operand_views(traced, (op.operands[0], writes[0].new, writes[1].new), bases)
        if any(w.cache == base for w in writes for base in bases):
            return None
        cache_views = _operand_views([None, None], [w.cache for w in writes], bases)  # whole
        args = dict(arguments)
        args["buffers"] = tuple(_buffer_shape(v) for v in bases)
        args["q_view"], args["k_view"], args["v_view"] = views[0], cache_views[0], cache_views[1]
        args["new_kv"] = (views[1], views[2])
        tables = _rope_arguments(traced, ropes, args)
        merged = merged_heads_use(op.results[0])
        args["out_layout"] = "bshd" if merged is not None else "bhsd"
        return args, AttentionOperands(traced, bases, tables, tuple(writes), tuple(feeders)), \
            merged if merged is not None else op

    # -----------------------------------------------------------------------------------------

    def _declaration(self, builder: str, arguments: dict) -> tuple[str, str]:
        """(function name, spec) of the kernel declaration for these arguments, declaring it
        (with its plan compiled) the first time; Unsupported when no plan takes them."""
        spec = encode_spec(builder, arguments)
        if self.emulate:  # the library's checks of the arguments, without compiling
            from kiln.kernels import KernelUnsupported
            from kiln.kernels.attention import attention_spec as attention_plan_spec
            from kiln.kernels.linear import linear_spec as linear_plan_spec

            try:
                {"linear": linear_plan_spec, "attention": attention_plan_spec}[builder](
                    **arguments)
            except KernelUnsupported as reason:
                raise Unsupported(str(reason)) from None
            return "emulated", spec
        if spec not in self._declarations:
            plan = self._plan(builder, arguments, self.arch)
            self._declarations[spec] = declare_kernel(
                self._body, plan, spec, f"{KERNEL_PREFIX}{len(self._declarations)}")
        return self._declarations[spec], spec

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

    def _invoke(self, b: TorchBuilder, name: str, values: list, result: TensorInfo,
                location, builder: str, args: dict, written: tuple = ()):
        """The call's result value; with `written` (TensorInfos of inputs the kernel updates
        in place) a tuple: the result, then those inputs' new values."""
        if self.emulate:
            from kiln.passes.lowering.cuda_kernel_emulation import emulate

            return emulate(b, builder, args, values, result, location)
        builtin = [_builtin(b, v) for v in values]
        infos = [result] + list(written)
        call = ir.Operation.create(
            "func.call", results=[ir.RankedTensorType.get(list(i.shape), _ELEMENT[i.dtype]())
                                  for i in infos],
            operands=builtin, attributes={"callee": ir.FlatSymbolRefAttr.get(name)},
            loc=location)
        values = tuple(_from_builtin(b, r, i) for r, i in zip(call.results, infos))
        return values if written else values[0]

    def _call_linear(self, op: ir.Operation, name: str, values: list, args: dict,
                     replaced: ir.Operation) -> ir.Value:
        """Call with `values` in the plan's order: x, weight(s), bias(es), residual, norm
        parameters; x and the residual viewed as [m, k] and [m, n]."""
        b = TorchBuilder(op.location)
        m, n, k = args["m"], args["n"], args["k"]
        values = [b.view(values[0], (m, k))] + list(values[1:])
        if args.get("has_residual"):
            parts = len(args.get("weight_parts") or (0,))
            biases = len(args.get("bias_parts") or (0,)) if args["has_bias"] else 0
            position = 1 + parts + biases
            values[position] = b.view(values[position], (m, n))
        result = self._invoke(b, name, values, TensorInfo((m, n), tensor_info(
            op.results[0]).dtype), op.location, "linear", args)
        return b.view(result, tuple(tensor_info(replaced.results[0]).shape))

    def _call_attention(self, op: ir.Operation, name: str, operands: list, args: dict,
                        strided, replaced: ir.Operation) -> ir.Value:
        b = TorchBuilder(op.location)
        out = tensor_info(replaced.results[0])
        four = lambda v: b.view(v, (1,) * (4 - tensor_info(v).rank) +  # noqa: E731
                                tuple(tensor_info(v).shape))
        if strided is None:
            values = [four(v) for v in operands[:3]]
        else:
            values = list(strided.bases)
        if len(operands) > 3:
            mask = four(operands[3])
            bool_mask = tensor_info(mask).dtype == "i1" and not self.emulate
            values.append(b.cast(mask, "si8") if bool_mask else mask)
        if strided is not None and strided.tables is not None:
            for table in strided.tables:
                info = tensor_info(table)
                values.append(b.view(table, (info.shape[0], info.shape[2], info.shape[3])))
        writes = strided.writes if strided is not None else ()
        if writes:
            values.append(writes[0].position)
        shape = (args["b"], args["hq"], args["sq"], args["d"]) \
            if args.get("out_layout", "bhsd") == "bhsd" else \
            (args["b"], args["sq"], args["hq"], args["d"])
        result = self._invoke(b, name, values, TensorInfo(shape, out.dtype), op.location,
                              "attention", args,
                              tuple(tensor_info(w.cache) for w in writes))
        if writes:
            return b.view(result[0], tuple(out.shape)), result[1:]
        return b.view(result, tuple(out.shape)), ()


def declare_kernel(body: ir.Block, plan, spec: str, name: str) -> str:
    """Declare `func.func private @name` at the top of `body` with the plan's types (its
    inputs; out, then the inputs it updates in place, which kiln.cuda_kernels ties) and the
    kernel spec; returns `name`."""
    inputs, buffers = plan_buffer_types(plan)
    types = [ir.Type.parse(t) for t in inputs.values()]
    results = [buffers["out"]] + [inputs[n] for n in plan.written]
    function_type = ir.FunctionType.get(types, [ir.Type.parse(t) for t in results])
    with ir.InsertionPoint.at_block_begin(body):
        ir.Operation.create("func.func", regions=1, attributes={
            "sym_name": ir.StringAttr.get(name),
            "sym_visibility": ir.StringAttr.get("private"),
            "function_type": ir.TypeAttr.get(function_type),
            KERNEL_ATTR: ir.StringAttr.get(spec)})
    return name


_REPEAT_OPS = VIEW_OPS + ("torch.aten.unsqueeze", "torch.aten.expand")


def _feeds_only(value: ir.Value, attention: ir.Operation):
    """The ops between `value` and `attention` when every use of `value` is the attention, a
    later op, or a chain of views/unsqueezes/expands (grouped-query attention's repeat of the
    kv heads) used only by the attention; else None."""
    chain: list[ir.Operation] = []

    def visit(current: ir.Value, in_chain: bool) -> bool:
        for use in current.uses:
            user = use.owner.operation
            if user == attention:
                continue
            if user.name in _REPEAT_OPS and visit(user.results[0], True):
                chain.append(user)
                continue
            if in_chain or user.parent != attention.parent or \
                    not attention.is_before_in_block(user):
                return False
        return True

    return chain if visit(value, False) else None


def _one_rope_table(traced: list, k_value: ir.Value) -> list:
    """The ropes the kernel applies to q and k (`traced[0]`, `traced[1]`): it reads one rotary
    table, so where q's and k's tables differ, k (`k_value`) is traced again without its rope
    and read from the rope's result."""
    ropes = [t.rope for t in traced[:2] if t is not None and t.rope is not None]
    if ropes and any(r.cos != ropes[0].cos or r.sin != ropes[0].sin for r in ropes):
        traced[1] = trace_strided(k_value, allow_rope=False)
        ropes = ropes[:1] if traced[0] is not None and traced[0].rope is not None else []
    return ropes


def _operand_views(traced: list, values, bases: list) -> list[tuple]:
    """Each operand as the kernel reads it, (buffer, offset, batch/head/seq strides): through
    its traced view of a buffer, or (untraced: None) its own contiguous buffer. The buffers
    are appended to `bases` once each."""
    views = []
    for item, value in zip(traced, values):
        base = value if item is None else item.base
        position = next((i for i, known in enumerate(bases) if known == base), None)
        if position is None:
            position = len(bases)
            bases.append(base)
        if item is None:
            shape = (1,) * (4 - tensor_info(value).rank) + tuple(tensor_info(value).shape)
            strides = (shape[1] * shape[2] * shape[3], shape[2] * shape[3], shape[3])
            views.append((position, 0) + strides)
        else:
            views.append((position, item.layout.offset) + tuple(item.layout.strides[:3]))
    return views


def _rope_arguments(traced: list, ropes: list, args: dict) -> Optional[tuple]:
    """Sets the spec's `rope` (rotate q, rotate k, table shape, table dtype) when there are
    `ropes`; returns the (cos, sin) tables the call passes, or None."""
    if not ropes:
        return None
    info = tensor_info(ropes[0].cos)
    args["rope"] = (traced[0] is not None and traced[0].rope is not None,
                    traced[1] is not None and traced[1].rope is not None,
                    (info.shape[0], info.shape[2], info.shape[3]), _KERNEL_DTYPE[info.dtype])
    return ropes[0].cos, ropes[0].sin


def _buffer_shape(value: ir.Value) -> tuple[int, ...]:
    return tuple(_static(tensor_info(value), "attention buffer"))


def _views_between(value: ir.Value, end: ir.Operation) -> list[ir.Operation]:
    """The single-use views from `value` up to the op `end` that uses the last of them."""
    views, current = [], value
    while True:
        uses = list(current.uses)
        if len(uses) != 1:
            return views
        user = uses[0].owner.operation
        if user == end or user.name not in VIEW_OPS:
            return views
        views.append(user)
        current = user.results[0]


def _views_before(value: ir.Value) -> list[ir.Operation]:
    """The chain of views that produced `value` (nearest first)."""
    views, current = [], value
    while True:
        op = current.owner.operation if isinstance(current, ir.OpResult) else None
        if op is None or op.name not in VIEW_OPS:
            return views
        views.append(op)
        current = op.operands[0]


def _unique(ops: list) -> list:
    kept: list = []
    for op in ops:
        if not any(op == other for other in kept):
            kept.append(op)
    return kept


def _concat_parts(value, axis: int):
    """The 2-3 tensors `value` is the `aten.cat` of along `axis` (kiln-merge-linears' merged
    weights and biases), or None."""
    from kiln.passes.lowering.cuda_kernel_fusion import concat_parts

    return concat_parts(value, axis)


def _producers(value: ir.Value) -> list[ir.Operation]:
    """The op defining `value` and, for a cat, its list (erased when dead)."""
    op = value.owner.operation if isinstance(value, ir.OpResult) else None
    if op is None or op.name != "torch.aten.cat":
        return []
    listed = op.operands[0]
    return [op] + ([listed.owner.operation] if isinstance(listed, ir.OpResult) else [])
