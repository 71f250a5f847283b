"""Kiln's main job: model + example inputs → phases → `.vmfb` (or a phase's IR as text)."""

from __future__ import annotations

import logging
import re
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional, Sequence

from kiln import __version__
from kiln.artifact import SIGNATURE_KEY, Signature, TensorSpec
from kiln.bindings import ir
from kiln.cpu_attention import ATTENTION_CHOICES, render_cpu_attention_calls
from kiln.cpu_conv import CPU_CONV_TAKEN, render_cpu_conv_calls
from kiln.cpu_kernels import render_cpu_gemm_calls
from kiln.cuda_kernels import render_kernel_calls
from kiln.diagnose import format_issues, unsupported_ops
from kiln.dtypes import MLIR_TO_NUMPY
from kiln.errors import KilnCompileError, KilnUnsupportedError
from kiln.frontend import export_model, import_program
from kiln.guards import refuse_data_dependent_shapes
from kiln.iree_compile import IreeCompileFailure, run_iree_compile, write_reproducer
from kiln.outputs import mutated_inputs, normalize_results, output_tree, written_inputs
from kiln.parameters import WEIGHTS_MODES, ExternalParameters, externalize
from kiln.pipelines import Phase, build_lower_pipeline, build_raise_pipeline
from kiln.report import Rewrite
from kiln.targets import (CPU_KERNEL_MODES, CUDA_KERNEL_MODES, KERNEL_SELECTIONS, CompileTarget,
                          codegen_fallback_flags, cuda_kernels_decision, iree_flags)
from kiln.torch_ir import tensor_info

TORCH_TO_NUMPY_DTYPE = MLIR_TO_NUMPY  # the signature's dtype names (kiln.dtypes)


class StateBinding(NamedTuple):
    """What compile_entry_points binds to device state (kiln.device_state): the inputs kept
    as mutable globals, and the state functions also compiled as device loops
    (kiln.decode_loop)."""

    state: tuple[str, ...] = ()
    decode_loops: tuple[str, ...] = ()


NO_STATE = StateBinding()


