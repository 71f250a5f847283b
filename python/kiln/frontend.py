"""Capture: torch.export → decompositions that keep what Kiln matches → torch-mlir FX import.

The decomposition table is torch.export's default (core ATen) minus the ops Kiln's raising
passes match whole: `scaled_dot_product_attention`, `linear`, `matmul` and `silu` stay intact,
so attention and linear layers arrive as one op instead of a cloud of views and `bmm`s.

Freezing: parameters, persistent buffers and lifted tensor constants become literals. Non-
persistent buffers (rotary `inv_freq`, `position_ids`, causal masks) live in
`ExportedProgram.constants`, not in `state_dict`; torch-mlir's `import_frozen_program` looks
only in `state_dict` and fails with "Could not find state mapping for buffer". Kiln freezes both
into the graph itself (kiln.fx_constants.freeze_state), folds input-independent subgraphs, and
gives the importer a view of the program whose state holds both.
"""

from __future__ import annotations

import contextlib
import io
import sys
from typing import Any, Optional, Sequence

import torch

from kiln.bindings import FxImporter, ir, torch_mlir_decompositions
from kiln.dialects import make_context
from kiln.diagnose import export_issues
from kiln.errors import KilnImportError, unsupported_export_error
from kiln.fx_constants import (LiteralHooks, fold_constant_subgraphs, freeze_state,
                                materialize_tensors_in_mixed_lists, state_keys)
from kiln.guards import add_index_guards

# Ops Kiln's raising passes want to see whole (see the module docstring).
PRESERVED_OPS = (
    torch.ops.aten.scaled_dot_product_attention.default,
    torch.ops.aten.linear.default,
    torch.ops.aten.matmul.default,
    torch.ops.aten.silu.default,
)


def _batch_norm_inference(input, weight, bias, running_mean, running_var, momentum, eps):
    """Eval-mode BatchNorm as arithmetic (torch-mlir has no op for
    `_native_batch_norm_legit_no_training`, and torch's own decomposition goes through the
    training variant, which export rejects as non-functional). Weight-only parts fold later."""
    shape = [1, -1] + [1] * (input.dim() - 2)
    out = (input - running_mean.view(shape)) * torch.rsqrt(running_var + eps).view(shape)
    if weight is not None:
        out = out * weight.view(shape)
    if bias is not None:
        out = out + bias.view(shape)
    empty = input.new_zeros((0,))
    return out, empty, empty


# Core ATen ops torch-mlir has no torch-dialect op for (they would import as `torch.operator`,
# which IREE rejects), with the decomposition Kiln uses instead.
def _squeeze_dims(x: torch.Tensor, dims) -> torch.Tensor:
    """aten.squeeze.dims (what `unbind` after a permute leaves, e.g. `q, k, v = qkv.unbind(0)`)
    as `select(dim, 0)` per size-1 axis, last axis first so the others keep their positions
    (squeeze.dim itself decomposes back into squeeze.dims)."""
    for dim in sorted({d % x.dim() for d in dims} if x.dim() else set(), reverse=True):
        if x.shape[dim] == 1:
            x = torch.ops.aten.select.int(x, dim, 0)
    return x


def _addmm_of_integers(bias, a, b, *, beta=1, alpha=1):
    """aten.addmm of integer tensors as mm, scale and add (torch-mlir lowers addmm only for
    floats: "failed to legalize operation 'torch.constant.int'"); float addmm stays whole for
    kiln-raise-linear (NotImplemented keeps the op)."""
    if a.dtype.is_floating_point or a.dtype.is_complex:
        return NotImplemented
    product = torch.ops.aten.mm.default(a, b)
    if alpha != 1:
        product = product * alpha
    return product + (bias * beta if beta != 1 else bias)


