"""Equivalence check: the compiled artifact against eager PyTorch, on several inputs.

    result = kiln.check(model, example_args, target="cpu", samples=3)
    print(result)            # a table: per output errors, tolerance used, verdict
    assert result.passed

Sample 0 is the example inputs; the others are random with the same shapes and dtypes (floats
standard normal, integers drawn in [min(example), max(example)] so token ids stay in range,
booleans either way). Errors are measured against a float64 reference (a deep copy of the model
in float64, float inputs cast to float64, integer inputs unchanged). Every element is judged:

    |compiled − ref| ≤ atol + rtol·|ref|

rtol and atol come from the model's dtype (DEFAULT_RTOL, DEFAULT_ATOL; docs/decisions.md says
how they were measured) unless given; integer and bool outputs must match exactly, and
non-finite reference values must be matched exactly (inf sign, nan). The table also shows the
whole-output summary `max|compiled − ref| / max|ref|` and eager PyTorch in the model's own dtype
measured against the same reference, for context; a failure names the output, the sample, the
element's index and its compiled, reference and eager values. When float64 cannot run the
model (explicit dtypes inside `forward`), eager in the model's dtype becomes the reference and
the result says so.

On a mismatch (and `locate=True`) the first diverging op is found by bisection over the exported
graph: the graph is truncated after op k (`torch.fx`: copy the graph, return node k's value,
eliminate dead code), the truncated module is compiled with the same target and options and run
on the worst sample, and its value is compared with eager's by the same per-element rule. The
first op whose value differs beyond the tolerance is reported with its aten target, node name
and Python source line. This costs about log2(#ops) + 1 extra compiles, so it runs only when the
check fails.
"""

from __future__ import annotations

import copy
import math
import operator
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from torch.utils import _pytree as pytree

# Per-element tolerances by the model's dtype: |compiled − ref| ≤ atol + rtol·|ref|.
# rtol: as large as the whole-output tolerance it replaced (≥ 10× headroom on the tested
# models). atol: the floor for elements near zero, where rounding noise is absolute rather than
# relative; measured on eager-in-dtype and compiled vs float64 (docs/decisions.md, "kiln.check:
# per-element tolerance"): a wrong sign on any element larger than atol/2 fails.
DEFAULT_RTOL = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2,
                torch.float64: 1e-7}
DEFAULT_ATOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2,
                torch.float64: 1e-10}


# ---------------------------------------------------------------------------------------------
# Results


@dataclass
class Comparison:
    """One output of one sample against its reference, element by element.

    `tolerance_used` is the worst element's |got − ref| / (atol + rtol·|ref|): ≤ 1 passes (inf
    for a shape mismatch or a non-finite value that differs). `worst_index` (None for a shape
    mismatch) is that element's index, with its values in `got` and `ref`."""

    abs_error: float  # max |got − ref| over finite reference values
    rel_error: float  # abs_error / max |ref|: the whole-output summary
    tolerance_used: float
    worst_index: Optional[tuple] = None
    got: Optional[float] = None
    ref: Optional[float] = None

    @property
    def passed(self) -> bool:
        return self.tolerance_used <= 1.0


@dataclass
class OutputCheck:
    """One model output over all samples (the element and sample that used most of the
    per-element tolerance are reported)."""

    index: int
    shape: tuple
    dtype: str
    max_abs_error: float
    max_rel_error: float  # max|compiled − ref| / max|ref|, the whole-output summary
    eager_rel_error: float  # eager in the model's dtype vs the same reference
    rtol: float
    atol: float
    tolerance_used: float  # worst element's |compiled − ref| / (atol + rtol·|ref|)
    eager_tolerance_used: float  # the same for eager in the model's dtype
    worst_sample: int
    worst_index: Optional[tuple] = None
    worst_got: Optional[float] = None
    worst_ref: Optional[float] = None
    worst_eager: Optional[float] = None
    note: str = ""

    @property
    def passed(self) -> bool:
        return self.tolerance_used <= 1.0

    def describe_worst(self) -> str:
        """'output 0 element [2, 40] (sample 1): compiled …, reference …, eager …'"""
        if self.worst_index is None:
            return f"output {self.index} (sample {self.worst_sample}): shape differs"
        element = f"element [{', '.join(map(str, self.worst_index))}]" if self.worst_index \
            else "the scalar"
        rule = "must match exactly" if self.rtol == 0 and self.atol == 0 else \
            (f"|compiled − reference| > atol {self.atol:.0e} + rtol {self.rtol:.0e}·|reference| "
             f"({_times(self.tolerance_used)} the tolerance)")
        return (f"output {self.index} {element} (sample {self.worst_sample}): compiled "
                f"{_value(self.worst_got)}, reference {_value(self.worst_ref)}, eager "
                f"{_value(self.worst_eager)}; {rule}")


