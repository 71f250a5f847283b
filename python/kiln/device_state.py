"""Device-resident state: entry-point inputs that live on the device between calls.

`compile_entry_points(..., state=["cache_0", ...])` names inputs that every function takes and
returns updated as its last outputs (in the same order), such as the KV cache of a decoder's
`prefill` and `decode`. Such an input never crosses the host: in the text handed to IREE it
becomes a mutable `util.global`, and each function becomes

    func.func @decode(<the other inputs>) -> <the other outputs> attributes {iree.reflection}
      %s = util.global.load @kiln_state_0_cache_0        (one per state variable)
      %r = func.call @kiln_stateful_decode(<inputs, the loaded state in its place>)
      util.global.store %r#k, @kiln_state_0_cache_0      (its updated value)
      return <the other outputs>

around the imported function, renamed and made private (IREE inlines it). IREE then updates the
global in place: a `scatter` or `insert_slice` of new cache rows into the loaded value becomes a
dispatch that writes the global's buffer (a `rw` binding of the `!stream.resource<variable>`),
with no copy of the whole state per call (docs/decisions.md, "Generation").

The functions' signatures (`kiln.signature` reflection) lose the state inputs and outputs and
gain `"state": [names]`, so `kiln.load(...)` calls them with the other inputs only. Each loaded
module has its own state (one IREE context each); calls on one module update one state.

Initial values differ per variable (`i * 2**-14` for floats, `i` for integers): IREE 3.13's
`iree-util-fuse-globals` merged mutable globals with equal initial values whose in-place
stores it had elided, so all KV caches of a model shared one buffer (measured: wrong tokens
from the first step). The initial contents are never read by a decoder that masks unwritten
positions.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Sequence

from kiln.artifact import SIGNATURE_KEY, Signature
from kiln.dtypes import DTYPES
from kiln.errors import KilnCompileError
from kiln.ir_text import TYPE_BRACKETS, mlir_string, mlir_unescape, split_top_level
from kiln.outputs import without_results_and_inputs

GLOBAL_PREFIX = "kiln_state_"
IMPL_PREFIX = "kiln_stateful_"
# Element types of torch value tensors → IREE's signless builtin element types, for the real
# dtypes (`_initial_value` writes real initial values).
_BUILTIN_ELEMENT = {d.mlir: d.builtin for d in DTYPES if d.kind != "complex"}
_VTENSOR = re.compile(r"^!torch\.vtensor<\[(?P<dims>[^\]]*)\],(?P<dtype>\w+)>$")
# Distinct initial values: spacing exact in f16 and bf16 for up to 256 variables.
INITIAL_STEP = 2.0 ** -14


@dataclass(frozen=True)
class StateVariable:
    name: str  # the input's name in the exported program
    global_name: str
    torch_type: str  # !torch.vtensor<[...],dtype>
    builtin_type: str  # tensor<...xdtype>
    initial: str  # the splat literal of the initial value


def validate_state_names(state: Sequence[str]) -> tuple[str, ...]:
    names = tuple(state)
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"state: expected input names (strings), got {name!r}")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"state: input name(s) given twice: {', '.join(duplicates)}")
    return names


def bind_state(ir_text: str, state: Sequence[str]) -> str:
    """Rewrite the module text so the inputs named in `state` become device-resident globals
    (see the module docstring). Every public function with a Kiln signature must take each of
    them and return their new values as its last outputs, in `state`'s order."""
    names = validate_state_names(state)
    if not names:
        return ir_text
    headers = list(function_headers(ir_text))
    if not headers:
        raise KilnCompileError("state: the module has no function with a Kiln signature")
    variables: dict[str, StateVariable] = {}
    wrappers = []
    for header in headers:
        wrappers.append(_rewrite_function(header, names, variables))
    # Headers are replaced back to front so earlier offsets stay valid.
    for header, (impl_header, _) in sorted(zip(headers, wrappers), key=lambda p: -p[0].start):
        ir_text = ir_text[:header.start] + impl_header + ir_text[header.end:]
    globals_text = "".join(f"  util.global private mutable @{v.global_name} = {v.initial} : "
                           f"{v.builtin_type}\n" for v in variables.values())
    first_line = ir_text.index("\n") + 1
    ir_text = ir_text[:first_line] + globals_text + ir_text[first_line:]
    end = module_end(ir_text)
    return ir_text[:end] + "".join(w for _, w in wrappers) + ir_text[end:]


@dataclass
class _Header:
    start: int
    end: int
    indent: str
    name: str
    arguments: list[tuple[str, str]]  # (ssa name, type)
    results: list[str]
    attributes: str  # the text inside `attributes {...}`
    signature: Signature


_HEADER = re.compile(r"^(?P<indent>[ ]*)func\.func @(?P<name>[\w$.]+)\((?P<rest>.*) \{$", re.M)