def _sort_of_booleans(self, dim=-1, descending=False, *, stable=None):
    """aten.sort of booleans as a sort of unique int64 keys (flag · n + position): IREE 3.13
    sorts i1 tensors wrongly (values out of place, through Kiln and the plain path alike) and
    its sort is not stable, while PyTorch's CPU sort keeps ties in order (the indices of
    booleans are almost all ties)."""
    if self.dtype != torch.bool or self.dim() == 0:
        return NotImplemented
    axis = dim % self.dim()
    n = self.shape[axis]
    position = torch.arange(n, dtype=torch.int64).view(
        [-1 if i == axis else 1 for i in range(self.dim())])
    flag = self.to(torch.int64)
    key = (1 - flag if descending else flag) * n + position
    # sort.default: torch-mlir has no op for sort.stable (it would import as torch.operator)
    sorted_key, _ = torch.ops.aten.sort.default(key, axis, False)
    indices = torch.remainder(sorted_key, n)
    return torch.gather(self, axis, indices), indices


def _scatter_add_of_booleans(self, dim, index, src):
    """aten.scatter_add of booleans (a logical or) through int32: in i1 arithmetic
    True + True wrapped to False, through Kiln and the plain path alike."""
    if self.dtype != torch.bool:
        return NotImplemented
    total = torch.ops.aten.scatter_add.default(self.to(torch.int32), dim, index,
                                               src.to(torch.int32))
    return total != 0


def _to_copy_involving_complex(x, **kwargs):
    """aten._to_copy to or from a complex dtype, decomposed as torch-mlir's table does (IREE
    3.13 crashes in torch-mlir's DecomposeComplexOps on a whole `_to_copy` to complex); other
    casts stay whole for Kiln's raising (KEPT_WHOLE)."""
    dtype = kwargs.get("dtype")
    if not (x.dtype.is_complex or (dtype is not None and dtype.is_complex)):
        return NotImplemented
    return torch_mlir_decompositions()[torch.ops.aten._to_copy.default](x, **kwargs)


def _logcumsumexp_shifted(self, dim):
    """aten.logcumsumexp, two ways selected per element: torch-mlir lowers it as
    log(cumsum(exp(x))), which overflows to inf once a prefix sum passes the dtype's range (x >
    88 in float32, 709 in float64: both paths returned inf for 10000, docs/conformance.md);
    shifted by the row's maximum M it cannot overflow, but a prefix more than that far below M
    underflows to -inf. The plain form where it is finite, else the shifted one: wrong only
    where a prefix's own maximum is both above that range and that far below M."""
    if not self.dtype.is_floating_point or self.dim() == 0:
        return NotImplemented
    axis = dim % self.dim()
    plain = torch.log(torch.cumsum(torch.exp(self), axis))
    shift = self.amax(axis, keepdim=True)
    # an infinite maximum (all -inf, or +inf) shifts by 0 (aten.isfinite does not lower)
    shift = torch.where(shift.abs() < float("inf"), shift, torch.zeros_like(shift))
    shifted = shift + torch.log(torch.cumsum(torch.exp(self - shift), axis))
    return torch.where(plain < float("inf"), plain, shifted)


def _embedding_bag_with_weights(weight, indices, offsets, scale_grad_by_freq=False, mode=0,
                                sparse=False, per_sample_weights=None,
                                include_last_offset=False, padding_idx=-1):
    """aten._embedding_bag(_forward_only) with `per_sample_weights` (mode "sum") as a gather,
    a product and an index_add into the bags: torch-mlir's lowering dropped the weights (every
    value wrong, Kiln and the plain path alike, docs/conformance.md). Other modes keep
    torch-mlir's lowering. Returns (output, offset2bag, bag_size, max_indices) like the op;
    callers (F.embedding_bag) read only the output."""
    if per_sample_weights is None or mode != 0 or indices.dim() != 1:
        return NotImplemented
    count = indices.shape[0]
    bags = offsets.shape[0] - 1 if include_last_offset else offsets.shape[0]
    starts = offsets[:bags]
    positions = torch.arange(count, dtype=offsets.dtype)
    bag_of = (positions[:, None] >= starts[None, :]).to(torch.int64).sum(1) - 1
    scale = per_sample_weights
    if padding_idx is not None and padding_idx >= 0:
        scale = torch.where(indices == padding_idx, torch.zeros_like(scale), scale)
    rows = weight.index_select(0, indices) * scale[:, None].to(weight.dtype)
    output = torch.zeros((bags, weight.shape[1]), dtype=weight.dtype).index_add(0, bag_of, rows)
    bag_size = torch.zeros(bags, dtype=torch.int64).index_add(
        0, bag_of, torch.ones(count, dtype=torch.int64))
    return output, bag_of, bag_size, torch.zeros(bags, dtype=torch.int64)


