"""Library kernels inside IREE artifacts: Kiln's side of the contract with `kiln.kernels`.

`kiln-select-cuda-kernels` (passes/lowering) replaces a `kiln.linear` / `kiln.attention` whose
shape and dtype a library kernel supports by a call to a private function declaration

    func.func private @kiln_kernel_3(tensor<128x768xf16>, ...) -> tensor<128x2304xf16>
        attributes {kiln.kernel = "linear(m=128, n=2304, k=768, dtype='f16', ...)"}

whose body IREE cannot be given in torch-mlir's MLIR (it knows neither `flow` nor `hal`).
`render_kernel_calls` runs on the text handed to IREE: it rebuilds each declaration's
`kiln.kernels` plan from the spec (ahead-of-time compiled PTX, cached in process), turns the
declaration into a function of `flow.dispatch`es, and adds one `hal.executable.source` per
kernel carrying its PTX (docs/kernels.md, "Carrying PTX inside an IREE artifact"):

    hal.executable.source private @kiln_exe_<kernel> <{objects = #hal.executable.objects<{
        #hal.executable.target<"cuda", "cuda-nvptx-fb"> = [#hal.executable.object<{data = ...}>]}>}> {
      hal.executable.export public @<entry> ordinal(0) layout(<one binding per pointer param>)
          count(...) { <the kernel's grid> } <workgroup_size = [32·warps, 1, 1], ...>
    }

The generic target key matches whatever CUDA target the flags create (IREE's own code); the
PTX targets the compile's `cuda_arch` (sm_90a by default: Hopper only; sm_80 runs on A100 and
newer, as IREE's own sm_80 code does). The kernel ABI
(Triton 3.6): one pointer per binding, in dispatch order (operands, then results), no scalars
(every size is a compile-time constant); Triton's two trailing scratch pointers are dropped from
the entry where the kernel does not use them (kiln.kernels.plan). Buffers a launch writes
are dispatch results, so IREE allocates them; the PTX's `.param` list is permuted so that they
come last (params are referenced by name, so only the ABI order changes). Tying them to
`tensor.empty` operands instead made IREE hoist each empty tensor into a constant and copy it
into place before every launch (20 copies in TinyGPT, docs/decisions.md).
"""

from __future__ import annotations

import ast
import re
from typing import Any

from kiln.dtypes import by_element
from kiln.kernels.plan import DTYPES as KERNEL_DTYPES

KERNEL_ATTR = "kiln.kernel"
KERNEL_PREFIX = "kiln_kernel_"
BUILDERS = ("linear", "attention", "sequence")
# Hopper's per-block limit on dynamic shared memory (227 KiB); other architectures have less
# (kiln.kernels.plan.ARCHS), which their builders fit the configs to.
MAX_SHARED_BYTES = 232448
# The kernels' dtype names (signless, as in their specs) → MLIR element types.
MLIR_ELEMENT = {name: by_element(name).builtin for name in KERNEL_DTYPES}
_CUDA_TARGET = '#hal.executable.target<"cuda", "cuda-nvptx-fb">'

_DECLARATION = re.compile(
    r'^(?P<indent>[ ]*)func\.func private @(?P<name>' + KERNEL_PREFIX + r'\d+)\(.*\) -> .* '
    r'attributes \{(?:.*, )?' + re.escape(KERNEL_ATTR) + r' = "(?P<spec>[^"]*)"(?:, .*)?\}$', re.M)
_MODULE_LINE = re.compile(r"^module\b.*\{$", re.M)


class KernelRenderError(RuntimeError):
    """A kernel declaration that cannot become IREE input (names the declaration)."""


def encode_spec(builder: str, arguments: dict[str, Any]) -> str:
    """`builder(key=value, ...)` with Python literals quoted with ' (fits an MLIR string)."""
    if builder not in BUILDERS:
        raise ValueError(f"unknown kernel builder {builder!r}; known: {', '.join(BUILDERS)}")
    parts = []
    for key, value in arguments.items():
        text = repr(tuple(value) if isinstance(value, list) else value)
        if '"' in text or "\\" in text:
            raise ValueError(f"kernel spec value {key}={text} cannot be encoded")
        parts.append(f"{key}={text}")
    return f"{builder}({', '.join(parts)})"


