"""Kiln's main job: model + example inputs → phases → `.vmfb` (or a phase's IR as text)."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from kiln import __version__
from kiln.bindings import iree_compiler, ir
from kiln.cuda_kernels import render_kernel_calls
from kiln.diagnose import format_issues, unsupported_ops
from kiln.errors import KilnCompileError
from kiln.frontend import export_model, import_program
from kiln.parameters import WEIGHTS_MODES, ExternalParameters, externalize
from kiln.passes import Rewrite
from kiln.pipelines import Phase, build_lower_pipeline, build_raise_pipeline
from kiln.targets import TargetOptions, codegen_fallback_flags, iree_flags, normalize_target
from kiln.torch_ir import tensor_info

SIGNATURE_KEY = "kiln.signature"

TORCH_TO_NUMPY_DTYPE = {"f16": "float16", "bf16": "bfloat16", "f32": "float32", "f64": "float64",
                        "si64": "int64", "si32": "int32", "si16": "int16", "si8": "int8",
                        "ui8": "uint8", "i1": "bool"}


@dataclass
class CompileOptions:
    """Options accepted by `compile_to_vmfb(..., **options)`."""

    attention: str = "auto"  # kiln.attention lowering: auto (measured per target) | decomposed | fused
    fold_constants: bool = True  # evaluate input-independent subgraphs at compile time
    raise_attention: bool = True
    raise_linear: bool = True
    disable_passes: Sequence[str] = ()  # kiln pass names to leave out of the pipelines
    cpu: str = "host"  # LLVM CPU for the CPU target: host, or an ISA such as x86-64-v3
    cuda_arch: str = "sm_80"
    # Library kernels (Triton, sm_90a: H100/H200) for the linears and attentions they support,
    # target "cuda" only: auto (on when triton is installed: pip install kiln[cuda]) | on | off
    cuda_kernels: str = "auto"
    opt_level: str = "O3"
    data_tiling: bool = True
    extra_iree_flags: Sequence[str] = ()
    verbose: bool = False  # print each phase and its time to stderr
    strict_export: bool = False
    # inline: weights in the .vmfb | external: weights of >= 1 KiB in an IREE parameter archive
    # (<output>.irpa) that kiln.load finds beside the .vmfb (see kiln.parameters)
    weights: str = "inline"
    cache: bool = True  # reuse/store artifacts in KILN_CACHE_DIR (KILN_CACHE=0 also turns it off)

    @classmethod
    def from_kwargs(cls, options: dict[str, Any]) -> "CompileOptions":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown compile option(s) {', '.join(unknown)}; known: "
                            f"{', '.join(sorted(known))}")
        opts = cls(**options)
        from kiln.passes import PASS_REGISTRY

        unknown_passes = [p for p in opts.disable_passes if p not in PASS_REGISTRY]
        if unknown_passes:
            raise ValueError(f"disable_passes: unknown pass(es) {', '.join(unknown_passes)}; "
                             f"known: {', '.join(PASS_REGISTRY)}")
        if opts.attention not in ("auto", "decomposed", "fused"):
            raise ValueError(f"attention={opts.attention!r}: choose auto, decomposed or fused")
        if opts.cuda_kernels not in CUDA_KERNEL_MODES:
            raise ValueError(f"cuda_kernels={opts.cuda_kernels!r}: choose one of "
                             f"{', '.join(CUDA_KERNEL_MODES)}")
        if opts.weights not in WEIGHTS_MODES:
            raise ValueError(f"weights={opts.weights!r}: choose 'inline' (in the .vmfb) or "
                             f"'external' (a .irpa parameter archive beside it)")
        if opts.weights == "external":
            opts.cache = False  # the compile cache stores only the .vmfb, not the archive
        return opts


CUDA_KERNEL_MODES = ("auto", "on", "off")


def use_cuda_kernels(mode: str, targets: tuple[str, ...]) -> bool:
    """Whether library kernels go into this compile (see CompileOptions.cuda_kernels)."""
    if "cuda" not in targets:
        if mode == "on":
            raise ValueError("cuda_kernels='on' needs target 'cuda'")
        return False
    if mode == "off":
        return False
    if targets != ("cuda",):
        if mode == "on":
            raise ValueError("cuda_kernels='on' needs target 'cuda' alone: the kernels have no "
                             "CPU variant for a multi-target artifact")
        return False
    from kiln.kernels import triton_available

    problem = triton_available()
    if problem is not None:
        if mode == "on":
            raise ValueError(f"cuda_kernels='on': {problem}")
        return False
    return True


@dataclass
class CompileReport:
    """What each pass rewrote and how long each phase took."""

    target: tuple[str, ...]
    rewrites: list[Rewrite] = field(default_factory=list)
    unmatched_softmax: list[tuple[str, str]] = field(default_factory=list)
    phase_seconds: dict[str, float] = field(default_factory=dict)
    cache: str = "off"  # "hit" | "miss" | "off" (kiln.cache)

    def count(self, kind_prefix: str) -> int:
        return sum(1 for r in self.rewrites if r.kind.startswith(kind_prefix))

    def counts_by_pass(self) -> dict[str, dict[str, int]]:
        """What each pass rewrote, in pipeline order: {pass name: {kind: count}}."""
        counts: dict[str, dict[str, int]] = {}
        for rewrite in self.rewrites:
            kinds = counts.setdefault(rewrite.pass_name, {})
            kinds[rewrite.kind] = kinds.get(rewrite.kind, 0) + 1
        return counts

    def __str__(self) -> str:
        lines = [f"kiln compile report (target {','.join(self.target)})",
                 f"  cache       {self.cache}"]
        lines += [f"  {phase:<11} {seconds:7.2f} s" for phase, seconds in
                  self.phase_seconds.items()]
        lines += [f"  {name:<26} {sum(kinds.values()):4d}  (" +
                  ", ".join(f"{kind} {n}" for kind, n in kinds.items()) + ")"
                  for name, kinds in self.counts_by_pass().items()]
        lines += [f"  {r}" for r in self.rewrites]
        lines += [f"  unmatched softmax at {where}: {why}" for why, where in
                  self.unmatched_softmax]
        return "\n".join(lines)


@dataclass
class CompiledModel:
    vmfb: Optional[bytes]
    ir_text: Optional[str]
    report: CompileReport
    # weights="external": archive key → bytes (numpy) of the weights the artifact loads
    parameters: Optional[dict] = None

    def save(self, output) -> Path:
        """Write the .vmfb to `output` and, with external weights, the parameter archive to
        `output` with suffix .irpa (where kiln.load looks for it); returns the .vmfb path."""
        if self.vmfb is None:
            raise ValueError("nothing to save: this compile stopped at an IR phase")
        path = Path(output)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.vmfb)
        if self.parameters:
            from kiln.runtime import parameters_path, write_parameter_archive

            write_parameter_archive(parameters_path(path), self.parameters)
        return path


class _PhaseTimer:
    def __init__(self, report: CompileReport, verbose: bool, log: Callable[[str], None]):
        self.report, self.verbose, self.log = report, verbose, log

    def __call__(self, phase: str):
        timer = self

        class _Scope:
            def __enter__(self):
                self.start = time.perf_counter()
                if timer.verbose:
                    timer.log(f"[kiln] {phase} ...")

            def __exit__(self, *exc):
                seconds = time.perf_counter() - self.start
                timer.report.phase_seconds[phase] = seconds
                if timer.verbose and exc[0] is None:
                    timer.log(f"[kiln] {phase} done in {seconds:.2f} s")

        return _Scope()


def _signature(program, module: ir.Module, name: str = "main") -> dict:
    """Input names/shapes/dtypes and outputs, embedded in the artifact for runtime checks."""
    func = _function(module, name)
    function_type = ir.FunctionType(ir.TypeAttr(func.attributes["function_type"]).value)
    names = [spec.arg.name for spec in program.graph_signature.input_specs
             if spec.kind.name == "USER_INPUT"]

    def describe(type_, name=None):
        info = tensor_info(type_)
        if info is None:
            raise KilnCompileError(f"unsupported non-tensor {'input' if name else 'output'} "
                                   f"{name or ''} of type {type_}")
        entry = {"shape": [d for d in info.shape], "dtype": TORCH_TO_NUMPY_DTYPE[info.dtype]}
        return {"name": name, **entry} if name else entry

    inputs = [describe(t, n) for t, n in zip(function_type.inputs, names)]
    for entry, bounds in zip(inputs, _dynamic_dim_bounds(program, names)):
        if any(b is not None for b in bounds):
            entry["bounds"] = bounds
    outputs = [describe(t) for t in function_type.results]
    return {"inputs": inputs, "outputs": outputs, "kiln_version": __version__}


def _dynamic_dim_bounds(program, names: list[str]) -> list[list]:
    """Per user input, per dim: [min, max] of a dynamic dim (from torch.export's range
    constraints; max None when unbounded), None for a static one."""
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    result = []
    for name in names:
        value = placeholders[name].meta.get("val") if name in placeholders else None
        dims = []
        for dim in getattr(value, "shape", ()):
            if isinstance(dim, int):
                dims.append(None)
                continue
            ranges = program.range_constraints.get(dim.node.expr)
            low = _finite_int(ranges.lower) if ranges is not None else None
            high = _finite_int(ranges.upper) if ranges is not None else None
            dims.append([low or 0, high])
        result.append(dims)
    return result


def _finite_int(bound) -> Optional[int]:
    """A range bound as an int, None when infinite: torch's int_oo (a Dim without max) reports
    is_finite True, so it is compared by identity."""
    from torch.utils._sympy.numbers import int_oo

    if bound in (int_oo, -int_oo) or not bound.is_finite:
        return None
    return int(bound)


def _function(module: ir.Module, name: str) -> ir.Operation:
    for op in module.body.operations:
        if op.operation.name == "func.func" and \
                ir.StringAttr(op.operation.attributes["sym_name"]).value == name:
            return op.operation
    raise KilnCompileError(f"imported module has no function '{name}'")


def _attach_signature(module: ir.Module, signature: dict, name: str = "main") -> None:
    func = _function(module, name)
    with module.context:
        func.attributes["iree.reflection"] = ir.DictAttr.get(
            {SIGNATURE_KEY: ir.StringAttr.get(json.dumps(signature))})


def _start(options: dict, target, compile_to, log):
    """Validated options, targets, phase, a fresh report, the log and the phase timer."""
    opts = CompileOptions.from_kwargs(options)
    targets = normalize_target(target)
    report = CompileReport(targets)
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    return opts, targets, Phase.parse(compile_to), report, log, _PhaseTimer(report, opts.verbose,
                                                                             log)


def compile_model(model, example_args, *, target="cpu", compile_to=None, dynamic_shapes=None,
                  log: Callable[[str], None] = None, **options) -> CompiledModel:
    """Compile and return the artifact (or a phase's IR) together with the compile report."""
    opts, targets, phase, report, log, timed = _start(options, target, compile_to, log)
    from kiln.cache import CacheSession

    cache = CacheSession.start(model, example_args, targets=targets, phase=phase, options=opts,
                               dynamic_shapes=dynamic_shapes, report=report, log=log)
    if cache.hit is not None:
        return cache.hit
    with timed("export"):
        program = export_model(model, example_args, dynamic_shapes=dynamic_shapes,
                               strict=opts.strict_export)
    if cache.lookup_graph(program) is not None:
        return cache.hit
    compiled = _compile_programs({"main": program}, targets, phase, opts, report, timed)
    return cache.store(compiled) if compiled.vmfb is not None else compiled


def compile_entry_points(entries, *, target="cpu", output=None, compile_to=None,
                         log: Callable[[str], None] = None, **options):
    """One artifact with several functions, e.g. `prefill` and `decode` of a decoder.

    `entries` maps each function name to `(module, example_args)` or `(module, example_args,
    dynamic_shapes)`; modules that share weights (wrappers around one model) store them once.
    `kiln.load(...)` exposes the functions by name (`run.prefill(...)`, `run["decode"](...)`).
    Returns the `.vmfb` bytes, or its path when `output` is given, or a phase's IR as text.
    The compile cache is not used for multi-function artifacts."""
    if not entries:
        raise ValueError("compile_entry_points needs at least one entry point")
    for name in entries:
        if not name.isidentifier():
            raise ValueError(f"entry point name {name!r} must be a Python identifier")
    opts, targets, phase, report, log, timed = _start(options, target, compile_to, log)
    programs = {}
    for name, entry in entries.items():
        module, args, *rest = entry
        with timed(f"export {name}"):
            programs[name] = export_model(module, args, dynamic_shapes=rest[0] if rest else None,
                                          strict=opts.strict_export)
    compiled = _compile_programs(programs, targets, phase, opts, report, timed)
    if compiled.vmfb is None or output is None:
        return compiled.ir_text if compiled.vmfb is None else compiled.vmfb
    return compiled.save(output)


def _compile_programs(programs: dict, targets, phase, opts, report, timed) -> CompiledModel:
    """Import exported programs as functions of one module, then raise, lower and compile."""
    parameters = ExternalParameters() if opts.weights == "external" else None
    literal_cache: dict = {}
    signatures = {}
    with timed("import"):
        from kiln.dialects import make_context

        context = make_context()
        module = None
        for name, program in programs.items():
            imported = import_program(program, context=context, func_name=name,
                                      fold_constants=opts.fold_constants,
                                      parameters=parameters, literal_cache=literal_cache)
            signatures[name] = _signature(program, imported, name)
            if module is None:
                module = imported
            else:
                function = _function(imported, name)
                function.detach_from_parent()
                module.body.append(function)
    if phase is Phase.TORCH:
        return CompiledModel(None, str(module), report)

    kernels = use_cuda_kernels(opts.cuda_kernels, targets)
    # The kernel library has no gated (swiglu) epilogue: with kernels, gate and up stay two
    # linears, one kernel call each, instead of one linear left to IREE's code generation.
    disabled = tuple(opts.disable_passes) + (("kiln-raise-swiglu",) if kernels else ())
    if opts.weights == "external":
        # Concatenated weights of external parameters cannot be folded at compile time: the
        # module initializer would copy them (36 copies for a 12-layer Llama, more than the 32
        # concurrent nodes a CUDA graph command buffer takes: "exceeded max concurrent node
        # limit" at load on an H200) and hold every weight twice.
        disabled += ("kiln-merge-linears", "kiln-raise-swiglu")
    raise_pipeline = build_raise_pipeline(raise_attention=opts.raise_attention,
                                          raise_linear=opts.raise_linear, disabled=disabled)
    with timed("raise"):
        raise_pipeline.run(module)
    report.rewrites += raise_pipeline.rewrites()
    for step in raise_pipeline.steps:
        report.unmatched_softmax += getattr(step, "unmatched", [])
    if phase is Phase.KILN:
        return CompiledModel(None, str(module), report)

    lower_pipeline = build_lower_pipeline(target=",".join(targets), attention=opts.attention,
                                          cuda_kernels=kernels)
    with timed("lower"):
        lower_pipeline.run(module)
        for name, signature in signatures.items():
            _attach_signature(module, signature, name)
    report.rewrites += lower_pipeline.rewrites()
    archive = None
    with timed("serialize"):
        if parameters is not None:
            ir_text, archive = externalize(module, parameters)
        else:
            ir_text = module.operation.get_asm(large_elements_limit=None,
                                               enable_debug_info=False)
        ir_text = render_kernel_calls(ir_text)
    if phase is Phase.IREE_INPUT:
        return CompiledModel(None, ir_text, report, archive)

    # dynamic dims: IREE 3.13's separate transpose dispatches fail to compile (kiln.targets)
    dynamic = any("bounds" in entry for s in signatures.values() for entry in s["inputs"])
    flags = iree_flags(targets, TargetOptions(cpu=opts.cpu, cuda_arch=opts.cuda_arch,
                                              opt_level=opts.opt_level,
                                              data_tiling=opts.data_tiling,
                                              transpose_propagation=dynamic))
    flags += list(opts.extra_iree_flags)
    with timed("iree-compile"):
        vmfb = _run_iree_compile(ir_text, flags, lambda: unsupported_ops(module, flags),
                                 lambda error: codegen_fallback_flags(targets, error), report)
    return CompiledModel(vmfb, None, report, archive)


def _run_iree_compile(ir_text: str, flags: list[str], diagnose=None, fallback=None,
                      report=None) -> bytes:
    """IREE's compile; on failure `diagnose()` (kiln.diagnose.unsupported_ops) lists every
    op IREE rejects, with its source line, instead of only the first one IREE reports.
    `fallback(error) -> flags`: a codegen limit IREE hit is retried once with those flags
    (kiln.targets.codegen_fallback_flags), recorded in `report.rewrites`."""
    compiler = iree_compiler()
    try:
        return compiler.compile_str(ir_text, extra_args=flags)
    except compiler.CompilerToolError as error:
        retry = fallback(str(error)) if fallback is not None else []
        if retry and retry != flags[-len(retry):]:
            if report is not None:
                first = next((line for line in str(error).splitlines() if "error:" in line), "")
                report.rewrites.append(Rewrite("iree-compile", "fallback/" + " ".join(retry),
                                               first.split("error:", 1)[-1].strip()[:200], ""))
            return _run_iree_compile(ir_text, flags + retry, diagnose, None, report)
        saved = Path(os.environ.get("TMPDIR", "/tmp")) / f"kiln-iree-input-{os.getpid()}.mlir"
        saved.write_text(ir_text)
        message = re.sub(r'cpu_features = "[^"]*"', 'cpu_features = "..."', str(error))
        errors = [line for line in message.splitlines() if "error:" in line]
        issues = diagnose() if diagnose is not None else []
        summary = format_issues("unsupported operations", issues) + "\n" if issues else ""
        raise KilnCompileError(
            summary + "IREE could not compile the model:\n" + "\n".join(errors[:10]) +
            f"\n--- full diagnostics (tail) ---\n{message[-3000:]}\nreproduce with:\n"
            f"  iree-compile {saved} {' '.join(flags)} -o out.vmfb", issues) from error


def compile_to_vmfb(model, example_args, *, target="cpu", output=None, compile_to=None,
                    dynamic_shapes=None, **options):
    """Compile `model` for `target` ("cpu", "cuda" or ("cpu", "cuda")).

    Returns the `.vmfb` bytes, or writes them to `output` and returns its path. With
    `compile_to="torch" | "kiln" | "iree-input"` returns that phase's IR as text instead.
    With `weights="external"` an artifact needs `output`: the weights go to `output` with
    suffix `.irpa` (`kiln.compile_model(...).parameters` holds them for other uses).
    Options: see `CompileOptions`.
    """
    if options.get("weights") == "external" and output is None and \
            Phase.parse(compile_to) is Phase.VMFB:
        raise ValueError("weights='external' needs an output path: the weights are written to "
                         "<output>.irpa beside the .vmfb (or use kiln.compile_model(...) and "
                         "its .parameters)")
    compiled = compile_model(model, example_args, target=target, compile_to=compile_to,
                             dynamic_shapes=dynamic_shapes, **options)
    if compiled.vmfb is None:
        return compiled.ir_text
    if output is None:
        return compiled.vmfb
    return compiled.save(output)