DECOMPOSITIONS = {
    torch.ops.aten._embedding_bag_forward_only.default: _embedding_bag_with_weights,
    torch.ops.aten._embedding_bag.default: _embedding_bag_with_weights,
    torch.ops.aten.logcumsumexp.default: _logcumsumexp_shifted,
    torch.ops.aten._to_copy.default: _to_copy_involving_complex,
    torch.ops.aten.scatter_add.default: _scatter_add_of_booleans,
    torch.ops.aten.sort.default: _sort_of_booleans,
    torch.ops.aten.sort.stable: _sort_of_booleans,
    torch.ops.aten._native_batch_norm_legit_no_training.default: _batch_norm_inference,
    torch.ops.aten.squeeze.dims: _squeeze_dims,
    torch.ops.aten.addmm.default: _addmm_of_integers,
}

# Ops torch-mlir's decomposition table (what the plain torch-mlir → IREE user gets) decomposes
# and Kiln keeps whole: its raising passes match them (kiln-raise-norms, kiln-drop-identities,
# kiln-raise-attention's casts).
KEPT_WHOLE = (
    torch.ops.aten.native_layer_norm.default,
    torch.ops.aten._to_copy.default,
)


def decomposition_table() -> dict:
    """torch-mlir's own table (core ATen with the decompositions its lowering needs, minus
    those it lowers better whole), minus the ops Kiln matches whole, plus Kiln's own.

    Kiln used torch.export's default table before; ops torch-mlir's table handles but that
    one does not (grid_sampler_2d, batch-norm variants, group norm, slogdet, empty_like, ...)
    failed to import or compile through Kiln while the plain path ran them
    (docs/conformance.md)."""
    table = dict(torch_mlir_decompositions())
    for op in PRESERVED_OPS + KEPT_WHOLE:
        table.pop(op, None)
    table.update(DECOMPOSITIONS)
    return table


class _ProgramWithAllState:
    """An ExportedProgram whose `state_dict` also holds non-persistent buffers (`constants`)."""

    def __init__(self, program: torch.export.ExportedProgram):
        self._program = program
        self.state_dict = {**program.constants, **program.state_dict}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._program, name)


def _unalias(example_args: Sequence[Any]) -> tuple:
    """Example inputs with each tensor that shares memory with an earlier one replaced by a copy.

    torch.export specializes the graph to the aliasing it sees: `f(x, x)` exported for
    `x*2 + y` reads only the second input, and the artifact silently ignores the first (found
    on the CUDA runtime work, 2026-11-27). Callers pass independent tensors at run time."""
    from torch.utils import _pytree

    seen: set = set()

    def copy_if_seen(value):
        if not isinstance(value, torch.Tensor):
            return value
        key = (value.untyped_storage().data_ptr(), value.device) if value.numel() else None
        if key is not None and key in seen:
            return value.clone()
        if key is not None:
            seen.add(key)
        return value

    return tuple(_pytree.tree_map(copy_if_seen, tuple(example_args)))


# torch's own chatter during export: a FutureWarning per compile from its pytree pickling, and
# logging from symbolic shapes and draft_export (~20 lines, graph dumps included) printed before
# the report Kiln gives for a model export rejects. Kiln's report carries what matters.
_NOISY_LOGGERS = ("torch.fx.experimental.symbolic_shapes", "torch.export", "torch._export",
                  "torch._dynamo", "torch.export._draft_export")
_NOISY_WARNINGS = (r".*isinstance\(treespec, LeafSpec\)",)


@contextlib.contextmanager
def quiet_torch():
    """Silence torch's warnings and logging noise listed above (restored on exit)."""
    import logging
    import warnings

    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        for pattern in _NOISY_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