def _value(value: Optional[float]) -> str:
    return "?" if value is None else f"{value:.6g}"


def _times(ratio: float) -> str:
    return "inf×" if math.isinf(ratio) else f"{ratio:.3g}×"


@dataclass
class DivergingOp:
    """The first op of the exported graph whose compiled value differs from eager's."""

    node: str  # fx node name, e.g. "tanh"
    target: str  # aten op, e.g. "aten.tanh.default"
    source: str  # "file:line: code" of the model source that produced it
    rel_error: float
    abs_error: float
    tolerance_used: float  # worst element's |compiled − eager| / (atol + rtol·|eager|)
    position: int  # index among the ops checked
    ops: int  # number of ops the bisection ran over
    compiles: int  # truncated graphs compiled to find it
    previous: Optional[str] = None  # the op before it (value matched), if any

    def __str__(self) -> str:
        text = (f"first diverging op: {self.target} (node {self.node}) at {self.source}\n"
                f"  an element differs from eager by {_times(self.tolerance_used)} the "
                f"per-element tolerance at this op (relative error {self.rel_error:.3e}, abs "
                f"{self.abs_error:.3e})")
        if self.previous:
            text += f"; the op before it ({self.previous}) matched"
        return text + f" [op {self.position + 1} of {self.ops}, {self.compiles} compiles]"


@dataclass
class CheckResult:
    passed: bool
    outputs: list[OutputCheck]
    rtol: float  # for floating outputs; integer and bool outputs are compared exactly
    atol: float
    model_dtype: str
    reference: str  # "float64", or the model dtype when float64 could not run the model
    target: tuple
    samples: int
    seed: int
    first_diverging_op: Optional[DivergingOp] = None
    locate_note: str = ""
    seconds: dict = field(default_factory=dict)
    report: Any = None  # the CompileReport of the checked artifact

    @property
    def max_rel_error(self) -> float:
        return max((o.max_rel_error for o in self.outputs), default=0.0)

    def __str__(self) -> str:
        head = (f"kiln check: target {','.join(self.target)}, {self.samples} sample(s) (seed "
                f"{self.seed}), model {self.model_dtype}, reference {self.reference}, "
                f"per element |err| ≤ atol {self.atol:.0e} + rtol {self.rtol:.0e}·|ref|")
        rows = [("output", "shape", "dtype", "max abs err", "max rel err", "eager rel err",
                 "tol used", "eager tol used", "result")]
        for o in self.outputs:
            rows.append((str(o.index), "x".join(map(str, o.shape)) or "scalar", o.dtype,
                         f"{o.max_abs_error:.3e}", f"{o.max_rel_error:.3e}",
                         f"{o.eager_rel_error:.3e}", f"{o.tolerance_used:.3g}",
                         f"{o.eager_tolerance_used:.3g}",
                         ("ok" if o.passed else f"FAIL (sample {o.worst_sample})") +
                         (f" {o.note}" if o.note else "")))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = [head] + ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
                          for r in rows]
        lines.append("  (max rel err: max|err| / max|ref| over the output; tol used: the worst "
                     "element's |err| / (atol + rtol·|ref|), ≤ 1 passes)")
        noisy = [o for o in self.outputs if o.eager_tolerance_used > 1.0]
        if noisy:
            lines.append(f"note: eager {self.model_dtype} itself exceeds the per-element "
                         f"tolerance on output(s) {', '.join(str(o.index) for o in noisy)}: "
                         f"the tolerance is below this model's rounding noise in "
                         f"{self.model_dtype}; consider a larger atol / rtol")
        if self.passed:
            lines.append("PASS")
        else:
            lines.append("FAIL: " + "\n      ".join(o.describe_worst() for o in self.outputs
                                                    if not o.passed))
            if self.first_diverging_op is not None:
                lines.append(str(self.first_diverging_op))
            if self.locate_note:
                lines.append(self.locate_note)
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Inputs, references and errors


