"""Per-target IREE compiler presets (measured choices; see docs/decisions.md).

CPU: IREE's default is O0; O3 + data tiling + microkernels took a 768→3072→768 MLP from 29 ms to
10 ms on this AVX2 machine; convolutions are rewritten to channels-last (NHWC) first. `cpu="host"`
tunes for the compiling machine; name an ISA such as `x86-64-v3` for an artifact that must run
elsewhere.
CUDA: IREE 3.13 has no sm_90 target; sm_80 PTX runs on H100/H200 (JIT-compiled by the driver).
Both: `--iree-hal-target-device=cuda,local` makes one artifact whose CUDA or CPU variant is
picked by the driver it is loaded with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

TARGETS = ("cpu", "cuda")


@dataclass(frozen=True)
class TargetOptions:
    cpu: str = "host"
    cuda_arch: str = "sm_80"
    opt_level: str = "O3"
    data_tiling: bool = True
    ukernels: str = "all"
    channels_last: bool = True  # CPU: convolutions rewritten to NHWC before IREE's global opt
    transpose_propagation: bool = False  # CPU: IREE's global-opt transpose propagation


def normalize_target(target) -> tuple[str, ...]:
    """'cpu' | 'cuda' | ('cpu', 'cuda') | 'cpu,cuda' → a sorted tuple of target names."""
    names = target.split(",") if isinstance(target, str) else list(target)
    names = [n.strip().lower() for n in names if n and n.strip()]
    unknown = [n for n in names if n not in TARGETS]
    if unknown or not names:
        raise ValueError(f"unknown target {target!r}: use 'cpu', 'cuda' or ('cpu', 'cuda')")
    return tuple(sorted(set(names)))


_CUDA_ARCH = re.compile(r"^sm_\d{2,3}a?$")
# IREE 3.13 knows these (sm_90 is missing: "missing GPU target"; sm_80 PTX runs on Hopper).
KNOWN_CUDA_ARCHS = ("sm_60", "sm_61", "sm_70", "sm_75", "sm_80", "sm_86", "sm_87", "sm_89")


def check_cuda_arch(arch: str) -> None:
    if not _CUDA_ARCH.match(arch):
        raise ValueError(f"cuda_arch {arch!r} is not a CUDA architecture such as sm_80")
    if arch not in KNOWN_CUDA_ARCHS:
        raise ValueError(f"cuda_arch {arch!r} is not known to IREE 3.13 (known: "
                         f"{', '.join(KNOWN_CUDA_ARCHS)}); sm_80 code runs on H100/H200")


# IREE 3.13's llvm-cpu codegen rejects some dispatches that its own dispatch formation builds at
# O3: a multi-use elementwise producer (an embedding sum, a residual add) fused into a norm's
# row-reduction dispatch, often with the data-tiling packs of its results. The backend keeps
# whole rows of each multi-use intermediate per tile (8-32 rows x hidden) on the stack or in one
# vector, which passes the stack limit or the large-vector check from hidden ~700 up (BERT-base,
# GPT-2 and Llama at d=768; docs/decisions.md). Compiling without multi-use fusion splits those
# dispatches; it also costs one dispatch per LayerNorm and per residual add that compile fine, so
# it is the fallback for the failing modules, not the default.
CPU_CODEGEN_LIMIT_ERRORS = ("exceeded stack allocation limit",
                            "operations with large vector sizes")
CPU_CODEGEN_FALLBACK_FLAGS = ("--iree-dispatch-creation-fuse-multi-use=false",)
CHANNELS_LAST_PIPELINE = ("--iree-preprocessing-pass-pipeline=builtin.module(util.func("
                         "iree-preprocessing-convert-conv-to-channels-last))")


# With transpose propagation off, IREE 3.13 fails on dynamic-shape transposes ("'affine.
# delinearize_index' op no basis element may be statically non-positive"): Kiln's compiler keeps
# propagation on for dynamic shapes, and a module that still hits it is recompiled with it on.
TRANSPOSE_ERRORS = ("no basis element may be statically non-positive",)
TRANSPOSE_FALLBACK_FLAGS = ("--iree-global-opt-propagate-transposes=true",)


def codegen_fallback_flags(targets: Sequence[str], error_text: str) -> list[str]:
    """Flags to recompile with after IREE failed with `error_text` (empty: no fallback)."""
    if "cpu" in targets and any(e in error_text for e in CPU_CODEGEN_LIMIT_ERRORS):
        return list(CPU_CODEGEN_FALLBACK_FLAGS)
    if targets == ("cpu",) and any(e in error_text for e in TRANSPOSE_ERRORS):
        return list(TRANSPOSE_FALLBACK_FLAGS)
    return []


def iree_flags(targets: Sequence[str], options: TargetOptions = TargetOptions()) -> list[str]:
    """iree-compile flags for `targets` (already normalized)."""
    devices = []
    flags = [f"--iree-opt-level={options.opt_level}", "--iree-input-type=torch",
             # IREE demotes f64 to f32 by default, the function's inputs included, while the
             # signature and the caller still pass f64 buffers: an f64 input read as f32 gave
             # inf (a Python float torch.compile passes as a 0-d f64 tensor). CPU and CUDA
             # both compute f64.
             "--iree-input-demote-f64-to-f32=false"]
    if "cuda" in targets:
        check_cuda_arch(options.cuda_arch)
        devices.append("cuda")
        flags.append(f"--iree-cuda-target={options.cuda_arch}")
    if "cpu" in targets:
        devices.append("local")
        flags += [
            "--iree-hal-local-target-device-backends=llvm-cpu",
            f"--iree-llvmcpu-target-cpu={options.cpu}",
            # Dynamic-shape layer norms need ~34 KB of stack per dispatch, over IREE's 32 KB
            # default ("exceeded stack allocation limit"); worker stacks are larger than this.
            "--iree-llvmcpu-stack-allocation-limit=65536",
        ]
        if options.ukernels:
            flags.append(f"--iree-llvmcpu-enable-ukernels={options.ukernels}")
    if len(devices) > 1:
        # IREE 3.13 links all executables into one per device and keeps only the CUDA variant
        # for `cuda,local`: the CPU driver then finds no variant it can run. Unlinked, each
        # dispatch keeps both.
        flags.append("--iree-hal-link-executables=false")
    if options.data_tiling and targets == ("cpu",):
        # Measured on CPU only; the GPU path has not been measured with it.
        flags.append("--iree-opt-data-tiling")
    if not options.transpose_propagation and targets == ("cpu",):
        # IREE folds the head transposes of attention into the projections and P·V, which
        # become "matmul_like" contractions with permuted outputs that skip data tiling; at
        # batch 8 they ran 20-25x slower per FLOP than a plain matmul + a transpose (BERT-base
        # b8 1.33x, GPT-2 prefill b8 1.12x faster without the folding; docs/decisions.md).
        # Static shapes only: the compiler passes transpose_propagation=True for dynamic ones.
        flags.append("--iree-global-opt-propagate-transposes=false")
    if options.channels_last and targets == ("cpu",):
        # torch's NCHW convolutions as NHWC (transposes at the edges, folded between convs):
        # ResNet-18 on the CPU 3-3.5x faster (docs/decisions.md). Models without convolutions
        # compile to the same bytes. CPU-only: unmeasured on the GPU path.
        flags.append(CHANNELS_LAST_PIPELINE)
    return [f"--iree-hal-target-device={','.join(devices)}"] + flags
