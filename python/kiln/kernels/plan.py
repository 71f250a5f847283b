"""Plan records (the contract with Kiln's compiler) and the ahead-of-time compile of a launch.

A builder (`kiln.kernels.linear`, `kiln.kernels.attention`) first makes a `PlanSpec`: the
launches with their Triton function, constexprs, grid, warps, stages and target architecture,
but no code. That spec runs as is in Triton's interpreter or JIT (`kiln.kernels.execute`), and
`compile_plan` turns it into the `KernelPlan` of `CompiledKernel`s (PTX for the spec's
architecture: sm_90a by default, or sm_80 / sm_86 / sm_87 / sm_89) that Kiln puts into IREE
artifacts.

Compiles are cached in process and on disk (`$KILN_CACHE_DIR/kernels/<key>.json`, default
~/.cache/kiln/kernels; `KILN_CACHE=0` turns the disk cache off). The key covers the kernel
sources, Triton's version, the function, its constexprs, pointer dtypes, warps, stages and the
target (and a generated kernel's own source: `LaunchSpec.source`, kiln.kernels.sequence), so a
changed kernel never reuses stale PTX.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import re
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

# Architectures Triton compiles Kiln's kernels for: the PTX `.target` of each and the dynamic
# shared memory one block may use there (CUDA C Programming Guide, compute capabilities table).
# sm_90a (Hopper: H100 / H200, wgmma) is the default and the one the config table was measured
# on; sm_80 / sm_87 (A100, Orin) and sm_86 / sm_89 (consumer Ampere, Ada) get mma.sync code.
# Older GPUs have no tensor-core path in Triton 3.6 (sm_75 compiles to FMA loops): no kernels.
ARCHS = {"sm_80": (80, 166912), "sm_86": (86, 101376), "sm_87": (87, 166912),
         "sm_89": (89, 101376), "sm_90a": (90, 232448)}
DEFAULT_ARCH = "sm_90a"
ARCH = DEFAULT_ARCH  # kept for callers of the original single-target API
CACHE_FORMAT = 1
KERNEL_MODULES = ("triton_gemm", "triton_attention", "triton_sequence")
DTYPES = ("f16", "bf16", "f32", "i8", "i32", "i64")
_TRITON_POINTER = {"f16": "*fp16", "bf16": "*bf16", "f32": "*fp32", "i8": "*i8", "i32": "*i32",
                   "i64": "*i64"}
# "inout": an input the kernel also writes (a KV cache updated in place; PlanSpec.written).
# "semaphore": a buffer of the plan's own (PlanSpec.semaphores) that is zero before the first
# launch and that every launch leaves zero (split-K arrival counters): persistent, never filled
# per call (in an artifact, a module global).
ROLES = ("input", "output", "temp", "scratch", "inout", "semaphore")
# Whether split kernels (split-K GEMMs, split-KV decode attention) reduce their splits in the
# same launch by default (the last split to arrive, counted at a semaphore) instead of in a
# second launch. On since the kernels' selfcheck passed on an H100 and GPT-2 / Llama decode
# measured 10% / 5% more tokens/s with it (docs/decisions.md, "Splits reduced in the kernel").
SPLITS_REDUCED_IN_KERNEL = True


class KernelUnsupported(Exception):
    """A builder declines these arguments; `reason` says why (Kiln falls back to IREE)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def kernel_arch(cuda_arch: str) -> str:
    """The kernel architecture for a CUDA architecture name (sm_90 means sm_90a: the only sm_90
    parts are H100/H200), or KernelUnsupported saying why there is none."""
    arch = "sm_90a" if cuda_arch in ("sm_90", "sm_90a") else cuda_arch
    if arch not in ARCHS:
        raise KernelUnsupported(
            f"no kernels for cuda_arch {cuda_arch!r}: Kiln's Triton kernels are compiled for "
            f"{', '.join(ARCHS)} (tensor cores of sm_80 or newer)")
    return arch


def shared_memory_limit(arch: str) -> int:
    """Bytes of dynamic shared memory one block may use on `arch`."""
    return ARCHS[kernel_arch(arch)][1]


@dataclass(frozen=True)
class KernelParam:
    """One pointer parameter of a PTX entry: the buffer it expects."""
    name: str
    shape: tuple[int, ...]
    dtype: str  # "f16" | "bf16" | "f32" | "i8" | "i64"
    role: str   # one of ROLES


@dataclass(frozen=True)
class CompiledKernel:
    """An ahead-of-time compiled kernel: PTX for one architecture with every size fixed."""
    symbol: str          # unique, a valid MLIR symbol: kernel, shape, config and a digest
    entry: str           # the PTX .entry name
    ptx: bytes
    num_warps: int       # workgroup size = 32 · num_warps
    shared_bytes: int    # dynamic shared memory per block
    grid: tuple[int, int, int]
    params: tuple[KernelParam, ...]  # every pointer of the entry, in order (scratch included)


