"""What a compile is for (`CompileTarget`, resolved once from `target=` and the options that
depend on it) and the per-target IREE compiler presets (measured choices; docs/decisions.md).

CPU: IREE's default is O0; O3 + data tiling + microkernels took a 768→3072→768 MLP from 29 ms to
10 ms on this AVX2 machine; convolutions are rewritten to channels-last (NHWC) first. `cpu="host"`
tunes for the compiling machine; name an ISA such as `x86-64-v3` for an artifact that must run
elsewhere.
CUDA: IREE 3.13 has no sm_90 target; sm_80 PTX runs on H100/H200 (JIT-compiled by the driver), so
`cuda_arch="sm_90a"` (the default: Kiln's kernels for Hopper) gives IREE's own code for sm_80.
Both: `--iree-hal-target-device=cuda,local` makes one artifact whose CUDA or CPU variant is
picked by the driver it is loaded with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

TARGETS = ("cpu", "cuda")


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
# Architectures IREE has no target for, and the one its code is compiled for instead.
IREE_CUDA_ARCH_FOR = {"sm_90": "sm_80", "sm_90a": "sm_80"}


def check_cuda_arch(arch: str) -> None:
    if not _CUDA_ARCH.match(arch):
        raise ValueError(f"cuda_arch {arch!r} is not a CUDA architecture such as sm_80")
    if arch not in KNOWN_CUDA_ARCHS and arch not in IREE_CUDA_ARCH_FOR:
        raise ValueError(f"cuda_arch {arch!r} is not known (known: "
                         f"{', '.join(KNOWN_CUDA_ARCHS + tuple(IREE_CUDA_ARCH_FOR))})")


def iree_cuda_arch(arch: str) -> str:
    """The architecture IREE compiles its own code for when the artifact is for `arch`."""
    check_cuda_arch(arch)
    return IREE_CUDA_ARCH_FOR.get(arch, arch)


CUDA_KERNEL_MODES = ("auto", "on", "off")
CPU_KERNEL_MODES = ("auto", "on", "off")
# The passes that put Kiln's kernels in; a compile that leaves asked-for kernels out reports
# Rewrite(<pass>, "off", why) under their names (CompileTarget.kernels_off).
KERNEL_SELECTIONS = ("kiln-select-cuda-kernels", "kiln-select-cpu-kernels")


@dataclass(frozen=True)
class CompileTarget:
    """What one compile is for, resolved once (`CompileTarget.resolve`) from the user's
    `target=` and the options that depend on it, then handed to the pipeline builders
    (kiln.pipelines) and to `iree_flags`: the devices, the CPU and GPU they are compiled for,
    IREE's presets, and whether Kiln's CUDA / CPU kernels go in (and why not, where they were
    asked for: `kernels_off`). Passes keep textual options (`target=cpu,cuda`: `pass_option`)
    for kiln-opt."""

    devices: tuple[str, ...] = ("cpu",)  # sorted names from TARGETS (normalize_target)
    cpu: str = "host"  # LLVM CPU: host, or an ISA such as x86-64-v3
    cuda_arch: str = "sm_90a"
    opt_level: str = "O3"
    data_tiling: bool = True  # CPU alone (unmeasured on the GPU path)
    ukernels: str = "all"
    channels_last: bool = True  # CPU: convolutions rewritten to NHWC before IREE's global opt
    transpose_propagation: bool = False  # CPU: IREE's global-opt transpose propagation
    cuda_kernels: bool = False  # Kiln's library kernels take the ops they support (cuda alone)
    cuda_kernels_off: Optional[str] = None  # why cuda_kernels="auto" left them out
    cuda_split_k: bool = True  # with kernels: split-K GEMMs allowed
    cuda_fuse: bool = True  # with kernels: epilogues and prologues folded into them
    cuda_chain: bool = False  # with kernels: calls that feed each other as one launch
    cuda_chain_prefetch: bool = False  # with cuda_chain: stages prefetch weights into L2
    cpu_kernels: bool = False  # Kiln's CPU GEMM takes the linears it supports (cpu alone)
    cpu_kernels_off: Optional[str] = None  # why cpu_kernels="on" was left without effect
    # with cpu_kernels: f32 convolutions through Kiln's implicit-GEMM kernel (kiln.cpu_conv)
    cpu_convolutions: bool = False
    # with cpu_kernels: each linear's bias and activation in the kernel's store (use_cpu_epilogues)
    cpu_epilogues: bool = False

    def __post_init__(self):
        object.__setattr__(self, "devices", normalize_target(self.devices))

    @classmethod
    def resolve(cls, target="cpu", *, cuda_kernels: str = "off", cpu_kernels: str = "off",
                **options) -> "CompileTarget":
        """The target of a compile: `target` as `normalize_target` reads it, the kernel modes
        ("auto" | "on" | "off": CompileOptions.cuda_kernels / cpu_kernels) decided for it, and
        `options` (this class's other fields: cpu, cuda_arch, opt_level, ...) as given.
        Raises ValueError naming the bad value (an unknown target or CUDA architecture, a
        kernel mode the target cannot take)."""
        devices = normalize_target(target)
        if cpu_kernels not in CPU_KERNEL_MODES:
            raise ValueError(f"cpu_kernels={cpu_kernels!r}: choose 'auto', 'on' or 'off'")
        cuda_arch = options.get("cuda_arch", cls.cuda_arch)
        if "cuda" in devices:
            check_cuda_arch(cuda_arch)
        kernels, kernels_off = cuda_kernels_decision(cuda_kernels, devices, cuda_arch)
        cpu_kernels_off = None
        if cpu_kernels == "on" and devices != ("cpu",):
            cpu_kernels_off = (f"cpu_kernels='on' has no effect for target "
                               f"{','.join(devices)}: Kiln's CPU GEMM is for target 'cpu' alone")
        cpu = options.get("cpu", cls.cpu)
        cpu_only = devices == ("cpu",)
        return cls(devices=devices, cuda_kernels=kernels, cuda_kernels_off=kernels_off,
                   cpu_kernels=cpu_only and use_cpu_kernels(cpu_kernels, cpu),
                   cpu_convolutions=cpu_only and use_cpu_convolutions(cpu_kernels, cpu),
                   cpu_epilogues=cpu_only and use_cpu_epilogues(cpu),
                   cpu_kernels_off=cpu_kernels_off, **options)

    @property
    def kernels_off(self) -> dict[str, str]:
        """{selection pass: why it is left out} for kernels that were asked for ("auto" for
        CUDA, "on" for the CPU) but do not go in: the compile log and report say so."""
        reasons = dict(zip(KERNEL_SELECTIONS, (self.cuda_kernels_off, self.cpu_kernels_off)))
        return {name: why for name, why in reasons.items() if why}

    @property
    def cpu_lanes(self) -> int:
        """f32 per vector register of `cpu` (cpu_vector_lanes): the CPU kernels' width."""
        return cpu_vector_lanes(self.cpu)

    @property
    def cpu_only(self) -> bool:
        """Built for the CPU alone: IREE's CPU presets measured there apply (data tiling,
        channels-last, ...), which a multi-target artifact leaves out."""
        return self.devices == ("cpu",)

    @property
    def has_cuda(self) -> bool:
        return "cuda" in self.devices

    @property
    def pass_option(self) -> str:
        """The devices as passes take them textually (`convert-kiln-to-torch{target=...}`)."""
        return ",".join(self.devices)


def cuda_kernels_decision(mode: str, targets: tuple[str, ...],
                          cuda_arch: str = "sm_90a") -> tuple[bool, Optional[str]]:
    """(kernels on?, why "auto" left them off: a line for the compile log and report, or None
    where they were never in question). "on" raises ValueError instead of leaving them off."""
    if mode not in CUDA_KERNEL_MODES:
        raise ValueError(f"cuda_kernels={mode!r}: choose one of {', '.join(CUDA_KERNEL_MODES)}")
    if "cuda" not in targets:
        if mode == "on":
            raise ValueError("cuda_kernels='on' needs target 'cuda'")
        return False, None
    if mode == "off":
        return False, None
    if tuple(targets) != ("cuda",):
        if mode == "on":
            raise ValueError("cuda_kernels='on' needs target 'cuda' alone: the kernels have no "
                             "CPU variant for a multi-target artifact")
        return False, None
    from kiln.kernels import KernelUnsupported, kernel_arch, triton_available

    problem = triton_available()
    if problem is None:
        try:
            kernel_arch(cuda_arch)
        except KernelUnsupported as error:
            problem = error.reason
    if problem is not None:
        if mode == "on":
            raise ValueError(f"cuda_kernels='on': {problem}")
        return False, (f"cuda_kernels='auto' left Kiln's CUDA kernels out: {problem}; every "
                       f"linear and attention is IREE's own code, measured 4-16x slower on "
                       f"GPT-2/Llama-size models (docs/kernels.md)")
    return True, None


# IREE 3.13's llvm-cpu codegen rejects some dispatches that its own dispatch formation builds at
# O3: a multi-use elementwise producer (an embedding sum, a residual add) fused into a norm's
# row-reduction dispatch, often with the data-tiling packs of its results. The backend keeps
# whole rows of each multi-use intermediate per tile (8-32 rows x hidden) on the stack or in one
# vector, which passes the stack limit or the large-vector check from hidden ~700 up (BERT-base,
# GPT-2 and Llama at d=768; docs/decisions.md). Compiling without multi-use fusion splits those
# dispatches; it also costs one dispatch per LayerNorm and per residual add that compile fine, so
# it is the fallback for the failing modules, not the default.
# With a dynamic sequence length the same fused dispatch can instead need a stack buffer of
# dynamic size ("all stack allocations need to be hoisted to the entry block": Gemma's
# residual add + RMSNorm in the prefill of kiln.compile_generator); the fallback fixes it too.
CPU_CODEGEN_LIMIT_ERRORS = ("exceeded stack allocation limit",
                            "operations with large vector sizes",
                            "all stack allocations need to be hoisted to the entry block")
CPU_CODEGEN_FALLBACK_FLAGS = ("--iree-dispatch-creation-fuse-multi-use=false",)
# With Kiln's CPU kernels the fallback's flags from the start: GPT-2 and BERT hit the stack
# limit in a LayerNorm reduction fused with its multi-use producers every time (a failed
# iree-compile first: BERT 11.8 s -> 6.1 s); the zoo Llama, which compiled without it, runs
# the same with it (96.7 vs 95.8 ms, min 94.6 both; docs/decisions.md "Weights reach ...").
CPU_KERNEL_IREE_FLAGS = CPU_CODEGEN_FALLBACK_FLAGS
CHANNELS_LAST_PIPELINE = ("--iree-preprocessing-pass-pipeline=builtin.module(util.func("
                         "iree-preprocessing-convert-conv-to-channels-last))")


# With transpose propagation off, IREE 3.13 fails on dynamic-shape transposes ("'affine.
# delinearize_index' op no basis element may be statically non-positive"): Kiln's compiler keeps
# propagation on for dynamic shapes, and a module that still hits it is recompiled with it on.
# With propagation on, data tiling of a dynamic batch matmul (GPT-2's P·V with dynamic batch and
# length) still fails the same way; without data tiling it compiles.
TRANSPOSE_ERRORS = ("no basis element may be statically non-positive",)
TRANSPOSE_FALLBACK_FLAGS = ("--iree-global-opt-propagate-transposes=true",)
NO_DATA_TILING_FLAGS = ("--iree-opt-data-tiling=false",)
# IREE 3.13's CUDA codegen cannot distribute a dynamic-shape row reduction fused with its
# multi-use producer (GPT-2's embedding sum into the first LayerNorm, batch and length dynamic:
# "'func.func' op failed to distribute"); without multi-use fusion it compiles.
CUDA_DISTRIBUTE_ERRORS = ("failed to distribute",)


@dataclass(frozen=True)
class CodegenFallback:
    """Flags that get past a known IREE codegen failure, for the modules that hit it."""

    errors: tuple[str, ...]  # substrings of IREE's diagnostics this fallback answers
    flags: tuple[str, ...]
    target: str  # "cpu" | "cuda": the target whose codegen fails
    cpu_only: bool = False  # only for artifacts built for the CPU alone
    reverts: str = ""  # a flag this fallback undoes: useless unless that flag was given


# Tried in order; each at most once per compile (a later one may answer what remains).
CODEGEN_FALLBACKS = (
    CodegenFallback(CPU_CODEGEN_LIMIT_ERRORS, CPU_CODEGEN_FALLBACK_FLAGS, "cpu"),
    CodegenFallback(CUDA_DISTRIBUTE_ERRORS, CPU_CODEGEN_FALLBACK_FLAGS, "cuda"),
    CodegenFallback(TRANSPOSE_ERRORS, TRANSPOSE_FALLBACK_FLAGS, "cpu", cpu_only=True,
                    reverts="--iree-global-opt-propagate-transposes=false"),
    CodegenFallback(TRANSPOSE_ERRORS, NO_DATA_TILING_FLAGS, "cpu", cpu_only=True),
)


def codegen_fallback_flags(targets: Sequence[str], error_text: str,
                           tried: Sequence[str] = ()) -> list[str]:
    """Flags to recompile with after IREE failed with `error_text`: the first fallback that
    answers the error and whose flags are not all in `tried` already (empty: none left)."""
    for fallback in CODEGEN_FALLBACKS:
        if fallback.target not in targets or (fallback.cpu_only and tuple(targets) != ("cpu",)):
            continue
        if fallback.reverts and fallback.reverts not in tried:
            continue
        if any(e in error_text for e in fallback.errors) and \
                not set(fallback.flags) <= set(tried):
            return list(fallback.flags)
    return []


# Host-aware CPU presets: flags added for `cpu="host"` by the kind of the compiling machine,
# each from a sweep on that kind (docs/decisions.md, "CPU presets per host kind"). A kind without
# an entry (AMD znver4 AVX-512, where the defaults above were swept) adds nothing.
HOST_CPU_PRESETS = {
    # Larger distribution tiles for data-tiled matmuls: 2-core Intel Xeon (Sapphire Rapids class),
    # llama/gpt2-prefill/bert b1 geomean 1.09x faster than IREE's default (121 -> 108 ms, 134 ->
    # 123, 135 -> 125; 4 MiB 1.08x, 256 KiB 0.99x).
    "intel-avx512": ("--iree-llvmcpu-matmul-tile-bytes=1048576",),
    # Convolutions as im2col + matmul: 2-core AMD EPYC Zen 3 (AVX2), where IREE's direct
    # channels-last convolutions ran at 2 GFLOP/s on 512-channel layers: resnet b1 351-372 ->
    # 35-56 ms, b8 2654-2757 -> 364-508 ms (bench/sweep_flags.py; docs/decisions.md "CPU:
    # convolutions through im2col on AVX2 hosts"). On the Zen 4 AVX-512 EPYC im2col was slower.
    "amd-avx2": ("--iree-global-opt-use-im2col-for-convs",),
}


# Host kinds where Kiln's own f32 GEMM (kiln.cpu_kernels, cpu_kernels="auto") beat IREE's matmul
# on the zoo: 2-core Intel Xeon, llama / gpt2-prefill / bert b1 1.10x / 1.16x / 1.24x over the
# preset above (bench/sweep_flags.py --configs default,cpu-kernels; docs/decisions.md); 2-core
# AMD EPYC Zen 3 (AVX2, the 8-float tiles), llama / gpt2-prefill / bert / gpt2-decode b1 1.21x /
# 1.23x / 1.28x / 1.03x (bench/cpu_gemm_ab.py --variants iree,default; docs/decisions.md "CPU
# kernels on AVX2 hosts"). The Zen 4 AVX-512 EPYC keeps IREE's matmul until measured there.
HOST_CPU_KERNELS = ("intel-avx512", "amd-avx2")


# Host kinds where Kiln's convolution kernel (kiln.cpu_conv) beat IREE's convolutions on the
# zoo's ResNet-18 (docs/decisions.md "CPU: Kiln's convolution kernel"): 2-core AMD EPYC Zen 3,
# b1 33.5 vs 62.2 ms; 2-core Intel Xeon (Sapphire Rapids class, 8 x 2 zmm tiles), b1 16.1 vs
# 34.3 ms, b8 96.2 vs 186.3 ms (bench/cpu_gemm_ab.py --variants default,noconv).
HOST_CPU_CONVOLUTIONS = ("amd-avx2", "intel-avx512")


# Host kinds where Kiln's CPU kernels apply each linear's bias and activation before storing
# (kiln.cpu_kernels.Epilogue) instead of IREE's elementwise dispatch after them: 2-core Intel
# Xeon, zoo mlp (erf GELU) b1 4.23 -> 3.87 ms, b8 28.9 -> 26.8, bert / gpt2-prefill b1 within
# 2% (bench/cpu_gemm_ab.py --variants default,folded; docs/decisions.md "CPU kernels: bias and
# activation in the store"). The AMD Zen 3 measured it slower on BERT (5%).
HOST_CPU_EPILOGUES = ("intel-avx512",)


def use_cpu_epilogues(cpu: str) -> bool:
    """Whether Kiln's CPU kernels fold each linear's bias and activation into their stores:
    kiln.cpu_kernels.FOLD_EPILOGUES where set (benchmarks force it), else when compiling for
    this machine (`cpu="host"`) of a kind in HOST_CPU_EPILOGUES."""
    from kiln import cpu_kernels  # read per compile: benchmarks patch it

    if cpu_kernels.FOLD_EPILOGUES is not None:
        return cpu_kernels.FOLD_EPILOGUES
    return cpu == "host" and host_cpu_kind() in HOST_CPU_EPILOGUES


def use_cpu_convolutions(mode: str, cpu: str) -> bool:
    """Whether Kiln's CPU convolution kernel goes into a CPU compile: with cpu_kernels "on",
    or "auto" compiling for this machine (`cpu="host"`) of a kind in HOST_CPU_CONVOLUTIONS."""
    if mode != "auto":
        return mode == "on"
    return cpu == "host" and host_cpu_kind() in HOST_CPU_CONVOLUTIONS


# LLVM CPU names (and x86-64 levels) with AVX-512, for cpu_vector_lanes; other names get AVX2's.
AVX512_CPUS = ("x86-64-v4", "skylake-avx512", "cascadelake", "cooperlake", "cannonlake",
               "icelake-client", "icelake-server", "rocketlake", "tigerlake", "sapphirerapids",
               "emeraldrapids", "graniterapids", "graniterapids-d", "znver4", "znver5")


def cpu_vector_lanes(cpu: str) -> int:
    """f32 per vector register of the CPU a compile is for, which Kiln's CPU kernels are
    written for: 16 (AVX-512) or 8 (AVX2 and below). `cpu="host"` reads this machine's flags."""
    if cpu == "host":
        return 16 if host_cpu_kind().endswith("avx512") else 8
    return 16 if cpu in AVX512_CPUS else 8


def use_cpu_kernels(mode: str, cpu: str) -> bool:
    """Whether Kiln's CPU GEMM goes into a CPU compile: "on", "off", or "auto" (on when
    compiling for this machine, `cpu="host"`, of a kind in HOST_CPU_KERNELS)."""
    if mode != "auto":
        return mode == "on"
    return cpu == "host" and host_cpu_kind() in HOST_CPU_KERNELS


@dataclass(frozen=True)
class CpuInfo:
    """The host CPU as /proc/cpuinfo lists it: the first processor's lines as written (the
    compile key hashes some of them verbatim) and the number of processors. Empty off Linux."""

    lines: tuple[str, ...] = ()
    count: int = 0

    def field(self, key: str) -> str:
        """The value of `key` ("model name", "vendor_id", "cpu family", ...), "" if absent."""
        fields = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip()
                  for line in self.lines if ":" in line}
        return fields.get(key, "")

    @property
    def model_name(self) -> str:
        return self.field("model name")

    @property
    def vendor(self) -> str:
        return self.field("vendor_id")

    @property
    def flags(self) -> frozenset[str]:
        return frozenset(self.field("flags").split())