@dataclass
class CompileOptions:
    """Options accepted by `compile_to_vmfb(..., **options)`."""

    # kiln.attention lowering: auto (measured per target) | decomposed | fused | cpu_kernel
    # (Kiln's CPU attention kernel, kiln.cpu_attention, where cpu_kernels is on; the rest decomposed)
    attention: str = "auto"
    fold_constants: bool = True  # evaluate input-independent subgraphs at compile time
    raise_attention: bool = True
    raise_linear: bool = True
    disable_passes: Sequence[str] = ()  # kiln pass names to leave out of the pipelines
    cpu: str = "host"  # LLVM CPU for the CPU target: host, or an ISA such as x86-64-v3
    # The GPU the artifact is for. IREE's own code: this architecture (sm_90/sm_90a: IREE 3.13
    # has no Hopper target, sm_80 code); Kiln's kernels: PTX for it (sm_90a only runs on
    # H100/H200; sm_80 on A100 and newer; below sm_80 no kernels).
    cuda_arch: str = "sm_90a"
    # Library kernels (Triton, PTX for cuda_arch) for the linears and attentions they support,
    # target "cuda" only: auto (on when triton is installed: pip install kiln[cuda]; when it is
    # not, the compile log and report say so) | on | off
    cuda_kernels: str = "auto"
    # With kernels: allow split-K GEMMs (f32 partials + a reduce launch, where the config table
    # chose them for decode-shaped GEMMs); off keeps every GEMM one launch. On by default:
    # faster on the H100 for decode despite the extra launches (docs/decisions.md).
    cuda_split_k: bool = True
    # With kernels: fold residual adds, norms, q/k/v slicing, RoPE and head merges into them (a
    # decoder layer in 5 launches, docs/kernels.md); off: one kernel per linear / attention.
    cuda_fuse: bool = True
    # With kernels: consecutive kernel calls that feed each other (a decoder layer's five) run
    # as launches of ticketed stages, as few as IREE's 16 bindings per dispatch allow
    # (kiln-chain-cuda-kernels, kiln.kernels.sequence). Off: on an H100 the chained layers kept
    # the GPU busier per token than the separate kernels (docs/decisions.md, "One launch per
    # decoder layer").
    cuda_chain: bool = False
    # With cuda_chain: each later stage's programs ask L2 for their weights before they wait
    # for the previous stage, so weights stream in while it runs. Off: within the spread on an
    # H100 (GPT-2 +2%, Llama -2%).
    cuda_chain_prefetch: bool = False
    # Kiln's own f32 GEMM (kiln.cpu_kernels) for the linears it takes, target "cpu" alone:
    # auto (on where measured faster: kiln.targets.HOST_CPU_KERNELS, for cpu="host") | on | off
    cpu_kernels: str = "auto"
    opt_level: str = "O3"
    data_tiling: bool = True
    extra_iree_flags: Sequence[str] = ()
    verbose: bool = False  # print each phase and its time to stderr
    strict_export: bool = False
    # inline: weights in the .vmfb | external: weights of >= 1 KiB in an IREE parameter archive
    # (kiln.archive.parameters_path(output)) that kiln.load finds beside the .vmfb and checks
    # against the artifact's record (kiln.parameters, kiln.archive)
    weights: str = "inline"
    cache: bool = True  # reuse/store artifacts in KILN_CACHE_DIR (KILN_CACHE=0 also turns it off)
    # Bounds checks on gathers/scatters whose indices come from inputs (kiln.guards): an
    # out-of-range token id raises IndexError as in eager, instead of reading other memory.
    # Off saves a clamp and a small reduction per such op (docs/decisions.md has the cost).
    index_checks: bool = True
    # CUDA decode loops (kiln.decode_loop): the host records step n+1 while the GPU runs step n,
    # instead of waiting for it at IREE's queue alloca/dealloca (kiln.queue_waits); compiles in
    # two phases (to IREE's HAL IR, rewritten, then on). None: on where the target is CUDA
    # alone (measured 1.11-1.24x decode tokens/s on an H100); True needs such a target.
    pipeline_loops: Optional[bool] = None

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
        if opts.attention not in ATTENTION_CHOICES:
            raise ValueError(f"attention={opts.attention!r}: choose one of "
                             f"{', '.join(ATTENTION_CHOICES)}")
        if opts.cuda_kernels not in CUDA_KERNEL_MODES:
            raise ValueError(f"cuda_kernels={opts.cuda_kernels!r}: choose one of "
                             f"{', '.join(CUDA_KERNEL_MODES)}")
        if opts.pipeline_loops not in (None, True, False):
            raise ValueError(f"pipeline_loops={opts.pipeline_loops!r}: choose None (auto), "
                             f"True or False")
        for switch in ("cuda_split_k", "cuda_fuse", "cuda_chain", "cuda_chain_prefetch"):
            # A string such as "off" is truthy: it would have switched the feature on.
            if not isinstance(getattr(opts, switch), bool):
                raise ValueError(f"{switch}={getattr(opts, switch)!r}: choose True or False")
        if opts.cpu_kernels not in CPU_KERNEL_MODES:
            raise ValueError(f"cpu_kernels={opts.cpu_kernels!r}: choose 'auto', 'on' or 'off'")
        if opts.weights not in WEIGHTS_MODES:
            raise ValueError(f"weights={opts.weights!r}: choose 'inline' (in the .vmfb) or "
                             f"'external' (a .irpa parameter archive beside it)")
        return opts

    def compile_target(self, target) -> CompileTarget:
        """The CompileTarget of a compile for `target=` ("cpu", "cuda", ("cpu", "cuda")) with
        these options: resolved once, then handed to the pipelines and iree_flags."""
        return CompileTarget.resolve(target, cuda_kernels=self.cuda_kernels,
                                     cpu_kernels=self.cpu_kernels, cpu=self.cpu,
                                     cuda_arch=self.cuda_arch, opt_level=self.opt_level,
                                     data_tiling=self.data_tiling,
                                     cuda_split_k=self.cuda_split_k, cuda_fuse=self.cuda_fuse,
                                     cuda_chain=self.cuda_chain,
                                     cuda_chain_prefetch=self.cuda_chain_prefetch)


