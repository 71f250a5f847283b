"""The model's own output structure and its in-place input updates, across the artifact.

An IREE function returns a flat list of tensors; a PyTorch model returns a tensor, a tuple, a
list, a dict, a named tuple (`torch.max(x, 1)` → `torch.return_types.max`), Python numbers and
None, and may update its inputs in place (`cache.copy_(...)`, `x.add_(1)`). torch.export
functionalizes the updates into extra results that come first ("USER_INPUT_MUTATION").

At compile time (`normalize_results`, `output_tree`, `mutated_inputs`):
  - results that are constants (None, an int shape, a float literal) leave the function (IREE
    cannot return a bare `torch.constant.int`) and are kept in the tree as constants;
  - Python-number results computed by the model (`x.sum().item()`) return as 0-d tensors, read
    back as Python numbers;
  - the signature (kiln.compiler._signature) gets "output_tree" and "mutated_inputs".
At run time (`build_tree`, used by kiln.runtime; no torch or MLIR needed) the tree is rebuilt
over the converted results; the runtime copies mutation results into the caller's inputs.

Tree format (JSON), leaves referring to result indices of the function ("outputs"):
  {"output": k}                        a tensor result
  {"output": k, "scalar": "int"}       a Python int / float / bool (a 0-d tensor result)
  {"constant": v}                      None, a number or a string fixed at compile time
  {"tuple": [...]}, {"list": [...]}    sequences
  {"dict": [[key, node], ...]}         dicts (OrderedDict too), keys as given
  {"namedtuple": "module.Name", "fields": [...], "items": [...]}  named tuples and torch's
                                       return types (rebuilt as a plain tuple where the class
                                       cannot be imported)
A structure with other node types (e.g. transformers' ModelOutput) gets no tree: the runtime
returns its tensors as a flat tuple, as before.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Optional

# Ops IREE 3.13 may compute in the buffer of their operand (torch-mlir lowers them to in-place
# tm_tensor / linalg_ext ops); when that operand is, or is derived from, an input the runtime
# imported without a copy, the caller's tensor was overwritten (sort, topk, scatter*,
# index_put and the index_copy/index_add/index_fill it decomposes to; tests/conformance).
WRITES_OPERAND_OPS = ("torch.aten.sort", "torch.aten.topk", "torch.aten.scatter",
                      "torch.aten.index_put", "torch.aten._index_put_impl",
                      "torch.aten.kthvalue")

# torch-mlir scalar result types → (the tree's scalar name, the 0-d tensor element type)
_SCALAR_TYPES = {"!torch.int": ("int", "si64"), "!torch.float": ("float", "f64"),
                 "!torch.bool": ("bool", "i1")}
_CONSTANT_TYPES = (type(None), bool, int, float, str)


class _NoTree(Exception):
    """The output structure has a node the tree format does not describe."""


def user_output_leaves(program) -> list[dict]:
    """Per USER_OUTPUT spec of the exported program: the leaf it becomes, result indices not
    yet assigned ({"constant": v} or {"kind": "tensor" | "scalar"})."""
    leaves = []
    for spec in program.graph_signature.output_specs:
        if spec.kind.name != "USER_OUTPUT":
            continue
        arg = spec.arg
        if type(arg).__name__ == "ConstantArgument":
            leaves.append({"constant": arg.value})
        elif type(arg).__name__ in ("SymIntArgument", "SymFloatArgument", "SymBoolArgument"):
            leaves.append({"kind": "scalar"})
        else:
            leaves.append({"kind": "tensor"})
    return leaves


def normalize_results(module, func, program) -> tuple[list[Optional[int]], list[Optional[str]]]:
    """Rewrite `func`'s results: constant user outputs removed, scalar ones returned as 0-d
    tensors. Returns, per original result, its new index (None: removed) and its scalar kind
    ("int", "float", "bool"; None for tensors)."""
    from kiln.bindings import ir

    function_type = ir.FunctionType(ir.TypeAttr(func.attributes["function_type"]).value)
    block = func.regions[0].blocks[0]
    terminator = None
    for op in block.operations:
        terminator = op
    results = list(terminator.operands)
    # result index of each USER_OUTPUT spec (mutation results come first, in spec order)
    kinds = [spec.kind.name for spec in program.graph_signature.output_specs]
    user_leaves = iter(user_output_leaves(program))
    new_index: list[Optional[int]] = []
    scalar: list[Optional[str]] = []
    operands, types = [], []
    with module.context, ir.Location.unknown():
        for value, kind, result_type in zip(results, kinds, function_type.results):
            leaf = next(user_leaves) if kind == "USER_OUTPUT" else {"kind": "tensor"}
            text = str(result_type)
            if "constant" in leaf or text == "!torch.none":
                new_index.append(None)
                scalar.append(None)
                continue
            if text in _SCALAR_TYPES:
                name, element = _SCALAR_TYPES[text]
                tensor_type = ir.Type.parse(f"!torch.vtensor<[],{element}>")
                with ir.InsertionPoint(terminator):
                    value = ir.Operation.create("torch.prim.NumToTensor.Scalar",
                                                results=[tensor_type], operands=[value]).result
                result_type = tensor_type
                scalar.append(name)
            else:
                scalar.append(None)
            new_index.append(len(operands))
            operands.append(value)
            types.append(result_type)
        # Results past the exported program's outputs are index guards (kiln.guards): kept,
        # last, in order.
        for value, result_type in list(zip(results, function_type.results))[len(kinds):]:
            operands.append(value)
            types.append(result_type)
        if len(operands) != len(results) or any(scalar):
            with ir.InsertionPoint(terminator):
                ir.Operation.create(terminator.name, operands=operands)
            terminator.erase()
            func.attributes["function_type"] = ir.TypeAttr.get(
                ir.FunctionType.get(list(function_type.inputs), types))
    return new_index, scalar


def written_inputs(func) -> list[int]:
    """Indices of the function's inputs that reach the first operand of an op of
    WRITES_OPERAND_OPS (through any chain of ops: conservative); the runtime passes the
    artifact a copy of those."""
    from kiln.bindings import ir

    written = []
    block = func.regions[0].blocks[0]
    for index, argument in enumerate(block.arguments):
        seen, frontier = set(), [argument]
        while frontier and index not in written:
            value = frontier.pop()
            for use in value.uses:
                op = use.owner
                if isinstance(op, ir.OpView):  # (an OpView's .name may be an attribute)
                    op = op.operation
                if op.name.startswith(WRITES_OPERAND_OPS) and use.operand_number == 0:
                    written.append(index)  # the operand computed in place (not indices)
                    break
                if op in seen:
                    continue
                seen.add(op)
                frontier.extend(op.results)
    return written


def mutated_inputs(program, new_index: list[Optional[int]]) -> list[dict]:
    """{"output": result index, "input": user input index} per input the model updates in
    place; buffer updates (frozen state) get "input": null and "buffer": name (dropped)."""
    user_inputs = [spec.arg.name for spec in program.graph_signature.input_specs
                   if spec.kind.name == "USER_INPUT"]
    entries = []
    for index, spec in enumerate(program.graph_signature.output_specs):
        if spec.kind.name == "USER_INPUT_MUTATION":
            entries.append({"output": new_index[index], "input": user_inputs.index(spec.target)})
        elif spec.kind.name == "BUFFER_MUTATION":
            entries.append({"output": new_index[index], "input": None, "buffer": spec.target})
    return entries


def output_tree(program, new_index: list[Optional[int]],
                scalar: list[Optional[str]]) -> Optional[dict]:
    """The model's output structure over the function's results (module docstring), or None
    where it has a node type the format does not describe."""
    kinds = [spec.kind.name for spec in program.graph_signature.output_specs]
    user = [i for i, kind in enumerate(kinds) if kind == "USER_OUTPUT"]
    leaves = []
    for result, leaf in zip(user, user_output_leaves(program)):
        if "constant" in leaf:
            if not isinstance(leaf["constant"], _CONSTANT_TYPES):
                return None
            leaves.append({"constant": leaf["constant"]})
        elif scalar[result] is not None:
            leaves.append({"output": new_index[result], "scalar": scalar[result]})
        else:
            leaves.append({"output": new_index[result]})
    spec = program.call_spec.out_spec
    if spec is None:
        return None
    it = iter(leaves)
    try:
        tree = _describe(spec, it)
    except (_NoTree, StopIteration):
        return None
    return tree if next(it, None) is None else None


def _describe(spec, leaves) -> dict:
    if spec.is_leaf():
        return next(leaves)
    children = [_describe(child, leaves) for child in spec.children()]
    node_type = spec.type
    if node_type is tuple:
        return {"tuple": children}
    if node_type is list:
        return {"list": children}
    if node_type is dict or getattr(node_type, "__name__", "") == "OrderedDict":
        keys = list(spec.context)
        if not all(isinstance(k, (str, int)) for k in keys):
            raise _NoTree
        return {"dict": [[k, c] for k, c in zip(keys, children)]}
    cls = spec.context if getattr(node_type, "__name__", "") == "namedtuple" else node_type
    if isinstance(cls, type) and issubclass(cls, tuple):
        fields = list(getattr(cls, "_fields", ()))  # none for torch.return_types
        return {"namedtuple": f"{cls.__module__}.{cls.__qualname__}", "fields": fields,
                "items": children}
    raise _NoTree


def build_tree(tree: dict, leaf: Callable[[int, Optional[str]], Any]) -> Any:
    """The model's output from `tree`, `leaf(result index, scalar kind)` giving each result."""
    if "output" in tree:
        return leaf(tree["output"], tree.get("scalar"))
    if "constant" in tree:
        return tree["constant"]
    if "tuple" in tree:
        return tuple(build_tree(t, leaf) for t in tree["tuple"])
    if "list" in tree:
        return [build_tree(t, leaf) for t in tree["list"]]
    if "dict" in tree:
        return {key: build_tree(t, leaf) for key, t in tree["dict"]}
    items = [build_tree(t, leaf) for t in tree["items"]]
    cls = _import_class(tree["namedtuple"])
    if cls is None:
        return tuple(items)
    if hasattr(cls, "_make"):
        return cls._make(items)
    return cls(items)  # torch.return_types (structseq) take one sequence