def decode_spec(spec: str) -> tuple[str, dict[str, Any]]:
    try:
        call = ast.parse(spec, mode="eval").body
        if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name) or call.args:
            raise ValueError("not builder(key=value, ...)")
        builder = call.func.id
        if builder not in BUILDERS:
            raise ValueError(f"unknown builder {builder!r}")
        return builder, {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
    except (SyntaxError, ValueError) as error:
        raise KernelRenderError(f"malformed {KERNEL_ATTR} spec {spec!r}: {error}") from None


def build_plan(builder: str, arguments: dict[str, Any]):
    """The `kiln.kernels` plan for a spec, or raise `kiln.kernels.KernelUnsupported`."""
    from kiln import kernels

    return getattr(kernels, f"{builder}_plan")(**arguments)


# IREE 3.13's CUDA runtime refuses an executable whose export has more bindings than this when
# the module loads ("binding_flags count 21 exceeds maximum of 16", native_executable.c): a
# dispatch binds one buffer per kernel parameter.
IREE_CUDA_MAX_BINDINGS = 16


def plan_problem(plan, arch: str = "sm_90a") -> str | None:
    """Why IREE cannot carry this plan for `arch`, or None."""
    from kiln.kernels.plan import shared_memory_limit

    limit = shared_memory_limit(arch)
    for launch in plan.launches:
        kernel = launch.kernel
        if kernel.shared_bytes > limit:
            return (f"kernel {kernel.symbol} needs {kernel.shared_bytes} bytes of shared memory "
                    f"(limit {limit} on {arch})")
        if len(kernel.params) > IREE_CUDA_MAX_BINDINGS:
            return (f"kernel {kernel.symbol} takes {len(kernel.params)} buffers; IREE's CUDA "
                    f"runtime binds at most {IREE_CUDA_MAX_BINDINGS} per dispatch")
        if len(launch.args) != len(kernel.params):
            return f"kernel {kernel.symbol}: {len(launch.args)} arguments for " \
                   f"{len(kernel.params)} parameters"
    return None


def tensor_type(shape, dtype: str) -> str:
    if dtype not in MLIR_ELEMENT:
        raise KernelRenderError(f"kernel parameter dtype {dtype!r} has no MLIR element type")
    return f"tensor<{''.join(f'{d}x' for d in shape)}{MLIR_ELEMENT[dtype]}>"


def plan_buffer_types(plan) -> tuple[dict[str, str], dict[str, str]]:
    """Types of the plan's inputs (in0, in1, ...) and of its out/tmp buffers, from the params
    of the launches that use them (and a consistency check: one type per name)."""
    inputs, buffers = {}, {}
    for name, shape, dtype in plan.temps:
        buffers[name] = tensor_type(shape, dtype)
    for launch in plan.launches:
        for arg, param in zip(launch.args, launch.kernel.params):
            if arg == "scratch":
                continue
            table = inputs if arg.startswith("in") else buffers
            type_ = tensor_type(param.shape, param.dtype)
            if table.setdefault(arg, type_) != type_:
                raise KernelRenderError(f"plan buffer {arg} is {table[arg]} for one kernel and "
                                        f"{type_} for {launch.kernel.symbol}")
    if "out" not in buffers:
        raise KernelRenderError("plan writes no 'out' buffer")
    order = sorted(inputs, key=lambda n: int(n[2:]))
    if order != [f"in{i}" for i in range(len(order))]:
        raise KernelRenderError(f"plan inputs {order} are not in0..in{len(order) - 1}")
    return {n: inputs[n] for n in order}, buffers


_PARAM_LINE = re.compile(r"^\s*\.param\s.*$", re.M)


def permute_ptx_params(ptx: str, entry: str, order: list[int]) -> str:
    """`ptx` with the `.param` declarations of `.entry entry(...)` in `order` (new position i
    holds old parameter order[i])."""
    start = ptx.find(f".entry {entry}(")
    if start < 0:
        raise KernelRenderError(f"PTX has no entry {entry}")
    close = ptx.index(")", start)
    head = ptx[start:close]
    lines = [m.group(0).strip().rstrip(",") for m in _PARAM_LINE.finditer(head)]
    if sorted(order) != list(range(len(lines))):
        raise KernelRenderError(f"entry {entry}: {len(lines)} params, permutation {order}")
    body = ",\n".join("\t" + lines[i] for i in order)
    first = head.index("(") + 1
    return ptx[:start] + head[:first] + "\n" + body + "\n" + ptx[close:]


def _launch_layout(launch, produced: set) -> tuple[list, list, list, list]:
    """Indices of the launch's params that it reads, that are scratch, that it writes (a
    temporary is written by the first launch that uses it, read by later ones), and those of
    the reads it also writes (inputs updated in place: role "inout"; semaphores)."""
    reads, scratch, writes, tied = [], [], [], []
    for index, (arg, param) in enumerate(zip(launch.args, launch.kernel.params)):
        if arg == "scratch":
            scratch.append(index)
        elif not arg.startswith("in") and (param.role == "output" or (
                param.role == "temp" and arg not in produced)):
            writes.append(index)
        else:
            reads.append(index)
            if param.role in ("inout", "semaphore"):
                tied.append(index)
    return reads, scratch, writes, tied


def semaphore_global(function: str, buffer: str) -> str:
    return f"{function}_{buffer}"


def executable_name(kernel, order: list[int]) -> str:
    natural = order == list(range(len(order)))
    return f"kiln_exe_{kernel.symbol}" + ("" if natural else "_p" + "_".join(map(str, order)))


def render_executable(kernel, order: list[int], writes: set) -> str:
    """One `hal.executable.source` holding `kernel`'s PTX with its params in `order`."""
    bindings = ", ".join(
        "#hal.pipeline.binding<storage_buffer>" if i in writes
        else "#hal.pipeline.binding<storage_buffer, ReadOnly>" for i in order)
    x, y, z = kernel.grid
    ptx = kernel.ptx.decode() if isinstance(kernel.ptx, bytes) else kernel.ptx
    data = permute_ptx_params(ptx, kernel.entry, order).encode()
    return (
        f"  hal.executable.source private @{executable_name(kernel, order)} <{{objects = "
        f"#hal.executable.objects<{{{_CUDA_TARGET} = [#hal.executable.object<{{data = "
        f'dense<"0x{data.hex()}"> : vector<{len(data)}xi8>}}>]}}>}}> {{\n'
        f"    hal.executable.export public @{kernel.entry} ordinal(0) layout("
        f"#hal.pipeline.layout<bindings = [{bindings}]>) count(%device: !hal.device) -> "
        f"(index, index, index) {{\n"
        f"      %x = arith.constant {x} : index\n"
        f"      %y = arith.constant {y} : index\n"
        f"      %z = arith.constant {z} : index\n"
        f"      hal.return %x, %y, %z : index, index, index\n"
        f"    }} <workgroup_size = [{32 * kernel.num_warps} : index, 1 : index, 1 : index], "
        f"subgroup_size = 32, workgroup_local_memory = {kernel.shared_bytes}>\n"
        f"  }}\n")


def render_function(name: str, plan, indent: str = "  ",
                    executables: dict | None = None) -> str:
    """The body of declaration `name`: one flow.dispatch per launch, reading inputs and earlier
    results plus dummy scratch tensors, returning the buffers it writes; returns the final
    `out`. `executables` collects the executable text each dispatch needs."""
    inputs, buffers = plan_buffer_types(plan)
    executables = {} if executables is None else executables
    returned = ["out"] + list(getattr(plan, "written", ()))
    return_types = [buffers["out"]] + [inputs[n] for n in returned[1:]]
    lines = [f"{indent}func.func private @{name}(" +
             ", ".join(f"%{n}: {t}" for n, t in inputs.items()) +
             f") -> {_result_list(return_types)} {{"]
    current = {n: f"%{n}" for n in inputs}
    types = dict(inputs, **buffers)
    produced: set[str] = set()
    # Semaphores live in module globals that start at zero and that every launch leaves zero:
    # loaded, updated by the dispatch in place (a tied result), stored back.
    semaphores = [name for name, _, _ in getattr(plan, "semaphores", ())]
    for buffer in semaphores:
        symbol = semaphore_global(name, buffer)
        executables.setdefault(f"global {symbol}", (
            f"  util.global private mutable @{symbol} = dense<0> : {types[buffer]}\n"))
        lines.append(f"{indent}  %{buffer} = util.global.load @{symbol} : {types[buffer]}")
        current[buffer] = f"%{buffer}"
    for index, launch in enumerate(plan.launches):
        kernel = launch.kernel
        reads, scratch, writes, tied = _launch_layout(launch, produced)
        order = reads + scratch + writes
        exe = executable_name(kernel, order)
        executables.setdefault(exe, render_executable(kernel, order, set(writes + tied)))
        operands, operand_types = [], []
        for i in reads:
            arg = launch.args[i]
            if arg not in current:
                raise KernelRenderError(f"{name}: kernel {kernel.symbol} reads {arg!r} before "
                                        f"any launch writes it")
            operands.append(current[arg])
            operand_types.append(types[arg])
        for position, i in enumerate(scratch):
            # Distinct sizes keep distinct tensors (IREE merges equal constants).
            shape = kernel.params[i].shape
            size = max(16, int(shape[0]) if shape else 16) + 16 * position
            # (zeroed per call; Triton's unused scratch pointers are dropped, kiln.kernels.plan)
            lines.append(f"{indent}  %scratch{index}_{position} = arith.constant dense<0> : "
                         f"tensor<{size}xi8>")
            operands.append(f"%scratch{index}_{position}")
            operand_types.append(f"tensor<{size}xi8>")
        # Inputs written in place come back as results tied to their operands (IREE updates
        # the operand's buffer: a `rw` binding, no copy when the operand has no later use).
        written = [launch.args[i] for i in writes] + [launch.args[i] for i in tied]
        if not written:
            raise KernelRenderError(f"{name}: kernel {kernel.symbol} writes no buffer")
        for arg in written:
            if arg not in types:
                raise KernelRenderError(f"{name}: kernel {kernel.symbol} argument {arg!r} is "
                                        f"not an input, temporary or out")
        result = f"%r{index}"
        results = [types[launch.args[i]] for i in writes] + \
            [operands[reads.index(i)] for i in tied]
        lines.append(
            f"{indent}  {result}{':' + str(len(written)) if len(written) > 1 else ''} = "
            f"flow.dispatch @{exe}::@{kernel.entry}({', '.join(operands)}) "
            f": ({', '.join(operand_types)}) -> " +
            (f"({', '.join(results)})" if len(written) > 1 else results[0]))
        for position, buffer in enumerate(written):
            current[buffer] = result if len(written) == 1 else f"{result}#{position}"
            produced.add(buffer)
    if "out" not in current:
        raise KernelRenderError(f"{name}: no launch writes 'out'")
    for buffer in semaphores:
        lines.append(f"{indent}  util.global.store {current[buffer]}, "
                     f"@{semaphore_global(name, buffer)} : {types[buffer]}")
    lines.append(f"{indent}  return {', '.join(current[n] for n in returned)} : "
                 f"{', '.join(return_types)}")
    lines.append(f"{indent}}}")
    return "\n".join(lines)


def _result_list(types: list) -> str:
    return types[0] if len(types) == 1 else f"({', '.join(types)})"


def kernel_declarations(ir_text: str) -> list[tuple[str, str]]:
    """(function name, spec) of every kernel declaration in the text."""
    return [(m.group("name"), m.group("spec")) for m in _DECLARATION.finditer(ir_text)]


def render_kernel_calls(ir_text: str) -> str:
    """Replace each kernel declaration by its dispatches and add the executables it uses."""
    executables: dict[str, str] = {}

    def replace(match: re.Match) -> str:
        name, spec = match.group("name"), match.group("spec")
        builder, arguments = decode_spec(spec)
        try:
            plan = build_plan(builder, arguments)
        except Exception as error:  # the selection pass saw this plan build; say what changed
            raise KernelRenderError(f"@{name}: no kernel plan for {spec}: {error}") from error
        problem = plan_problem(plan, arguments.get("arch", "sm_90a"))
        if problem:
            raise KernelRenderError(f"@{name}: {problem}")
        return render_function(name, plan, match.group("indent"), executables)

    return add_executables(_DECLARATION.sub(replace, ir_text), executables.values())


def add_executables(text: str, executables) -> str:
    """`text` with the executables' texts after its top-level `module {` line (the
    declarations rendered into dispatches refer to them); shared by kiln.cpu_kernels."""
    executables = "".join(executables)
    if not executables:
        return text
    module = _MODULE_LINE.search(text)
    if module is None:
        raise KernelRenderError("no top-level `module {` line to put kernel executables in")
    return text[:module.end()] + "\n" + executables + text[module.end() + 1:]
