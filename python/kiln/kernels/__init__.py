"""Kiln's own CUDA kernels (Triton, compiled ahead of time: PTX for sm_90a by default, or for
sm_80 / sm_86 / sm_87 / sm_89 with `arch=`) and the plans Kiln's compiler puts into IREE
artifacts (docs/kernels.md).

    plan = linear_plan(m=128, n=2304, k=768, dtype="f16", weight_layout="in_out",
                       has_bias=True, activation="gelu_tanh")
    for launch in plan.launches:        # in order; launch.args names a buffer per param
        launch.kernel.ptx, launch.kernel.grid, launch.kernel.params, ...

A builder raises `KernelUnsupported(reason)` for arguments no kernel handles (dtype, head dim,
sizes past 32-bit offsets, Triton missing); `explain_unsupported` says why without compiling.
Configs come from the measured `table.json` (kiln.kernels.configs); compiles are cached in
process and under $KILN_CACHE_DIR/kernels. Importing this package needs neither Triton nor
torch; compiling needs Triton (`pip install kiln[cuda]`), no GPU.
"""

from __future__ import annotations

from typing import Optional

from kiln.kernels.plan import (ARCH, ARCHS, DEFAULT_ARCH, CompiledKernel, KernelParam, KernelPlan,
                               KernelUnsupported, Launch, compile_plan, kernel_arch,
                               triton_available)

__all__ = ["ARCH", "ARCHS", "DEFAULT_ARCH", "CompiledKernel", "KernelParam", "KernelPlan",
           "KernelUnsupported", "Launch", "attention_plan", "explain_unsupported", "kernel_arch",
           "linear_plan", "sequence_plan"]


def linear_plan(m: int, n: int, k: int, dtype: str, weight_layout: str, has_bias: bool,
                activation: str, has_residual: bool = False, arch: str = DEFAULT_ARCH,
                norm: Optional[str] = None, norm_eps: float = 1e-5,
                has_norm_weight: bool = False, has_norm_bias: bool = False,
                norm_dtype: Optional[str] = None, split_k: bool = True,
                weight_parts: Optional[tuple] = None,
                bias_parts: Optional[tuple] = None) -> KernelPlan:
    """Y[m, n] = activation(norm(X)·Wᵀ + b) [+ residual]; inputs in0 = x [m, k], in1 = w
    ([n', k] for "out_in", [k, n'] for "in_out"; n' = 2n for "swiglu": gate, then up), then
    bias [n'] if has_bias, residual [m, n] if has_residual, the norm weight [k] and bias [k]
    when `norm` ("rms" | "layer", over k, inside the GEMM) has them. PTX for `arch` (a key of
    ARCHS; sm_90 means sm_90a). `split_k=False`: one launch, never split-K partials + reduce.
    `weight_parts` / `bias_parts`: W (and b) given as the 2-3 tensors they concatenate (out_in;
    in1, in2[, in3]; kiln.kernels.linear)."""
    from kiln.kernels.linear import linear_spec

    return compile_plan(linear_spec(m, n, k, dtype, weight_layout, has_bias, activation,
                                    has_residual, arch=arch, norm=norm, norm_eps=norm_eps,
                                    has_norm_weight=has_norm_weight,
                                    has_norm_bias=has_norm_bias, norm_dtype=norm_dtype,
                                    split_k=split_k, weight_parts=weight_parts,
                                    bias_parts=bias_parts))


def attention_plan(b: int, hq: int, hkv: int, sq: int, sk: int, d: int, dtype: str,
                   scale: float, causal: bool, mask_shape: Optional[tuple] = None,
                   mask_kind: Optional[str] = None,
                   mask_dtype: Optional[str] = None, arch: str = DEFAULT_ARCH,
                   buffers: Optional[tuple] = None, q_view: Optional[tuple] = None,
                   k_view: Optional[tuple] = None, v_view: Optional[tuple] = None,
                   rope: Optional[tuple] = None, out_layout: str = "bhsd",
                   new_kv: Optional[tuple] = None) -> KernelPlan:
    """softmax(scale·q·kᵀ + mask, causal) · v; inputs: the q/k/v buffers (default in0 = q
    [b, hq, sq, d], in1 = k, in2 = v [b, hkv, sk, d]; or `buffers` read through `q_view`,
    `k_view`, `v_view` = (buffer, offset, batch/head/seq strides)), then the mask (shape
    mask_shape, "additive" in dtype or f32, or "bool" as i8), then cos and sin for `rope` =
    (rope_q, rope_k, table shape, dtype). Output [b, hq, sq, d] or, out_layout "bshd",
    [b, sq, hq, d]. Split-KV decode when sq == 1, flash-attention forward otherwise
    (kiln.kernels.attention). `new_kv` = (k_new view, v_new view): decode writing its new key
    and value rows into the k/v caches (whole buffers of their own) at the slot given as the
    last input (int64 [1]); the plan's `written` names the caches, updated in place."""
    from kiln.kernels.attention import attention_spec

    return compile_plan(attention_spec(b, hq, hkv, sq, sk, d, dtype, scale, causal,
                                       mask_shape, mask_kind, mask_dtype, arch=arch,
                                       buffers=buffers, q_view=q_view, k_view=k_view,
                                       v_view=v_view, rope=rope, out_layout=out_layout,
                                       new_kv=new_kv))


def _spec_builders() -> dict:
    """The plan-spec builder of each kernel spec's builder name (imported on use: importing
    this package needs neither Triton nor torch)."""
    from kiln.kernels.attention import attention_spec
    from kiln.kernels.linear import linear_spec

    return {"linear": linear_spec, "attention": attention_spec}


def sequence_plan(stages: tuple, sources: tuple, prefetch: bool = False) -> KernelPlan:
    """Kernel calls that feed each other as ONE launch of ticketed stages
    (kiln.kernels.sequence). `stages`: (builder, arguments) per call, "linear" or "attention"
    with the arguments of `linear_plan` / `attention_plan` (each must be one launch: split
    forms reduce in the kernel); `sources`: per stage, per input, the composite input number
    or ("stage", i), the output of earlier stage i. Inputs, written caches and out are the
    composite's (kiln-chain-cuda-kernels declares them). `prefetch`: later stages ask L2 for
    their weights before they wait (kiln.kernels.sequence.sequence_spec)."""
    from kiln.kernels.sequence import sequence_spec

    builders = _spec_builders()
    specs = []
    for builder, arguments in stages:
        if builder not in builders:
            raise KernelUnsupported(f"a sequence stage must be linear or attention, not "
                                    f"{builder!r}")
        specs.append(builders[builder](**arguments))
    wiring = [tuple(f"stage{source[1]}" if isinstance(source, tuple) else f"in{source}"
                    for source in stage) for stage in sources]
    return compile_plan(sequence_spec(specs, wiring, prefetch))


def explain_unsupported(builder: str, **arguments) -> Optional[str]:
    """Why `<builder>_plan(**arguments)` would raise KernelUnsupported, or None (no compile)."""
    specs = _spec_builders()
    if builder not in specs:
        return f"unknown kernel builder {builder!r} (known: {', '.join(specs)})"
    try:
        specs[builder](**arguments)
    except KernelUnsupported as error:
        return error.reason
    except TypeError as error:
        return f"{builder}: {error}"
    return triton_available()