def _import_class(name: str):
    module_name, _, qualname = name.rpartition(".")
    try:
        found: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        return None
    return found if isinstance(found, type) else None


def output_leaves(value: Any) -> list:
    """The leaves of a model's output as the runtime returns it (tuples, lists, dicts and named
    tuples opened, in order), e.g. for printing or comparing every result."""
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in output_leaves(item)]
    if isinstance(value, (tuple, list)):
        return [leaf for item in value for leaf in output_leaves(item)]
    return [value]


def without_results_and_inputs(signature: dict, inputs: set, outputs: set) -> dict:
    """`signature` for a function that no longer takes the inputs `inputs` nor returns the
    results `outputs` (indices into the old lists), everything that points at results or
    inputs renumbered: guards, mutated/written inputs, the output tree (a removed leaf leaves
    its tuple, list or dict; a removed root leaves no tree). Used by kiln.device_state, whose
    state values leave a function's inputs and results."""
    new_output = {}
    for index in range(len(signature["outputs"])):
        if index not in outputs:
            new_output[index] = len(new_output)
    new_input = {}
    for index in range(len(signature["inputs"])):
        if index not in inputs:
            new_input[index] = len(new_input)
    result = dict(signature)
    result["inputs"] = [e for i, e in enumerate(signature["inputs"]) if i in new_input]
    result["outputs"] = [e for i, e in enumerate(signature["outputs"]) if i in new_output]
    if "guards" in signature:
        result["guards"] = [dict(g, output=new_output[g["output"]]) for g in signature["guards"]]
    if "mutated_inputs" in signature:
        result["mutated_inputs"] = [
            dict(m, output=new_output.get(m["output"]) if m["output"] is not None else None,
                 input=new_input.get(m["input"]) if m["input"] is not None else None)
            for m in signature["mutated_inputs"]
            if m["output"] not in outputs and m["input"] not in inputs]
    if "written_inputs" in signature:
        result["written_inputs"] = [new_input[i] for i in signature["written_inputs"]
                                    if i in new_input]
    if "output_tree" in signature:
        tree = _drop_leaves(signature["output_tree"], new_output)
        if tree is None:
            result.pop("output_tree")
        else:
            result["output_tree"] = tree
    return result


def _drop_leaves(tree: dict, new_output: dict) -> Optional[dict]:
    if "output" in tree:
        return dict(tree, output=new_output[tree["output"]]) if tree["output"] in new_output \
            else None
    if "constant" in tree:
        return tree
    for kind in ("tuple", "list", "items"):
        if kind in tree:
            kept = [t for t in (_drop_leaves(c, new_output) for c in tree[kind]) if t is not None]
            if kind == "items":  # a named tuple that lost fields is a plain tuple now
                return {"tuple": kept} if len(kept) != len(tree[kind]) else dict(tree, items=kept)
            return {kind: kept}
    kept = [[k, t] for k, t in ((k, _drop_leaves(c, new_output)) for k, c in tree["dict"])
            if t is not None]
    return {"dict": kept}
