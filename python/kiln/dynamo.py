"""`torch.compile(model, backend="kiln")`: Kiln behind Dynamo, for models torch.export rejects.

    compiled = torch.compile(model, backend="kiln", options={"attention": "fused"})
    with torch.inference_mode():
        out = compiled(tokens)
    print(kiln.compile_report(compiled))   # regions, what Kiln specialized, graph breaks

Dynamo splits `forward` at what it cannot capture (`.item()`, a Python branch on a tensor value,
`print`) and hands each captured region (an FX graph) to this backend; guards, recompiles and
the eager code between regions stay Dynamo's. Each region goes through Kiln's public compile
path (`kiln.compiler.compile_model` on a GraphModule rebuilt from Dynamo's, then `kiln.load`)
and runs on torch tensors without copies (the runtime's DLPack paths).

How a region maps onto a Kiln artifact:
  * Parameters and buffers (inputs Dynamo marks static) are frozen into the artifact, as
    `compile_to_vmfb` does, so Kiln can fold, merge and specialize around them (a GPT-2 block
    with frozen weights ran 20% faster than with weights as inputs). Every call checks that
    each frozen tensor is still the same object, storage and version. A region Dynamo reuses
    for every layer (a block whose forward breaks the graph) gets artifacts per set of
    weights, up to `max_weight_sets`; beyond that the weights that differ become inputs. A
    parameter updated in place (`load_state_dict`) recompiles the region once; a buffer
    updated in place, or a parameter updated again, is passed as an input from then on.
  * Dimensions Dynamo marks symbolic become dynamic dimensions of the artifact (torch.export's
    `Dim.AUTO`), so later sizes run without a compile; `options={"dynamic": "specialize"}`
    (or a dynamic compile Kiln cannot do) gives one static artifact per size seen instead.
    Sizes Dynamo passes as separate ints are computed from the input shapes inside the
    artifact. A Python float Dynamo passes as a 0-d tensor (the result of an `.item()`) is a
    0-d input when the graph uses it in tensor arithmetic; one an op needs as a number (an
    `eps`), and an int not derived from shapes, is a constant of the artifact, one artifact
    per value seen.
  * Compiles happen on a region's first call (with its real inputs), not while Dynamo traces.

Inference only: a region captured with grad enabled whose inputs require grad runs eagerly
(call the model under `torch.no_grad()` / `torch.inference_mode()`). A region Kiln cannot
compile (an op IREE rejects, an in-place update of an input, more than `max_variants` shapes)
runs eagerly with one `KilnFallbackWarning` naming the op and line; `options={"fallback":
"error"}` raises instead. Each artifact's first call (for a dynamic-shape artifact: the first
call of each new shape, up to MAX_VERIFIED_SHAPES) also runs the eager graph and compares: an
artifact that disagrees (or fails at run time) is dropped and eager's result returned, never a
wrong one (`verify="off"` skips this). Kiln's compile cache (kiln.cache) serves regions
compiled before.

Options (`torch.compile(..., options={...})`): every `kiln.CompileOptions` field, plus
  target        "cpu" | "cuda" | ... (default: the device of the region's inputs)
  fallback      "eager" (default) | "error"
  dynamic       "dims" (default) | "specialize"
  max_variants  artifacts per region and weight set before further shapes/values run
                eagerly (default 8)
  max_weight_sets  sets of frozen weights per region (default 64; 0: weights are inputs)
  verify        "first" (default) | "off"
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import operator
import re
import sys
import threading
import time
import warnings
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from torch import fx

from kiln.artifact import Signature
from kiln.cpu_attention import CPU_ATTENTION_TAKEN
from kiln.cpu_conv import CPU_CONV_TAKEN
from kiln.cpu_kernels import CPU_KERNEL_TAKEN
from kiln.errors import KilnError

logger = logging.getLogger("kiln.dynamo")

FALLBACK_MODES = ("eager", "error")
DYNAMIC_MODES = ("dims", "specialize")
DEFAULT_MAX_VARIANTS = 8
VERIFY_MODES = ("first", "off")
DEFAULT_MAX_WEIGHT_SETS = 64
_BACKEND_DEFAULTS = {"target": None, "fallback": "eager", "dynamic": "dims",
                     "max_variants": DEFAULT_MAX_VARIANTS,
                     "max_weight_sets": DEFAULT_MAX_WEIGHT_SETS, "verify": "first"}


_VERSION = operator.attrgetter("_version")
_DATA_PTR = operator.methodcaller("data_ptr")


class KilnFallbackWarning(UserWarning):
    """A region of a `torch.compile(..., backend="kiln")` model runs eagerly (once per cause)."""


# =============================================================================================
# Report


@dataclass
class VariantRecord:
    """One artifact of a region: the input shapes it takes (None: dynamic dim)."""

    shapes: list[tuple]
    constants: tuple = ()  # values baked into this artifact (scalars Dynamo passed)
    cache: str = "off"  # Kiln's compile cache: hit | miss | off
    seconds: float = 0.0
    weight_set: int = 1  # which set of frozen weights (a region reused across layers has many)


@dataclass
class RegionRecord:
    """One graph Dynamo captured and what became of it."""

    number: int
    function: str  # the Python function Dynamo was tracing (forward, torch_dynamo_resume_in_…)
    span: str  # "file:line → file:line" of its first and last op
    ops: int  # FX call nodes
    status: str = "pending"  # kiln | eager | pending (not called yet) | error (fallback="error")
    reason: str = ""  # why eager (or why the compile failed)
    target: str = ""
    specialized: dict[str, int] = field(default_factory=dict)  # Kiln rewrites by kind
    dynamic_dims: list[str] = field(default_factory=list)  # symbolic dims Dynamo passed
    variants: list[VariantRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    calls: int = 0

    def line(self) -> str:
        text = f"region {self.number}  {self.status:<5}  {self.function}  {self.span}  " \
               f"{self.ops} ops"
        if self.status == "kiln":
            kinds = ", ".join(f"{kind} {n}" for kind, n in self.specialized.items())
            text += f"  [{kinds or 'no rewrites'}]  {self.target}"
            several = len({v.weight_set for v in self.variants}) > 1
            text += "".join(f"\n      artifact {_shapes_text(v.shapes)}"
                            f"{f' constants {v.constants}' if v.constants else ''}"
                            f"{f' weights #{v.weight_set}' if several else ''}: cache "
                            f"{v.cache}, {v.seconds:.2f} s" for v in self.variants)
        if self.dynamic_dims:
            text += f"\n      dynamic: {', '.join(self.dynamic_dims)}"
        if self.reason:
            text += f"\n      {'eager: ' if self.status == 'eager' else ''}{self.reason}"
        text += "".join(f"\n      note: {note}" for note in self.notes)
        return text


@dataclass
class GraphBreak:
    """Where Dynamo stopped capturing, and why (its own words, shortened)."""

    reason: str
    location: str  # file:line
    code: str  # the source line
    function: str
    count: int = 1  # times Dynamo met it while compiling (recompiles, every layer it is in)

    def line(self) -> str:
        times = f" (×{self.count})" if self.count > 1 else ""
        return f"break  {self.location}  `{self.code}`  in {self.function}: {self.reason}{times}"


@dataclass
class DynamoReport:
    """Regions and graph breaks of one compiled model (or of the process), in the order Dynamo
    met them."""

    events: list = field(default_factory=list)  # RegionRecord | GraphBreak
    # (reason, location) → its GraphBreak: a break met again counts, not listed twice
    _breaks_by_key: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def regions(self) -> list[RegionRecord]:
        return [e for e in self.events if isinstance(e, RegionRecord)]

    @property
    def breaks(self) -> list[GraphBreak]:
        return [e for e in self.events if isinstance(e, GraphBreak)]

    def count(self, status: str) -> int:
        return sum(1 for r in self.regions if r.status == status)

    def __str__(self) -> str:
        regions = self.regions
        head = (f"kiln torch.compile report: {len(regions)} region(s) ({self.count('kiln')} "
                f"compiled by Kiln, {self.count('eager')} eager, {self.count('pending')} not "
                f"run yet), {len(self.breaks)} graph break(s)")
        return "\n".join([head] + ["  " + e.line() for e in self.events])


_PROCESS_REPORT = DynamoReport()
_MODEL_REPORTS: "weakref.WeakKeyDictionary[torch.nn.Module, DynamoReport]" = \
    weakref.WeakKeyDictionary()
_report_lock = threading.Lock()


def compile_report(model: Any = None) -> DynamoReport:
    """What `torch.compile(..., backend="kiln")` did: each region (compiled by Kiln with the ops
    it specialized, or eager and why) and each graph break with its reason and source line.

    `model`: the compiled module (`torch.compile(model, ...)`) or the module it wraps; None for
    every region of this process (functions passed to torch.compile are reported there)."""
    if model is None:
        return _PROCESS_REPORT
    model = getattr(model, "_orig_mod", model)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"compile_report takes the compiled module (or None for the whole "
                        f"process), got {type(model).__name__}")
    return _MODEL_REPORTS.get(model) or DynamoReport()


def _report_for(owner: Optional[torch.nn.Module], create: bool) -> Optional[DynamoReport]:
    if owner is None:
        return None
    report = _MODEL_REPORTS.get(owner)
    if report is None and create:
        report = _MODEL_REPORTS[owner] = DynamoReport()
    return report


def _record(event, owner: Optional[torch.nn.Module]) -> None:
    with _report_lock:
        _PROCESS_REPORT.events.append(event)
        report = _report_for(owner, create=True)
        if report is not None:
            report.events.append(event)


# -- which model is being compiled, and its graph breaks --------------------------------------

_CALL_CODES = (torch.nn.Module._call_impl.__code__, torch.nn.Module._wrapped_call_impl.__code__)


def _compiling_model() -> tuple[Optional[torch.nn.Module], bool]:
    """(the module a running torch.compile'd model wraps, whether it compiles with this
    backend): the innermost OptimizedModule on the Python stack (Dynamo compiles while the
    model is being called), its backend found by unwrapping Dynamo's wrappers (False where
    their layout is not recognised); (None, False) for a compiled function."""
    from torch._dynamo.eval_frame import OptimizedModule

    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code in _CALL_CODES:
            module = frame.f_locals.get("self")
            if isinstance(module, OptimizedModule):
                compiler = getattr(getattr(module, "dynamo_ctx", None), "callback", None)
                for _ in range(8):
                    if compiler is backend:
                        return module._orig_mod, True
                    compiler = getattr(compiler, "_torchdynamo_orig_backend", None) or \
                        getattr(compiler, "compiler_fn", None)
                return module._orig_mod, False
        frame = frame.f_back
    return None, False


_breaks_seen = {"list": None, "count": 0}


def _drain_breaks(owner: Optional[torch.nn.Module], uses_kiln: bool) -> None:
    """Record the graph breaks Dynamo logged since the last look (torch._dynamo.utils.
    graph_break_reasons) for `owner`: at each region this backend compiles and at the end of
    each frame Dynamo compiles for a model using this backend."""
    from torch._dynamo.utils import graph_break_reasons

    with _report_lock:
        if _breaks_seen["list"] is not graph_break_reasons or \
                _breaks_seen["count"] > len(graph_break_reasons):  # torch._dynamo.reset()
            _breaks_seen["list"] = graph_break_reasons
            _breaks_seen["count"] = 0
        new = graph_break_reasons[_breaks_seen["count"]:]
        _breaks_seen["count"] = len(graph_break_reasons)
    if not new or not uses_kiln:
        return
    for reason in new:
        frame = reason.user_stack[-1] if reason.user_stack else None
        location = f"{frame.filename}:{frame.lineno}" if frame else "unknown location"
        event = GraphBreak(_short_reason(reason.reason), location,
                           (frame.line or "").strip() if frame else "",
                           frame.name if frame else "?")
        with _report_lock:
            for report in (_PROCESS_REPORT, _report_for(owner, create=True)):
                if report is None:
                    continue
                known = report._breaks_by_key
                key = (event.reason, event.location)
                if key in known:
                    known[key].count += 1
                else:
                    known[key] = dataclasses.replace(event)
                    report.events.append(known[key])


def _short_reason(text: str) -> str:
    """Dynamo's break reason: its first line and its explanation, without the hints."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    if not lines:
        return "unknown"
    explanation = next((line.split(":", 1)[1].strip() for line in lines[1:]
                        if line.startswith("Explanation:")), "")
    short = lines[0] + (f" ({explanation})" if explanation else "")
    return short if len(short) <= 240 else short[:237] + "..."