def function_headers(text: str):
    """The public functions whose attributes carry a Kiln signature."""
    for match in _HEADER.finditer(text):
        rest = match["rest"]
        if f"{SIGNATURE_KEY} = " not in rest:
            continue
        close = _matching_paren(rest)
        arguments = [_argument(a, match["name"]) for a in split_top_level(rest[:close], TYPE_BRACKETS)]
        tail = rest[close + 1:]
        attributes = ""
        at = tail.find(" attributes {")
        if at >= 0:
            attributes = tail[at + len(" attributes {"):]
            if not attributes.endswith("}"):
                raise KilnCompileError(f"state: cannot read the attributes of @{match['name']}")
            attributes = attributes[:-1]
            tail = tail[:at]
        tail = tail.strip()
        results = []
        if tail.startswith("->"):
            result_text = tail[2:].strip()
            results = split_top_level(result_text[1:-1], TYPE_BRACKETS) if result_text.startswith("(") \
                else [result_text]
        yield _Header(match.start(), match.end(), match["indent"], match["name"], arguments,
                      results, attributes, _read_signature(attributes, match["name"]))


def _argument(text: str, function: str) -> tuple[str, str]:
    ssa, sep, type_ = text.strip().partition(": ")
    if not sep or not ssa.startswith("%") or " " in type_:
        raise KilnCompileError(f"state: cannot read argument '{text.strip()}' of @{function}")
    return ssa, type_


def _matching_paren(text: str) -> int:
    """Index of the ')' closing the argument list that `text` starts inside of."""
    depth = 0
    opening, closing = TYPE_BRACKETS
    for index, char in enumerate(text):
        if char in opening:
            depth += 1
        elif char in closing:
            if depth == 0:
                return index
            depth -= 1
    raise KilnCompileError("state: unbalanced function header")


def _read_signature(attributes: str, function: str) -> Signature:
    match = re.search(re.escape(SIGNATURE_KEY) + r' = "((?:[^"\\]|\\[0-9A-Fa-f]{2}|\\.)*)"',
                      attributes)
    if match is None:
        raise KilnCompileError(f"state: @{function} has no readable {SIGNATURE_KEY}")
    return Signature.from_json(mlir_unescape(match.group(1)))


def _builtin_type(torch_type: str, what: str) -> tuple[str, str]:
    """(builtin tensor type, element type) of a static-shaped !torch.vtensor."""
    match = _VTENSOR.match(torch_type)
    if match is None or match["dtype"] not in _BUILTIN_ELEMENT:
        raise KilnCompileError(f"state: {what} has type {torch_type}; device state must be a "
                               f"tensor of a plain numeric dtype")
    dims = [d.strip() for d in match["dims"].split(",") if d.strip()]
    if any(not d.isdigit() for d in dims):
        raise KilnCompileError(f"state: {what} has a dynamic shape ({torch_type}); device "
                               f"state needs a static shape (give the example input its full "
                               f"size and no dynamic dim)")
    element = _BUILTIN_ELEMENT[match["dtype"]]
    return "tensor<" + "".join(f"{d}x" for d in dims) + element + ">", element


def _initial_value(index: int, element: str) -> str:
    if element.startswith("f") or element == "bf16":
        if element == "bf16" and index > 256:
            raise KilnCompileError("state: more than 256 bf16 state variables (their distinct "
                                   "initial values would round to equal ones)")
        return f"dense<{float(index * INITIAL_STEP)!r}>"
    if element == "i1":
        raise KilnCompileError("state: bool tensors cannot be device state")
    return f"dense<{index}>"


