"""What the exported graph must not do quietly: read or write out of bounds, or hand IREE a
shape that depends on tensor values.

Index bounds (`add_index_guards`, before import, after constants are frozen and folded). Eager
PyTorch checks every index of a gather or scatter and raises IndexError; compiled code does not
(IREE reads whatever memory the index points at: wrong values, NaN or a segfault). Each op below
whose indices depend on a user input's values gets, in the FX graph:
  - its indices made safe: negative ones wrapped where eager wraps them (advanced indexing
    `x[ids]`, `index_put`), then clamped to [0, size - 1], so the op never leaves its table;
  - a guard result: int64 [count of out-of-bounds indices, the largest one, the dimension's
    size], appended to the graph's outputs (so guard outputs come last in the function).
The compiler records each guard in the signature ("guards": op, source line, message, dim) and
the runtime raises IndexError when a guard's count is non-zero, then drops guard results.
Indices computed from shapes only (`arange(seq)`, upsampling's `_unsafe_index`) are in bounds by
construction and stay unguarded; index tensors that are constants are folded before this runs.
The cost is a clamp fused into the gather and one small reduction per guarded op (measured in
docs/decisions.md); `index_checks=False` removes both.

Not covered: `index_add` / `index_copy` decompose to `index_put`, so a negative index that eager
rejects there wraps instead (still in bounds).

Data-dependent shapes (`refuse_data_dependent_shapes`, after export): a node whose output shape
holds an unbacked symbol (`nonzero`, `masked_select`, boolean-mask indexing, `unique`, a size
from `.item()`) has no bound IREE can plan memory with; IREE 3.13 spent 8 minutes and 24 GB on
`x[x > 0]` before it was killed. Such models are refused at once, naming the op and its line.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
from torch import fx

from kiln.errors import KilnCompileError

aten = torch.ops.aten
INT64_MIN = -(1 << 63)
GUARD_LENGTH = 3  # [count of out-of-bounds indices, the largest one, the dimension's size]

# Ops whose value does not depend on the values of their tensor inputs, only on shapes.
SHAPE_ONLY_TARGETS = (aten.sym_size.int, aten.sym_size.default, aten.sym_numel.default,
                      aten.sym_stride.int, aten.sym_stride.default)


@dataclass(frozen=True)
class _IndexedOp:
    """Where an op's indices are: argument `index` (a tensor, or with `index_list` a list of
    optional tensors, one per leading dimension), into dimension `dim` (an int, or with
    `dim_argument` the position of the argument holding it) of argument `table`."""

    index: int
    table: int = 0
    dim: int = 0
    dim_argument: bool = False
    index_list: bool = False
    wraps: bool = False  # negative indices count from the end (advanced indexing)
    eager_message: str = ""  # what eager PyTorch raises, where it differs from the common text


_GATHER = _IndexedOp(index=2, dim=1, dim_argument=True)
INDEXED_OPS: dict[Any, _IndexedOp] = {
    aten.embedding.default: _IndexedOp(index=1, eager_message="index out of range in self"),
    aten.index_select.default: _IndexedOp(index=2, dim=1, dim_argument=True,
                                          eager_message="index out of range in self"),
    aten.gather.default: _GATHER,
    aten.scatter.src: _GATHER,
    aten.scatter.value: _GATHER,
    aten.scatter.reduce: _GATHER,
    aten.scatter.value_reduce: _GATHER,
    aten.scatter_add.default: _GATHER,
    aten.scatter_reduce.two: _GATHER,
    aten.index.Tensor: _IndexedOp(index=1, index_list=True, wraps=True),
    aten._unsafe_index.Tensor: _IndexedOp(index=1, index_list=True, wraps=True),
    aten.index_put.default: _IndexedOp(index=1, index_list=True, wraps=True),
    aten.index_put_.default: _IndexedOp(index=1, index_list=True, wraps=True),
    aten._unsafe_index_put.default: _IndexedOp(index=1, index_list=True, wraps=True),
}


@dataclass(frozen=True)
class IndexGuard:
    """One bounds check the artifact computes: op, model source line and the indexed dim."""

    op: str  # "aten.embedding"
    source: str  # "file:line: code"
    dim: int
    message: str  # the rule, as eager PyTorch states it

    def signature_entry(self, output: int) -> dict:
        """The entry of the artifact signature's "guards" list (BRIEF: op, source, message)."""
        return {"output": output, "op": self.op, "source": self.source,
                "message": self.message, "dim": self.dim}