def _on_frame_compiled(_args) -> None:
    try:
        _drain_breaks(*_compiling_model())
    except Exception:  # noqa: BLE001 - reporting must never break the user's compile
        logger.debug("graph-break bookkeeping failed", exc_info=True)


_callback_installed = False


def _install_break_callback() -> None:
    global _callback_installed
    if not _callback_installed:
        torch._dynamo.callback_handler.register_end_callback(_on_frame_compiled)
        _callback_installed = True


# =============================================================================================
# Options


@dataclass
class BackendOptions:
    """torch.compile's `options=` split into the backend's own and Kiln's compile options."""

    target: Optional[tuple[str, ...]]
    fallback: str
    dynamic: str
    max_variants: int
    max_weight_sets: int
    verify: str
    compile_options: dict

    @classmethod
    def parse(cls, options: Optional[dict], mode: Optional[str]) -> "BackendOptions":
        from kiln.compiler import CompileOptions
        from kiln.targets import normalize_target

        if mode not in (None, "default"):
            raise ValueError(f"torch.compile(mode={mode!r}) is an inductor setting; the kiln "
                             f"backend takes options={{...}} (kiln.CompileOptions fields and "
                             f"{', '.join(_BACKEND_DEFAULTS)})")
        options = dict(options or {})
        known = {f.name for f in dataclasses.fields(CompileOptions)} | set(_BACKEND_DEFAULTS)
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown kiln backend option(s) {', '.join(unknown)}; known: "
                            f"{', '.join(sorted(known))}")
        own = {name: options.pop(name, default) for name, default in _BACKEND_DEFAULTS.items()}
        if own["fallback"] not in FALLBACK_MODES:
            raise ValueError(f"fallback={own['fallback']!r}: choose 'eager' or 'error'")
        if own["dynamic"] not in DYNAMIC_MODES:
            raise ValueError(f"dynamic={own['dynamic']!r}: choose 'dims' (dynamic dimensions) "
                             f"or 'specialize' (one artifact per shape)")
        if own["verify"] not in VERIFY_MODES:
            raise ValueError(f"verify={own['verify']!r}: choose 'first' (each artifact's first "
                             f"call, each new shape of a dynamic one, is checked against "
                             f"eager) or 'off'")
        if not isinstance(own["max_variants"], int) or own["max_variants"] < 1:
            raise ValueError(f"max_variants={own['max_variants']!r}: a positive int")
        if not isinstance(own["max_weight_sets"], int) or own["max_weight_sets"] < 0:
            raise ValueError(f"max_weight_sets={own['max_weight_sets']!r}: an int >= 0 (0: "
                             f"weights are always inputs of the artifacts)")
        if options.get("weights", "inline") != "inline":
            raise ValueError("weights='external' needs an artifact file; the kiln backend "
                             "keeps artifacts in memory (weights='inline')")
        CompileOptions.from_kwargs(dict(options))  # Kiln's own validation, errors early
        target = normalize_target(own["target"]) if own["target"] is not None else None
        return cls(target, own["fallback"], own["dynamic"], own["max_variants"],
                   own["max_weight_sets"], own["verify"], options)