def use_cuda_kernels(mode: str, targets: tuple[str, ...], cuda_arch: str = "sm_90a") -> bool:
    """Whether library kernels go into this compile (see CompileOptions.cuda_kernels)."""
    return cuda_kernels_decision(mode, targets, cuda_arch)[0]


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

    def to_json(self) -> dict:
        """What a cache entry keeps of the compile that built it (kiln.cache stores JSON)."""
        return {"target": list(self.target),
                "rewrites": [asdict(r) for r in self.rewrites],
                "unmatched_softmax": [list(u) for u in self.unmatched_softmax],
                "phase_seconds": dict(self.phase_seconds)}

    @classmethod
    def from_json(cls, data: dict) -> "CompileReport":
        """The inverse of `to_json`; raises (TypeError, KeyError, ValueError) on a bad record."""
        return cls(target=tuple(data["target"]),
                   rewrites=[Rewrite(**r) for r in data["rewrites"]],
                   unmatched_softmax=[tuple(u) for u in data["unmatched_softmax"]],
                   phase_seconds={str(k): float(v) for k, v in data["phase_seconds"].items()})


@dataclass
class CompiledModel:
    vmfb: Optional[bytes]
    ir_text: Optional[str]
    report: CompileReport
    # weights="external": archive key → bytes (numpy) of the weights the artifact loads
    parameters: Optional[dict] = None

    def save(self, output) -> Path:
        """Write the .vmfb to `output` and, with external weights, the parameter archive to
        `kiln.archive.parameters_path(output)` (where kiln.load looks for it: `m.vmfb` →
        `m.irpa`, `m.b1` → `m.b1.irpa`), as a pair (kiln.runtime.save_artifact); returns the
        .vmfb path."""
        if self.vmfb is None:
            raise ValueError("nothing to save: this compile stopped at an IR phase")
        from kiln.runtime import save_artifact

        return save_artifact(Path(output), self.vmfb, self.parameters)


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


def _signature(program, module: ir.Module, name: str = "main", guards=()) -> Signature:
    """Input names/shapes/dtypes and outputs, embedded in the artifact for runtime checks, and
    how the runtime gives the model's results back: "output_tree" (the model's output
    structure over the results, Python numbers and constants included) and "mutated_inputs"
    (results the runtime copies into inputs the model updates in place); kiln.outputs.
    Rewrites the function's results first (constants out, Python numbers as 0-d tensors).
    `guards` (kiln.guards.IndexGuard) are the last results of the function, in order."""
    func = _function(module, name)
    new_index, scalar = normalize_results(module, func, program)
    function_type = ir.FunctionType(ir.TypeAttr(func.attributes["function_type"]).value)
    names = [spec.arg.name for spec in program.graph_signature.input_specs
             if spec.kind.name == "USER_INPUT"]

    def describe(type_, name=None, bounds=None) -> TensorSpec:
        info = tensor_info(type_)
        if info is None:
            raise KilnCompileError(f"unsupported non-tensor {'input' if name else 'output'} "
                                   f"{name or ''} of type {type_}")
        if info.dtype not in TORCH_TO_NUMPY_DTYPE:
            raise KilnUnsupportedError(
                f"{'input ' + repr(name) if name else 'an output'} has dtype {info.dtype}, "
                f"which a Kiln artifact cannot take or return (supported: "
                f"{', '.join(TORCH_TO_NUMPY_DTYPE.values())})")
        return TensorSpec(tuple(info.shape), TORCH_TO_NUMPY_DTYPE[info.dtype], name, bounds)

    inputs = tuple(describe(t, n, tuple(b) if any(d is not None for d in b) else None)
                   for t, n, b in zip(function_type.inputs, names,
                                      _dynamic_dim_bounds(program, names)))
    function_type = ir.FunctionType(ir.TypeAttr(func.attributes["function_type"]).value)
    outputs = tuple(describe(t) for t in function_type.results)
    guard_output = len(outputs) - 1  # kiln.guards stacks every guard into the last result
    return Signature(
        inputs, outputs, kiln_version=__version__,
        mutated_inputs=mutated_inputs(program, new_index),
        guards=tuple(g.signature_entry(guard_output, row) for row, g in enumerate(guards))
        if guards else None,
        written_inputs=written_inputs(func) or None,  # the runtime passes copies of these
        output_tree=output_tree(program, new_index, scalar))


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