def _rewrite_function(header: _Header, names: tuple[str, ...],
                      variables: dict[str, StateVariable]) -> tuple[str, str]:
    """(the header of the private implementation, the text of the public wrapper)."""
    signature = header.signature
    input_names = [entry.name for entry in signature.inputs]
    missing = [n for n in names if n not in input_names]
    if missing:
        raise KilnCompileError(f"state: function '{header.name}' has no input(s) "
                               f"{', '.join(missing)} (its inputs: {', '.join(input_names)})")
    if len(input_names) != len(header.arguments):
        raise KilnCompileError(f"state: @{header.name}'s signature lists {len(input_names)} "
                               f"inputs, its header {len(header.arguments)}")
    count = len(names)
    # Index guards (kiln.guards) are the function's very last results: the state values come
    # just before them, and the guards stay results of the wrapper.
    guards = signature.guard_results
    if len(header.results) - guards < count:
        raise KilnCompileError(f"state: function '{header.name}' returns "
                               f"{len(header.results) - guards} output(s); it must return the "
                               f"{count} state value(s) last")
    first_state_result = len(header.results) - guards - count
    state_results = range(first_state_result, first_state_result + count)
    for offset, name in enumerate(names):
        argument_type = header.arguments[input_names.index(name)][1]
        result_type = header.results[first_state_result + offset]
        if argument_type != result_type:
            raise KilnCompileError(
                f"state: function '{header.name}' takes {name} as {argument_type} but returns "
                f"{result_type} at output {first_state_result + offset}: each state value must "
                f"be returned, in the order of `state`, as the last outputs, with its type")
        builtin, element = _builtin_type(argument_type, f"input {name} of '{header.name}'")
        known = variables.get(name)
        if known is None:
            index = len(variables)
            variables[name] = StateVariable(
                name, f"{GLOBAL_PREFIX}{index}_{re.sub(r'[^A-Za-z0-9_]', '_', name)}",
                argument_type, builtin, _initial_value(index, element))
        elif known.torch_type != argument_type:
            raise KilnCompileError(f"state: {name} is {known.torch_type} in one function and "
                                   f"{argument_type} in '{header.name}'")

    indent, body = header.indent, header.indent + "  "
    impl_name = f"{IMPL_PREFIX}{header.name}"
    argument_types = [t for _, t in header.arguments]
    impl_header = (f"{indent}func.func private @{impl_name}(" +
                   ", ".join(f"{ssa}: {t}" for ssa, t in header.arguments) + ")" +
                   _results_text(header.results) + " {")

    user_inputs = [(i, t) for i, ((_, t), n) in enumerate(zip(header.arguments, input_names))
                   if n not in names]
    kept_results = [i for i in range(len(header.results)) if i not in state_results]
    user_results = [header.results[i] for i in kept_results]
    lines = []
    call_operands = []
    for index, (name, (_, torch_type)) in enumerate(zip(input_names, header.arguments)):
        if name in names:
            variable = variables[name]
            loaded = f"%kiln_state_load_{index}"
            lines.append(f"{body}{loaded} = util.global.load @{variable.global_name} : "
                         f"{variable.builtin_type}")
            lines.append(f"{body}%kiln_state_in_{index} = torch_c.from_builtin_tensor {loaded} : "
                         f"{variable.builtin_type} -> {torch_type}")
            call_operands.append(f"%kiln_state_in_{index}")
        else:
            call_operands.append(f"%kiln_in_{index}")
    results = len(header.results)
    call_result = "%kiln_call" + (f":{results}" if results > 1 else "")
    lines.append(f"{body}{call_result} = func.call @{impl_name}({', '.join(call_operands)}) : "
                 f"({', '.join(argument_types)})" + _results_text(header.results, arrow=" -> "))

    def result(i: int) -> str:
        return f"%kiln_call#{i}" if results > 1 else "%kiln_call"

    for offset, name in enumerate(names):
        variable = variables[name]
        updated = f"%kiln_state_out_{offset}"
        lines.append(f"{body}{updated} = torch_c.to_builtin_tensor "
                     f"{result(first_state_result + offset)} : {variable.torch_type} -> "
                     f"{variable.builtin_type}")
        lines.append(f"{body}util.global.store {updated}, @{variable.global_name} : "
                     f"{variable.builtin_type}")
    if user_results:
        lines.append(f"{body}return " + ", ".join(result(i) for i in kept_results) +
                     " : " + ", ".join(user_results))
    else:
        lines.append(f"{body}return")

    new_signature = dataclasses.replace(Signature.from_dict(without_results_and_inputs(
        signature.to_dict(), {i for i, n in enumerate(input_names) if n in names},
        set(state_results))), state=list(names))
    attributes = re.sub(re.escape(SIGNATURE_KEY) + r' = "((?:[^"\\]|\\[0-9A-Fa-f]{2}|\\.)*)"',
                        lambda _: f"{SIGNATURE_KEY} = {mlir_string(new_signature.to_json())}",
                        header.attributes, count=1)
    wrapper = (f"{indent}func.func @{header.name}(" +
               ", ".join(f"%kiln_in_{i}: {t}" for i, t in user_inputs) + ")" +
               _results_text(user_results) + f" attributes {{{attributes}}} {{\n" +
               "\n".join(lines) + f"\n{indent}}}\n")
    return impl_header, wrapper


def _results_text(results: list[str], arrow: str = " -> ") -> str:
    """` -> T` / ` -> (T, U)` of a function type, nothing for no results."""
    if not results:
        return ""
    if len(results) == 1:
        return arrow + results[0]
    return arrow + "(" + ", ".join(results) + ")"


def module_end(text: str) -> int:
    """Offset of the `}` closing the top-level module (before any `{-# ... #-}` resources)."""
    resources = text.find("\n{-#")
    end = text.rindex("}", 0, resources if resources >= 0 else len(text))
    return end
