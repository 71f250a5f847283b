"""External weights: model state in an IREE parameter archive (`.irpa`) beside the `.vmfb`.

With `weights="external"` the IR handed to IREE carries no weight bytes. The route:

1. Import (kiln.fx_constants.LiteralHooks): each tensor that would be a `dense_resource` blob
   (model state, or a folded constant too large to stay readable) of at least
   `MIN_EXTERNAL_BYTES` becomes a blob named `kiln_param_N`, and is recorded here with its
   archive key (the `state_dict` name; `kiln_const_N` for folded constants). The blob holds the
   real bytes, so Kiln's passes and any folder that reads it compute correct values; distinct
   resource names keep distinct weights apart through canonicalize/cse (tied weights are one
   tensor, hence one name).
2. Serialize (`externalize`): every `torch.vtensor.literal(dense_resource<kiln_param_N>)` still
   in the module gets a data-free splat value and a `kiln.parameter` marker, so printing the
   module writes no blob for it; the printed text is then rewritten line by line:

       %5 = torch.vtensor.literal(dense<0.0> : tensor<768x768xf32>) {kiln.parameter = "kiln_param_3"} : !torch.vtensor<[768,768],f32>
   →   %kiln_load_0 = util.global.load @kiln_param_3 : tensor<768x768xf32>
       %5 = torch_c.from_builtin_tensor %kiln_load_0 : tensor<768x768xf32> -> !torch.vtensor<[768,768],f32>

   plus one `util.global private @kiln_param_3 = #stream.parameter.named<"model"::"key">` per
   parameter at module level. torch-mlir's context knows neither `util` nor `stream`, so these
   ops exist only as text (see docs/decisions.md for the routes measured).
3. The function's `iree.reflection` gets `kiln.parameters` (`kiln.archive.record`: scope, and
   each parameter's key, shape, dtype, byte length and sha256, plus a digest over them all),
   which tells `kiln.load` that the artifact needs an archive and lets it check that the
   archive it finds is the one compiled with (`kiln.archive.verify`).

Bool tensors stay inline (IREE stores i1 tensors in its own layout); so does anything a pass
turned into a literal of another type.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from kiln import archive
from kiln.bindings import ir
from kiln.dtypes import MLIR_TO_NUMPY
from kiln.errors import KilnCompileError
from kiln.ir_text import mlir_string
from kiln.artifact import PARAMETER_SCOPE as SCOPE
from kiln.artifact import PARAMETERS_KEY

MIN_EXTERNAL_BYTES = 1024
WEIGHTS_MODES = ("inline", "external")
RESOURCE_PREFIX = "kiln_param_"
MARKER = "kiln.parameter"

_LITERAL_LINE = re.compile(
    r'^(?P<indent>[ ]*)(?P<ssa>%[^ ]+) = torch\.vtensor\.literal\(dense<[^>]*> : tensor<[^>]*>\) '
    r'\{kiln\.parameter = "(?P<name>\w+)"\} : (?P<vtype>!torch\.vtensor<[^>]*>)$', re.M)


@dataclass
class Parameter:
    key: str  # archive key
    array: np.ndarray  # the bytes to store (bf16 as an int16 view), C-contiguous
    tensor_type: str  # builtin tensor type as the literal carries it, e.g. tensor<4xsi64>

    @property
    def dtype(self) -> str:
        """Element type as the signature names it: float32, bfloat16, int64, ..."""
        return MLIR_TO_NUMPY[re.search(r"[<x]([a-z]+\d+)>$", self.tensor_type)[1]]

    @property
    def builtin_type(self) -> str:
        """The type IREE sees behind torch_c.from_builtin_tensor: signless integers."""
        return re.sub(r"x[su]i(\d+)>$", r"xi\1>", re.sub(r"<[su]i(\d+)>$", r"<i\1>",
                                                        self.tensor_type))


@dataclass
class ExternalParameters:
    """Collects the tensors that go to the archive (filled during import)."""

    min_bytes: int = MIN_EXTERNAL_BYTES
    scope: str = SCOPE
    by_resource: dict[str, Parameter] = field(default_factory=dict)
    _folded: int = 0

    def wants(self, array: np.ndarray) -> bool:
        return array.nbytes >= self.min_bytes and array.dtype != np.bool_

    def next_resource_name(self) -> str:
        return f"{RESOURCE_PREFIX}{len(self.by_resource)}"

    def register(self, attr: ir.Attribute, array: np.ndarray, key: Optional[str]) -> None:
        """Record the blob `attr` (just created from `array`) under archive key `key`."""
        name = _resource_name(attr)
        if key is None:
            key = f"kiln_const_{self._folded}"
            self._folded += 1
        self.by_resource[name] = Parameter(key, array, str(attr.type))


def _resource_name(attr: ir.Attribute) -> Optional[str]:
    """`name` of a `dense_resource<name>` attribute, else None (cheap: prints no data)."""
    try:
        ir.DenseElementsAttr(attr)
        return None  # readable dense data; printing it could be large
    except (TypeError, ValueError):
        pass
    text = str(attr)
    if not text.startswith("dense_resource<"):
        return None
    return text[len("dense_resource<"):text.index(">")]


def _walk(op: ir.Operation):
    for region in op.regions:
        for block in region.blocks:
            for inner in block.operations:
                yield inner.operation
                yield from _walk(inner.operation)


def _zero_splat(tensor_type: ir.RankedTensorType) -> ir.Attribute:
    element = tensor_type.element_type
    if isinstance(element, ir.IntegerType):
        zero = ir.IntegerAttr.get(element, 0)
    else:
        zero = ir.FloatAttr.get(element, 0.0)
    return ir.DenseElementsAttr.get_splat(tensor_type, zero)


def externalize(module: ir.Module, parameters: ExternalParameters,
                record: bool = True) -> tuple[str, dict]:
    """Print `module` for IREE with the collected parameters as `util.global`s backed by
    `#stream.parameter.named`; returns (ir_text, {key: array} of the parameters it uses).
    `record`: entry points carry the archive's record (`kiln.parameters`), which makes
    kiln.load require the archive; False for inline weights (handed to iree-compile as bytecode).

    Mutates the module (literal values become data-free splats): print it last."""
    used: dict[str, Parameter] = {}
    marked = 0
    funcs = []
    with module.context, ir.Location.unknown():
        for op in _walk(module.operation):
            if op.name == "func.func":
                funcs.append(op)
            if op.name != "torch.vtensor.literal":
                continue
            try:
                attr = op.attributes["value"]
            except TypeError:  # the bindings cannot hand over complex dense values: not ours
                continue
            name = _resource_name(attr)
            parameter = parameters.by_resource.get(name) if name else None
            if parameter is None or str(attr.type) != parameter.tensor_type:
                continue  # not ours, or a pass gave it another type: stays inline
            op.attributes["value"] = _zero_splat(ir.RankedTensorType(attr.type))
            op.attributes[MARKER] = ir.StringAttr.get(name)
            used[name] = parameter
            marked += 1
        # Registration (import) order: the record's and the globals' order.
        names = [name for name in parameters.by_resource if name in used]
        if used and record:
            info = archive.record(parameters.scope,
                                  [(used[n].key, used[n].array, used[n].dtype) for n in names])
            for func in funcs:
                if "sym_visibility" in func.attributes:  # private: kernel declarations
                    continue
                entries = {}
                if "iree.reflection" in func.attributes:
                    entries = {named.name: named.attr
                               for named in ir.DictAttr(func.attributes["iree.reflection"])}
                entries[PARAMETERS_KEY] = ir.StringAttr.get(json.dumps(info))
                func.attributes["iree.reflection"] = ir.DictAttr.get(entries)
    text = module.operation.get_asm(large_elements_limit=None, enable_debug_info=False)
    if not used:
        return text, {}

    counter = iter(range(marked))

    def load(match: re.Match) -> str:
        parameter = used[match["name"]]
        value = f"%kiln_load_{next(counter)}"
        indent, builtin = match["indent"], parameter.builtin_type
        return (f"{indent}{value} = util.global.load @{match['name']} : {builtin}\n"
                f"{indent}{match['ssa']} = torch_c.from_builtin_tensor {value} : {builtin} -> "
                f"{match['vtype']}")

    text, replaced = _LITERAL_LINE.subn(load, text)
    if replaced != marked or f"{{{MARKER} = " in text:
        raise KilnCompileError(f"internal error: externalized {replaced} of {marked} weight "
                               f"literals; the printed IR has an unexpected form")
    globals_text = "".join(
        f"  util.global private @{name} = #stream.parameter.named<"
        f"{mlir_string(parameters.scope)}::{mlir_string(used[name].key)}> : "
        f"{used[name].builtin_type}\n" for name in names)
    first_line = text.index("\n") + 1
    text = text[:first_line] + globals_text + text[first_line:]
    return text, {used[name].key: used[name].array for name in names}
