"""What the exported graph must not do quietly: read or write out of bounds, or hand IREE a
shape that depends on tensor values.

Index bounds (`add_index_guards`, before import, after constants are frozen and folded). Eager
PyTorch checks every index of a gather or scatter and raises IndexError; compiled code does not
(IREE reads whatever memory the index points at: wrong values, NaN or a segfault). Each op below
whose indices depend on a user input's values gets, in the FX graph:
  - its indices made safe: negative ones wrapped where eager wraps them (advanced indexing
    `x[ids]`, `index_put`), then clamped to [0, size - 1], so the op never leaves its table;
  - a guard result: int64 [the largest out-of-bounds index (int64's minimum when none), the
    dimension's size]; all guard results are stacked into one output [guards, 2], appended
    to the graph's outputs (last), so the runtime reads them with one copy per call.
Indices that another guard already checks (the same values through views and conversions,
the same size: a decode step's per-layer cache writes) are made safe but not guarded twice.
The compiler records each guard in the signature ("guards": op, source line, message, dim) and
the runtime raises IndexError when a guard is set, then drops guard results.
Indices computed from shapes only (`arange(seq)`, upsampling's `_unsafe_index`) are in bounds by
construction and stay unguarded, and so are indices the model clamps into the table itself
(constant bounds; a static cache's row gather); index tensors that are constants are folded
before this runs.
The cost is a clamp fused into the gather and one small reduction dispatch per guarded op
(measured in docs/decisions.md); `index_checks=False` removes both.

A `select` at an index read from a tensor (`x[i.item()]`) is guarded too: it becomes an
`index_select` of one clamped row.

Not covered: `index_add` / `index_copy` decompose to `index_put`, so a negative index that eager
rejects there wraps instead (still in bounds); the `offsets` of `embedding_bag` from an input
are not checked (its indices are).

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

from kiln.artifact import NONE_OUT_OF_BOUNDS, GuardSpec
from kiln.errors import KilnCompileError

aten = torch.ops.aten

# Ops whose value does not depend on the values of their tensor inputs, only on shapes.
# Ops reading a Python number out of a tensor (`.item()`, `int(t)`).
SCALAR_READS = (aten._local_scalar_dense.default, aten.item.default)
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
    aten._embedding_bag_forward_only.default: _IndexedOp(index=1),
    aten._embedding_bag.default: _IndexedOp(index=1),
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

    def signature_entry(self, output: int, row: int) -> GuardSpec:
        """The entry of the artifact signature's "guards" list (BRIEF: op, source, message):
        row `row` of the guards' result `output`."""
        return GuardSpec(output, self.op, self.source, self.message, self.dim, row)


def op_name(target) -> str:
    """`aten.embedding` for `torch.ops.aten.embedding.default`."""
    schema = getattr(target, "_schema", None)
    return schema.name.replace("::", ".") if schema is not None else str(target)


def source_line(node: fx.Node) -> str:
    from kiln.equivalence import source_line as check_source_line

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