def _attach_signature(module: ir.Module, signature: Signature, name: str = "main") -> None:
    func = _function(module, name)
    with module.context:
        func.attributes["iree.reflection"] = ir.DictAttr.get(
            {SIGNATURE_KEY: ir.StringAttr.get(signature.to_json())})


def _start(options: dict, target, compile_to, log):
    """Validated options, the resolved CompileTarget, phase, a fresh report, the log and the
    phase timer."""
    opts = CompileOptions.from_kwargs(options)
    compile_target = opts.compile_target(target)
    report = CompileReport(compile_target.devices)
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    return opts, compile_target, Phase.parse(compile_to), report, log, \
        _PhaseTimer(report, opts.verbose, log)


def compile_model(model, example_args, *, target="cpu", compile_to=None, dynamic_shapes=None,
                  log: Callable[[str], None] = None, **options) -> CompiledModel:
    """Compile and return the artifact (or a phase's IR) together with the compile report."""
    opts, compile_target, phase, report, log, timed = _start(options, target, compile_to, log)
    with timed("export"):
        program = export_model(model, example_args, dynamic_shapes=dynamic_shapes,
                               strict=opts.strict_export)
    return _compile_cached({"main": program}, compile_target, phase, opts, report, timed, log)


def compile_entry_points(entries, *, target="cpu", output=None, compile_to=None,
                         log: Callable[[str], None] = None, state: Sequence[str] = (),
                         decode_loops: Sequence[str] = (), **options):
    """One artifact with several functions, e.g. `prefill` and `decode` of a decoder.

    `entries` maps each function name to `(module, example_args)` or `(module, example_args,
    dynamic_shapes)`; modules that share weights (wrappers around one model) store them once.
    `kiln.load(...)` exposes the functions by name (`run.prefill(...)`, `run["decode"](...)`).
    `state` names inputs that stay on the device between calls (a KV cache): every function
    takes them and returns their new values as its last outputs, in this order; the artifact
    keeps them as mutable globals updated in place, and its functions take and return the
    other inputs and outputs only (kiln.device_state). `decode_loops` names state functions
    that are decoder steps (token in, greedy token out) to also compile as `<name>_loop`, the
    steps run as a loop on the device (kiln.decode_loop).
    Returns the `.vmfb` bytes, or its path when `output` is given, or a phase's IR as text."""
    if not entries:
        raise ValueError("compile_entry_points needs at least one entry point")
    for name in entries:
        if not name.isidentifier():
            raise ValueError(f"entry point name {name!r} must be a Python identifier")
    from kiln.device_state import validate_state_names

    state = validate_state_names(state)
    decode_loops = tuple(decode_loops)
    unknown = [n for n in decode_loops if n not in entries]
    if unknown or (decode_loops and not state):
        raise ValueError(f"decode_loops: {unknown or list(decode_loops)} must name entry points "
                         f"of a stateful artifact (state=...)")
    state_binding = StateBinding(state, decode_loops)
    opts, compile_target, phase, report, log, timed = _start(options, target, compile_to, log)
    programs = {}
    for name, entry in entries.items():
        module, args, *rest = entry
        with timed(f"export {name}"):
            programs[name] = export_model(module, args, dynamic_shapes=rest[0] if rest else None,
                                          strict=opts.strict_export)
    compiled = _compile_cached(programs, compile_target, phase, opts, report, timed, log,
                               state_binding)
    if compiled.vmfb is None or output is None:
        return compiled.ir_text if compiled.vmfb is None else compiled.vmfb
    return compiled.save(output)


