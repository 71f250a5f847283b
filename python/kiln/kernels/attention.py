"""Plans for kiln.attention in f16 / bf16: flash-attention forward (Sq > 1) and split-KV decode
(Sq == 1).

Inputs, in order: the buffers q, k and v are read from (by default three: in0 = q [b, hq, sq,
d], in1 = k [b, hkv, sk, d], in2 = v [b, hkv, sk, d]); then the mask when given: a contiguous
tensor of shape `mask_shape` (rank <= 4, padded with leading 1s) broadcastable to [b, hq, sq,
sk]; "additive" (dtype q's or f32) or "bool" (int8, nonzero = keep); then cos and sin when
`rope` is given. Output: out [b, hq, sq, d] ("bhsd") or [b, sq, hq, d] ("bshd") in q's dtype.

Strided operands: `buffers` lists the shapes of the q/k/v buffers, and `q_view`, `k_view`,
`v_view` = (buffer index, offset, batch stride, head stride, seq stride) in elements (head-dim
stride 1) say where each operand lives in them: q, k and v can all be slices of one fused QKV
projection output [b, s, (hq + 2·hkv)·d], read in place. `rope` = (rope_q, rope_k, table shape
(1 or b, s, d), table dtype): rotary embedding (rotate-half) of q and/or k while loading, with
cos/sin indexed by the query's / key's position on its sequence axis.

Semantics: softmax(scale · q·kᵀ + mask) · v with causal masking top-left aligned (key j is
masked for query i when j > i, as torch's SDPA, also when sq != sk); a query row whose keys
are all masked gives 0 (as torch's SDPA math path, "safe softmax").

Decode (sq == 1) splits the keys over `splits` programs per (batch, kv head); each program
holds the hq/hkv query heads of its kv head as rows of one tile. With splits > 1 it writes
tmp0 = f32 [b, hq, splits, d] (normalized partial outputs) and tmp1 = f32 [b, hq, splits]
(their base-2 log-sum-exp), merged by a second kernel; with splits == 1 one launch writes out.

Decode over a KV cache written in place (`new_kv` = (k_new view, v_new view), decode only): the
k and v views are then the caches [b, hkv, sk, d] (whole buffers of their own), and the new key
and value rows [b, hkv, 1, d] are read through the `new_kv` views (typically slices of the QKV
projection, like q); one more input follows the others: the cache slot, int64 [1]. The kernel
writes both rows at that slot (the key rotated when rope_k: with `new_kv` rope_k means the new
key, the cached keys being rotated already) and attends over the cache with them: the caches are
inputs the plan writes (`PlanSpec.written`), whose updated values the call returns after out.
"""

from __future__ import annotations

import math
from typing import Optional

from kiln.kernels import configs
from kiln.kernels.configs import DecodeConfig, PrefillConfig, cdiv, pow2
from kiln.kernels.plan import (DEFAULT_ARCH, SPLITS_REDUCED_IN_KERNEL, KernelParam,
                               KernelUnsupported, LaunchSpec, PlanSpec, kernel_arch, replace)

DTYPES = ("f16", "bf16")
MASK_KINDS = {"additive": 1, "bool": 2}
MAX_HEAD_DIM = 256
INT32_LIMIT = 2**31 - 1
LOG2E = 1.4426950408889634


