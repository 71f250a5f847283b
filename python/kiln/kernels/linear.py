"""Plans for kiln.linear: Y[m, n] = act(norm(X)[m, k]·W + b) [+ residual] in f16 / bf16.

Inputs, in order: in0 = x [m, k], in1 = w ([n', k] for "out_in", [k, n'] for "in_out", with
n' = 2n for the gated activation "swiglu" (gate features, then up features), else n) — or,
with `weight_parts` (out_in only), the 2-3 weights [n_i, k] whose concatenation W is (q, k, v
projections; gate and up) as in1, in2[, in3] —, then bias [n'] (or its `bias_parts`) when
has_bias, then residual [m, n] when has_residual, then the norm weight [k] when norm and
has_norm_weight, then the norm bias [k] when has_norm_bias (LayerNorm). Output: out [m, n] in
x's dtype.

`norm` ("rms" | "layer") normalizes each row of x over k (epsilon `norm_eps`) inside the GEMM
(kiln.kernels.triton_gemm): x is the norm's input, the normalized activations are never
written. "swiglu": out = silu(x·W_gate + b_gate) · (x·W_up + b_up), two accumulators per tile.

One launch of `linear_kernel`, or with split-K (small m·n, long k: decode-shaped GEMMs) two:
the partial products into tmp0 = f32 [split_k, m, n'], then `splitk_reduce_kernel` applies
bias, activation (or the SwiGLU gate) and residual. `reduce_in_kernel=True` (default:
plan.SPLITS_REDUCED_IN_KERNEL) reduces in the same launch: the last program of a tile to
arrive (counted at the tile's i32 semaphore in sem0, a buffer the plan lists in `semaphores`:
zero before and after every launch, persistent between calls) sums the partials and applies
the epilogue.
`split_k=False` never splits: the table's config is refitted to one launch with enough tiles
for the GPU (configs.without_split_k).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from kiln.kernels import configs
from kiln.kernels.configs import GemmConfig, cdiv
from kiln.kernels.plan import (DEFAULT_ARCH, SPLITS_REDUCED_IN_KERNEL, KernelParam,
                               KernelUnsupported, LaunchSpec, PlanSpec, kernel_arch,
                               shared_memory_limit)

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


def _check_parts(weight_parts, bias_parts, width: int, n: int, weight_layout: str,
                 gated: bool, has_bias: bool) -> None:
    if weight_parts is None:
        if bias_parts is not None:
            raise KernelUnsupported("linear: bias_parts without weight_parts")
        return
    parts = tuple(weight_parts)
    if weight_layout != "out_in":
        raise KernelUnsupported("linear: weight_parts need the out_in layout")
    if not 2 <= len(parts) <= 3 or any(not isinstance(p, int) or p < 1 for p in parts) or \
            sum(parts) != width:
        raise KernelUnsupported(f"linear: weight_parts {parts} (2 or 3 widths summing to "
                                f"{width})")
    if gated and parts != (n, n):
        raise KernelUnsupported(f"linear: gated weight_parts {parts} (want gate and up: "
                                f"({n}, {n}))")
    if bias_parts is not None and (not has_bias or tuple(bias_parts) != parts):
        raise KernelUnsupported(f"linear: bias_parts {bias_parts} (want {parts} with a bias)")


def _part_block_n(block_n: int, boundaries: tuple) -> int:
    """The largest BLOCK_N <= block_n (a power of two >= 16) dividing every part boundary."""
    while block_n > 16 and any(b % block_n for b in boundaries):
        block_n //= 2
    if any(b % block_n for b in boundaries):
        raise KernelUnsupported(f"linear: weight parts of widths {boundaries} are not "
                                f"multiples of 16 (a tile would straddle two parts)")
    return block_n


def linear_spec(m: int, n: int, k: int, dtype: str, weight_layout: str, has_bias: bool,
                activation: str, has_residual: bool = False,
                config: Optional[GemmConfig] = None, arch: str = DEFAULT_ARCH,
                norm: Optional[str] = None, norm_eps: float = 1e-5,
                has_norm_weight: bool = False, has_norm_bias: bool = False,
                norm_dtype: Optional[str] = None, split_k: bool = True,
                weight_parts: Optional[tuple] = None,
                bias_parts: Optional[tuple] = None,
                reduce_in_kernel: Optional[bool] = None) -> PlanSpec:
    norm_dtype = norm_dtype or dtype
    if reduce_in_kernel is None:
        reduce_in_kernel = SPLITS_REDUCED_IN_KERNEL
    _check(m, n, k, dtype, weight_layout, activation, norm, has_norm_bias, norm_dtype,
           norm_eps)
    arch = kernel_arch(arch)
    gated = activation in GATED
    width = 2 * n if gated else n  # output features of W
    _check_parts(weight_parts, bias_parts, width, n, weight_layout, gated, has_bias)
    parts = tuple(weight_parts) if weight_parts else (width,)
    source = "given"
    if config is None:
        config, source = choose_config(m, width, k, weight_layout)
        if gated and (config.split_k == 1 or reduce_in_kernel):
            # The table's config is for one GEMM over all 2n columns; two accumulators of
            # half the tile hold as many registers and read as much W per step.
            config = dataclasses.replace(config, block_n=max(16, config.block_n // 2))
        if not split_k:
            config = configs.without_split_k(config, m, n)
    config, k_split, even_k = configs.fit_gemm(config, m, n, k, shared_memory_limit(arch),
                                               operands=3 if gated else 2)
    # Interior part boundaries a tile must not straddle: in the one-launch GEMM (the gated one
    # reads gate and up at the same columns), and in the split-K partials over all columns.
    boundaries = tuple(sum(parts[:i + 1]) for i in range(len(parts) - 1))
    two_launches = config.split_k > 1 and not reduce_in_kernel
    if len(parts) > 1 and (two_launches or not gated):
        config = dataclasses.replace(config, block_n=_part_block_n(config.block_n,
                                                                   boundaries))
    w_shapes = [(p, k) for p in parts] if weight_layout == "out_in" else [(k, width)]
    inputs = [("in0", (m, k), dtype)] + [(f"in{1 + i}", shape, dtype)
                                         for i, shape in enumerate(w_shapes)]
    named = {}
    b_shapes = [(p,) for p in bias_parts] if bias_parts else [(width,)]
    roles = [(f"bias{i}", has_bias, shape, dtype) for i, shape in enumerate(b_shapes)] + [
        ("residual", has_residual, (m, n), dtype),
        ("norm_weight", norm and has_norm_weight, (k,), norm_dtype),
        ("norm_bias", norm and has_norm_bias, (k,), norm_dtype)]
    for role, present, shape, kind in roles:
        if present:
            named[role] = (f"in{len(inputs)}", shape, kind)
            inputs.append((named[role][0], shape, kind))
    layout_tag = "oi" if weight_layout == "out_in" else "io"
    parts_tag = "" if len(parts) == 1 else "_p" + "-".join(map(str, parts))
    norm_tag = "" if norm is None else f"_{norm}norm" + ("w" if has_norm_weight else "") + \
        ("b" if has_norm_bias else "")
    epilogue_tag = ("_b" if has_bias else "") + ("_r" if has_residual else "")
    extras = parts_tag + epilogue_tag + norm_tag
    split = config.split_k
    pointer_names = {"bias0": "b_ptr", "bias1": "b1_ptr", "bias2": "b2_ptr",
                     "residual": "r_ptr", "norm_weight": "g_ptr", "norm_bias": "nb_ptr"}
    part_constants = dict(PARTS=len(parts), BIAS_PARTS=len(b_shapes) if has_bias else 1,
                          N0=parts[0], N1=parts[1] if len(parts) > 2 else 0)
    norm_constants = dict(NORM=NORMS[norm], EPS=float(norm_eps) if norm else 0.0,
                          g_ptr=... if "norm_weight" in named else None,
                          nb_ptr=... if "norm_bias" in named else None)
    x = KernelParam("x_ptr", (m, k), dtype, "input")
    weights = [KernelParam(name, shape, dtype, "input")
               for name, shape in zip(("w_ptr", "w1_ptr", "w2_ptr"), w_shapes)]
    weight_args = [f"in{1 + i}" for i in range(len(w_shapes))]
    weight_constants = {name: None for name in ("w1_ptr", "w2_ptr")[len(w_shapes) - 1:]}

    def optional(roles):
        """Params, plan inputs and constexprs (None when absent) of optional operands, in the
        kernel's argument order."""
        pointers, args, absent = [], [], {}
        for role in roles:
            if role in named:
                name, shape, kind = named[role]
                pointers.append(KernelParam(pointer_names[role], shape, kind, "input"))
                args.append(name)
            elif not role.startswith("norm"):  # norm pointers: norm_constants
                absent[pointer_names[role]] = None
        return pointers, args, absent

    if not two_launches:
        more, more_args, absent = optional(("bias0", "bias1", "bias2", "residual",
                                            "norm_weight", "norm_bias"))
        pointers = [x] + weights + more + [KernelParam("y_ptr", (m, n), dtype, "output")]
        args = ["in0"] + weight_args + more_args + ["out"]
        tiles = cdiv(m, config.block_m) * cdiv(n, config.block_n)
        temps, semaphores, in_kernel = (), (), {"p_ptr": None, "sem_ptr": None}
        if split > 1:  # the partials and the tiles' semaphores
            temps = (("tmp0", (split, m, width), "f32"),)
            semaphores = (("sem0", (tiles,), "i32"),)
            pointers += [KernelParam("p_ptr", temps[0][1], "f32", "temp"),
                         KernelParam("sem_ptr", semaphores[0][1], "i32", "semaphore")]
            args += ["tmp0", "sem0"]
            in_kernel = {}
        constants = dict(M=m, N=n, K=k, W_IN_OUT=weight_layout == "in_out",
                         ACT=ACTIVATIONS[activation], GATED=gated, SPLIT_K=split,
                         K_SPLIT=k_split, EVEN_K=even_k, BLOCK_M=config.block_m,
                         BLOCK_N=config.block_n, BLOCK_K=config.block_k,
                         GROUP_M=config.group_m, **part_constants, **weight_constants,
                         **absent, **norm_constants, **in_kernel)
        launch = LaunchSpec(
            "triton_gemm", "linear_kernel", _constexprs(constants), tuple(pointers),
            tuple(args), (tiles, split, 1), config.num_warps, config.num_stages,
            f"linear_{dtype}_m{m}n{n}k{k}_{layout_tag}{extras}_{activation}_{config.label()}",
            arch)
        return PlanSpec((launch,), temps, tuple(inputs), ((m, n), dtype), config, source,
                        semaphores=semaphores)

    # Split-K: the partials are a plain GEMM over all `width` columns (both halves when gated),
    # the reduce applies bias, activation or gate, and residual.
    tmp = ("tmp0", (split, m, width), "f32")
    part_tiles = cdiv(m, config.block_m) * cdiv(width, config.block_n)
    more, more_args, absent = optional(("norm_weight", "norm_bias"))
    partial_constants = dict(
        M=m, N=width, K=k, W_IN_OUT=weight_layout == "in_out", ACT=0, GATED=False,
        SPLIT_K=split, K_SPLIT=k_split, EVEN_K=even_k, BLOCK_M=config.block_m,
        BLOCK_N=config.block_n, BLOCK_K=config.block_k, GROUP_M=config.group_m,
        b_ptr=None, b1_ptr=None, b2_ptr=None, r_ptr=None, p_ptr=None, sem_ptr=None,
        **dict(part_constants, BIAS_PARTS=1), **weight_constants, **absent, **norm_constants)
    partial = LaunchSpec(
        "triton_gemm", "linear_kernel", _constexprs(partial_constants),
        tuple([x] + weights + more + [KernelParam("y_ptr", tmp[1], "f32", "temp")]),
        tuple(["in0"] + weight_args + more_args + ["tmp0"]), (part_tiles, split, 1),
        config.num_warps, config.num_stages,
        f"linear_partial_{dtype}_m{m}n{width}k{k}_{layout_tag}{parts_tag}{norm_tag}_"
        f"{config.label()}", arch)
    more, more_args, absent = optional(("bias0", "bias1", "bias2", "residual"))
    reduce = LaunchSpec(
        "triton_gemm", "splitk_reduce_kernel",
        _constexprs(dict(M=m, N=n, SPLIT_K=split, ACT=ACTIVATIONS[activation], GATED=gated,
                         BLOCK=REDUCE_BLOCK, BIAS_PARTS=part_constants["BIAS_PARTS"],
                         N0=parts[0], N1=part_constants["N1"], **absent)),
        tuple([KernelParam("p_ptr", tmp[1], "f32", "temp")] + more +
              [KernelParam("y_ptr", (m, n), dtype, "output")]),
        tuple(["tmp0"] + more_args + ["out"]), (cdiv(m * n, REDUCE_BLOCK), 1, 1), 4, 1,
        f"linear_reduce_{dtype}_m{m}n{n}_s{split}{epilogue_tag}"
        f"{'_bp' if bias_parts else ''}_{activation}", arch)
    return PlanSpec((partial, reduce), (tmp,), tuple(inputs), ((m, n), dtype), config, source)


def _constexprs(values: dict) -> tuple:
    """Constexpr items; `...` marks a pointer that is present (not a constexpr)."""
    return tuple(sorted((k, v) for k, v in values.items() if v is not ...))