def op_name(target) -> str:
    """`aten.embedding` for `torch.ops.aten.embedding.default`."""
    schema = getattr(target, "_schema", None)
    return schema.name.replace("::", ".") if schema is not None else str(target)


def source_line(node: fx.Node) -> str:
    from kiln.check import source_line as check_source_line

    return check_source_line(node)


def _value_dependent_nodes(graph: fx.Graph) -> set:
    """Nodes whose values depend on the values of a user input (placeholders, once state is
    frozen into the graph); sizes of inputs and what is computed from them do not."""
    dependent: set = set()
    for node in graph.nodes:
        if node.op == "placeholder":
            dependent.add(node)
        elif node.op == "call_function" and node.target not in SHAPE_ONLY_TARGETS and \
                any(n in dependent for n in node.all_input_nodes):
            dependent.add(node)
    return dependent


class _Emitter:
    """Adds call_function nodes before `anchor`, each with the fake value torch.export's own
    nodes carry (the importer reads result types from it) and the anchor's stack trace (so
    MLIR locations and diagnostics point at the model's line)."""

    def __init__(self, graph: fx.Graph, anchor: fx.Node, fake_mode):
        self.graph, self.anchor, self.fake_mode = graph, anchor, fake_mode

    def __call__(self, target, *args, **kwargs) -> fx.Node:
        def fake(value):
            if isinstance(value, fx.Node):
                return value.meta["val"]
            if isinstance(value, torch.Tensor):
                return self.fake_mode.from_tensor(value)
            return value

        with self.fake_mode:
            value = target(*fx.node.map_aggregate(args, fake),
                           **fx.node.map_aggregate(kwargs, fake))
        with self.graph.inserting_before(self.anchor):
            node = self.graph.call_function(target, args, kwargs)
        node.meta["val"] = value
        if "stack_trace" in self.anchor.meta:
            node.meta["stack_trace"] = self.anchor.meta["stack_trace"]
        return node


def _size(emit: _Emitter, table: Union[fx.Node, torch.Tensor], dim: int):
    """The size of `table`'s dim: an int, or a node computing it for a dynamic dim."""
    value = table.meta["val"] if isinstance(table, fx.Node) else table
    size = value.shape[dim]
    if isinstance(size, int):
        return size
    return emit(aten.sym_size.int, table, dim)


def _guard_indices(emit: _Emitter, indices: fx.Node, size, wraps: bool
                   ) -> tuple[fx.Node, fx.Node]:
    """(indices clamped into [0, size), guard result [count, largest offender, size]).

    The safe indices are int64 whatever the given type: torch-mlir's lowering of `index.Tensor`
    compares int32 indices with an index-typed size of a dynamic dim, which IREE rejects
    ("'arith.cmpi' op requires all operands to have the same type"); int64 compiles."""
    given = indices if indices.meta["val"].dtype == torch.int64 else \
        emit(aten._to_copy.default, indices, dtype=torch.int64)
    wrapped = given
    if wraps:
        wrapped = emit(aten.where.self, emit(aten.lt.Scalar, given, 0),
                       emit(aten.add.Scalar, given, size), given)
    last = size - 1 if isinstance(size, int) else emit(operator.sub, size, 1)
    safe = emit(aten.clamp.default, wrapped, 0, last)
    bad = emit(aten.view.default, emit(aten.ne.Tensor, safe, wrapped), [-1])
    count = emit(aten.sum.dim_IntList, bad, [0], False, dtype=torch.int64)
    offenders = emit(aten.where.self, bad, emit(aten.view.default, given, [-1]),
                     torch.tensor(INT64_MIN, dtype=torch.int64))
    largest = emit(aten.amax.default, offenders, [0])
    if isinstance(size, int):
        size_value = torch.tensor([size], dtype=torch.int64)
    else:
        size_value = emit(aten.view.default,
                          emit(aten.scalar_tensor.default, size, dtype=torch.int64), [1])
    result = emit(aten.cat.default, [emit(aten.view.default, count, [1]),
                                     emit(aten.view.default, largest, [1]), size_value])
    return safe, result


