"""Plans for kiln.linear: Y[m, n] = act(X[m, k]·W + b) [+ residual] in f16 / bf16.

Inputs, in order: in0 = x [m, k], in1 = w ([n, k] for "out_in", [k, n] for "in_out"),
then in2 = bias [n] when has_bias, then residual [m, n] when has_residual (in2 or in3).
Output: out [m, n] in x's dtype.

One launch of `linear_kernel`, or with split-K (small m·n, long k: decode-shaped GEMMs) two:
the partial products into tmp0 = f32 [split_k, m, n], then `splitk_reduce_kernel` applies bias,
activation and residual.
"""

from __future__ import annotations

from typing import Optional

from kiln.kernels import configs
from kiln.kernels.configs import GemmConfig, cdiv
from kiln.kernels.plan import (DEFAULT_ARCH, KernelParam, KernelUnsupported, LaunchSpec,
                               PlanSpec, kernel_arch, shared_memory_limit)

DTYPES = ("f16", "bf16")
WEIGHT_LAYOUTS = ("out_in", "in_out")
ACTIVATIONS = {"none": 0, "gelu": 1, "gelu_tanh": 2, "relu": 3, "silu": 4}
INT32_LIMIT = 2**31 - 1
REDUCE_BLOCK = 1024


def _check(m, n, k, dtype, weight_layout, activation) -> None:
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
    if max(m * k, n * k, 8 * m * n) > INT32_LIMIT:
        raise KernelUnsupported(f"linear: m={m}, n={n}, k={k} exceed 32-bit offsets")


def choose_config(m: int, n: int, k: int, weight_layout: str) -> tuple[GemmConfig, str]:
    """(config, table key it came from or "default")."""
    config, key = configs.lookup(configs.linear_key(m, n, k, weight_layout))
    if config is None:
        return configs.default_gemm(m, n, k), "default"
    return config, key


def linear_spec(m: int, n: int, k: int, dtype: str, weight_layout: str, has_bias: bool,
                activation: str, has_residual: bool = False,
                config: Optional[GemmConfig] = None, arch: str = DEFAULT_ARCH) -> PlanSpec:
    _check(m, n, k, dtype, weight_layout, activation)
    arch = kernel_arch(arch)
    source = "given"
    if config is None:
        config, source = choose_config(m, n, k, weight_layout)
    config, k_split, even_k = configs.fit_gemm(config, m, n, k, shared_memory_limit(arch))
    w_shape = (n, k) if weight_layout == "out_in" else (k, n)
    inputs = [("in0", (m, k), dtype), ("in1", w_shape, dtype)]
    bias = residual = None
    if has_bias:
        bias = f"in{len(inputs)}"
        inputs.append((bias, (n,), dtype))
    if has_residual:
        residual = f"in{len(inputs)}"
        inputs.append((residual, (m, n), dtype))
    act = ACTIVATIONS[activation]
    layout_tag = "oi" if weight_layout == "out_in" else "io"
    extras = ("_b" if has_bias else "") + ("_r" if has_residual else "")
    tiles = cdiv(m, config.block_m) * cdiv(n, config.block_n)
    split = config.split_k
    base = dict(M=m, N=n, K=k, W_IN_OUT=weight_layout == "in_out", SPLIT_K=split,
                K_SPLIT=k_split, EVEN_K=even_k, BLOCK_M=config.block_m,
                BLOCK_N=config.block_n, BLOCK_K=config.block_k, GROUP_M=config.group_m)
    x = KernelParam("x_ptr", (m, k), dtype, "input")
    w = KernelParam("w_ptr", w_shape, dtype, "input")
    function, grid = "linear_kernel", (tiles, 1, 1)
    if split == 1:
        pointers = [x, w]
        args = ["in0", "in1"]
        if bias:
            pointers.append(KernelParam("b_ptr", (n,), dtype, "input"))
            args.append(bias)
        if residual:
            pointers.append(KernelParam("r_ptr", (m, n), dtype, "input"))
            args.append(residual)
        pointers.append(KernelParam("y_ptr", (m, n), dtype, "output"))
        args.append("out")
        constants = dict(base, ACT=act, b_ptr=None if not bias else ..., r_ptr=None
                         if not residual else ...)
        launch = LaunchSpec(
            "triton_gemm", function, _constexprs(constants), tuple(pointers),
            tuple(args), grid, config.num_warps, config.num_stages,
            f"linear_{dtype}_m{m}n{n}k{k}_{layout_tag}{extras}_{activation}_{config.label()}",
            arch)
        return PlanSpec((launch,), (), tuple(inputs), ((m, n), dtype), config, source)

    tmp = ("tmp0", (split, m, n), "f32")
    partial = LaunchSpec(
        "triton_gemm", "linear_kernel", _constexprs(dict(base, ACT=0, b_ptr=None, r_ptr=None)),
        (x, w, KernelParam("y_ptr", tmp[1], "f32", "temp")), ("in0", "in1", "tmp0"),
        (tiles, split, 1), config.num_warps, config.num_stages,
        f"linear_partial_{dtype}_m{m}n{n}k{k}_{layout_tag}_{config.label()}", arch)
    pointers = [KernelParam("p_ptr", tmp[1], "f32", "temp")]
    args = ["tmp0"]
    if bias:
        pointers.append(KernelParam("b_ptr", (n,), dtype, "input"))
        args.append(bias)
    if residual:
        pointers.append(KernelParam("r_ptr", (m, n), dtype, "input"))
        args.append(residual)
    pointers.append(KernelParam("y_ptr", (m, n), dtype, "output"))
    args.append("out")
    reduce = LaunchSpec(
        "triton_gemm", "splitk_reduce_kernel",
        _constexprs(dict(M=m, N=n, SPLIT_K=split, ACT=act, BLOCK=REDUCE_BLOCK,
                         b_ptr=None if not bias else ..., r_ptr=None if not residual else ...)),
        tuple(pointers), tuple(args), (cdiv(m * n, REDUCE_BLOCK), 1, 1), 4, 1,
        f"linear_reduce_{dtype}_m{m}n{n}_s{split}{extras}_{activation}", arch)
    return PlanSpec((partial, reduce), (tmp,), tuple(inputs), ((m, n), dtype), config, source)


def _constexprs(values: dict) -> tuple:
    """Constexpr items; `...` marks a pointer that is present (not a constexpr)."""
    return tuple(sorted((k, v) for k, v in values.items() if v is not ...))