def read_cpuinfo(text: Optional[str] = None) -> CpuInfo:
    """The one reader of /proc/cpuinfo (`text`: its contents, for tests); CpuInfo() when it
    cannot be read."""
    if text is None:
        try:
            text = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return CpuInfo()
    first = text.split("\n\n", 1)[0]
    count = sum(1 for line in text.splitlines() if line.split(":", 1)[0].strip() == "processor")
    return CpuInfo(tuple(first.splitlines()), count)


def host_cpu_kind(cpuinfo: Optional[str] = None) -> str:
    """The compiling machine's kind for HOST_CPU_PRESETS: "<vendor>-<widest vector ISA>"
    ("intel-avx512", "amd-avx512", "intel-avx2", ...), or "unknown" off Linux/x86."""
    cpu = read_cpuinfo(cpuinfo)
    vendor = {"GenuineIntel": "intel", "AuthenticAMD": "amd"}.get(cpu.vendor)
    if vendor is None:
        return "unknown"
    isa = "avx512" if "avx512f" in cpu.flags else "avx2" if "avx2" in cpu.flags else "sse"
    return f"{vendor}-{isa}"


def host_cpu_preset_flags(cpu: str) -> tuple[str, ...]:
    """The preset's flags when compiling for this machine (`cpu="host"`), else none: an
    artifact for a named ISA must not depend on where it was compiled."""
    return HOST_CPU_PRESETS.get(host_cpu_kind(), ()) if cpu == "host" else ()