# =============================================================================================
# Region analysis: what each of Dynamo's placeholders and outputs is to the artifact


class _Fallback(Exception):
    """The region (or this call's variant) runs eagerly; the message says why, op and line."""


@dataclass(frozen=True)
class _Input:
    """A Dynamo placeholder: kind frozen | tensor | size | scalar | tensor_scalar."""

    index: int
    node: fx.Node
    kind: str
    # size: (index of the tensor placeholder, dim) it is read from
    source: Optional[tuple[int, int]] = None
    number: bool = False  # tensor: a Python number Dynamo passes as a 0-d tensor


_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')
_INPLACE_OPERATORS = {operator.setitem, operator.iadd, operator.isub, operator.imul,
                      operator.itruediv, operator.ifloordiv, operator.imod, operator.ipow,
                      operator.iand, operator.ior, operator.ixor, operator.ilshift,
                      operator.irshift, operator.imatmul}
_NOT_DATA_MUTATIONS = {"requires_grad_", "retain_grad", "share_memory_"}
# Ops whose result may share memory with their first argument (an in-place op on the result
# updates the argument).
_ALIASING = {"view", "view_as", "reshape", "reshape_as", "transpose", "t", "permute",
             "unsqueeze", "squeeze", "flatten", "unflatten", "expand", "expand_as", "narrow",
             "select", "split", "chunk", "unbind", "tensor_split", "split_with_sizes",
             "diagonal", "as_strided", "detach", "contiguous", "to", "type", "movedim",
             "moveaxis", "swapaxes", "swapdims", "unfold", "view_as_real", "view_as_complex",
             "real", "imag", "getitem", "__getitem__", "float", "half", "bfloat16", "double",
             "int", "long", "bool", "alias"}


def _location(node: fx.Node) -> str:
    """The innermost `file:line` of the Python call that made `node`."""
    frames = _FRAME.findall(node.meta.get("stack_trace") or "")
    return f"{frames[-1][0]}:{frames[-1][1]}" if frames else "unknown location"


def _op_name(node: fx.Node) -> str:
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    target = node.target
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", str(target))
    return f"{module}.{name}" if module and module != "builtins" else name


def _is_inplace(node: fx.Node) -> bool:
    if node.op == "call_method":
        name = node.target
        return name.endswith("_") and not name.startswith("_") and \
            name not in _NOT_DATA_MUTATIONS
    if node.op != "call_function":
        return False
    name = getattr(node.target, "__name__", "")
    return node.target in _INPLACE_OPERATORS or node.kwargs.get("inplace") is True or \
        "out" in node.kwargs or (name.endswith("_") and not name.startswith("_") and
                                 name not in _NOT_DATA_MUTATIONS)


def _aliased_placeholder(value: Any) -> Optional[fx.Node]:
    """The placeholder `value` may be a view of (through view-like ops), or None."""
    node = value
    for _ in range(1000):
        if not isinstance(node, fx.Node):
            return None
        if node.op == "placeholder":
            return node
        name = node.target if node.op == "call_method" else \
            getattr(node.target, "__name__", "") if node.op == "call_function" else ""
        if name not in _ALIASING or not node.args:
            return None
        node = node.args[0]
    return None


def _input_mutation(gm: fx.GraphModule) -> Optional[str]:
    """The first in-place update of a graph input (or buffer) in the graph, as 'op at line'."""
    for node in gm.graph.nodes:
        if not _is_inplace(node):
            continue
        target = node.kwargs.get("out", node.args[0] if node.args else None)
        placeholder = _aliased_placeholder(target)
        if placeholder is not None:
            return f"{_op_name(node)} updates input {placeholder.name} in place at " \
                   f"{_location(node)}"
    return None


_SCALAR_ARITHMETIC = {operator.add, operator.sub, operator.mul, operator.truediv}


def _tensor_like_use(user: fx.Node) -> bool:
    """Whether a use of a Python number Dynamo passes as a 0-d tensor works on the tensor too:
    tensor arithmetic, or `.item()` feeding only arithmetic with a tensor (`h / scale`, which
    the 0-d tensor computes alike)."""
    if not (user.op == "call_method" and user.target == "item"):
        return True
    return bool(user.users) and all(
        use.op == "call_function" and use.target in _SCALAR_ARITHMETIC and len(use.args) == 2
        and not use.kwargs and any(isinstance(_example_value(a), torch.Tensor)
                                   for a in use.args if isinstance(a, fx.Node) and a is not user)
        for use in user.users)