@dataclass(frozen=True)
class Launch:
    kernel: CompiledKernel
    args: tuple[str, ...]  # per param: "in<i>", "tmp<i>", "out" or "scratch"


@dataclass(frozen=True)
class KernelPlan:
    launches: tuple[Launch, ...]
    temps: tuple[tuple[str, tuple[int, ...], str], ...]  # (name, shape, dtype)
    # Beyond the contract, for checks: the plan's inputs (name, shape, dtype) in order and its
    # output (shape, dtype).
    inputs: tuple[tuple[str, tuple[int, ...], str], ...] = ()
    output: tuple[tuple[int, ...], str] = ((), "")
    # Inputs the plan updates in place ("in<i>", in order): a call returns out, then these.
    written: tuple[str, ...] = ()
    # Buffers of the plan's own that persist between calls, zero at first (name, shape, dtype).
    semaphores: tuple[tuple[str, tuple[int, ...], str], ...] = ()


@dataclass(frozen=True)
class LaunchSpec:
    """One launch before compilation."""
    module: str                   # "triton_gemm" | "triton_attention", or what generated source
    function: str                 # the @triton.jit function in that module
    constexprs: tuple[tuple[str, Any], ...]  # every non-pointer argument (absent pointers: None)
    pointers: tuple[KernelParam, ...]        # pointer arguments that are present, in order
    args: tuple[str, ...]         # plan buffer per pointer
    grid: tuple[int, int, int]
    num_warps: int
    num_stages: int
    tag: str                      # readable part of the symbol
    arch: str = DEFAULT_ARCH      # a key of ARCHS: the PTX target
    # Python source of a generated module defining `function` (kiln.kernels.sequence: one entry
    # kernel for several launches), then `module` says what generated it; "" for the kernels of
    # KERNEL_MODULES.
    source: str = field(default="", repr=False)

    @property
    def constants(self) -> dict[str, Any]:
        return dict(self.constexprs)

    def key(self) -> str:
        """Digest of everything that decides the compiled code."""
        generated = {"source": hashlib.sha256(self.source.encode()).hexdigest()} \
            if self.source else {}
        text = json.dumps({
            "format": CACHE_FORMAT, "sources": _source_digest(), "triton": _triton_version(),
            "module": self.module, "function": self.function,
            "constexprs": [[k, _jsonable(v)] for k, v in self.constexprs],
            "pointers": [[p.name, p.dtype] for p in self.pointers],
            "num_warps": self.num_warps, "num_stages": self.num_stages, "arch": self.arch,
            **generated,
        }, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class PlanSpec:
    launches: tuple[LaunchSpec, ...]
    temps: tuple[tuple[str, tuple[int, ...], str], ...]
    inputs: tuple[tuple[str, tuple[int, ...], str], ...]
    output: tuple[tuple[int, ...], str]
    config: Any = None      # the config record the builder chose (for reports)
    config_key: str = ""    # the table key it looked up
    written: tuple[str, ...] = ()  # inputs updated in place (KernelPlan.written)
    semaphores: tuple[tuple[str, tuple[int, ...], str], ...] = ()  # KernelPlan.semaphores


def _jsonable(value):
    if isinstance(value, float):
        return repr(value)
    return value


_DIGEST: Optional[str] = None


def _source_digest() -> str:
    global _DIGEST
    if _DIGEST is None:
        here = Path(__file__).parent
        h = hashlib.sha256()
        for name in KERNEL_MODULES:
            h.update((here / f"{name}.py").read_bytes())
        _DIGEST = h.hexdigest()[:16]
    return _DIGEST


def _triton_version() -> str:
    try:
        from importlib.metadata import version
        return version("triton")
    except Exception:  # not installed
        return "none"


def triton_function(spec: LaunchSpec):
    if spec.source:
        module = generated_module(spec.source)
    else:
        module = importlib.import_module(f"kiln.kernels.{spec.module}")
    return getattr(module, spec.function)


_GENERATED: dict[str, Any] = {}  # module name → generated module, imported
_GENERATED_FALLBACK: list[Path] = []  # the folder for generated sources without a disk cache


def _generated_dir() -> Path:
    disk = _disk_dir()
    if disk is not None:
        return disk / "generated"
    with _LOCK:
        if not _GENERATED_FALLBACK:
            _GENERATED_FALLBACK.append(Path(tempfile.mkdtemp(prefix="kiln-generated-")))
        return _GENERATED_FALLBACK[0]


def generated_module(source: str):
    """The module of generated Triton source, imported from a file named by its digest: Triton
    reads a @triton.jit function's source through `inspect`, so the text must live in a file,
    and a name per digest never lets a changed source reuse another's module or file."""
    name = f"kiln_generated_{hashlib.sha256(source.encode()).hexdigest()[:24]}"
    with _LOCK:
        module = _GENERATED.get(name)
    if module is not None:
        return module
    folder = _generated_dir()
    path = folder / f"{name}.py"
    try:
        current = path.read_text()
    except OSError:
        current = None
    if current != source:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(source)
        os.replace(tmp, path)
    loader_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module
    loader_spec.loader.exec_module(module)
    with _LOCK:
        return _GENERATED.setdefault(name, module)


def triton_available() -> Optional[str]:
    """None when Triton can compile here, else why not."""
    try:
        import triton  # noqa: F401
        from triton.backends.compiler import GPUTarget  # noqa: F401
    except Exception as error:  # pragma: no cover - depends on the install
        return f"triton is not importable ({error}); install kiln[cuda]"
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        return "TRITON_INTERPRET is set: interpreted kernels cannot be compiled ahead of time"
    return None


# ---------------------------------------------------------------------------------------------
# Ahead-of-time compile


_LOCK = threading.Lock()
_MEMORY: dict[str, CompiledKernel] = {}
_TRITON: dict[str, Any] = {}  # key → triton CompiledKernel (launchable on a GPU)
_SPECS: dict[str, LaunchSpec] = {}  # symbol → the spec it was compiled from


def _disk_dir() -> Optional[Path]:
    from kiln.cache import cache_dir, cache_enabled

    return cache_dir() / "kernels" if cache_enabled() else None


def _signature(spec: LaunchSpec, fn) -> tuple[dict, dict, dict]:
    pointers = {p.name: p for p in spec.pointers}
    constants = spec.constants
    signature, constexprs, attrs = {}, {}, {}
    for index, name in enumerate(fn.arg_names):
        if name in pointers:
            signature[name] = _TRITON_POINTER[pointers[name].dtype]
            attrs[(index,)] = [["tt.divisibility", 16]]
        elif name in constants:
            signature[name] = "constexpr"
            constexprs[name] = constants[name]
        else:
            raise ValueError(f"{spec.function}: argument {name!r} has neither a pointer nor a "
                             f"constexpr value")
    return signature, constexprs, attrs


def compile_triton(spec: LaunchSpec):
    """Triton's CompiledKernel for the spec (PTX for `spec.arch`), cached in process."""
    key = spec.key()
    with _LOCK:
        if key in _TRITON:
            return _TRITON[key]
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = triton_function(spec)
    signature, constexprs, attrs = _signature(spec, fn)
    compiled = triton.compile(ASTSource(fn, signature, constexprs, attrs),
                              target=GPUTarget("cuda", ARCHS[spec.arch][0], 32),
                              options={"num_warps": spec.num_warps,
                                       "num_stages": spec.num_stages})
    with _LOCK:
        _TRITON[key] = compiled
    return compiled


_PTX_PARAM = re.compile(r"^\s*\.param\s+\.(\w+)\b[^,)\n]*?\s(\w+)\s*,?\s*$", re.M)


def ptx_entry_params(ptx: str, entry: str) -> list[tuple[str, str]]:
    """(type, name) of each .param of `.entry <entry>(...)` in the PTX text."""
    start = ptx.index(f".entry {entry}(")
    end = ptx.index(")", start)
    return [(m.group(1), m.group(2)) for m in _PTX_PARAM.finditer(ptx[start:end + 1])]


# Triton 3.6 appends these two pointer params to every kernel's PTX entry. Where Triton reports
# no scratch (every Kiln kernel so far: the body never reads them) they are dropped from the
# entry: two bindings fewer per dispatch, against IREE's 16, and no buffer to bind
# (docs/decisions.md "Triton's unused scratch pointers dropped from every kernel").
SCRATCH_PARAMS = ("global_scratch", "profile_scratch")


def drop_trailing_ptx_params(ptx: str, entry: str, count: int) -> str:
    """`ptx` with the last `count` params of `.entry entry(...)` removed; raises if the body
    names one of them (a kernel that reads its scratch pointers keeps them)."""
    start = ptx.index(f".entry {entry}(")
    end = ptx.index(")", start)
    names = [name for _, name in ptx_entry_params(ptx, entry)]
    dropped = names[len(names) - count:]
    if any(len(re.findall(rf"\b{name}\b", ptx)) != 1 for name in dropped):
        raise RuntimeError(f"{entry}: PTX reads {dropped}; they cannot be dropped")
    lines = ptx[start:end].split("\n")
    kept = [line for line in lines if not any(line.rstrip(",").endswith(f" {name}")
                                             for name in dropped)]
    last = max(i for i, line in enumerate(kept) if ".param" in line)
    kept[last] = kept[last].rstrip().rstrip(",")
    return ptx[:start] + "\n".join(kept) + "\n" + ptx[end:]


def symbol_for(spec: LaunchSpec) -> str:
    arch = "" if spec.arch == DEFAULT_ARCH else f"_{spec.arch}"
    return re.sub(r"[^A-Za-z0-9_]", "_", f"kiln_{spec.tag}{arch}_{spec.key()[:10]}")


def compile_launch(spec: LaunchSpec) -> CompiledKernel:
    """The CompiledKernel of one launch (memory cache, then disk cache, then Triton)."""
    key = spec.key()
    with _LOCK:
        hit = _MEMORY.get(key)
        if hit is not None:
            _SPECS[hit.symbol] = spec
    if hit is not None:
        return hit
    record = _read_disk(key)
    if record is None:
        problem = triton_available()
        if problem:
            raise KernelUnsupported(problem)
        compiled = compile_triton(spec)
        md = compiled.metadata
        record = {"entry": md.name, "ptx": compiled.asm["ptx"], "shared": int(md.shared),
                  "num_warps": int(md.num_warps),
                  "global_scratch_size": int(getattr(md, "global_scratch_size", 0) or 0),
                  "profile_scratch_size": int(getattr(md, "profile_scratch_size", 0) or 0)}
        _write_disk(key, record)
    programs = spec.grid[0] * spec.grid[1] * spec.grid[2]
    ptx = record["ptx"]
    sizes = [record[f"{name}_size"] for name in SCRATCH_PARAMS]
    if not any(sizes):
        ptx, scratch = drop_trailing_ptx_params(ptx, record["entry"], len(SCRATCH_PARAMS)), ()
    else:  # a kernel that uses scratch gets zeroed buffers, 16 bytes more than it asks for
        scratch = tuple(KernelParam(name, (16 + size * programs,), "i8", "scratch")
                        for name, size in zip(SCRATCH_PARAMS, sizes))
    kernel = CompiledKernel(
        symbol=symbol_for(spec), entry=record["entry"], ptx=ptx.encode(),
        num_warps=record["num_warps"], shared_bytes=record["shared"], grid=tuple(spec.grid),
        params=tuple(spec.pointers) + scratch)
    declared = ptx_entry_params(ptx, kernel.entry)
    if len(declared) != len(kernel.params) or any(t != "u64" for t, _ in declared):
        raise RuntimeError(f"{kernel.symbol}: PTX entry has params {declared}, expected "
                           f"{len(kernel.params)} pointers")
    with _LOCK:
        _MEMORY[key] = kernel
        _SPECS[kernel.symbol] = spec
    return kernel


def spec_of(kernel: CompiledKernel) -> LaunchSpec:
    """The launch spec a kernel of this process was compiled from (for running plans)."""
    with _LOCK:
        return _SPECS[kernel.symbol]


def compile_plan(spec: PlanSpec) -> KernelPlan:
    launches = []
    for ls in spec.launches:
        kernel = compile_launch(ls)
        launches.append(Launch(kernel, tuple(ls.args) + ("scratch",) * (
            len(kernel.params) - len(ls.pointers))))
    launches = tuple(launches)
    return KernelPlan(launches=launches, temps=spec.temps, inputs=spec.inputs,
                      output=spec.output, written=spec.written,
                      semaphores=spec.semaphores)


def _read_disk(key: str) -> Optional[dict]:
    folder = _disk_dir()
    if folder is None:
        return None
    path = folder / f"{key}.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    # Anything but a whole record written for this key (a hand-edited, truncated or foreign
    # file) is a miss.
    fields = ("entry", "ptx", "shared", "num_warps", "global_scratch_size",
              "profile_scratch_size")
    if not isinstance(record, dict) or record.get("key") != key or \
            any(name not in record for name in fields):
        return None
    return record


def _write_disk(key: str, record: dict) -> None:
    folder = _disk_dir()
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(dict(record, key=key), f)
        os.replace(tmp, folder / f"{key}.json")
    except OSError:
        pass  # a read-only cache folder only costs a recompile


def clear_memory_cache() -> None:
    with _LOCK:
        _MEMORY.clear()
        _TRITON.clear()
        _GENERATED.clear()


def replace(spec, **changes):
    return dataclasses.replace(spec, **changes)


__all__ = ["ARCH", "ARCHS", "DEFAULT_ARCH", "CompiledKernel", "KernelParam", "KernelPlan",
           "KernelUnsupported", "Launch", "LaunchSpec", "PlanSpec", "compile_launch", "compile_plan", "compile_triton",
           "kernel_arch", "ptx_entry_params", "shared_memory_limit", "triton_available"]