def _compile_cached(programs: dict, target: CompileTarget, phase, opts, report, timed, log,
                    state_binding: StateBinding = NO_STATE) -> CompiledModel:
    """`_compile_programs` behind the compile cache: the key is taken from the exported
    programs and the context (kiln.compile_key), so a hit is the artifact of the same program.
    Only full artifacts with inline weights are cached; cache problems never fail a compile."""
    from kiln.cache import CompileCache, cache_enabled, max_bytes
    from kiln.compile_key import Unkeyable, artifact_key, compile_context

    def note(message: str) -> None:
        if opts.verbose:
            log(f"[kiln] {message}")

    if not cache_enabled(opts.cache) or phase is not Phase.VMFB or opts.weights != "inline":
        why = "off" if not cache_enabled(opts.cache) else \
            f"bypassed for compile_to={phase.value}" if phase is not Phase.VMFB else \
            "bypassed for weights='external' (it stores only the .vmfb)"
        note(f"cache {why}")
        return _compile_programs(programs, target, phase, opts, report, timed, state_binding)
    store, key = CompileCache(), None
    with timed("cache-lookup"):
        try:
            state, loops = state_binding
            key = artifact_key(programs, compile_context(target.devices, phase, opts) +
                               (("state",) + state if state else ()) +
                               (("decode_loops",) + loops if loops else ()))
        except Unkeyable as reason:
            note(f"cache off for this model: {reason}")
        except Exception as error:  # noqa: BLE001 - the cache must never fail a compile
            logging.getLogger("kiln.cache").warning(
                "kiln cache: off for this compile, the key failed: %s: %s",
                type(error).__name__, error)
        entry = store.get(key) if key is not None else None
    if entry is not None:
        try:
            saved = CompileReport.from_json(entry.meta["report"])
        except (TypeError, KeyError, ValueError, AttributeError) as error:
            note(f"cache entry {key[:16]}… has an unreadable report ({error}); recompiling")
        else:
            lookup = dict(report.phase_seconds)  # this call's export and lookup
            report.rewrites[:] = saved.rewrites
            report.unmatched_softmax[:] = saved.unmatched_softmax
            report.phase_seconds.clear()
            report.phase_seconds.update(saved.phase_seconds)  # of the compile that built it
            report.phase_seconds.update(lookup)
            report.cache = "hit"
            for rewrite in saved.rewrites:  # what the compile that built it warned about
                if rewrite.pass_name in KERNEL_SELECTIONS and rewrite.kind == "off":
                    log(f"[kiln] warning: {rewrite.detail}")
            note(f"cache hit (key {key[:16]}…, {len(entry.vmfb)} bytes) in "
                 f"{lookup['cache-lookup']:.3f} s")
            return CompiledModel(entry.vmfb, None, report)
    compiled = _compile_programs(programs, target, phase, opts, report, timed, state_binding)
    if key is not None:
        report.cache = "miss"
        if store.put(key, compiled.vmfb, {"report": report.to_json()}):
            store.prune(max_bytes())
            note(f"cache: stored {key[:16]}… in {store.root}")
    return compiled