def _size_expr(size: Any):
    """The sympy expression of a symbolic size after Dynamo's replacements (a size Dynamo
    specialized becomes a number), or None for a plain int."""
    if not isinstance(size, torch.SymInt):
        return None
    node = size.node
    return node.shape_env.replace(node.expr) if getattr(node, "shape_env", None) else node.expr


def _symbol(size: Any):
    """The sympy symbol of a size that is one symbol (s0), else None."""
    expr = _size_expr(size)
    return expr if getattr(expr, "is_Symbol", False) else None


def _is_dynamic(size: Any) -> bool:
    return bool(getattr(_size_expr(size), "free_symbols", ()))


def _example_value(node: fx.Node) -> Any:
    return node.meta.get("example_value", node.meta.get("val"))


def _is_static_input(node: fx.Node, example: Any) -> bool:
    """Parameters and buffers: Dynamo marks them static (`_dynamo_static_input_type`)."""
    return isinstance(example, torch.nn.Parameter) or \
        getattr(example, "_dynamo_static_input_type", None) is not None


@dataclass
class _Plan:
    """How a Dynamo graph becomes a Kiln artifact's graph (see the module docstring)."""

    gm: fx.GraphModule
    inputs: list[_Input]
    outputs: list[tuple[str, Any]]  # ("tensor", k) | ("size", sympy expr) | ("const", value)
    dynamic_dims: list[tuple[int, int]]  # (tensor placeholder index, dim)
    symbols: dict  # sympy symbol of a dynamic size → (tensor placeholder index, dim)

    @classmethod
    def analyze(cls, gm: fx.GraphModule, example_inputs: Sequence[Any]) -> "_Plan":
        placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
        if len(placeholders) != len(example_inputs):
            raise _Fallback(f"the graph has {len(placeholders)} inputs, Dynamo passed "
                            f"{len(example_inputs)}")
        inputs: list[_Input] = []
        symbols: dict = {}  # sympy symbol → (tensor placeholder index, dim)
        dynamic_dims = []
        for index, (node, example) in enumerate(zip(placeholders, example_inputs)):
            value = _example_value(node)
            grapharg = node.meta.get("grapharg")
            if getattr(grapharg, "pass_arg_as_tensor", False) and \
                    not all(_tensor_like_use(user) for user in node.users):
                # a Python number Dynamo passes as a 0-d tensor and the graph reads back as a
                # number for an op that needs one (an `eps`): a constant of the artifact.
                # Otherwise it is a 0-d tensor input like any other.
                inputs.append(_Input(index, node, "tensor_scalar"))
            elif isinstance(value, torch.Tensor) and isinstance(example, torch.Tensor):
                frozen = _is_static_input(node, example)
                inputs.append(_Input(index, node, "frozen" if frozen else "tensor",
                                     number=getattr(grapharg, "pass_arg_as_tensor", False)))
                for dim, size in enumerate(value.shape):
                    if _is_dynamic(size) and not frozen:
                        dynamic_dims.append((index, dim))
                        symbol = _symbol(size)
                        if symbol is not None:
                            symbols.setdefault(symbol, (index, dim))
            elif isinstance(value, (torch.SymInt, int, float, bool, torch.SymFloat,
                                    torch.SymBool)) or value is None:
                inputs.append(_Input(index, node, "scalar"))
            else:
                raise _Fallback(f"input {node.name} is a {type(value).__name__}, which a Kiln "
                                f"artifact cannot take")
        for position, item in enumerate(inputs):
            symbol = _symbol(_example_value(item.node))
            if item.kind == "scalar" and symbol is not None and symbol in symbols:
                inputs[position] = dataclasses.replace(item, kind="size", source=symbols[symbol])
        outputs = []
        tensors = 0
        (result,) = [n.args[0] for n in gm.graph.nodes if n.op == "output"]
        for value in (result if isinstance(result, (tuple, list)) else (result,)):
            example = _example_value(value) if isinstance(value, fx.Node) else value
            if isinstance(example, torch.Tensor):
                outputs.append(("tensor", tensors))
                tensors += 1
            elif isinstance(example, torch.SymInt) and _is_dynamic(example):
                expr = _size_expr(example)
                if not expr.free_symbols <= set(symbols):
                    raise _Fallback(f"output {value} is a size ({expr}) that is not computed "
                                    f"from the input shapes")
                outputs.append(("size", expr))
            elif isinstance(example, (int, float, bool, torch.SymInt)) or example is None:
                outputs.append(("const", int(example) if isinstance(example, torch.SymInt)
                                else example))
            else:
                raise _Fallback(f"output {value} is a {type(example).__name__}, which a Kiln "
                                f"artifact cannot return")
        return cls(gm, inputs, outputs, dynamic_dims, symbols)

    def constants(self, args: Sequence[Any]) -> tuple:
        """This call's values of the placeholders baked into an artifact."""
        values = []
        for item in self.inputs:
            if item.kind == "scalar":
                value = args[item.index]
                values.append(int(value) if isinstance(value, torch.SymInt) else value)
            elif item.kind == "tensor_scalar":
                values.append(args[item.index].item())
        return tuple(values)

    def build(self, frozen: dict[int, torch.Tensor], constants: tuple) -> fx.GraphModule:
        """A GraphModule that takes the runtime tensors only: frozen tensors are attributes
        (parameters and persistent buffers, so Kiln treats them as weights), sizes are read
        from the input shapes, scalars are constants. Node metadata (the user's source lines)
        is kept, so Kiln's rewrites and errors point at the model's code."""
        graph = fx.Graph()
        root = torch.nn.Module()
        env: dict = {}
        values = iter(constants)
        for item in self.inputs:
            if item.kind == "tensor" and item.index not in frozen:
                env[item.node] = graph.placeholder(item.node.name)
                env[item.node].meta = dict(item.node.meta)
                for user in item.node.users if item.number else ():
                    if user.op == "call_method" and user.target == "item":
                        env[user] = env[item.node]  # the number's `.item()`: the 0-d tensor
        for item in self.inputs:
            node = item.node
            if item.index in frozen:
                name = f"kiln_frozen_{item.index}"
                tensor = frozen[item.index]
                if isinstance(tensor, torch.nn.Parameter):
                    root.register_parameter(name, tensor)
                else:
                    root.register_buffer(name, tensor)
                env[node] = graph.get_attr(name)
            elif item.kind == "size":
                source_index, dim = item.source
                env[node] = graph.call_method("size", (env[self.inputs[source_index].node], dim))
            elif item.kind == "scalar":
                env[node] = next(values)
            elif item.kind == "tensor_scalar":
                value = next(values)
                name = f"kiln_scalar_{item.index}"
                root.register_buffer(name, torch.tensor(value, dtype=_example_value(node).dtype),
                                     persistent=False)
                env[node] = graph.get_attr(name)
                for user in node.users:  # `.item()` of the scalar is the Python value itself
                    if user.op == "call_method" and user.target == "item":
                        env[user] = value
        for node in self.gm.graph.nodes:
            if node.op in ("get_attr", "call_module"):
                _copy_attribute(self.gm, root, node.target)
        result = graph.graph_copy(self.gm.graph, env)
        results = result if isinstance(result, (tuple, list)) else (result,)
        graph.output(tuple(value for value, (kind, _) in zip(results, self.outputs)
                           if kind == "tensor"))
        return fx.GraphModule(root, graph, class_name="KilnDynamoRegion")