def _positive(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise KernelUnsupported(f"attention: {name} must be a positive int, got {value!r}")


def _mask_strides(mask_shape, b, hq, sq, sk) -> tuple[int, int, int, int]:
    shape = tuple(mask_shape)
    if len(shape) > 4:
        raise KernelUnsupported(f"attention: mask of rank {len(shape)} (at most 4)")
    shape = (1,) * (4 - len(shape)) + shape
    target = (b, hq, sq, sk)
    for dim, want in zip(shape, target):
        if dim not in (1, want):
            raise KernelUnsupported(f"attention: mask shape {tuple(mask_shape)} does not "
                                    f"broadcast to {target}")
    strides, step = [], 1
    for dim in reversed(shape):
        strides.append(step)
        step *= dim
    strides.reverse()
    return tuple(0 if dim == 1 else stride for dim, stride in zip(shape, strides))


def _check(b, hq, hkv, sq, sk, d, dtype, scale, causal, mask_shape, mask_kind, mask_dtype):
    if dtype not in DTYPES:
        raise KernelUnsupported(f"attention: dtype {dtype!r} (kernels: {', '.join(DTYPES)})")
    for name, value in (("b", b), ("hq", hq), ("hkv", hkv), ("sq", sq), ("sk", sk), ("d", d)):
        _positive(name, value)
    if hq % hkv:
        raise KernelUnsupported(f"attention: hkv={hkv} does not divide hq={hq}")
    if d > MAX_HEAD_DIM:
        raise KernelUnsupported(f"attention: head dim {d} > {MAX_HEAD_DIM}")
    if not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise KernelUnsupported(f"attention: scale must be a finite float, got {scale!r}")
    if not isinstance(causal, bool):
        raise KernelUnsupported(f"attention: causal must be a bool, got {causal!r}")
    given = [x is not None for x in (mask_shape, mask_kind, mask_dtype)]
    if any(given) and not all(given):
        raise KernelUnsupported("attention: mask_shape, mask_kind and mask_dtype go together")
    if mask_kind is not None:
        if mask_kind not in MASK_KINDS:
            raise KernelUnsupported(f"attention: mask_kind {mask_kind!r} (additive or bool)")
        allowed = ("i8",) if mask_kind == "bool" else (dtype, "f32")
        if mask_dtype not in allowed:
            raise KernelUnsupported(f"attention: {mask_kind} mask dtype {mask_dtype!r} (allowed: "
                                    f"{', '.join(allowed)})")
    if max(b * hq * sq * d, b * hkv * sk * d, b * hq * sq * sk) > INT32_LIMIT:
        raise KernelUnsupported("attention: sizes exceed 32-bit offsets")


def _contiguous_view(index: int, shape) -> tuple:
    b, h, s, d = shape
    return (index, 0, h * s * d, s * d, d)


def _check_view(role: str, view, buffers, b: int, h: int, s: int, d: int) -> None:
    if not (isinstance(view, tuple) and len(view) == 5 and
            all(isinstance(v, int) and not isinstance(v, bool) for v in view)):
        raise KernelUnsupported(f"attention: {role} view {view!r} is not (buffer, offset, "
                                f"batch stride, head stride, seq stride)")
    index, offset, *strides = view
    if not 0 <= index < len(buffers):
        raise KernelUnsupported(f"attention: {role} view reads buffer {index} of "
                                f"{len(buffers)}")
    if offset < 0 or any(stride < 0 for stride in strides):
        raise KernelUnsupported(f"attention: {role} view {view} has a negative offset/stride")
    last = offset + (b - 1) * strides[0] + (h - 1) * strides[1] + (s - 1) * strides[2] + d - 1
    size = math.prod(buffers[index])
    if last >= size:
        raise KernelUnsupported(f"attention: {role} view {view} reads element {last} of a "
                                f"buffer of {size}")
    if size > INT32_LIMIT:
        raise KernelUnsupported(f"attention: {role} buffer of {size} elements exceeds 32-bit "
                                f"offsets")


def _check_rope(rope, b: int, sq: int, sk: int, d: int) -> None:
    if not (isinstance(rope, tuple) and len(rope) == 4):
        raise KernelUnsupported(f"attention: rope {rope!r} is not (rope_q, rope_k, table "
                                f"shape, dtype)")
    rope_q, rope_k, shape, table_dtype = rope
    if d % 2:
        raise KernelUnsupported(f"attention: rotary embedding of odd head dim {d}")
    if table_dtype not in DTYPES + ("f32",):
        raise KernelUnsupported(f"attention: rotary table dtype {table_dtype!r}")
    if len(shape) != 3 or shape[0] not in (1, b) or shape[2] != d:
        raise KernelUnsupported(f"attention: rotary table shape {shape} (want (1 or {b}, S, "
                                f"{d}))")
    if (rope_q and shape[1] < sq) or (rope_k and shape[1] < sk):
        raise KernelUnsupported(f"attention: rotary table of {shape[1]} positions for "
                                f"sq={sq}, sk={sk}")
    if not (rope_q or rope_k):
        raise KernelUnsupported("attention: rope given for neither q nor k")


def _check_cache_write(new_kv, buffers, q_view, k_view, v_view, b, hkv, sq, sk, d,
                       causal) -> None:
    if sq != 1 or causal:
        raise KernelUnsupported(f"attention: the cache write (new_kv) is for decode without a "
                                f"causal flag (sq=1, causal=False), got sq={sq}, "
                                f"causal={causal}")
    if not (isinstance(new_kv, tuple) and len(new_kv) == 2):
        raise KernelUnsupported(f"attention: new_kv {new_kv!r} is not (k_new view, v_new view)")
    for role, view in (("k_new", new_kv[0]), ("v_new", new_kv[1])):
        _check_view(role, view, buffers, b, hkv, 1, d)
    caches = (k_view[0], v_view[0])
    if caches[0] == caches[1] or any(
            cache in (q_view[0], new_kv[0][0], new_kv[1][0]) for cache in caches):
        raise KernelUnsupported(f"attention: the k and v caches (buffers {caches}) must be "
                                f"buffers of their own (q and the new rows read buffers "
                                f"{q_view[0]}, {new_kv[0][0]}, {new_kv[1][0]})")
    for role, view in (("k cache", k_view), ("v cache", v_view)):
        if view != _contiguous_view(view[0], (b, hkv, sk, d)) or \
                math.prod(buffers[view[0]]) != b * hkv * sk * d:
            raise KernelUnsupported(f"attention: the {role} is written in place and must be a "
                                    f"whole contiguous [b, hkv, sk, d] buffer, got view {view} "
                                    f"of {buffers[view[0]]}")


def attention_spec(b: int, hq: int, hkv: int, sq: int, sk: int, d: int, dtype: str,
                   scale: float, causal: bool, mask_shape=None, mask_kind: Optional[str] = None,
                   mask_dtype: Optional[str] = None, config=None,
                   arch: str = DEFAULT_ARCH, buffers=None, q_view=None, k_view=None,
                   v_view=None, rope=None, out_layout: str = "bhsd", new_kv=None,
                   merge_in_kernel: Optional[bool] = None) -> PlanSpec:
    causal = bool(causal) if isinstance(causal, (bool, int)) else causal
    _check(b, hq, hkv, sq, sk, d, dtype, scale, causal, mask_shape, mask_kind, mask_dtype)
    arch = kernel_arch(arch)
    if buffers is None:
        buffers = ((b, hq, sq, d), (b, hkv, sk, d), (b, hkv, sk, d))
    buffers = tuple(tuple(shape) for shape in buffers)
    q_view = q_view or _contiguous_view(0, (b, hq, sq, d))
    k_view = k_view or _contiguous_view(1, (b, hkv, sk, d))
    v_view = v_view or _contiguous_view(2, (b, hkv, sk, d))
    for role, view, h, s in (("q", q_view, hq, sq), ("k", k_view, hkv, sk),
                             ("v", v_view, hkv, sk)):
        _check_view(role, view, buffers, b, h, s, d)
    if new_kv is not None:
        _check_cache_write(new_kv, buffers, q_view, k_view, v_view, b, hkv, sq, sk, d, causal)
    if out_layout not in ("bhsd", "bshd"):
        raise KernelUnsupported(f"attention: out_layout {out_layout!r} (bhsd or bshd)")
    if rope is not None:  # with new_kv, k's table row is the new key's (row 0)
        _check_rope(rope, b, sq, 1 if new_kv is not None else sk, d)
    strides = (0, 0, 0, 0)
    if mask_kind is not None:
        strides = _mask_strides(mask_shape, b, hq, sq, sk)

    inputs = [(f"in{i}", shape, dtype) for i, shape in enumerate(buffers)]
    pointers, args = [], []
    for name, view in (("q_ptr", q_view), ("k_ptr", k_view), ("v_ptr", v_view)):
        pointers.append(KernelParam(name, buffers[view[0]], dtype, "input"))
        args.append(f"in{view[0]}")
    if mask_kind is not None:
        shape = tuple(mask_shape)
        name = f"in{len(inputs)}"
        inputs.append((name, shape, mask_dtype))
        pointers.append(KernelParam("mask_ptr", shape, mask_dtype, "input"))
        args.append(name)
    rope_q = rope_k = False
    rope_strides = (0, 0)
    if rope is not None:
        rope_q, rope_k, table, table_dtype = rope
        table = tuple(table)
        rope_strides = (table[1] * d if table[0] > 1 else 0, d)
        for pointer in ("cos_ptr", "sin_ptr"):
            name = f"in{len(inputs)}"
            inputs.append((name, table, table_dtype))
            pointers.append(KernelParam(pointer, table, table_dtype, "input"))
            args.append(name)
    written: tuple[str, ...] = ()
    new_views = {}
    if new_kv is not None:
        for pointer, view in (("kn_ptr", new_kv[0]), ("vn_ptr", new_kv[1])):
            pointers.append(KernelParam(pointer, buffers[view[0]], dtype, "input"))
            args.append(f"in{view[0]}")
        name = f"in{len(inputs)}"
        inputs.append((name, (1,), "i64"))
        pointers.append(KernelParam("pos_ptr", (1,), "i64", "input"))
        args.append(name)
        # The caches are read and written: their pointers become "inout" params.
        for index, param in enumerate(pointers[:3]):
            if param.name in ("k_ptr", "v_ptr"):
                pointers[index] = KernelParam(param.name, param.shape, dtype, "inout")
        written = (f"in{k_view[0]}", f"in{v_view[0]}")
        new_views = dict(KN_OFF=new_kv[0][1], KN_SB=new_kv[0][2], KN_SH=new_kv[0][3],
                         VN_OFF=new_kv[1][1], VN_SB=new_kv[1][2], VN_SH=new_kv[1][3])
    mask_tag = "" if mask_kind is None else f"_{mask_kind}{mask_dtype}"
    strided = (q_view, k_view, v_view) != (_contiguous_view(0, (b, hq, sq, d)),
                                           _contiguous_view(1, (b, hkv, sk, d)),
                                           _contiguous_view(2, (b, hkv, sk, d)))
    layout_tag = ("_strided" if strided else "") + \
        ("_rope" + ("q" if rope_q else "") + ("k" if rope_k else "") if rope else "") + \
        ("_bshd" if out_layout == "bshd" else "") + ("_kvwrite" if new_kv is not None else "")
    if out_layout == "bhsd":
        out_shape, o_strides = (b, hq, sq, d), (hq * sq * d, sq * d, d)
    else:
        out_shape, o_strides = (b, sq, hq, d), (sq * hq * d, d, hq * d)
    common = dict(B=b, HQ=hq, HKV=hkv, SK=sk, D=d, QK_SCALE=float(scale) * LOG2E,
                  MASK_KIND=MASK_KINDS.get(mask_kind, 0), BLOCK_D=pow2(d),
                  mask_ptr=None if mask_kind is None else ...,
                  cos_ptr=None if rope is None else ..., sin_ptr=None if rope is None else ...,
                  Q_OFF=q_view[1], Q_SB=q_view[2], Q_SH=q_view[3],
                  K_OFF=k_view[1], K_SB=k_view[2], K_SH=k_view[3], K_SS=k_view[4],
                  V_OFF=v_view[1], V_SB=v_view[2], V_SH=v_view[3], V_SS=v_view[4],
                  O_SB=o_strides[0], O_SH=o_strides[1], ROPE_Q=bool(rope_q),
                  ROPE_K=bool(rope_k), C_SB=rope_strides[0], C_SS=rope_strides[1])
    out = (out_shape, dtype)
    tag = f"{mask_tag}{layout_tag}"
    if sq == 1:
        decode_common = dict(common, WRITE_KV=new_kv is not None,
                             kn_ptr=None if new_kv is None else ...,
                             vn_ptr=None if new_kv is None else ...,
                             pos_ptr=None if new_kv is None else ...,
                             **(new_views or dict(KN_OFF=0, KN_SB=0, KN_SH=0, VN_OFF=0,
                                                  VN_SB=0, VN_SH=0)))
        plan = _decode(b, hq, hkv, sk, d, dtype, causal, strides, inputs, pointers, args,
                       decode_common, tag, out, config, arch,
                       SPLITS_REDUCED_IN_KERNEL if merge_in_kernel is None else merge_in_kernel)
        return replace(plan, written=written)

    source = "given"
    if config is None:
        config, source = configs.lookup(configs.prefill_key(sq, d, causal))
        if config is None:
            config, source = configs.default_prefill(sq, d, causal), "default"
    config = configs.fit_prefill(config, sq, sk)
    constants = dict(common, SQ=sq, CAUSAL=causal, MS_B=strides[0], MS_H=strides[1],
                     MS_Q=strides[2], MS_K=strides[3], Q_SS=q_view[4], O_SS=o_strides[2],
                     BLOCK_M=config.block_m, BLOCK_N=config.block_n)
    launch = LaunchSpec(
        "triton_attention", "attention_fwd_kernel", _constexprs(constants),
        tuple(pointers) + (KernelParam("o_ptr", out[0], dtype, "output"),),
        tuple(args) + ("out",), (cdiv(sq, config.block_m), b * hq, 1), config.num_warps,
        config.num_stages,
        f"attention_{dtype}_b{b}h{hq}kv{hkv}q{sq}k{sk}d{d}{'_causal' if causal else ''}"
        f"{tag}_{config.label()}", arch)
    return PlanSpec((launch,), (), tuple(inputs), out, config, source)


def _decode(b, hq, hkv, sk, d, dtype, causal, strides, inputs, pointers, args, common,
            tag, out, config, arch, merge_in_kernel: bool) -> PlanSpec:
    keys = 1 if causal else sk  # top-left causal: the single query sees key 0 only
    source = "given"
    if config is None:
        config, source = configs.lookup(configs.decode_key(keys, d))
        if config is None:
            config, source = configs.default_decode(keys, d), "default"
    config, splits, chunk = configs.fit_decode(config, keys, b * hkv)
    group = hq // hkv
    constants = dict(common, MS_B=strides[0], MS_H=strides[1], MS_K=strides[3], KEYS=keys,
                     NUM_SPLITS=splits, CHUNK=chunk, BLOCK_G=pow2(group),
                     BLOCK_N=config.block_n, BLOCK_S=pow2(splits, 2), o_ptr=None,
                     sem_ptr=None)
    label = (f"attention_decode_{dtype}_b{b}h{hq}kv{hkv}k{sk}d{d}"
             f"{'_causal' if causal else ''}{tag}_{config.label()}_s{splits}")
    grid = (splits, b * hkv, 1)
    if splits == 1:
        launch = LaunchSpec(
            "triton_attention", "attention_decode_kernel",
            _constexprs(dict(constants, plse_ptr=None)),  # o_ptr, sem_ptr: None
            tuple(pointers) + (KernelParam("po_ptr", out[0], dtype, "output"),),
            tuple(args) + ("out",), grid, config.num_warps, config.num_stages, label, arch)
        return PlanSpec((launch,), (), tuple(inputs), out, config, source)
    partial_shape, lse_shape = (b, hq, splits, d), (b, hq, splits)
    temps = (("tmp0", partial_shape, "f32"), ("tmp1", lse_shape, "f32"))
    partials = (KernelParam("po_ptr", partial_shape, "f32", "temp"),
                KernelParam("plse_ptr", lse_shape, "f32", "temp"))
    if merge_in_kernel:  # the last split of each (b, kv head) to arrive merges
        semaphores = (("sem0", (b * hkv,), "i32"),)
        constants = {k: v for k, v in constants.items() if k not in ("o_ptr", "sem_ptr")}
        launch = LaunchSpec(
            "triton_attention", "attention_decode_kernel", _constexprs(constants),
            tuple(pointers) + partials + (KernelParam("o_ptr", out[0], dtype, "output"),
                                          KernelParam("sem_ptr", semaphores[0][1], "i32",
                                                      "semaphore")),
            tuple(args) + ("tmp0", "tmp1", "out", "sem0"), grid, config.num_warps,
            config.num_stages, label + "_merged", arch)
        return PlanSpec((launch,), temps, tuple(inputs), out, config, source,
                        semaphores=semaphores)
    partial = LaunchSpec(
        "triton_attention", "attention_decode_kernel", _constexprs(constants),
        tuple(pointers) + partials, tuple(args) + ("tmp0", "tmp1"), grid, config.num_warps,
        config.num_stages, label, arch)
    reduce = LaunchSpec(
        "triton_attention", "attention_decode_reduce_kernel",
        _constexprs(dict(ROWS=b * hq, NUM_SPLITS=splits, D=d, HQ=hq, O_SB=common["O_SB"],
                         O_SH=common["O_SH"], BLOCK_S=pow2(splits, 2), BLOCK_D=pow2(d))),
        (KernelParam("po_ptr", partial_shape, "f32", "temp"),
         KernelParam("plse_ptr", lse_shape, "f32", "temp"),
         KernelParam("o_ptr", out[0], dtype, "output")),
        ("tmp0", "tmp1", "out"), (b * hq, 1, 1), 4 if d >= 128 else 2, 1,
        f"attention_decode_reduce_{dtype}_b{b}h{hq}s{splits}d{d}", arch)
    return PlanSpec((partial, reduce), temps, tuple(inputs), out, config, source)


def _constexprs(values: dict) -> tuple:
    return tuple(sorted((k, v) for k, v in values.items() if v is not ...))