def _compile_programs(programs: dict, target: CompileTarget, phase, opts, report, timed,
                      state_binding: StateBinding = NO_STATE) -> CompiledModel:
    """Import exported programs as functions of one module, then raise, lower and compile."""
    external = opts.weights == "external"
    # Inline weights reach iree-compile as raw bytes in MLIR bytecode
    # (kiln.iree_compile.run_iree_compile), not as hex in the IR text: printing, encoding and
    # parsing GPT-2 small's weights as text took 16-27 s of a 47 s compile and 4.9 GB of peak
    # memory (docs/decisions.md, "Weights reach iree-compile as bytecode").
    # Not with Kiln's CUDA kernels: IREE's Python bindings print their `#hal.executable.object`
    # attributes as `<{, data = ...}>`, which iree-compile cannot read back from the bytecode.
    handoff = phase is Phase.VMFB and not external and not target.cuda_kernels
    parameters = ExternalParameters() if external else \
        ExternalParameters(min_bytes=1) if handoff else None
    literal_cache: dict = {}
    signatures = {}
    if phase in (Phase.IREE_INPUT, Phase.VMFB):
        for program in programs.values():
            refuse_data_dependent_shapes(program)  # IREE would grow without bound on them
    with timed("import"):
        from kiln.dialects import make_context

        context = make_context()
        module = None
        for name, program in programs.items():
            guards = [] if opts.index_checks else None
            imported = import_program(program, context=context, func_name=name,
                                      fold_constants=opts.fold_constants,
                                      parameters=parameters, literal_cache=literal_cache,
                                      index_guards=guards)
            signatures[name] = _signature(program, imported, name, guards)
            if module is None:
                module = imported
            else:
                function = _function(imported, name)
                function.detach_from_parent()
                module.body.append(function)
    if phase is Phase.TORCH:
        return CompiledModel(None, str(module), report)

    for selection, why in target.kernels_off.items():
        timed.log(f"[kiln] warning: {why}")
        report.rewrites.append(Rewrite(selection, "off", why, ""))
    raise_pipeline = build_raise_pipeline(target, raise_attention=opts.raise_attention,
                                          raise_linear=opts.raise_linear,
                                          disabled=tuple(opts.disable_passes),
                                          external_weights=external)
    with timed("raise"):
        raise_pipeline.run(module)
    report.rewrites += raise_pipeline.rewrites()
    for step in raise_pipeline.steps:
        report.unmatched_softmax += getattr(step, "unmatched", [])
    if phase is Phase.KILN:
        return CompiledModel(None, str(module), report)

    lower_pipeline = build_lower_pipeline(target, attention=opts.attention)
    with timed("lower"):
        lower_pipeline.run(module)
        for name, signature in signatures.items():
            _attach_signature(module, signature, name)
    report.rewrites += lower_pipeline.rewrites()
    archive = handoff_weights = None
    with timed("serialize"):
        if handoff:
            ir_text, handoff_weights = externalize(module, parameters, record=False)
        elif parameters is not None:
            ir_text, archive = externalize(module, parameters)
        else:
            ir_text = module.operation.get_asm(large_elements_limit=None,
                                               enable_debug_info=False)
        ir_text = render_cpu_conv_calls(render_cpu_attention_calls(render_cpu_gemm_calls(
            render_kernel_calls(ir_text))))
        state, loops = state_binding
        if state:
            from kiln.decode_loop import add_decode_loop
            from kiln.device_state import bind_state

            ir_text = bind_state(ir_text, state)
            for step in loops:
                ir_text = add_decode_loop(ir_text, step)
    if phase is Phase.IREE_INPUT:
        return CompiledModel(None, ir_text, report, archive)

    # dynamic dims: IREE 3.13's separate transpose dispatches fail to compile (kiln.targets)
    dynamic = any(i.bounds is not None for s in signatures.values() for i in s.inputs)
    flags = iree_flags(replace(target, transpose_propagation=dynamic or
                               _convolutions_in_nhwc(report)))
    flags += list(opts.extra_iree_flags)
    pipelined = _pipelined_loops(opts, target, state_binding)
    with timed("iree-compile"):
        # with pipelined loops: IREE's HAL-phase IR as text, rewritten and compiled on below
        output = _run_iree_compile(ir_text, flags + (["--compile-to=hal"] if pipelined else []),
                                   lambda: unsupported_ops(module, flags),
                                   lambda error, tried: codegen_fallback_flags(target.devices,
                                                                               error, tried),
                                   report, handoff_weights)
    if pipelined:
        from kiln.queue_waits import release_loop_waits

        with timed("pipeline-loops"):
            hal_text, rewritten = release_loop_waits(output.decode(), pipelined)
            report.rewrites.append(Rewrite(
                "pipeline-loops", "queue-waits", f"{rewritten} queue allocations/deallocations "
                f"of {', '.join(pipelined)} no longer wait on the host", ""))
            output = _run_iree_compile(hal_text, flags + ["--compile-from=hal"], report=report)
    return CompiledModel(output, None, report, archive)


def _convolutions_in_nhwc(report: CompileReport) -> bool:
    """Whether Kiln's CPU convolution kernel took convolutions of a model without attention:
    its NCHW -> NHWC -> NCHW permutes are then cancelled between convolutions by IREE's transpose
    propagation (ResNet-18 b1 on the Zen 3 host: transposes 2.47 -> 0.79 ms per call;
    docs/decisions.md "CPU: Kiln's convolution kernel"), which stays off where attention's head
    transposes would be folded into its products (kiln.targets.iree_flags)."""
    return any(r.detail == CPU_CONV_TAKEN for r in report.rewrites) and \
        not any(r.kind == "kiln.attention" for r in report.rewrites)