def _copy_attribute(source: torch.nn.Module, root: torch.nn.Module, target: str) -> None:
    *path, name = target.split(".")
    for part in path:
        source = getattr(source, part)
        if not hasattr(root, part):
            root.add_module(part, torch.nn.Module())
        root = getattr(root, part)
    value = getattr(source, name)
    if isinstance(value, torch.nn.Module):
        root.add_module(name, value)
    elif isinstance(value, torch.nn.Parameter):
        root.register_parameter(name, value)
    elif isinstance(value, torch.Tensor):
        root.register_buffer(name, value, persistent=name in source.state_dict(keep_vars=True))
    else:
        setattr(root, name, value)


def _span(gm: fx.GraphModule) -> str:
    locations = [_location(n) for n in gm.graph.nodes
                 if n.op in ("call_function", "call_method", "call_module")]
    locations = [loc for loc in locations if loc != "unknown location"]
    if not locations:
        return "unknown location"
    first, last = _short_path(locations[0]), _short_path(locations[-1])
    return first if first == last else f"{first} → {last}"


def _short_path(location: str) -> str:
    path, _, line = location.rpartition(":")
    return f"{Path(path).name}:{line}"


def _shapes_text(shapes: list[tuple]) -> str:
    return ", ".join("(" + ", ".join("?" if d is None else str(d) for d in s) + ")"
                     for s in shapes) or "()"


def _specialized(report) -> dict[str, int]:
    """Kiln's rewrites of a compile, by kind (attention, linear, norm, rope, ...)."""
    counts: dict[str, int] = {}
    for rewrite in report.rewrites:
        if rewrite.pass_name == "kiln-select-cuda-kernels":
            kind = "cuda-kernel" if rewrite.detail.startswith("kernel") else None
        elif rewrite.pass_name == "kiln-select-cpu-kernels":  # declines say "IREE codegen: …"
            kind = ("cpu-kernel" if rewrite.detail in (CPU_KERNEL_TAKEN, CPU_ATTENTION_TAKEN,
                                                       CPU_CONV_TAKEN) else None)
        elif rewrite.pass_name.startswith("kiln-"):
            kind = rewrite.kind.split("/")[0]
        else:
            kind = None
        if kind:
            counts[kind] = counts.get(kind, 0) + 1
    return counts


# =============================================================================================
# Compiling a region


@dataclass
class _Variant:
    """One loaded artifact and the inputs it takes."""

    module: Any  # kiln.runtime.KilnModule
    constants: tuple
    # per runtime input: per dim an int (static) or (low, high) (dynamic; high None: unbounded)
    patterns: list[tuple]
    dynamic: bool
    # shapes whose first call was checked against the eager graph (see CompiledRegion._verify)
    verified: set = field(default_factory=set)
    fully_verified: bool = False

    def accepts(self, tensors: Sequence[torch.Tensor], constants: tuple) -> bool:
        if constants != self.constants:
            return False
        for tensor, pattern in zip(tensors, self.patterns):
            shape = tensor.shape
            if len(shape) != len(pattern):
                return False
            for size, want in zip(shape, pattern):
                if isinstance(want, int):
                    if size != want:
                        return False
                elif size < want[0] or (want[1] is not None and size > want[1]):
                    return False
        return True


def _patterns(signature: dict) -> list[tuple]:
    patterns = []
    for spec in signature["inputs"]:
        bounds = spec.get("bounds") or [None] * len(spec["shape"])
        patterns.append(tuple(size if size is not None else
                              (bound[0] if bound else 0, bound[1] if bound else None)
                              for size, bound in zip(spec["shape"], bounds)))
    return patterns


def _device_of(tensors: Sequence[torch.Tensor]) -> str:
    devices = {(t.device.type, t.device.index or 0) for t in tensors}
    if len(devices) != 1:
        raise _Fallback(f"inputs on several devices ({', '.join(sorted(str(d) for d in devices))})"
                        if devices else "the graph has no tensor inputs")
    (kind, index), = devices
    if kind not in ("cpu", "cuda"):
        raise _Fallback(f"inputs on device '{kind}', which Kiln does not run on")
    if kind == "cuda" and index != 0:
        raise _Fallback(f"inputs on cuda:{index}; Kiln's runtime runs on cuda:0")
    return kind


def compile_graph(gm: fx.GraphModule, example_inputs: Sequence[Any], *,
                  options: Optional[dict] = None):
    """Compile one Dynamo graph without loading it: the `kiln.compiler.CompiledModel` (artifact
    + compile report) the backend would load for these inputs. For ahead-of-time use and for
    compiling for a device this machine lacks (target "cuda" on a CPU-only host)."""
    opts = BackendOptions.parse(options, None)
    plan = _Plan.analyze(gm, example_inputs)
    args = [int(a.node.hint) if isinstance(a, torch.SymInt) else a for a in example_inputs]
    frozen = {i.index: args[i.index] for i in plan.inputs if i.kind == "frozen"}
    tensors = [args[i.index] for i in plan.inputs if i.kind == "tensor"]
    target = opts.target or (_device_of(tensors or list(frozen.values())),)
    return _compile(plan, frozen, plan.constants(args), tensors, target, opts,
                    dynamic=opts.dynamic == "dims" and bool(plan.dynamic_dims))


def _compile(plan: _Plan, frozen: dict, constants: tuple, tensors: list, target: tuple,
             opts: BackendOptions, dynamic: bool):
    from torch.export import Dim

    from kiln.compiler import compile_model

    module = plan.build(frozen, constants)
    runtime = [i for i in plan.inputs if i.kind == "tensor" and i.index not in frozen]
    dims = {(index, dim) for index, dim in plan.dynamic_dims}
    spec = tuple({d: Dim.AUTO for d in range(tensor.dim()) if (item.index, d) in dims} or None
                 for item, tensor in zip(runtime, tensors))
    dynamic_shapes = spec if dynamic and any(s is not None for s in spec) else None
    return compile_model(module, tuple(tensors), target=target, dynamic_shapes=dynamic_shapes,
                         **opts.compile_options)


