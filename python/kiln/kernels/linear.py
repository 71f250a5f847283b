"""Plans for kiln.linear: Y[m, n] = act(norm(X)[m, k]·W + b) [+ residual] in f16 / bf16.

Inputs, in order: in0 = x [m, k], in1 = w ([n', k] for "out_in", [k, n'] for "in_out", with
n' = 2n for the gated activation "swiglu" (gate features, then up features), else n), then
bias [n'] when has_bias, then residual [m, n] when has_residual, then the norm weight [k] when
norm and has_norm_weight, then the norm bias [k] when has_norm_bias (LayerNorm). Output: out
[m, n] in x's dtype.

`norm` ("rms" | "layer") normalizes each row of x over k (epsilon `norm_eps`) inside the GEMM
(kiln.kernels.triton_gemm): x is the norm's input, the normalized activations are never
written. "swiglu": out = silu(x·W_gate + b_gate) · (x·W_up + b_up), two accumulators per tile.

One launch of `linear_kernel`, or with split-K (small m·n, long k: decode-shaped GEMMs) two:
the partial products into tmp0 = f32 [split_k, m, n'], then `splitk_reduce_kernel` applies
bias, activation (or the SwiGLU gate) and residual. `split_k=False` never splits: the table's
config is refitted to one launch with enough tiles for the GPU (configs.without_split_k).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from kiln.kernels import configs
from kiln.kernels.configs import GemmConfig, cdiv
from kiln.kernels.plan import (DEFAULT_ARCH, KernelParam, KernelUnsupported, LaunchSpec,
                               PlanSpec, kernel_arch, shared_memory_limit)

DTYPES = ("f16", "bf16")
WEIGHT_LAYOUTS = ("out_in", "in_out")
ACTIVATIONS = {"none": 0, "gelu": 1, "gelu_tanh": 2, "relu": 3, "silu": 4, "swiglu": 0}
GATED = ("swiglu",)
NORMS = {None: 0, "rms": 1, "layer": 2}
NORM_WEIGHT_DTYPES = ("f16", "bf16", "f32")
INT32_LIMIT = 2**31 - 1
REDUCE_BLOCK = 1024


def _check(m, n, k, dtype, weight_layout, activation, norm, has_norm_bias, norm_dtype,
           norm_eps) -> None:
    if dtype not in DTYPES:
        raise KernelUnsupported(f"linear: dtype {dtype!r} (kernels: {', '.join(DTYPES)})")
    if weight_layout not in WEIGHT_LAYOUTS:
        raise KernelUnsupported(f"linear: weight_layout {weight_layout!r} (known: "
                                f"{', '.join(WEIGHT_LAYOUTS)})")
    if activation not in ACTIVATIONS:
        raise KernelUnsupported(f"linear: activation {activation!r} (known: "
                                f"{', '.join(ACTIVATIONS)})")
    for name, value in (("m", m), ("n", n), ("k", k)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise KernelUnsupported(f"linear: {name} must be a positive int, got {value!r}")
    width = 2 * n if activation in GATED else n
    if max(m * k, width * k, 8 * m * width) > INT32_LIMIT:
        raise KernelUnsupported(f"linear: m={m}, n={n}, k={k} exceed 32-bit offsets")
    if norm not in NORMS:
        raise KernelUnsupported(f"linear: norm {norm!r} (known: rms, layer)")
    if norm is None and has_norm_bias:
        raise KernelUnsupported("linear: a norm bias without a norm")
    if norm == "rms" and has_norm_bias:
        raise KernelUnsupported("linear: RMSNorm has no bias")
    if norm is not None and norm_dtype not in NORM_WEIGHT_DTYPES:
        raise KernelUnsupported(f"linear: norm weight dtype {norm_dtype!r} (allowed: "
                                f"{', '.join(NORM_WEIGHT_DTYPES)})")
    if norm is not None and not (isinstance(norm_eps, (int, float)) and 0 <= norm_eps < 1):
        raise KernelUnsupported(f"linear: norm epsilon {norm_eps!r}")


def choose_config(m: int, n: int, k: int, weight_layout: str) -> tuple[GemmConfig, str]:
    """(config, table key it came from or "default")."""
    config, key = configs.lookup(configs.linear_key(m, n, k, weight_layout))
    if config is None:
        return configs.default_gemm(m, n, k), "default"
    return config, key


def linear_spec(m: int, n: int, k: int, dtype: str, weight_layout: str, has_bias: bool,
                activation: str, has_residual: bool = False,
                config: Optional[GemmConfig] = None, arch: str = DEFAULT_ARCH,
                norm: Optional[str] = None, norm_eps: float = 1e-5,
                has_norm_weight: bool = False, has_norm_bias: bool = False,
                norm_dtype: Optional[str] = None, split_k: bool = True) -> PlanSpec:
    norm_dtype = norm_dtype or dtype
    _check(m, n, k, dtype, weight_layout, activation, norm, has_norm_bias, norm_dtype,
           norm_eps)
    arch = kernel_arch(arch)
    gated = activation in GATED
    width = 2 * n if gated else n  # output features of W
    source = "given"
    if config is None:
        config, source = choose_config(m, width, k, weight_layout)
        if gated and config.split_k == 1:
            # The table's config is for one GEMM over all 2n columns; two accumulators of
            # half the tile hold as many registers and read as much W per step.
            config = dataclasses.replace(config, block_n=max(16, config.block_n // 2))
        if not split_k:
            config = configs.without_split_k(config, m, n)
    config, k_split, even_k = configs.fit_gemm(config, m, n, k, shared_memory_limit(arch),
                                               operands=3 if gated else 2)
    w_shape = (width, k) if weight_layout == "out_in" else (k, width)
    inputs = [("in0", (m, k), dtype), ("in1", w_shape, dtype)]
    named = {}
    for role, present, shape, kind in (("bias", has_bias, (width,), dtype),
                                       ("residual", has_residual, (m, n), dtype),
                                       ("norm_weight", norm and has_norm_weight, (k,),
                                        norm_dtype),
                                       ("norm_bias", norm and has_norm_bias, (k,), norm_dtype)):
        if present:
            named[role] = f"in{len(inputs)}"
            inputs.append((named[role], shape, kind))
    layout_tag = "oi" if weight_layout == "out_in" else "io"
    norm_tag = "" if norm is None else f"_{norm}norm" + ("w" if has_norm_weight else "") + \
        ("b" if has_norm_bias else "")
    epilogue_tag = ("_b" if has_bias else "") + ("_r" if has_residual else "")
    extras = epilogue_tag + norm_tag
    tiles = cdiv(m, config.block_m) * cdiv(n, config.block_n)
    split = config.split_k
    pointer_of = {"bias": ("b_ptr", (width,)), "residual": ("r_ptr", (m, n)),
                  "norm_weight": ("g_ptr", (k,)), "norm_bias": ("nb_ptr", (k,))}
    norm_constants = dict(NORM=NORMS[norm], EPS=float(norm_eps) if norm else 0.0,
                          g_ptr=... if "norm_weight" in named else None,
                          nb_ptr=... if "norm_bias" in named else None)
    x = KernelParam("x_ptr", (m, k), dtype, "input")
    w = KernelParam("w_ptr", w_shape, dtype, "input")

    input_dtype = {name: kind for name, _, kind in inputs}

    def prologue_pointers(roles):
        """Params and plan inputs of the optional operands `roles` that are present (in the
        kernel's argument order)."""
        pointers, args = [], []
        for role in roles:
            if role in named:
                name, shape = pointer_of[role]
                pointers.append(KernelParam(name, shape, input_dtype[named[role]], "input"))
                args.append(named[role])
        return pointers, args

    if split == 1:
        more, more_args = prologue_pointers(("bias", "residual", "norm_weight", "norm_bias"))
        pointers = [x, w] + more + [KernelParam("y_ptr", (m, n), dtype, "output")]
        args = ["in0", "in1"] + more_args + ["out"]
        constants = dict(M=m, N=n, K=k, W_IN_OUT=weight_layout == "in_out",
                         ACT=ACTIVATIONS[activation], GATED=gated, SPLIT_K=1, K_SPLIT=k_split,
                         EVEN_K=even_k, BLOCK_M=config.block_m, BLOCK_N=config.block_n,
                         BLOCK_K=config.block_k, GROUP_M=config.group_m,
                         b_ptr=... if "bias" in named else None,
                         r_ptr=... if "residual" in named else None, **norm_constants)
        launch = LaunchSpec(
            "triton_gemm", "linear_kernel", _constexprs(constants), tuple(pointers),
            tuple(args), (tiles, 1, 1), config.num_warps, config.num_stages,
            f"linear_{dtype}_m{m}n{n}k{k}_{layout_tag}{extras}_{activation}_{config.label()}",
            arch)
        return PlanSpec((launch,), (), tuple(inputs), ((m, n), dtype), config, source)

    # Split-K: the partials are a plain GEMM over all `width` columns (both halves when gated),
    # the reduce applies bias, activation or gate, and residual.
    tmp = ("tmp0", (split, m, width), "f32")
    part_tiles = cdiv(m, config.block_m) * cdiv(width, config.block_n)
    more, more_args = prologue_pointers(("norm_weight", "norm_bias"))
    partial = LaunchSpec(
        "triton_gemm", "linear_kernel",
        _constexprs(dict(M=m, N=width, K=k, W_IN_OUT=weight_layout == "in_out", ACT=0,
                         GATED=False, SPLIT_K=split, K_SPLIT=k_split, EVEN_K=even_k,
                         BLOCK_M=config.block_m, BLOCK_N=config.block_n,
                         BLOCK_K=config.block_k, GROUP_M=config.group_m, b_ptr=None,
                         r_ptr=None, **norm_constants)),
        tuple([x, w] + more + [KernelParam("y_ptr", tmp[1], "f32", "temp")]),
        tuple(["in0", "in1"] + more_args + ["tmp0"]), (part_tiles, split, 1),
        config.num_warps, config.num_stages,
        f"linear_partial_{dtype}_m{m}n{width}k{k}_{layout_tag}{norm_tag}_{config.label()}",
        arch)
    more, more_args = prologue_pointers(("bias", "residual"))
    reduce = LaunchSpec(
        "triton_gemm", "splitk_reduce_kernel",
        _constexprs(dict(M=m, N=n, SPLIT_K=split, ACT=ACTIVATIONS[activation], GATED=gated,
                         BLOCK=REDUCE_BLOCK, b_ptr=... if "bias" in named else None,
                         r_ptr=... if "residual" in named else None)),
        tuple([KernelParam("p_ptr", tmp[1], "f32", "temp")] + more +
              [KernelParam("y_ptr", (m, n), dtype, "output")]),
        tuple(["tmp0"] + more_args + ["out"]), (cdiv(m * n, REDUCE_BLOCK), 1, 1), 4, 1,
        f"linear_reduce_{dtype}_m{m}n{n}_s{split}{epilogue_tag}_{activation}", arch)
    return PlanSpec((partial, reduce), (tmp,), tuple(inputs), ((m, n), dtype), config, source)


def _constexprs(values: dict) -> tuple:
    """Constexpr items; `...` marks a pointer that is present (not a constexpr)."""
    return tuple(sorted((k, v) for k, v in values.items() if v is not ...))