def iree_flags(target: CompileTarget = CompileTarget()) -> list[str]:
    """iree-compile flags for `target`."""
    options = target
    devices = []
    flags = [f"--iree-opt-level={options.opt_level}", "--iree-input-type=torch",
             # IREE's torch input demotes float64 to float32 unless told, but keeps float64 at
             # the function's boundary: results came back as float32 bytes in buffers typed
             # float64 ("buffer view byte length 96 exceeds backing buffer byte length 48"), or
             # as wrong values. Kiln runs float64 as float64 (docs/decisions.md).
             # (torch.compile passes a Python float as a 0-d f64 tensor: read as f32 it was inf.)
             "--iree-input-demote-f64-to-f32=false"]
    if target.has_cuda:
        devices.append("cuda")
        flags.append(f"--iree-cuda-target={iree_cuda_arch(options.cuda_arch)}")
    if "cpu" in target.devices:
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
        if target.cpu_only:
            # Measured on CPU-only artifacts; some are global (im2col also rewrote the CUDA
            # side of a cpu,cuda artifact, which IREE then failed to bufferize).
            flags += host_cpu_preset_flags(options.cpu)
    if len(devices) > 1:
        # IREE 3.13 links all executables into one per device and keeps only the CUDA variant
        # for `cuda,local`: the CPU driver then finds no variant it can run. Unlinked, each
        # dispatch keeps both.
        flags.append("--iree-hal-link-executables=false")
    if options.data_tiling and target.cpu_only:
        # Measured on CPU only; the GPU path has not been measured with it.
        flags.append("--iree-opt-data-tiling")
    if not options.transpose_propagation and target.cpu_only:
        # IREE folds the head transposes of attention into the projections and P·V, which
        # become "matmul_like" contractions with permuted outputs that skip data tiling; at
        # batch 8 they ran 20-25x slower per FLOP than a plain matmul + a transpose (BERT-base
        # b8 1.33x, GPT-2 prefill b8 1.12x faster without the folding; docs/decisions.md).
        # Static shapes only: the compiler passes transpose_propagation=True for dynamic ones.
        flags.append("--iree-global-opt-propagate-transposes=false")
    if options.channels_last and target.cpu_only:
        # torch's NCHW convolutions as NHWC (transposes at the edges, folded between convs):
        # ResNet-18 on the CPU 3-3.5x faster (docs/decisions.md). Models without convolutions
        # compile to the same bytes. CPU-only: unmeasured on the GPU path.
        flags.append(CHANNELS_LAST_PIPELINE)
    if target.cpu_kernels:
        flags += CPU_KERNEL_IREE_FLAGS
    return [f"--iree-hal-target-device={','.join(devices)}"] + flags