@dataclass
class _WeightSet:
    """The frozen tensors one group of artifacts was compiled with (a region Dynamo reuses for
    every layer of a model, e.g. a block whose forward breaks the graph, sees one set per
    layer) and those artifacts, one per input shape or baked value."""

    number: int
    tensors: tuple  # strong references: the ids that key the set stay unique
    versions: tuple
    pointers: tuple
    variants: list = field(default_factory=list)
    last: Optional[_Variant] = None

    @classmethod
    def of(cls, number: int, tensors: tuple) -> "_WeightSet":
        return cls(number, tensors, tuple(map(_VERSION, tensors)),
                   tuple(map(_DATA_PTR, tensors)))

    def matches(self, current: tuple) -> bool:
        return all(map(operator.is_, current, self.tensors)) and \
            tuple(map(_VERSION, current)) == self.versions and \
            tuple(map(_DATA_PTR, current)) == self.pointers


class CompiledRegion:
    """The callable Dynamo runs for one captured graph: Kiln artifacts chosen per call by the
    frozen weights, input shapes and baked values, or the eager graph (see the module
    docstring)."""

    def __init__(self, gm: fx.GraphModule, plan: Optional[_Plan], opts: BackendOptions,
                 record: RegionRecord, eager_reason: Optional[str] = None):
        self.gm = gm
        self.plan = plan
        self.opts = opts
        self.record = record
        self._lock = threading.RLock()
        self._eager = eager_reason is not None
        self._dynamic_failed: Optional[str] = None  # why dynamic dims are not used
        self._refuse: Optional[str] = None  # why new variants are no longer compiled
        self._refrozen: set[int] = set()  # parameters recompiled once after a change
        self._weight_sets: dict[tuple, _WeightSet] = {}  # by the ids of the frozen tensors
        self._weights: Optional[_WeightSet] = None  # the set of the last call
        self._needs_selection = False  # whether calls can need another variant
        self._set_frozen({i.index for i in plan.inputs if i.kind == "frozen"}
                         if plan is not None and opts.max_weight_sets > 0 else set())
        if eager_reason is not None:
            self._to_eager(eager_reason)
        _LIVE_REGIONS.add(self)

    def release(self) -> None:
        """Drop the loaded artifacts (calls run the eager graph from now on)."""
        with self._lock:
            self._weight_sets.clear()
            self._weights = None
            self._eager = True

    # -- calls -----------------------------------------------------------------------------
    def __call__(self, *args):
        self.record.calls += 1
        if self._eager:
            return self.gm(*args)
        weights = self._weights
        if self._frozen_getter is not None:
            current = self._frozen_getter(args)
            if weights is None or not weights.matches(current):
                weights = self._weights_for(current, args)
        elif weights is None:
            weights = self._weights_for((), args)
        tensors = [_importable(args[i]) for i in self._runtime]
        variant = weights.last
        if variant is None or self._needs_selection:
            constants = self.plan.constants(args)
            if variant is None or not variant.accepts(tensors, constants):
                variant = self._select(weights, tensors, constants)
                if variant is None:
                    return self.gm(*args)
        if not variant.fully_verified:
            return self._verify(weights, variant, args, tensors)
        results = variant.module(*tensors, outputs="torch")
        return self._outputs(results if isinstance(results, tuple) else (results,), tensors)

    def _outputs(self, results: tuple, tensors: list) -> tuple:
        outputs = []
        bindings = None
        for kind, value in self.plan.outputs:
            if kind == "tensor":
                outputs.append(results[value])
            elif kind == "size":
                if bindings is None:
                    bindings = {symbol: tensors[self._runtime.index(index)].shape[dim]
                                for symbol, (index, dim) in self.plan.symbols.items()}
                outputs.append(int(value.subs(bindings)))
            else:
                outputs.append(value)
        return tuple(outputs)

    def _verify(self, weights: _WeightSet, variant: _Variant, args, tensors) -> tuple:
        """The first call of an artifact (of a dynamic one: of each new shape) runs the eager
        graph too and compares: a Kiln or IREE miscompile (or a runtime error) drops the
        artifact and returns eager's result instead of a wrong one."""
        key = tuple(tuple(t.shape) for t in tensors)
        if key in variant.verified:
            results = variant.module(*tensors, outputs="torch")
            return self._outputs(results if isinstance(results, tuple) else (results,),
                                 tensors)
        expected = self.gm(*args)
        try:
            results = variant.module(*tensors, outputs="torch")
            actual = self._outputs(results if isinstance(results, tuple) else (results,),
                                   tensors)
            problem = _mismatch(actual, expected)
        except Exception as error:  # noqa: BLE001 - any runtime failure: eager's result
            problem = f"the artifact failed at run time: {_failure_text(error)}"
        with self._lock:
            if problem is None:
                variant.verified.add(key)
                variant.fully_verified = not variant.dynamic or \
                    len(variant.verified) >= MAX_VERIFIED_SHAPES
                return expected
            if variant in weights.variants:
                weights.variants.remove(variant)
            weights.last = None
            shapes = _shapes_text([tuple(t.shape) for t in tensors])
            if variant.dynamic:
                self._dynamic_failed = problem
                self.record.notes.append(f"the dynamic-shape artifact differed from eager at "
                                         f"{shapes} ({problem}): one artifact per shape")
                _warn(f"kiln backend: region {self.record.number} ({self.record.span}): the "
                      f"dynamic-shape artifact differed from eager at {shapes} ({problem}); "
                      f"compiling one artifact per shape instead")
                return expected
        self._fail(f"Kiln's result differed from eager at {shapes}: {problem}", weights)
        return expected

    def _select(self, weights: _WeightSet, tensors, constants) -> Optional[_Variant]:
        with self._lock:
            for variant in weights.variants:
                if variant.accepts(tensors, constants):
                    weights.last = variant
                    return variant
            if self._refuse is not None:
                return None
            if len(weights.variants) >= self.opts.max_variants:
                self._refuse = (f"more than max_variants={self.opts.max_variants} input "
                                f"shapes/values; further ones run eagerly")
                self.record.notes.append(self._refuse)
                _warn(f"kiln backend: region {self.record.number} ({self.record.span}): "
                      f"{self._refuse}")
                return None
            try:
                variant = self._compile_variant(weights, tensors, constants)
            except _Fallback as error:
                self._fail(str(error), weights)
                return None
            except Exception as error:  # noqa: BLE001 - any compile failure falls back
                if self.opts.fallback == "error":
                    self.record.status, self.record.reason = "error", _failure_text(error)
                    raise KilnError(f"kiln backend: region {self.record.number} "
                                    f"({self.record.span}) cannot be compiled: {error}") \
                        from error
                self._fail(_failure_text(error), weights)
                return None
            weights.variants.append(variant)
            weights.last = variant
            self._needs_selection = bool(self.plan.dynamic_dims) or \
                any(i.kind in ("scalar", "tensor_scalar") for i in self.plan.inputs)
            return variant

    def _compile_variant(self, weights: _WeightSet, tensors, constants) -> _Variant:
        from kiln.runtime import load

        frozen = dict(zip(self._frozen_indices, weights.tensors))
        device = _device_of(tensors or list(frozen.values()))
        target = self.opts.target or (device,)
        if device not in target:
            raise ValueError(f"kiln backend: target {','.join(target)} but the graph's inputs "
                             f"are on {device}; pass options={{'target': '{device}'}}")
        dynamic = self.opts.dynamic == "dims" and self._dynamic_failed is None and \
            any(self.plan.inputs[i].kind == "tensor" for i, _ in self.plan.dynamic_dims)
        start = time.perf_counter()
        try:
            compiled = _compile(self.plan, frozen, constants, tensors, target, self.opts,
                                dynamic)
        except KilnError as error:
            if not dynamic:
                raise
            self._dynamic_failed = _failure_text(error)
            self.record.notes.append(f"dynamic dims did not compile ({self._dynamic_failed}); "
                                     f"one artifact per shape")
            compiled = _compile(self.plan, frozen, constants, tensors, target, self.opts,
                                False)
        seconds = time.perf_counter() - start
        module = load(compiled.vmfb, device=device)
        expected = sum(1 for kind, _ in self.plan.outputs if kind == "tensor")
        signature = module.signature
        updates = [m for m in signature.get("mutated_inputs", ()) if m["output"] is not None]
        # index guards (kiln.guards) are results the runtime reads and drops, not outputs
        produced = len(signature["outputs"]) - Signature.from_dict(signature).guard_results - \
            len(updates)
        if updates or produced != expected:  # in-place updates of Dynamo's inputs or buffers
            raise _Fallback(f"the graph updates an input or buffer in place "
                            f"({max(len(updates), produced - expected)} extra output(s) after "
                            f"functionalization)")
        patterns = _patterns(module.signature)
        dynamic = any(not isinstance(d, int) for p in patterns for d in p)
        record = self.record
        record.status = "kiln"
        record.target = ",".join(target)
        record.specialized = _specialized(compiled.report)
        record.variants.append(VariantRecord(
            [tuple(None if isinstance(d, tuple) else d for d in p) for p in patterns],
            constants, compiled.report.cache, seconds, weights.number))
        logger.info("kiln backend: region %d compiled in %.2f s (cache %s)", record.number,
                    seconds, compiled.report.cache)
        return _Variant(module, constants, patterns, dynamic,
                        fully_verified=self.opts.verify == "off")

    # -- frozen weights --------------------------------------------------------------------
    def _set_frozen(self, indices: set) -> None:
        """Freeze the static inputs at `indices`; the others are inputs of the artifacts."""
        self._frozen_indices = tuple(sorted(indices))
        getter = operator.itemgetter(*self._frozen_indices) if self._frozen_indices else None
        # itemgetter of one index returns the item, not a 1-tuple
        self._frozen_getter = (lambda args, get=getter: (get(args),)) \
            if len(self._frozen_indices) == 1 else getter
        if self.plan is not None:
            self.plan.inputs = [
                dataclasses.replace(i, kind="tensor") if i.kind == "frozen" and
                i.index not in indices else i for i in self.plan.inputs]
            self._runtime = [i.index for i in self.plan.inputs if i.kind == "tensor"]
        self._weight_sets.clear()
        self._weights = None

    def _weights_for(self, current: tuple, args) -> _WeightSet:
        """The weight set of this call's frozen tensors: known (a region Dynamo reuses across
        layers), new (artifacts of its own, up to max_weight_sets; beyond that the tensors
        that differ become inputs), or changed in place since it was compiled in: a parameter
        is recompiled in once (new weights, e.g. load_state_dict); a buffer, or a parameter
        changing again, is state that changes between calls and becomes an input."""
        with self._lock:
            key = tuple(map(id, current))
            weights = self._weight_sets.get(key)
            if weights is not None and weights.matches(current):
                self._weights = weights
                return weights
            if weights is not None:  # the same tensors, updated in place
                changed = [index for index, tensor, version, pointer in
                           zip(self._frozen_indices, current, weights.versions,
                               weights.pointers)
                           if tensor._version != version or tensor.data_ptr() != pointer]
                recompile = [i for i in changed if isinstance(args[i], torch.nn.Parameter)
                             and i not in self._refrozen]
                demote = [i for i in changed if i not in recompile]
                self._refrozen.update(recompile)
                if recompile:
                    self._note(recompile, "changed in place after compiling: recompiled")
                if demote:
                    self._note(demote, "change between calls: passed as inputs")
                    return self._demote(demote, args)
                del self._weight_sets[key]
            elif len(self._weight_sets) >= self.opts.max_weight_sets:
                first = next(iter(self._weight_sets.values()))
                demote = [index for index, tensor, known in
                          zip(self._frozen_indices, current, first.tensors)
                          if tensor is not known]
                self._note(demote, f"took more than max_weight_sets="
                                   f"{self.opts.max_weight_sets} values: passed as inputs")
                return self._demote(demote, args)
            elif self._weight_sets and len(self._weight_sets) == 1:
                self.record.notes.append("called with several sets of weights (one region for "
                                         "repeated layers): one artifact per set")
            weights = _WeightSet.of(len(self._weight_sets) + 1, tuple(current))
            self._weight_sets[key] = weights
            self._weights = weights
            return weights

    def _demote(self, indices: list, args) -> _WeightSet:
        self._set_frozen(set(self._frozen_indices) - set(indices))
        current = self._frozen_getter(args) if self._frozen_getter is not None else ()
        weights = _WeightSet.of(1, tuple(current))
        self._weight_sets[tuple(map(id, current))] = weights
        self._weights = weights
        return weights

    def _note(self, indices: list, what: str) -> None:
        names = [self.plan.inputs[i].node.name for i in indices]
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        self.record.notes.append(f"{len(names)} frozen tensor(s) ({shown}) {what}")

    # -- fallbacks -------------------------------------------------------------------------
    def _fail(self, reason: str, weights: Optional[_WeightSet] = None) -> None:
        if self.opts.fallback == "error":
            raise KilnError(f"kiln backend: region {self.record.number} ({self.record.span}) "
                            f"cannot be compiled: {reason}")
        with self._lock:
            if any(w.variants for w in self._weight_sets.values()):
                self._refuse = reason  # artifacts compiled so far keep serving their calls
                self.record.notes.append(f"new shapes or weights run eagerly: {reason}")
                _warn(f"kiln backend: region {self.record.number} ({self.record.span}): new "
                      f"input shapes or weights run eagerly: {reason}")
                return
        self._to_eager(reason)

    def _to_eager(self, reason: str) -> None:
        self._eager = True
        self.record.status = "eager"
        self.record.reason = reason
        _warn(f"kiln backend: region {self.record.number} ({self.record.function}, "
              f"{self.record.span}) runs eagerly: {reason}")