def model_dtype(model: torch.nn.Module, example_args: Sequence[Any]) -> torch.dtype:
    """The dtype of the first floating parameter or buffer, else of the first float input."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    for leaf in pytree.tree_leaves(tuple(example_args)):
        if isinstance(leaf, torch.Tensor) and leaf.is_floating_point():
            return leaf.dtype
    return torch.float32


def make_samples(example_args: Sequence[Any], samples: int, seed: int) -> list[tuple]:
    """Sample 0: the example inputs; then random tensors of the same shapes and dtypes."""
    generator = torch.Generator().manual_seed(seed)
    leaves, spec = pytree.tree_flatten(tuple(example_args))
    result = [tuple(example_args)]
    for _ in range(max(0, samples - 1)):
        new = []
        for leaf in leaves:
            if not isinstance(leaf, torch.Tensor):
                new.append(leaf)
            elif leaf.dtype == torch.bool:
                new.append(torch.randint(0, 2, leaf.shape, generator=generator).bool())
            elif leaf.is_floating_point():
                new.append(torch.randn(leaf.shape, generator=generator).to(leaf.dtype))
            elif leaf.is_complex():
                new.append(torch.randn(leaf.shape, generator=generator, dtype=leaf.dtype))
            else:  # integers: token ids, positions, masks stay inside the example's range
                low = int(leaf.min()) if leaf.numel() else 0
                high = int(leaf.max()) + 1 if leaf.numel() else 1
                new.append(torch.randint(low, high, leaf.shape, generator=generator,
                                         dtype=leaf.dtype))
        result.append(tuple(pytree.tree_unflatten(new, spec)))
    return result


def _tensor_leaves(outputs: Any) -> list[torch.Tensor]:
    return [leaf for leaf in pytree.tree_leaves(outputs) if isinstance(leaf, torch.Tensor)]


def _to_float64(args: tuple) -> tuple:
    return pytree.tree_map(lambda t: t.double() if isinstance(t, torch.Tensor) and
                           t.is_floating_point() else t, args)


class _EvalMode:
    """Eval mode and no_grad while eager runs; the caller's training flags come back."""

    def __init__(self, *models: torch.nn.Module):
        self.models = models

    def __enter__(self):
        self.flags = {m: m.training for model in self.models for m in model.modules()}
        for model in self.models:
            model.eval()
        self.no_grad = torch.no_grad()
        self.no_grad.__enter__()

    def __exit__(self, *exc):
        self.no_grad.__exit__(*exc)
        for module, flag in self.flags.items():
            module.training = flag


def compare(got: Any, ref: Any, rtol: float, atol: float) -> Comparison:
    """`got` against `ref` element by element: |got − ref| ≤ atol + rtol·|ref| (rtol = atol = 0:
    exact). Non-finite reference values must be matched exactly (inf sign, nan); a non-finite
    `got` where the reference is finite, or a shape mismatch, fails with tolerance_used inf."""
    got = torch.as_tensor(got).detach().cpu()
    ref = torch.as_tensor(ref).detach().cpu()
    if tuple(got.shape) != tuple(ref.shape):
        return Comparison(float("inf"), float("inf"), float("inf"))
    wide = torch.complex128 if got.is_complex() or ref.is_complex() else torch.float64
    g, r = got.to(wide).reshape(-1), ref.to(wide).reshape(-1)

    def at(flat_index: int, used: float, abs_error=float("inf"), rel_error=float("inf")):
        index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat_index),
                                                          tuple(ref.shape)))
        return Comparison(abs_error, rel_error, used, index, _scalar(g[flat_index]),
                          _scalar(r[flat_index]))

    finite = torch.isfinite(r)
    same = (g == r) | (torch.isnan(g) & torch.isnan(r))
    broken = (~finite & ~same) | (finite & ~torch.isfinite(g))
    if bool(broken.any()):
        return at(int(broken.nonzero()[0, 0]), float("inf"))
    if not bool(finite.any()):
        return Comparison(0.0, 0.0, 0.0)
    difference = torch.where(finite, (g - r).abs(), torch.zeros((), dtype=torch.float64))
    magnitude = torch.where(finite, r.abs(), torch.zeros((), dtype=torch.float64))
    allowed = atol + rtol * magnitude
    used = torch.where(difference == 0, torch.zeros((), dtype=torch.float64),
                       difference / allowed)  # x / 0 = inf where an exact match is required
    worst = int(used.argmax())
    abs_error = float(difference.max())
    scale = float(magnitude.max())
    rel_error = abs_error / scale if scale > 0 else (0.0 if abs_error == 0 else float("inf"))
    return at(worst, float(used[worst]), abs_error, rel_error)