def add_index_guards(graph: fx.Graph) -> list[IndexGuard]:
    """Guard every gather/scatter of INDEXED_OPS whose indices depend on user input values (see
    the module docstring); returns the guards in the order of the outputs appended."""
    from torch._guards import detect_fake_mode

    dependent = _value_dependent_nodes(graph)
    guards: list[IndexGuard] = []
    results: list[fx.Node] = []
    for node in list(graph.nodes):
        spec = INDEXED_OPS.get(node.target) if node.op == "call_function" else None
        if spec is None:
            continue
        table = node.args[spec.table]
        table_value = table.meta["val"] if isinstance(table, fx.Node) else table
        if not isinstance(table_value, torch.Tensor):
            continue
        if spec.index_list:
            candidates = list(enumerate(node.args[spec.index]))
        else:
            dim = node.args[1] if spec.dim_argument else spec.dim
            candidates = [(dim % max(table_value.dim(), 1), node.args[spec.index])]
        new_indices = {}
        for dim, indices in candidates:
            if not isinstance(indices, fx.Node) or indices not in dependent:
                continue
            value = indices.meta.get("val")
            if not isinstance(value, torch.Tensor) or value.dtype in (torch.bool, torch.uint8) \
                    or value.is_floating_point() or value.numel() == 0:
                continue  # boolean masks: data-dependent shapes (refused earlier)
            emit = _Emitter(graph, node, detect_fake_mode([value]))
            safe, result = _guard_indices(emit, indices, _size(emit, table, dim), spec.wraps)
            new_indices[dim] = safe
            results.append(result)
            name = op_name(node.target)
            low = "-size" if spec.wraps else "0"
            rule = f"{name} takes indices in [{low}, size) of dimension {dim}"
            if spec.eager_message:
                rule += f"; eager PyTorch raises IndexError: {spec.eager_message}"
            guards.append(IndexGuard(name, source_line(node), dim, rule))
        if new_indices:
            args = list(node.args)
            if spec.index_list:
                args[spec.index] = [new_indices.get(d, i)
                                    for d, i in enumerate(args[spec.index])]
            else:
                args[spec.index] = next(iter(new_indices.values()))
            node.args = tuple(args)
    if results:
        output = next(n for n in graph.nodes if n.op == "output")
        outputs = output.args[0]
        outputs = tuple(outputs) if isinstance(outputs, (tuple, list)) else (outputs,)
        output.args = (outputs + tuple(results),)
    return guards


# ------------------------------------------------------------------------ data-dependent shapes


def _unbacked_symbols(value: Any) -> set:
    from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols

    if isinstance(value, torch.Tensor):
        return set(free_unbacked_symbols(value.shape))
    return set()


def data_dependent_shape_nodes(graph: fx.Graph) -> list[fx.Node]:
    """The nodes that introduce a tensor shape depending on tensor values: the first node whose
    output shape holds each unbacked symbol (nonzero, masked_select, `x[mask]`, ...), or, for a
    size read with `.item()`, the node that read it."""
    shaped: dict = {}
    for node in graph.nodes:
        for symbol in _unbacked_symbols(node.meta.get("val")):
            shaped.setdefault(symbol, node)
    origins: dict = {}
    for node in graph.nodes:
        for symbol in (node.meta.get("unbacked_bindings") or {}):
            if symbol in shaped and symbol not in origins:
                origins[symbol] = node
    for symbol, node in shaped.items():
        origins.setdefault(symbol, node)
    return list(dict.fromkeys(origins.values()))


def refuse_data_dependent_shapes(program: torch.export.ExportedProgram) -> None:
    """KilnCompileError naming each op whose output shape depends on tensor values (see the
    module docstring), with its source line and the usual fix."""
    from kiln.diagnose import Issue, fix_hint, format_issues

    nodes = data_dependent_shape_nodes(program.graph)
    if not nodes:
        return
    issues = []
    for node in nodes:
        name = op_name(node.target)
        if node.target is aten.index.Tensor:
            name += " with a boolean mask (x[mask])"
        issues.append(Issue(name, [source_line(node)], fix_hint(op_name(node.target))
                            if node.target is not aten.index.Tensor else fix_hint("nonzero"),
                            "its output shape depends on tensor values, which IREE cannot "
                            "bound"))
    raise KilnCompileError(format_issues("data-dependent output shapes", issues) +
                           "\nKiln compiles fixed (or bounded dynamic) shapes only: pad to a "
                           "maximum size and carry a mask instead", issues)