# Verification tolerance: max |Kiln − eager| / max(1, max |eager|) per output (bench/run_suite.py
# uses the same for 12-layer models).
VERIFY_TOLERANCE = {torch.float16: 5e-2, torch.bfloat16: 1e-1, torch.float32: 1e-4,
                    torch.float64: 1e-8}
MAX_VERIFIED_SHAPES = 16  # a dynamic artifact is trusted after this many shapes agreed


def _mismatch(actual: Sequence[Any], expected: Sequence[Any]) -> Optional[str]:
    """Why Kiln's outputs differ from eager's beyond the dtype's tolerance, or None."""
    if len(actual) != len(expected):
        return f"{len(actual)} outputs, eager has {len(expected)}"
    for index, (got, want) in enumerate(zip(actual, expected)):
        if not isinstance(want, torch.Tensor):
            if got != want:
                return f"output {index} is {got!r}, eager's {want!r}"
            continue
        if tuple(got.shape) != tuple(want.shape) or got.dtype != want.dtype:
            return (f"output {index} is {tuple(got.shape)} {got.dtype}, eager's "
                    f"{tuple(want.shape)} {want.dtype}")
        if not want.dtype.is_floating_point:
            if not torch.equal(got.cpu(), want.cpu()):
                return f"output {index} ({want.dtype}) differs"
            continue
        got, want = got.detach().double().cpu(), want.detach().double().cpu()
        finite = torch.isfinite(want)
        if not torch.equal(finite, torch.isfinite(got)) or \
                not torch.equal(got[~finite].nan_to_num(), want[~finite].nan_to_num()):
            return f"output {index} has non-finite values where eager's has none (or the reverse)"
        if not finite.any():
            continue
        error = float((got[finite] - want[finite]).abs().max())
        scale = max(1.0, float(want[finite].abs().max()))
        tolerance = VERIFY_TOLERANCE.get(actual[index].dtype, 1e-4)
        if error > tolerance * scale:
            return f"output {index}: max abs error {error:.3g} > {tolerance:g} x {scale:.3g}"
    return None