def _scalar(value: torch.Tensor):
    return complex(value) if value.is_complex() else float(value)


# ---------------------------------------------------------------------------------------------
# The check


def _device_for(targets: tuple) -> str:
    return "cuda" if targets == ("cuda",) else "cpu"


def tolerances(dtype: torch.dtype, rtol: Optional[float] = None,
               atol: Optional[float] = None) -> tuple[float, float]:
    """(rtol, atol) for a model of `dtype`: the given values, else the dtype's defaults."""
    chosen = (DEFAULT_RTOL.get(dtype, DEFAULT_RTOL[torch.float32]) if rtol is None else rtol,
              DEFAULT_ATOL.get(dtype, DEFAULT_ATOL[torch.float32]) if atol is None else atol)
    for name, value in zip(("rtol", "atol"), chosen):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"kiln.check: {name} must be a finite number ≥ 0, got {value!r}")
    return float(chosen[0]), float(chosen[1])


def check(model: torch.nn.Module, example_args: Sequence[Any], target="cpu", *,
          samples: int = 3, seed: int = 0, rtol: Optional[float] = None,
          atol: Optional[float] = None, locate: bool = True, device: Optional[str] = None,
          **options) -> "CheckResult":
    """Compile `model` for `target` and compare it with eager on `samples` inputs.

    Every element of a floating output must satisfy |compiled − ref| ≤ atol + rtol·|ref|
    (defaults by the model's dtype: DEFAULT_RTOL, DEFAULT_ATOL); integer and bool outputs must
    match exactly. `options` are compile options (`kiln.compiler.CompileOptions`). Returns a
    CheckResult; `print(result)` shows the table, `result.passed` the verdict. See the module
    docstring."""
    import kiln
    from kiln.targets import normalize_target

    if not isinstance(example_args, (tuple, list)):
        example_args = (example_args,)
    if "compile_to" in options:
        raise TypeError("kiln.check compares full artifacts; compile_to is not accepted")
    targets = normalize_target(target)
    device = device or _device_for(targets)
    dtype = model_dtype(model, example_args)
    rtol, atol = tolerances(dtype, rtol, atol)
    seconds = {}

    start = time.perf_counter()
    compiled = kiln.compile_model(model, example_args, target=target, **options)
    seconds["compile"] = time.perf_counter() - start
    run = kiln.load(compiled.vmfb, device=device)

    start = time.perf_counter()
    inputs = make_samples(example_args, samples, seed)
    reference_name = "float64"
    reference_model = None
    try:
        reference_model = copy.deepcopy(model).double()
    except Exception as error:  # noqa: BLE001 - any failure means: no float64 reference
        reference_name = f"{_dtype_name(dtype)} (float64 copy failed: {error})"
    per_output: dict[int, dict] = {}
    for sample_index, args in enumerate(inputs):
        with _EvalMode(model):
            eager = _tensor_leaves(model(*args))
        reference = None
        if reference_model is not None:
            try:
                with _EvalMode(reference_model):
                    reference = _tensor_leaves(reference_model(*_to_float64(args)))
            except Exception as error:  # noqa: BLE001
                reference_model = None
                reference_name = (f"{_dtype_name(dtype)} (float64 eager failed: "
                                  f"{_first_line(error)})")
        reference = reference if reference is not None else eager
        got = run(*_tensor_leaves(args))  # the artifact takes the tensors, flattened
        got = list(got) if isinstance(got, tuple) else [got]
        if len(got) != len(eager):
            raise ValueError(f"the artifact returns {len(got)} output(s), eager "
                             f"{len(eager)} tensor output(s)")
        for index, (g, e, r) in enumerate(zip(got, eager, reference)):
            exact = not (e.dtype.is_floating_point or e.dtype.is_complex)
            output_rtol, output_atol = (0.0, 0.0) if exact else (rtol, atol)
            compiled_vs_ref = compare(g, r, output_rtol, output_atol)
            eager_vs_ref = compare(e, r, output_rtol, output_atol)
            entry = per_output.setdefault(index, {
                "abs": 0.0, "rel": 0.0, "eager_rel": 0.0, "eager_used": 0.0, "worst": None,
                "worst_sample": 0, "eager_at_worst": None, "shape": tuple(e.shape),
                "dtype": e.dtype, "exact": exact, "rtol": output_rtol, "atol": output_atol})
            entry["abs"] = max(entry["abs"], compiled_vs_ref.abs_error)
            entry["rel"] = max(entry["rel"], compiled_vs_ref.rel_error)
            entry["eager_rel"] = max(entry["eager_rel"], eager_vs_ref.rel_error)
            entry["eager_used"] = max(entry["eager_used"], eager_vs_ref.tolerance_used)
            if entry["worst"] is None or \
                    compiled_vs_ref.tolerance_used > entry["worst"].tolerance_used:
                entry["worst"], entry["worst_sample"] = compiled_vs_ref, sample_index
                entry["eager_at_worst"] = _element(e, compiled_vs_ref.worst_index)
    seconds["compare"] = time.perf_counter() - start

    outputs = []
    for index, entry in sorted(per_output.items()):
        worst: Comparison = entry["worst"]
        outputs.append(OutputCheck(
            index=index, shape=entry["shape"], dtype=_dtype_name(entry["dtype"]),
            max_abs_error=entry["abs"], max_rel_error=entry["rel"],
            eager_rel_error=entry["eager_rel"], rtol=entry["rtol"], atol=entry["atol"],
            tolerance_used=worst.tolerance_used, eager_tolerance_used=entry["eager_used"],
            worst_sample=entry["worst_sample"], worst_index=worst.worst_index,
            worst_got=worst.got, worst_ref=worst.ref, worst_eager=entry["eager_at_worst"],
            note="(exact)" if entry["exact"] else ""))
    result = CheckResult(passed=all(o.passed for o in outputs), outputs=outputs, rtol=rtol,
                         atol=atol, model_dtype=_dtype_name(dtype), reference=reference_name,
                         target=targets, samples=len(inputs), seed=seed, seconds=seconds,
                         report=compiled.report)
    if not result.passed and locate:
        start = time.perf_counter()
        worst = max((o for o in outputs if not o.passed), key=lambda o: o.tolerance_used)
        try:
            result.first_diverging_op, result.locate_note = locate_divergence(
                model, example_args, inputs[worst.worst_sample], output_index=worst.index,
                rtol=worst.rtol, atol=worst.atol, target=target, device=device, **options)
        except Exception as error:  # noqa: BLE001 - the check result stands on its own
            result.locate_note = (f"could not locate the diverging op: "
                                  f"{type(error).__name__}: {_first_line(error)}")
        seconds["locate"] = time.perf_counter() - start
    return result