def _guard_indices(emit: _Emitter, indices: fx.Node, size, wraps: bool, with_result: bool = True
                   ) -> tuple[fx.Node, Optional[fx.Node]]:
    """(indices clamped into [0, size), guard result [largest out-of-bounds index, size], or
    None without `with_result`: another guard already checks the same indices).

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
    if not with_result:
        return safe, None
    bad = emit(aten.view.default, emit(aten.ne.Tensor, safe, wrapped), [-1])
    # One reduction (one IREE dispatch; a count and a max beside it were two): the largest
    # out-of-bounds index, NONE_OUT_OF_BOUNDS when there is none (an index equal to it is
    # reported one higher, so the flag stays set).
    offenders = emit(aten.where.self, bad,
                     emit(aten.clamp.default, emit(aten.view.default, given, [-1]),
                          NONE_OUT_OF_BOUNDS + 1),
                     torch.tensor(NONE_OUT_OF_BOUNDS, dtype=torch.int64))
    largest = emit(aten.view.default, _largest(emit, offenders), [1])
    if isinstance(size, int):
        size_value = torch.tensor([size], dtype=torch.int64)
    else:
        size_value = emit(aten.view.default,
                          emit(aten.scalar_tensor.default, size, dtype=torch.int64), [1])
    result = emit(aten.cat.default, [largest, size_value])
    return safe, result


# An int64 max reduction over more indices than this is done in two stages of at most
# GUARD_CHUNK values each. IREE 3.13's CUDA warp reduction takes elements of 32 bits or fewer,
# so a guard's int64 max ran on one thread: 245 us of an 8 x 512 prefill's 3.1 ms on an H100
# (60 us at 8 x 128; docs/decisions.md "Index guards: the reduction in two stages").
GUARD_CHUNK = 64


def _largest(emit: _Emitter, offenders: fx.Node) -> fx.Node:
    """The max of the 1-D int64 `offenders` (a 0-d node): directly when it is short or of a
    dynamic length, else padded with NONE_OUT_OF_BOUNDS to whole chunks of GUARD_CHUNK, the
    max of each chunk, then the max of those."""
    count = offenders.meta["val"].shape[0]
    if not isinstance(count, int) or count <= 4 * GUARD_CHUNK:
        return emit(aten.amax.default, offenders, [0])
    padding = -count % GUARD_CHUNK
    if padding:
        offenders = emit(aten.constant_pad_nd.default, offenders, [0, padding],
                         NONE_OUT_OF_BOUNDS)
    chunks = emit(aten.view.default, offenders, [-1, GUARD_CHUNK])
    return emit(aten.amax.default, emit(aten.amax.default, chunks, [1]), [0])


# Ops that keep the set of index values (reshaped, repeated, or converted to int64: a narrowing
# conversion wraps large values, so a guard of its result does not check its input): a guard of
# their input checks them too.
_SAME_VALUES = (aten.view.default, aten._unsafe_view.default, aten.reshape.default,
                aten.unsqueeze.default, aten.squeeze.dim, aten.squeeze.dims, aten.expand.default,
                aten.clone.default, aten._to_copy.default, aten.alias.default)


def _index_root(indices: fx.Node) -> fx.Node:
    """The node whose values `indices` are, through views, expands and conversions: guards of
    indices with one root and one size are one guard (a decode step's cache writes, one per
    layer, all index the slots by `cache_position`)."""
    while indices.op == "call_function" and indices.target in _SAME_VALUES and \
            isinstance(indices.args[0], fx.Node) and \
            not indices.args[0].meta["val"].is_floating_point() and \
            (indices.target is not aten._to_copy.default or
             indices.meta["val"].dtype == torch.int64):
        indices = indices.args[0]
    return indices


def _clamped_within(indices: fx.Node, size) -> bool:
    """Whether the model itself clamps `indices` (through views and int64 conversions) to
    constant bounds inside [0, size - 1] (a negative one would still need the wrap that
    advanced indexing does). Such indices never leave the table (a static cache's row gather,
    kiln.kv_cache: one per layer and per K/V) and get neither a clamp nor a guard."""
    node = _index_root(indices)
    if not isinstance(size, int) or node.op != "call_function":
        return False
    low = high = None
    if node.target is aten.clamp.default:
        low = node.args[1] if len(node.args) > 1 else node.kwargs.get("min")
        high = node.args[2] if len(node.args) > 2 else node.kwargs.get("max")
    elif node.target is aten.clamp_max.default:  # a clamp_min below it may bound it from below
        high, below = node.args[1], node.args[0]
        if isinstance(below, fx.Node) and below.target is aten.clamp_min.default:
            low = below.args[1]
    if isinstance(low, bool) or isinstance(high, bool) or \
            not isinstance(low, int) or not isinstance(high, int):
        return False
    return 0 <= low and high <= size - 1


def _guard(node: fx.Node, dim: int, wraps: bool, eager_message: str = "") -> IndexGuard:
    name = op_name(node.target)
    rule = f"{name} takes indices in [{'-size' if wraps else '0'}, size) of dimension {dim}"
    if eager_message:
        rule += f"; eager PyTorch raises IndexError: {eager_message}"
    return IndexGuard(name, source_line(node), dim, rule)


def _guard_select(graph: fx.Graph, node: fx.Node, fake_mode) -> tuple[IndexGuard, fx.Node]:
    """`x[i.item()]`: a select at an index read from a tensor becomes a guarded index_select
    of one row, then a select of that row (same result, never out of bounds)."""
    table, dim, index = node.args
    dim %= node.args[0].meta["val"].dim() if isinstance(table, fx.Node) else table.dim()
    emit = _Emitter(graph, node, fake_mode)
    as_tensor = emit(aten.view.default,
                     emit(aten.scalar_tensor.default, index, dtype=torch.int64), [1])
    safe, result = _guard_indices(emit, as_tensor, _size(emit, table, dim), wraps=True)
    row = emit(aten.select.int, emit(aten.index_select.default, table, dim, safe), dim, 0)
    guard = _guard(node, dim, wraps=True)
    node.replace_all_uses_with(row)
    graph.erase_node(node)
    return guard, result


def add_index_guards(graph: fx.Graph) -> list[IndexGuard]:
    """Guard every gather/scatter of INDEXED_OPS whose indices depend on user input values, and
    every select at an index read from a tensor (see the module docstring); returns the guards
    in the order of the outputs appended."""
    from torch._guards import detect_fake_mode

    dependent = _value_dependent_nodes(graph)
    guards: list[IndexGuard] = []
    results: list[fx.Node] = []
    checked: set = set()  # (index root, size, wraps) a guard already checks
    for node in list(graph.nodes):
        if node.op != "call_function":
            continue
        if node.target is aten.select.int and node.args[2] in dependent:
            guard, result = _guard_select(graph, node, detect_fake_mode([node.meta["val"]]))
            guards.append(guard)
            results.append(result)
            continue
        spec = INDEXED_OPS.get(node.target)
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
            size = _size(emit, table, dim)
            if _clamped_within(indices, size):
                continue
            key = (_index_root(indices), size, spec.wraps)
            safe, result = _guard_indices(emit, indices, size, spec.wraps,
                                          with_result=key not in checked)
            new_indices[dim] = safe
            if result is not None:
                checked.add(key)
                results.append(result)
                guards.append(_guard(node, dim, spec.wraps, spec.eager_message))
        if new_indices:
            args = list(node.args)
            if spec.index_list:
                args[spec.index] = [new_indices.get(d, i)
                                    for d, i in enumerate(args[spec.index])]
            else:
                args[spec.index] = next(iter(new_indices.values()))
            node.args = tuple(args)
    if results:
        # One result for all guards, [guards, 2]: the runtime reads it with one device-to-host
        # copy per call (a GPT-2 decode step read 27 results, one copy and sync each).
        output = next(n for n in graph.nodes if n.op == "output")
        emit = _Emitter(graph, output, detect_fake_mode([results[0].meta["val"]]))
        stacked = emit(aten.stack.default, results)
        outputs = output.args[0]
        outputs = tuple(outputs) if isinstance(outputs, (tuple, list)) else (outputs,)
        output.args = (outputs + (stacked,),)
    return guards


# ------------------------------------------------------------------------ data-dependent shapes


def _tensors(value: Any) -> list:
    """The tensors of a node's value (multi-output ops hold a tuple)."""
    values = value if isinstance(value, (tuple, list)) else [value]
    return [v for v in values if isinstance(v, torch.Tensor)]