# Dynamo's caches keep regions (and their IREE modules) alive until the interpreter tears
# down, after IREE's bindings, which then report leaked objects: release them first.
_LIVE_REGIONS: "weakref.WeakSet[CompiledRegion]" = weakref.WeakSet()


@atexit.register
def _release_regions() -> None:
    for region in list(_LIVE_REGIONS):
        region.release()


def _importable(tensor: torch.Tensor) -> torch.Tensor:
    """A CUDA tensor the runtime cannot import without a copy (kiln.runtime.importable_problem:
    not contiguous or not 64-byte aligned) as a contiguous copy; the runtime refuses those.
    CPU tensors pass as they are: the runtime copies such ones through numpy. A torch copy
    here (`clone`) wakes torch's OpenMP threads, whose spinning then slows IREE's workers:
    the zoo MLP with its unaligned input took 43 ms a call instead of 28."""
    if tensor.is_cuda and (not tensor.is_contiguous() or
                           (tensor.data_ptr() % 64 and tensor.numel())):
        return tensor.contiguous() if not tensor.is_contiguous() else tensor.clone()
    return tensor


def _failure_text(error: Exception) -> str:
    """The op and line of a Kiln failure (its issues), else the first line of the error."""
    issues = getattr(error, "issues", None)
    if issues:
        first = issues[0]
        where = ", ".join(first.locations[:3]) or "unknown location"
        more = f" (+{len(issues) - 1} more issue(s))" if len(issues) > 1 else ""
        return f"{first.what} at {where}{more}"
    lines = [line for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:400]


_WARNED: set[str] = set()
_LOCATION = re.compile(r"(/[^\s:()]+\.py):(\d+)")


def _warn(message: str) -> None:
    """Warn once per message, at the model's source line the message names (where the warning
    is useful), else at Kiln's own line."""
    if message in _WARNED:
        return
    _WARNED.add(message)
    found = _LOCATION.search(message)
    if found:
        warnings.warn_explicit(message, KilnFallbackWarning, found.group(1), int(found.group(2)))
    else:
        warnings.warn(message, KilnFallbackWarning, stacklevel=3)


# =============================================================================================
# The backend

_region_numbers = iter(range(1, 1 << 62))


def backend(gm: fx.GraphModule, example_inputs: list, *, options: Optional[dict] = None,
            mode: Optional[str] = None) -> Callable:
    """Dynamo's compiler function: registered as "kiln" (pyproject entry point
    `torch_dynamo_backends`), so `torch.compile(model, backend="kiln", options={...})`."""
    opts = BackendOptions.parse(options, mode)  # bad options raise, through Dynamo
    _install_break_callback()
    owner, _ = _compiling_model()
    _drain_breaks(owner, uses_kiln=True)
    record = RegionRecord(next(_region_numbers), _traced_function(), _span(gm),
                          sum(1 for n in gm.graph.nodes
                              if n.op in ("call_function", "call_method", "call_module")))
    _record(record, owner)
    if record.ops == 0:  # only moves values around: nothing to compile
        record.status, record.reason = "eager", "no ops to compile"
        return gm.forward
    eager_reason = None
    plan = None
    try:
        if torch.is_grad_enabled() and any(isinstance(x, torch.Tensor) and x.requires_grad
                                           for x in example_inputs):
            raise _Fallback("grad is enabled and inputs require grad; the kiln backend "
                            "compiles inference only (call under torch.no_grad() or "
                            "torch.inference_mode())")
        mutation = _input_mutation(gm)
        if mutation is not None:
            raise _Fallback(mutation)
        plan = _Plan.analyze(gm, example_inputs)
        record.dynamic_dims = [f"{plan.inputs[i].node.name}[{d}]" for i, d in plan.dynamic_dims]
    except _Fallback as error:
        if opts.fallback == "error":
            raise KilnError(f"kiln backend: region {record.number} ({record.span}) cannot be "
                            f"compiled: {error}") from error
        eager_reason = str(error)
    return CompiledRegion(gm, plan, opts, record, eager_reason)


def _traced_function() -> str:
    try:
        from torch._dynamo.symbolic_convert import InstructionTranslator

        return InstructionTranslator.current_tx().f_code.co_name
    except Exception:  # noqa: BLE001 - only a label in the report
        return "?"