def _element(tensor: torch.Tensor, index: Optional[tuple]):
    """The value of `tensor` at `index` as a Python number (None without an index)."""
    if index is None:
        return None
    try:
        return _scalar(tensor.detach().cpu()[index])
    except IndexError:  # eager's shape differs from the reference's
        return None


# ---------------------------------------------------------------------------------------------
# Locating the first diverging op


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)\n\s*(.*)')


def source_line(node: torch.fx.Node) -> str:
    """The innermost `file:line: code` of the node's stack trace (the user's model line)."""
    frames = _FRAME.findall(node.meta.get("stack_trace") or "")
    if not frames:
        return "unknown location"
    torch_dir = str(Path(torch.__file__).parent)
    user = [f for f in frames if not f[0].startswith(torch_dir)]
    path, line, _, code = (user or frames)[-1]
    return f"{path}:{line}: {code.strip()}"


def describe_target(node: torch.fx.Node) -> tuple[str, torch.fx.Node]:
    """(aten op name, node carrying the source) — `getitem` names the op it indexes."""
    if node.target is operator.getitem and node.args and isinstance(node.args[0],
                                                                   torch.fx.Node):
        parent = node.args[0]
        return f"{parent.target}[{node.args[1]}]", parent
    return str(node.target), node


def candidate_ops(graph: torch.fx.Graph) -> list[torch.fx.Node]:
    """call_function nodes that produce one tensor and depend on a user input, in order."""
    depends = {n for n in graph.nodes if n.op == "placeholder"}
    result = []
    for node in graph.nodes:
        if node.op != "call_function" or not any(a in depends for a in node.all_input_nodes):
            continue
        depends.add(node)
        if isinstance(node.meta.get("val"), torch.Tensor):
            result.append(node)
    return result


