"""Why a model does not compile: every offending op at once, with its source line and a fix.

Two sources of failure are diagnosed after the fact (only on failure: it costs extra work):
- torch.export rejecting the model: `torch.export.draft_export` collects every data-dependent
  or guard problem in one pass, with the user's source line.
- IREE rejecting ops: each distinct op kind of the module (op name + operand types) is compiled
  alone to IREE's `input` phase; the kinds that fail are listed with every source location of
  that kind. Ops torch-mlir has no op for arrive as `torch.operator "..."` and are listed too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

from kiln.bindings import func_d, iree_compiler, ir
from kiln.report import source_location

MAX_PROBES = 300

FIX_HINTS = (
    (("item", "_local_scalar_dense"), "`.item()`/`int(tensor)` in forward: keep the value a "
                                       "tensor (torch.where, tensor arithmetic)"),
    (("nonzero", "unique", "masked_select", "repeat_interleave.Tensor"),
     "output shape depends on tensor values: use fixed-shape forms (torch.where, masks)"),
    (("torch.operator",), "torch-mlir has no op for it: rewrite it with supported torch ops or "
                          "decompose it before export (ExportedProgram.run_decompositions)"),
)
EXPORT_HINTS = {
    "DATA_DEPENDENT_ERROR": "control flow or shapes depend on tensor values: use torch.cond for "
                            "branches, torch.where for selects, and avoid `.item()` in forward "
                            "(or add torch._check(...) to state the assumption)",
    "CONSTRAINT_VIOLATION_ERROR": "a dimension marked dynamic was specialized: relax or remove "
                                  "that torch.export.Dim",
    "GUARD_ADDED": "export added a guard on an input value: make the branch tensor-valued "
                   "(torch.where / torch.cond)",
    "MISMATCHED_FAKE_KERNEL": "a custom op's fake (meta) kernel disagrees with the real one",
}


@dataclass
class Issue:
    """One reason the model does not compile."""

    what: str  # the op (aten.i0) or the export problem (data-dependent `Eq(u0, 1)`)
    locations: list[str] = field(default_factory=list)
    fix: str = ""
    detail: str = ""

    def __str__(self) -> str:
        where = ", ".join(self.locations[:5]) + (f" (+{len(self.locations) - 5} more)"
                                                 if len(self.locations) > 5 else "")
        text = f"{self.what} at {where or 'unknown location'}"
        if self.detail:
            text += f"\n      {self.detail}"
        return text + (f"\n      fix: {self.fix}" if self.fix else "")


def format_issues(header: str, issues: list[Issue]) -> str:
    lines = [f"{header}: {len(issues)} problem(s)"]
    lines += [f"  {i + 1}. {issue}" for i, issue in enumerate(issues)]
    return "\n".join(lines)


def fix_hint(op_name: str) -> str:
    for needles, hint in FIX_HINTS:
        if any(n in op_name for n in needles):
            return hint
    return "not supported by IREE's torch input for this target: rewrite it with supported " \
           "ops, or run it outside the compiled model"


# ----------------------------------------------------------------------------- export problems


def _filenames(report) -> dict:
    """Frame filename index → path: the report's own table, completed from torch's structured
    logging intern table (later exports in a process intern files the report does not list)."""
    files = dict(getattr(report, "str_to_filename", {}) or {})
    try:
        from torch._logging import structured

        files.update({index: name for name, index in structured.INTERN_TABLE.items()})
    except (ImportError, AttributeError):
        pass
    return files


def export_issues(model, example_args, dynamic_shapes=None) -> list[Issue]:
    """Every problem torch.export meets in `model`, via draft_export (empty if none found)."""
    import torch

    try:
        report = torch.export.draft_export(model, tuple(example_args),
                                           dynamic_shapes=dynamic_shapes)._report
    except Exception:  # draft_export itself may fail on what export rejects hard
        return []
    issues = []
    for failure in report.failures:
        data = failure.data if isinstance(failure.data, dict) else {}
        kind = getattr(failure.failure_type, "name", str(failure.failure_type))
        files = _filenames(report)
        named = [(files.get(f.get("filename"), "?"), f) for f in data.get("user_stack", [])]
        frames = [(path, f) for path, f in named if "site-packages/torch/" not in path]
        locations = [f"{path}:{f['line']}" for path, f in frames[-1:]]
        code = frames[-1][1].get("loc", "") if frames else ""
        what = kind.replace("_", " ").lower()
        if data.get("expr"):
            what += f" on `{data['expr']}`"
        issues.append(Issue(what, locations, EXPORT_HINTS.get(kind, ""),
                            f"code: {code}" if code else ""))
    return issues


# -------------------------------------------------------------------------- unsupported ops


def _op_kind(op: ir.Operation) -> tuple:
    name = op.name
    if name == "torch.operator":
        name = f"torch.operator {ir.StringAttr(op.attributes['name']).value}"
    return (name, tuple(str(v.type) for v in op.operands))


def _attributes(op: ir.Operation) -> dict:
    named = [op.attributes[i] for i in range(len(op.attributes))]
    return {a.name: a.attr for a in named}


def _is_constant(value: ir.Value) -> bool:
    owner = value.owner
    if not isinstance(value, ir.OpResult):
        return False
    name = owner.operation.name
    return name.startswith("torch.constant.") or (
        name == "torch.prim.ListConstruct" and all(_is_constant(v) for v in owner.operands))


def _clone_constant(value: ir.Value, cache: dict) -> ir.Value:
    key = value
    for known, clone in cache.items():
        if known == key:
            return clone
    op = value.owner.operation
    operands = [_clone_constant(v, cache) for v in op.operands]
    attributes = _attributes(op)
    clone = ir.Operation.create(op.name, results=[r.type for r in op.results],
                                operands=operands, attributes=attributes).result
    cache[value] = clone
    return clone


def _is_tensor_list(value: ir.Value) -> bool:
    owner = value.owner if isinstance(value, ir.OpResult) else None
    return owner is not None and owner.operation.name == "torch.prim.ListConstruct" and all(
        _is_tensor(v) for v in owner.operation.operands)


def _is_tensor(value: ir.Value) -> bool:
    return str(value.type).startswith("!torch.vtensor")


def probe_text(op: ir.Operation) -> Optional[str]:
    """A module whose function runs only `op` (constants cloned, tensors and tensor lists from
    arguments); None when an operand is a computed scalar or list, which a probe cannot stand
    in for (IREE rejects such function arguments: the probe would blame the wrong thing)."""
    with op.context, ir.Location.unknown():
        module = ir.Module.create()
        variable = []
        for v in op.operands:
            if _is_constant(v):
                continue
            if _is_tensor(v):
                variable.append(v)
            elif _is_tensor_list(v):
                variable.extend(v.owner.operation.operands)
            else:
                return None
        result_types = [r.type for r in op.results]
        with ir.InsertionPoint(module.body):
            function = func_d.FuncOp("probe", ([v.type for v in variable], result_types))
            block = function.add_entry_block()
        with ir.InsertionPoint(block):
            cache: dict = {}
            arguments = iter(block.arguments)

            def operand(v):
                if _is_constant(v):
                    return _clone_constant(v, cache)
                if _is_tensor(v):
                    return next(arguments)
                items = [next(arguments) for _ in v.owner.operation.operands]
                return ir.Operation.create("torch.prim.ListConstruct", results=[v.type],
                                           operands=items).result

            operands = [operand(v) for v in op.operands]
            clone = ir.Operation.create(op.name, results=result_types, operands=operands,
                                        attributes=_attributes(op))
            func_d.ReturnOp(list(clone.results))
        return str(module)


def unsupported_ops(module: ir.Module, flags: list[str]) -> list[Issue]:
    """Op kinds of `module` that IREE's input conversion rejects, each with all its locations."""
    compiler = iree_compiler()
    kinds: dict[tuple, list[ir.Operation]] = {}

    def visit(op):
        if op.name.startswith("torch.") and not op.name.startswith(("torch.constant.",
                                                                     "torch.prim.",
                                                                     "torch.vtensor.literal")):
            kinds.setdefault(_op_kind(op), []).append(op.operation)
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    probe_flags = [f for f in flags if f.startswith(("--iree-hal-target-device",
                                                     "--iree-input-type"))]
    issues = []
    for (name, _), ops in list(kinds.items())[:MAX_PROBES]:
        text = probe_text(ops[0])
        if text is None:
            continue
        try:
            compiler.compile_str(text, extra_args=probe_flags + ["--compile-to=input"])
            continue
        except compiler.CompilerToolError as error:
            message = str(error)
        except Exception:  # noqa: BLE001 - a probe that cannot even be built proves nothing
            continue
        if "legalize" not in message and "torch.operator" not in name:
            continue  # failed for a reason unrelated to this op (e.g. a scalar argument)
        op_label = name.replace("torch.operator ", "").replace("torch.aten.", "aten.")
        reason = re.search(r"error: ([^\n]*)", message)
        issues.append(Issue(op_label, sorted({source_location(o) for o in ops}),
                            fix_hint(name), reason.group(1)[:160] if reason else ""))
    return issues
