"""Count the dispatches IREE forms for a compiled model (a proxy for kernel launches).

IREE groups the program into dispatch regions; each `flow.dispatch` in the `flow` phase is one
kernel launch per call. Kiln's fusion work is judged by this number per transformer layer:
compile the same architecture with 1 and 2 layers and take the difference.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kiln.bindings import iree_compile_tool
from kiln.pipelines import RAISE_PASSES
from kiln.targets import CompileTarget, iree_flags

# Compile options of the dispatch table (docs/fusion.md, tests/test_fusion.py, bench/dispatches.py):
# "off" leaves every raising pass of the pipeline out (the list comes from the pipeline, so a new
# pass cannot escape it); "on-fused": all passes on, kiln.attention lowered to IREE's fused
# attention instead of the CPU default (decomposed), to separate the attention lowering from the
# other rewrites.
RAISING_CONFIGS = {
    "off": {"raise_attention": False, "raise_linear": False,
            "disable_passes": list(RAISE_PASSES)},
    "on": {},
    "on-fused": {"attention": "fused"},
}
TARGET_PER_LAYER = 8  # the goal in docs/fusion.md; not reached yet

_DISPATCH = re.compile(r"flow\.dispatch @[\w$]+::@([\w$]+)")


@dataclass(frozen=True)
class DispatchCount:
    count: int
    names: tuple[str, ...]  # IREE's dispatch names: matmul_like_16x192x64_f32, softmax_…


def flow_ir(iree_input: str, target="cpu") -> str:
    """IREE's flow-level IR of Kiln's `iree-input` IR for `target` (`iree-compile
    --compile-to=flow`): the dispatches as IREE formed them, their bodies included."""
    with tempfile.TemporaryDirectory(prefix="kiln-dispatches-") as tmp:
        source = Path(tmp) / "input.mlir"
        source.write_text(iree_input)
        result = subprocess.run(
            [iree_compile_tool(), str(source), "--compile-to=flow",
             *iree_flags(CompileTarget.resolve(target))], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"iree-compile --compile-to=flow failed:\n{result.stderr[-2000:]}")
    return result.stdout


def count_dispatches(iree_input: str, target="cpu", function: str | None = None
                     ) -> DispatchCount:
    """Dispatches in Kiln's `iree-input` IR for `target`, by `iree-compile --compile-to=flow`;
    with `function`, those of that public function only (e.g. a generator's "decode")."""
    flow = flow_ir(iree_input, target)
    text = flow if function is None else _function_body(flow, function)
    names = tuple(re.sub(r"^\w+\$async_dispatch_\d+_", "", m)
                  for m in _DISPATCH.findall(text))
    return DispatchCount(len(names), names)


_DISPATCH_FUNCTION = re.compile(r"^      func\.func @(\S+?)\((.*?)^      }", re.M | re.S)
_PARTIAL_LOAD = re.compile(
    r"(%\w+) = iree_tensor_ext\.dispatch\.tensor\.load %\w+, offsets = \[([^\]]*)\], "
    r"sizes = \[([^\]]*)\], strides = \[[^\]]*\] : "
    r"!iree_tensor_ext\.dispatch\.tensor<readonly:tensor<([\dx]+)x\w+>>")


def gathers_from_strided_loads(flow: str) -> list[str]:
    """Dispatches of IREE's flow IR in which a gather (a `tensor.extract` at an index read from
    data) reads a tensor loaded as a part of its binding (offsets not all 0, or fewer
    elements than the binding): the form IREE 3.13's CUDA code got wrong (rows after the
    first read from the wrong place; docs/decisions.md "CUDA generators of more than one
    row")."""
    found = []
    for match in _DISPATCH_FUNCTION.finditer(flow):
        name, body = match.group(1), match.group(2)
        for load in _PARTIAL_LOAD.finditer(body):
            value, offsets, sizes, shape = load.groups()
            whole = [int(d) for d in shape.split("x")]
            if any(o.strip() != "0" for o in offsets.split(",")) or \
                    [s.strip() for s in sizes.split(",")] != [str(d) for d in whole]:
                if _gathers(body, value):
                    found.append(name)
                    break
    return found


def _gathers(body: str, value: str) -> bool:
    """Whether `body` extracts from `value` at an index read from data (an `index_cast` of a
    loaded integer). Indices computed from the loop's own (`linalg.index`, affine arithmetic:
    RoPE's flip) are not gathers: IREE loads those as it loads any slice, and on an H100 they
    were right from strided loads too."""
    casts = set(re.findall(r"(%\w+) = arith\.index_cast %\w+ : i\d+ to index", body))
    for indices in re.findall(rf"tensor\.extract {re.escape(value)}\[([^\]]*)\]", body):
        if any(index.strip() in casts for index in indices.split(",")):
            return True
    return False


def _function_body(flow: str, function: str) -> str:
    """The text of public function `function` in IREE's flow output (its `$async` form, which
    holds the dispatches, where IREE made one)."""
    for name in (f"{function}$async", function):
        start = re.search(rf"^  util\.func public @{re.escape(name)}\(.*$", flow, re.M)
        if start is not None:
            end = flow.find("\n  }", start.end())
            return flow[start.start():end if end >= 0 else len(flow)]
    raise ValueError(f"no public function @{function} in IREE's flow output")


def dispatches_per_layer(build_model, example_args, target="cpu", **options) -> int:
    """Dispatches one extra layer adds: `build_model(layers)` for 1 and 2 layers."""
    import kiln

    counts = []
    for layers in (1, 2):
        text = kiln.compile_to_vmfb(build_model(layers), example_args, target=target,
                                    compile_to="iree-input", **options)
        counts.append(count_dispatches(text, target).count)
    return counts[1] - counts[0]