def truncate(gm: torch.fx.GraphModule, node: torch.fx.Node) -> torch.fx.GraphModule:
    """A GraphModule computing the same inputs' value of `node` (dead code eliminated)."""
    graph = torch.fx.Graph()
    values: dict = {}
    graph.graph_copy(gm.graph, values, return_output_node=False)
    graph.output(values[node])
    truncated = torch.fx.GraphModule(gm, graph)
    truncated.graph.eliminate_dead_code()
    truncated.recompile()
    return truncated


def _output_node(gm: torch.fx.GraphModule, output_index: int) -> Optional[torch.fx.Node]:
    output = next(n for n in gm.graph.nodes if n.op == "output")
    flat = pytree.tree_leaves(output.args[0])
    nodes = [n for n in flat if isinstance(n, torch.fx.Node) and
             isinstance(n.meta.get("val"), torch.Tensor)]
    return nodes[output_index] if output_index < len(nodes) else None


def locate_divergence(model, example_args, sample, *, output_index: int, rtol: float,
                      atol: float, target="cpu", device: str = "cpu", **options
                      ) -> tuple[Optional[DivergingOp], str]:
    """Bisect the exported graph for the first op whose compiled value differs from eager's.

    Returns (DivergingOp or None, note). Assumes divergence persists once it appears."""
    import kiln
    from kiln.frontend import export_model

    program = export_model(model, tuple(example_args))
    gm = program.module()
    # The truncated graphs take the flattened inputs (the copy drops the pytree codegen).
    flat_example = pytree.tree_leaves(tuple(example_args))
    flat_sample = pytree.tree_leaves(tuple(sample))
    ops = candidate_ops(gm.graph)
    last = _output_node(gm, output_index)
    if last is None or last not in ops:
        return None, "could not locate: the failing output is not computed by an op"
    ops = ops[:ops.index(last) + 1]
    compiles = 0
    failures: list[str] = []
    measured: dict[int, Optional[Comparison]] = {}

    def measure(k: int) -> Optional[Comparison]:
        nonlocal compiles
        if k not in measured:
            truncated = truncate(gm, ops[k])
            compiles += 1
            try:
                artifact = kiln.compile_model(truncated, tuple(flat_example), target=target,
                                              **options)
            except Exception as error:  # noqa: BLE001 - this prefix cannot be judged
                failures.append(f"{ops[k].name}: {type(error).__name__}: {_first_line(error)}")
                measured[k] = None
                return None
            got = kiln.load(artifact.vmfb, device=device)(*_tensor_leaves(flat_sample))
            with torch.no_grad():
                want = truncated(*flat_sample)
            measured[k] = compare(got, want, rtol, atol)
        return measured[k]

    def diverges(k: int) -> Optional[bool]:
        error = measure(k)
        return None if error is None else not error.passed

    top = len(ops) - 1
    if diverges(top) is not True:
        what = f"did not compile ({failures[0]})" if failures else "matches eager"
        return None, (f"could not locate: the graph truncated at its output "
                      f"({ops[top].name}) {what}; the mismatch may come from the model's "
                      f"outer structure or depend on other outputs")
    good, bad, note = -1, top, ""
    while bad - good > 1:
        mid = (good + bad) // 2
        verdict, probe = diverges(mid), mid
        while verdict is None and probe + 1 < bad:  # uncompilable prefix: look further on
            probe += 1
            verdict = diverges(probe)
        if verdict is None:
            note = (f"ops {ops[good + 1].name}..{ops[bad - 1].name} do not compile on their "
                    f"own ({failures[0]}); the divergence starts at or before the op reported")
            break
        if verdict:
            bad = probe
        else:
            good = probe
    node = ops[bad]
    name, source_node = describe_target(node)
    comparison = measured[bad]
    previous = describe_target(ops[good])[0] + f" (node {ops[good].name})" if good >= 0 \
        else None
    return DivergingOp(node=node.name, target=name, source=source_line(source_node),
                       rel_error=comparison.rel_error, abs_error=comparison.abs_error,
                       tolerance_used=comparison.tolerance_used,
                       position=bad, ops=len(ops), compiles=compiles, previous=previous), note