def _unbacked_symbols(value: Any) -> set:
    from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols

    return {s for t in _tensors(value) for s in free_unbacked_symbols(t.shape)}


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


# Data-dependent shapes IREE compiles and runs (the plain torch-mlir → IREE path passes OpInfo's
# nonzero/argwhere samples): allowed as long as no gather or scatter reads through them. A boolean
# mask index (`x[x > 0]`: nonzero feeding a gather) ran iree-compile past 19 GB in 110 s.
COMPILABLE_DATA_DEPENDENT = (aten.nonzero.default,)


def _reads_through_data_dependent_shape(graph: fx.Graph) -> list[fx.Node]:
    """Ops other than COMPILABLE_DATA_DEPENDENT ones that take a value whose shape depends on
    tensor values."""
    found = []
    for node in graph.nodes:
        if node.op != "call_function" or node.target in COMPILABLE_DATA_DEPENDENT:
            continue
        if any(_unbacked_symbols(arg.meta.get("val")) for arg in node.all_input_nodes):
            found.append(node)
    return found


def refuse_data_dependent_shapes(program: torch.export.ExportedProgram) -> None:
    """KilnCompileError naming each op whose output shape depends on tensor values (see the
    module docstring), with its source line and the usual fix. A `nonzero` whose result is only
    returned (or only feeds ops that keep its shape element-wise) compiles and is allowed."""
    from kiln.diagnose import Issue, fix_hint, format_issues

    nodes = data_dependent_shape_nodes(program.graph)
    consumers = [n for n in _reads_through_data_dependent_shape(program.graph)
                 if n.target in INDEXED_OPS]
    nodes = [n for n in nodes if n.target not in COMPILABLE_DATA_DEPENDENT] + consumers
    if not nodes:
        return
    issues = []
    for node in nodes:
        name = op_name(node.target)
        if node.target is aten.index.Tensor and any(
                isinstance(i, fx.Node) and getattr(i.meta.get("val"), "dtype", None) is
                torch.bool for i in node.args[1]):
            name += " with a boolean mask (x[mask])"
        elif node.target in INDEXED_OPS:
            name += " reading through a data-dependent shape"
        value = node.meta.get("val")
        shaped = [t for t in _tensors(value) if _unbacked_symbols(t)]
        if shaped:
            shapes = " and ".join(f"({', '.join(str(d) for d in t.shape)})" for t in shaped)
            symbols = ", ".join(sorted(str(u) for u in _unbacked_symbols(value)))
            detail = f"output shape {shapes}: {symbols} known only at run time"
        else:
            detail = f"the value it reads ({value}) sets a tensor shape"
        # the data-dependent-shape hint, or the `.item()` one for a value read out of a tensor
        hint = fix_hint(str(node.target)) if node.target in SCALAR_READS else \
            fix_hint("nonzero")
        issues.append(Issue(name, [source_line(node)], hint, detail))
    raise KilnCompileError(format_issues("data-dependent output shapes", issues) +
                           "\nKiln compiles fixed (or bounded dynamic) shapes only: pad to a "
                           "maximum size and carry a mask instead", issues)
