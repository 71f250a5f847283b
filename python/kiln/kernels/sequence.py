"""One launch for a sequence of launches ("ticketed stages").

A batch-1 decode step runs five latency-bound launches per decoder layer, each costing host
submission time. `sequence_spec` composes single-launch plans, each reading the composite's
inputs or earlier stages' outputs, into a plan of ONE launch, without a cooperative launch:

    plan = sequence_spec([qkv, attention, o_proj, mlp_in, mlp_out], [
        ("in0", "in1", "in2", "in3", "in4"),     # per stage input: a composite input "in<j>"
        ("stage0", "in5", "in6", "in7"),         # or the output of an earlier stage "stage<i>"
        ...])

The launch's grid is 1-D, one program per program of every stage (TOTAL = Σ n_s). A generated
entry kernel (`entry_source`, compiled from its own source file: plan.generated_module) takes a
ticket per program: tickets [0, n_0) run stage 0, [n_0, n_0 + n_1) stage 1, ...; the ticket's
offset in its stage is that stage's (pid0, pid1) in CUDA's grid order (pid0 fastest), handed to
the stage's program function (`linear_program`, `attention_decode_program`,
`attention_fwd_program`) with its constexprs as literals. The waits between stages and the
reset of the counters are in kiln.kernels.triton_sequence.

Stages after the first read with LOAD_CG (activations past L1); a stage may read what an earlier
one wrote only through the pointers LOAD_CG covers, and only the single-launch forms fuse:
split-K GEMMs with `reduce_in_kernel=True`, split-KV decode with `merge_in_kernel=True` (their
per-tile semaphores become regions of the sequence's semaphore buffer, one per stage).
Everything else raises KernelUnsupported.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

from kiln.dtypes import by_element
from kiln.kernels.plan import KernelParam, KernelUnsupported, LaunchSpec, PlanSpec


@dataclass(frozen=True)
class ProgramForm:
    """How a kernel runs as a stage: its program function (same module, the kernel's params
    plus its program ids first and LOAD_CG last) and the pointers LOAD_CG reads past L1."""
    function: str
    program_ids: tuple[str, str]  # grid x, grid y (every stage's grid z is 1)
    cg_pointers: tuple[str, ...]
    # a function of the same module, taking those of the program's arguments it names, that
    # asks L2 for what the program will read from memory no earlier stage writes (its
    # weights), called before the stage waits
    prefetch: str | None = None


PROGRAM_FORMS = {
    ("triton_gemm", "linear_kernel"):
        ProgramForm("linear_program", ("pid", "pid_k"), ("x_ptr", "r_ptr"), "linear_prefetch"),
    ("triton_attention", "attention_decode_kernel"):
        ProgramForm("attention_decode_program", ("split", "bk"),
                    ("q_ptr", "k_ptr", "v_ptr", "kn_ptr", "vn_ptr")),
    ("triton_attention", "attention_fwd_kernel"):
        ProgramForm("attention_fwd_program", ("pid_m", "bh"), ("q_ptr", "k_ptr", "v_ptr")),
}
ENTRY = "kiln_sequence"
SEMAPHORES = "sem0"
# The stages' temps (partials, outputs the next stage reads) share one byte buffer: IREE's CUDA
# runtime binds at most 16 buffers per dispatch (kiln.cuda_kernels.IREE_CUDA_MAX_BINDINGS).
ARENA = "tmp0"
ARENA_ALIGN = 128  # bytes: each temp starts on a cache line of its own
# Each stage's semaphores start on a 128-byte line of their own, away from the header's
# counters that every program spins on or counts at.
SEMAPHORE_ALIGN = 32
_SOURCE = re.compile(r"^(in|stage)(\d+)$")


@dataclass(frozen=True)
class StageCall:
    """One stage in the entry kernel: its program function called with `arguments` (parameter
    name → Python expression) for tickets [first, first + grid x · grid y)."""
    module: str
    form: ProgramForm
    grid: tuple[int, int, int]
    first: int
    arguments: tuple[tuple[str, str], ...]

    @property
    def programs(self) -> int:
        return self.grid[0] * self.grid[1]


def _literal(stage: int, name: str, value) -> str:
    """`value` as Python source that evaluates to the same constexpr."""
    if value is None or isinstance(value, (bool, int)) or \
            (isinstance(value, float) and math.isfinite(value)):
        return repr(value)
    raise KernelUnsupported(f"sequence: stage {stage} constexpr {name}={value!r} has no literal")


def _wrap(items: Sequence[str], indent: str, end: str) -> str:
    """`items` joined by ", " and followed by `end`, on lines of at most 96 characters that
    break between items only."""
    lines = [indent]
    for position, item in enumerate(items):
        text = item + (end if position == len(items) - 1 else ",")
        if lines[-1] != indent and len(lines[-1]) + 1 + len(text) > 96:
            lines.append(indent)
        lines[-1] += ("" if lines[-1] == indent else " ") + text
    return "\n".join(lines)


def _parameters(module: str, function: str) -> set:
    """The parameter names of jit function `function` of kiln.kernels.<module> (imports
    Triton)."""
    import importlib

    return set(getattr(importlib.import_module(f"kiln.kernels.{module}"), function).arg_names)


def entry_source(parameters: Sequence[str], stages: Sequence[StageCall],
                 prefetch: bool = False, views: Sequence[tuple[str, str, int]] = ()) -> str:
    """Python source of the module defining the entry kernel `kiln_sequence(*parameters)`: each
    program takes a ticket and runs the stage it falls in; the last parameter is the semaphore
    buffer ([ticket, done_0, ..., done_{S-1}], then the stages' own semaphores). A ticket past
    the last stage, which only a header left nonzero could hand out, runs nothing rather than
    a program outside its stage's grid (writes out of bounds). With `prefetch`, a program of
    a later stage whose form has a prefetch function calls it before it waits. `views`: (name,
    Triton element type, byte offset) of each stage temp, a typed pointer into the arena
    parameter ARENA (one binding for all of them)."""
    count = len(stages)
    sem = parameters[-1]
    imports = sorted({(stage.module, stage.form.function) for stage in stages} |
                     {(stage.module, stage.form.prefetch) for stage in stages[1:]
                      if prefetch and stage.form.prefetch})
    lines = [f'"""Generated by kiln.kernels.sequence: {count} launches as one."""',
             "import triton", "import triton.language as tl", ""]
    lines += [f"from kiln.kernels.{module} import {function}" for module, function in imports]
    lines += ["from kiln.kernels.triton_sequence import finish_sequence, finish_stage, "
              "take_ticket, wait_for_stage", "", "", "@triton.jit",
              f"def {ENTRY}(", _wrap(parameters, "        ", "):")]
    lines += [f"    {name}_ptr = ({ARENA}_ptr + {offset}).to(tl.pointer_type({element}))"
              for name, element, offset in views]
    lines.append(f"    ticket = take_ticket({sem})")
    for index, stage in enumerate(stages):
        last = index == count - 1
        lines.append(f"    {'elif' if index else 'if'} ticket < {stage.first + stage.programs}:")
        lines.append(f"        # stage {index}: grid {stage.grid}")
        offset = f"(ticket - {stage.first})" if stage.first else "ticket"
        pid_x, pid_y = stage.form.program_ids
        arguments = [(pid_x, f"{offset} % {stage.grid[0]}"),
                     (pid_y, f"{offset} // {stage.grid[0]}")] + list(stage.arguments)
        call = _wrap([f"{k}={v}" for k, v in arguments], "            ", ")")
        if index > 0:
            if prefetch and stage.form.prefetch:
                wanted = _parameters(stage.module, stage.form.prefetch)
                lines += [f"        {stage.form.prefetch}(", _wrap(
                    [f"{k}={v}" for k, v in arguments if k in wanted], "            ", ")")]
            lines.append(f"        wait_for_stage({sem} + {index}, {stages[index - 1].programs})")
        lines += [f"        {stage.form.function}(", call]
        lines.append(f"        finish_sequence({sem}, {count}, {stage.programs})" if last
                     else f"        finish_stage({sem} + {index + 1})")
    return "\n".join(lines) + "\n"


def _program_form(index: int, spec: PlanSpec) -> ProgramForm:
    if len(spec.launches) != 1:
        raise KernelUnsupported(
            f"sequence: stage {index} has {len(spec.launches)} launches "
            f"({', '.join(launch.function for launch in spec.launches)}); only single-launch "
            f"plans fuse (split-K with reduce_in_kernel=True, split-KV decode with "
            f"merge_in_kernel=True)")
    launch = spec.launches[0]
    form = PROGRAM_FORMS.get((launch.module, launch.function))
    if form is None:
        raise KernelUnsupported(f"sequence: stage {index}: {launch.module}.{launch.function} "
                                f"has no program form")
    if launch.grid[2] != 1:
        raise KernelUnsupported(f"sequence: stage {index}: grid {launch.grid} has a z extent")
    return form


def sequence_spec(specs: Sequence[PlanSpec], wiring: Sequence[Sequence[str]],
                  prefetch: bool = False) -> PlanSpec:
    """The plan running `specs` in order as one launch. `wiring[i]` names, per input of stage
    i (in its order), where it comes from: "in<j>" (input j of the composite) or "stage<k>"
    (the output of stage k < i; same dtype and element count: a reshape is free). The
    composite's inputs are in0.. in the order of j (every j used), its output the last stage's;
    the other stages' outputs and every stage's temps are views into its one temp, the byte
    arena tmp0 (ARENA: each view on a 128-byte line of its own, in stage order),
    its one semaphore buffer (sem0, i32) holds the sequence's counters and every stage's
    semaphores, and inputs a stage writes in place (a KV cache) are `written`. `prefetch`: each
    later stage's programs ask L2 for their weights before they wait (ProgramForm.prefetch;
    for the GPU only: Triton's interpreter has no inline assembly)."""
    if len(specs) < 2:
        raise KernelUnsupported(f"sequence: {len(specs)} stage(s); a sequence has at least 2")
    if len(wiring) != len(specs):
        raise KernelUnsupported(f"sequence: {len(specs)} stages but wiring for {len(wiring)}")
    arch = specs[0].launches[0].arch
    forms = [_program_form(index, spec) for index, spec in enumerate(specs)]
    if any(spec.launches[0].arch != arch for spec in specs):
        raise KernelUnsupported(f"sequence: stages for different architectures "
                                f"{sorted({spec.launches[0].arch for spec in specs})}")

    buffers: dict[str, tuple[tuple, str]] = {}  # composite buffer → (shape, dtype)
    inputs: dict[int, str] = {}
    temps: list[str] = []
    outputs: list[str] = []  # per stage: the composite buffer of its output
    inout: list[str] = []    # composite buffers written in place, in order of first write
    earlier_writes: set[str] = set()
    cursor = SEMAPHORE_ALIGN * math.ceil((1 + len(specs)) / SEMAPHORE_ALIGN)
    calls: list[StageCall] = []
    first = 0
    for index, (spec, form, sources) in enumerate(zip(specs, forms, wiring)):
        launch = spec.launches[0]
        if len(sources) != len(spec.inputs):
            raise KernelUnsupported(f"sequence: stage {index} takes {len(spec.inputs)} inputs, "
                                    f"wiring names {len(sources)}")
        rename: dict[str, str] = {}
        for (name, shape, dtype), source in zip(spec.inputs, sources):
            match = _SOURCE.match(source)
            if match is None or (match[1] == "stage" and int(match[2]) >= index):
                raise KernelUnsupported(f"sequence: stage {index} input {name} from {source!r} "
                                        f"(want in<j>, or stage<k> with k < {index})")
            if match[1] == "stage":
                buffer = outputs[int(match[2])]
            elif source not in buffers:  # the composite input's first use declares it
                buffer = inputs[int(match[2])] = source
                buffers[buffer] = (tuple(shape), dtype)
            else:
                buffer = source
            have_shape, have_dtype = buffers[buffer]
            if have_dtype != dtype or math.prod(have_shape) != math.prod(shape):
                raise KernelUnsupported(f"sequence: stage {index} input {name} wants {shape} "
                                        f"{dtype}, {source} is {have_shape} {have_dtype}")
            rename[name] = buffer
        for name, shape, dtype in spec.temps:
            rename[name] = f"t{len(temps)}"
            temps.append(rename[name])
            buffers[rename[name]] = (tuple(shape), dtype)
        out = "out" if index == len(specs) - 1 else f"t{len(temps)}"
        if out != "out":
            temps.append(out)
        buffers[out] = (tuple(spec.output[0]), spec.output[1])
        rename["out"] = out
        outputs.append(out)
        regions = {}
        for name, shape, _ in spec.semaphores:
            regions[name] = cursor
            cursor = SEMAPHORE_ALIGN * math.ceil((cursor + math.prod(shape)) / SEMAPHORE_ALIGN)

        arguments = []
        for param, arg in zip(launch.pointers, launch.args):
            if arg in regions:
                arguments.append((param.name, f"{SEMAPHORES}_ptr + {regions[arg]}"))
                continue
            buffer = rename[arg]
            if buffer in earlier_writes and param.name not in form.cg_pointers:
                raise KernelUnsupported(
                    f"sequence: stage {index} reads {buffer} (an earlier stage wrote it) "
                    f"through {param.name}, whose loads may hit a stale L1 line (LOAD_CG "
                    f"covers {', '.join(form.cg_pointers)})")
            arguments.append((param.name, f"{buffer}_ptr"))
        arguments += [(name, _literal(index, name, value)) for name, value in launch.constexprs]
        arguments.append(("LOAD_CG", repr(index > 0)))
        calls.append(StageCall(launch.module, form, launch.grid, first, tuple(arguments)))
        first += calls[-1].programs
        for param, arg in zip(launch.pointers, launch.args):
            if param.role == "inout" and rename[arg] not in inout:
                inout.append(rename[arg])
        earlier_writes |= {out, *inout}

    if sorted(inputs) != list(range(len(inputs))):
        raise KernelUnsupported(f"sequence: the wiring uses inputs {sorted(inputs)}; the "
                                f"composite's inputs are in0..in{len(inputs) - 1}, every one used")
    semaphores = ((SEMAPHORES, (cursor,), "i32"),)
    views, arena_bytes = [], 0
    for name in temps:
        shape, dtype = buffers[name]
        views.append((name, f"tl.{by_element(dtype).torch_name}", arena_bytes))
        size = math.prod(shape) * by_element(dtype).torch_dtype.itemsize
        arena_bytes += ARENA_ALIGN * math.ceil(size / ARENA_ALIGN)
    arena = [ARENA] if temps else []
    if temps:
        buffers[ARENA] = ((arena_bytes,), "i8")
    names = [inputs[j] for j in sorted(inputs)] + ["out"] + arena
    roles = {"out": "output", **{name: "temp" for name in arena},
             **{inputs[j]: "inout" if inputs[j] in inout else "input" for j in inputs}}
    pointers = tuple(KernelParam(f"{name}_ptr", *buffers[name], roles[name]) for name in names) \
        + (KernelParam(f"{SEMAPHORES}_ptr", (cursor,), "i32", "semaphore"),)
    source = entry_source([p.name for p in pointers], calls, prefetch, views)
    launches = [spec.launches[0] for spec in specs]
    launch = LaunchSpec(
        "sequence", ENTRY, (), pointers, tuple(names) + (SEMAPHORES,), (first, 1, 1),
        # One block shape for every stage: enough warps for the widest; the shallowest
        # pipeline, which fits every stage's shared memory.
        max(la.num_warps for la in launches), min(la.num_stages for la in launches),
        f"sequence{len(specs)}_" + "_".join(la.function.removesuffix("_kernel")
                                            for la in launches), arch, source)
    return PlanSpec(
        (launch,), tuple((name, *buffers[name]) for name in arena),
        tuple((inputs[j], *buffers[inputs[j]]) for j in sorted(inputs)), specs[-1].output,
        config=tuple(spec.config for spec in specs),
        config_key=" + ".join(spec.config_key for spec in specs),
        written=tuple(name for name in inout if name in inputs.values()),
        semaphores=semaphores)