@contextlib.contextmanager
def stack_traces_through_helpers():
    """Non-strict torch.export records only the frames of `forward` methods in each node's
    stack trace, so an op in a helper (TinyGPT's `_run`, `forward_with_cache`) was reported at
    the outermost `forward` line. Keep every frame from the first `forward` inward (torch's
    own filter for tracers that do not ask for forward frames only), so reports and
    diagnostics name the layer's own line. Degrades to torch's behaviour if the hook moves."""
    from torch.fx import proxy

    original = getattr(proxy.TracerBase, "_filter_traceback_frames", None)
    if original is None:
        yield
        return

    def every_frame_from_forward(self, summary):
        saved = getattr(self, "_record_forward_stack_traces_only", False)
        self._record_forward_stack_traces_only = False
        try:
            return original(self, summary)
        finally:
            self._record_forward_stack_traces_only = saved

    proxy.TracerBase._filter_traceback_frames = every_frame_from_forward
    try:
        yield
    finally:
        proxy.TracerBase._filter_traceback_frames = original


def export_model(model: torch.nn.Module, example_args: Sequence[Any], *,
                 dynamic_shapes=None, strict: bool = False) -> torch.export.ExportedProgram:
    """torch.export the model in eval mode and decompose it to the ops Kiln imports."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"kiln expects a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(example_args, (tuple, list)):
        example_args = (example_args,)
    example_args = _unalias(example_args)
    # Inference compiler: dropout and batch-norm statistics take their eval behaviour; the
    # caller's module gets its training flags back.
    training = {module: module.training for module in model.modules()}
    model.eval()
    torch_output = io.StringIO()  # torch prints a failed export's partial graph to stderr
    try:
        with torch.no_grad(), quiet_torch(), stack_traces_through_helpers(), \
                contextlib.redirect_stderr(torch_output):
            program = torch.export.export(model, tuple(example_args),
                                          dynamic_shapes=dynamic_shapes, strict=strict)
    except Exception as error:  # torch raises many types; all become one clear report
        # export stops at the first problem; draft_export lists them all, with source lines.
        with quiet_torch():
            issues = export_issues(model, example_args, dynamic_shapes)
        raise unsupported_export_error(error, issues) from error
    finally:
        for module, flag in training.items():
            module.training = flag
    sys.stderr.write(torch_output.getvalue())  # a successful export's output is the user's
    with quiet_torch():
        return program.run_decompositions(decomposition_table())


def import_program(program: torch.export.ExportedProgram, *,
                   context: Optional[ir.Context] = None, func_name: str = "main",
                   fold_constants: bool = True, parameters=None,
                   literal_cache: Optional[dict] = None,
                   index_guards: Optional[list] = None) -> ir.Module:
    """FX-import an ExportedProgram into a torch-dialect module (kiln dialect loaded).

    The program's graph is modified: state is frozen into it and, with `fold_constants`,
    input-independent subgraphs are evaluated (see kiln.fx_constants). `parameters` (a
    kiln.parameters.ExternalParameters) collects the weights that go to an external archive.
    With a list as `index_guards`, gathers and scatters whose indices come from user inputs get
    bounds checks (kiln.guards): their guard results are appended to the function's results and
    their `IndexGuard` records to the list."""
    context = context or make_context()
    keys = state_keys(program) if parameters is not None else None
    state_ids = freeze_state(program.graph, program)
    if fold_constants:
        fold_constant_subgraphs(program.graph)
    if index_guards is not None:
        index_guards += add_index_guards(program.graph)
    materialize_tensors_in_mixed_lists(program.graph)
    importer = FxImporter(context=context, hooks=LiteralHooks(state_ids, parameters, keys,
                                                              literal_cache))
    try:
        importer.import_frozen_program(_ProgramWithAllState(program), func_name=func_name)
    except Exception as error:
        raise KilnImportError(f"torch-mlir could not import the exported program: {error}") \
            from error
    return importer.module


def import_model(model: torch.nn.Module, example_args: Sequence[Any], *,
                 dynamic_shapes=None, strict: bool = False,
                 context: Optional[ir.Context] = None, fold_constants: bool = True) -> ir.Module:
    """The model as a `torch`-dialect MLIR module: torch.export + torch-mlir's FX importer."""
    program = export_model(model, example_args, dynamic_shapes=dynamic_shapes, strict=strict)
    return import_program(program, context=context, fold_constants=fold_constants)
