"""Constants before import: freeze state into the graph, fold input-independent subgraphs, and
hand literals to the importer fast and readable.

Folding: after parameters and buffers are replaced by their tensors, every op whose arguments
hold no graph node (arange/comparison chains building causal masks, `position_ids` slices,
weight transposes and casts) is evaluated once with torch and replaced by its result, so the
artifact holds the computed tensor and Kiln's matchers see a literal. Ops that draw random
numbers are left alone, and so is a result larger than `MAX_FOLDED_ELEMENTS` that is larger than
its inputs (an `expand` of a mask to batch × heads × S × S must not bloat the artifact).
`_assert_tensor_metadata` nodes (export-time dtype assertions, no runtime meaning) are dropped.

Literals: torch-mlir's default converts each tensor through `tensor.tolist()` (minutes for a
100M-parameter model). The hook converts through numpy directly, and imports folded constants
of up to `MAX_READABLE_ELEMENTS` as `DenseElementsAttr`, whose values passes can read (a causal
mask is recognised by its values); weights stay `dense_resource` blobs.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
from torch import fx
from torch.fx.passes.shape_prop import _extract_tensor_metadata

from kiln.bindings import ir
from kiln.bindings import FxImporterHooks
from kiln.dtypes import DTYPES

MAX_FOLDED_ELEMENTS = 1 << 24
MAX_READABLE_ELEMENTS = 1 << 24
MAX_INLINE_BF16_ELEMENTS = 1 << 16
DROPPED_TARGETS = (torch.ops.aten._assert_tensor_metadata.default,)

# The literals these hooks import: real dtypes (complex constants go the importer's own way).
TORCH_TO_MLIR_DTYPE = {d.torch_dtype: d.mlir for d in DTYPES if d.kind != "complex"}


@dataclass
class FoldStats:
    folded: int = 0
    dropped: int = 0


def _contains_node(value: Any) -> bool:
    found = []
    fx.node.map_arg(value, lambda n: found.append(n) or n)
    return bool(found)


def _is_random(target) -> bool:
    tags = getattr(target, "tags", ())
    return torch.Tag.nondeterministic_seeded in tags


def _numel(value: Any) -> int:
    return value.numel() if isinstance(value, torch.Tensor) else 0


def freeze_state(graph: fx.Graph, program) -> set:
    """Replace parameter, buffer and lifted-constant placeholders by their tensors; returns the
    ids of the model's weights: parameters and persistent buffers (`state_dict`). Non-persistent
    buffers and lifted constants (causal-mask buffers, `inv_freq`, `position_ids`) are not
    weights: they import as readable constants, so a causal-mask buffer is recognised."""
    signature = program.graph_signature
    state = {**program.constants, **program.state_dict}
    names = {**signature.inputs_to_parameters, **signature.inputs_to_buffers,
             **signature.inputs_to_lifted_tensor_constants}
    for node in list(graph.nodes):
        if node.op == "placeholder" and node.name in names:
            node.replace_all_uses_with(state[names[node.name]])
            graph.erase_node(node)
    return {id(tensor) for tensor in program.state_dict.values()}


def state_keys(program) -> dict[int, str]:
    """id → `state_dict` name of each weight (the first name of a tied one); call before
    `freeze_state`. Names the entries of an external parameter archive."""
    keys: dict[int, str] = {}
    for name, tensor in program.state_dict.items():
        keys.setdefault(id(tensor), name)
    return keys


def fold_constant_subgraphs(graph: fx.Graph) -> FoldStats:
    stats = FoldStats()
    for node in list(graph.nodes):
        if node.op != "call_function":
            continue
        if node.target in DROPPED_TARGETS:
            if not node.users:
                graph.erase_node(node)
                stats.dropped += 1
            continue
        if _contains_node((node.args, node.kwargs)) or _is_random(node.target):
            continue
        if node.target is not operator.getitem and not isinstance(node.target,
                                                                  torch._ops.OpOverload):
            continue
        with torch.no_grad():
            value = node.target(*node.args, **node.kwargs)
        inputs = []
        fx.node.map_aggregate((node.args, node.kwargs),
                              lambda a: inputs.append(_numel(a)) or a)
        if _numel(value) > MAX_FOLDED_ELEMENTS and _numel(value) > max(inputs, default=0):
            continue
        node.replace_all_uses_with(value)
        graph.erase_node(node)
        stats.folded += 1
    return stats


def materialize_tensors_in_mixed_lists(graph: fx.Graph) -> None:
    """The importer takes a list argument (`cat([cls_token, x])`, the indices of
    `index.Tensor(x, [rows, cols])`) only if it is all graph values; a frozen tensor in such a
    list becomes a node of its own (an `aten.clone` of the literal). That includes lists of
    folded tensors and None: `index(x, [None, idx])` with `idx` folded (reflection padding's
    indices, `x[[1, 2]]`: "Heterogeneous lists are not supported")."""
    for node in list(graph.nodes):
        if node.op != "call_function":
            continue
        new_args = []
        changed = False
        for arg in node.args:
            if isinstance(arg, (list, tuple)) and any(isinstance(a, torch.Tensor) for a in arg):
                items = []
                for item in arg:
                    if isinstance(item, torch.Tensor):
                        with graph.inserting_before(node):
                            item_node = graph.call_function(torch.ops.aten.clone.default, (item,))
                        item_node.meta["tensor_meta"] = _extract_tensor_metadata(item)
                        item = item_node
                    items.append(item)
                arg = type(arg)(items)
                changed = True
            new_args.append(arg)
        if changed:
            node.args = tuple(new_args)


class LiteralHooks(FxImporterHooks):
    """Imports tensor literals through numpy: model state as `dense_resource` blobs, everything
    else (folded constants, masks; bool ones arrive converted to uint8) as readable dense attrs
    up to MAX_READABLE_ELEMENTS."""

    def __init__(self, state_ids: set, parameters=None, state_keys: Optional[dict] = None,
                 literal_cache: Optional[dict] = None):
        self.state_ids = state_ids
        # kiln.parameters.ExternalParameters with weights="external": blobs it wants are named
        # kiln_param_N and recorded there (keyed by `state_keys`) for the .irpa archive.
        self.parameters = parameters
        self.state_keys = state_keys or {}
        # Shared between the entry points of one artifact: a weight they share is stored once.
        self._cache: dict[int, ir.Attribute] = literal_cache if literal_cache is not None else {}
        self._keep_alive: list = []

    def resolve_literal(self, gni, literal: Any, info) -> Optional[ir.Value]:
        if not isinstance(literal, torch.Tensor) or literal.dtype not in TORCH_TO_MLIR_DTYPE:
            return None
        attr = self._cache.get(id(literal))
        if attr is None:
            attr = self._elements_attr(literal)
            self._cache[id(literal)] = attr
            self._keep_alive.append(literal)
        shape = ",".join(str(d) for d in literal.shape)
        result_type = ir.Type.parse(
            f"!torch.vtensor<[{shape}],{TORCH_TO_MLIR_DTYPE[literal.dtype]}>")
        return ir.Operation.create("torch.vtensor.literal", results=[result_type],
                                   attributes={"value": attr}).result

    def _elements_attr(self, tensor: torch.Tensor) -> ir.Attribute:
        # IREE 3.13 miscompiles small bf16 `dense_resource` constants it inlines into
        # dispatches ("'arith.constant' op failed to verify that all of {value, result} have
        # same type"); as plain dense attrs they compile. Biases and norm weights are small.
        readable = id(tensor) not in self.state_ids or tensor.numel() == 1 or (
            tensor.dtype == torch.bfloat16 and tensor.numel() <= MAX_INLINE_BF16_ELEMENTS)
        key = self.state_keys.get(id(tensor))
        tensor = tensor.detach().contiguous().cpu()
        element = ir.Type.parse(TORCH_TO_MLIR_DTYPE[tensor.dtype])
        tensor_type = ir.RankedTensorType.get(list(tensor.shape), element)
        raw = (tensor.view(torch.int16) if tensor.dtype == torch.bfloat16 else tensor).numpy()
        raw = np.ascontiguousarray(raw)
        self._keep_alive.append(raw)
        if readable and tensor.numel() <= MAX_READABLE_ELEMENTS:
            return ir.DenseElementsAttr.get(raw, type=tensor_type)
        if self.parameters is not None and self.parameters.wants(raw):
            attr = ir.DenseResourceElementsAttr.get_from_buffer(
                raw, self.parameters.next_resource_name(), tensor_type)
            self.parameters.register(attr, raw, key)
            return attr
        name = f"kiln_tensor_{'x'.join(str(d) for d in tensor.shape)}_{tensor.dtype}"
        return ir.DenseResourceElementsAttr.get_from_buffer(raw, name, tensor_type)