def _pipelined_loops(opts, target: CompileTarget, state_binding: StateBinding) -> list[str]:
    """The IREE functions whose host waits kiln.queue_waits releases: each decode loop's
    asynchronous body, where `pipeline_loops` is on (CUDA-only targets)."""
    loops = state_binding.decode_loops
    if opts.pipeline_loops is False or not loops:
        return []
    if target.devices != ("cuda",):
        if opts.pipeline_loops is None:
            return []
        raise KilnCompileError(f"pipeline_loops=True needs target='cuda' alone (the CUDA "
                               f"HAL's one ordered stream makes it safe), got "
                               f"{', '.join(target.devices)}")
    from kiln.decode_loop import LOOP_SUFFIX

    return [f"{step}{LOOP_SUFFIX}$async" for step in loops]


def _run_iree_compile(ir_text: str, flags: list[str], diagnose=None, fallback=None,
                      report=None, weights: Optional[dict] = None) -> bytes:
    """IREE's compile, under Kiln's time and memory limits (kiln.iree_compile); on failure
    `diagnose()` (kiln.diagnose.unsupported_ops) lists every op IREE rejects, with its source
    line, instead of only the first one IREE reports. `fallback(error, flags so far) -> flags`:
    a known codegen failure IREE hit is retried with those flags, each fallback at most once
    (kiln.targets.codegen_fallback_flags), recorded in `report.rewrites`. `weights`: the
    {archive key: array} the IR's parameter globals name, imported into the artifact."""
    try:
        return run_iree_compile(ir_text, flags, weights=weights)
    except IreeCompileFailure as error:
        diagnostics = error.diagnostics
        retry = fallback(diagnostics, flags) if fallback is not None and not error.stopped \
            else []
        if retry:
            if report is not None:
                first = next((line for line in diagnostics.splitlines() if "error:" in line), "")
                report.rewrites.append(Rewrite("iree-compile", "fallback/" + " ".join(retry),
                                               first.split("error:", 1)[-1].strip()[:200], ""))
            return _run_iree_compile(ir_text, flags + retry, diagnose, fallback, report,
                                     weights)
        saved, holds = write_reproducer(ir_text, weights)
        reproduce = (f"reproduce with ({holds}):\n"
                     f"  iree-compile {saved} {' '.join(flags)} -o out.vmfb")
        message = re.sub(r'cpu_features = "[^"]*"', 'cpu_features = "..."', diagnostics)
        if error.stopped:  # a limit, not an unsupported op: no per-op probes
            so_far = f"--- diagnostics so far (tail) ---\n{message[-3000:]}\n" \
                if message.strip() else ""
            raise KilnCompileError(f"IREE could not compile the model: {error}\n{so_far}"
                                   f"{reproduce}") from error
        errors = [line for line in message.splitlines() if "error:" in line]
        issues = diagnose() if diagnose is not None else []
        summary = format_issues("unsupported operations", issues) + "\n" if issues else ""
        raise KilnCompileError(
            summary + "IREE could not compile the model:\n" +
            "\n".join(errors[:10] or [str(error)]) +
            f"\n--- full diagnostics (tail; {error}) ---\n{message[-3000:]}\n{reproduce}",
            issues) from error


def compile_to_vmfb(model, example_args, *, target="cpu", output=None, compile_to=None,
                    dynamic_shapes=None, **options):
    """Compile `model` for `target` ("cpu", "cuda" or ("cpu", "cuda")).

    Returns the `.vmfb` bytes, or writes them to `output` and returns its path. With
    `compile_to="torch" | "kiln" | "iree-input"` returns that phase's IR as text instead.
    With `weights="external"` an artifact needs `output`: the weights go to
    `kiln.archive.parameters_path(output)` (`.vmfb` → `.irpa`, else `.irpa` appended;
    `kiln.compile_model(...).parameters` holds them for other uses).
    Options: see `CompileOptions`.
    """
    if options.get("weights") == "external" and output is None and \
            Phase.parse(compile_to) is Phase.VMFB:
        raise ValueError("weights='external' needs an output path: the weights are written to "
                         "an .irpa beside the .vmfb (or use kiln.compile_model(...) and "
                         "its .parameters)")
    compiled = compile_model(model, example_args, target=target, compile_to=compile_to,
                             dynamic_shapes=dynamic_shapes, **options)
    if compiled.vmfb is None:
        return compiled.ir_text
    if output is None:
        return compiled.vmfb
    return compiled.save(output)
