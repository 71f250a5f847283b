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


def count_dispatches(iree_input: str, target="cpu", function: str | None = None
                     ) -> DispatchCount:
    """Dispatches in Kiln's `iree-input` IR for `target`, by `iree-compile --compile-to=flow`;
    with `function`, those of that public function only (e.g. a generator's "decode")."""
    with tempfile.TemporaryDirectory(prefix="kiln-dispatches-") as tmp:
        source = Path(tmp) / "input.mlir"
        source.write_text(iree_input)
        result = subprocess.run(
            [iree_compile_tool(), str(source), "--compile-to=flow",
             *iree_flags(CompileTarget.resolve(target))], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"iree-compile --compile-to=flow failed:\n{result.stderr[-2000:]}")
    text = result.stdout if function is None else _function_body(result.stdout, function)
    names = tuple(re.sub(r"^\w+\$async_dispatch_\d+_", "", m)
                  for m in _DISPATCH.findall(text))
    return DispatchCount(len(names), names)


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
