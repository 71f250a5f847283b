"""The two pipelines a sample runs through, and what each outcome is called.

Outcomes: "pass"; "wrong" (a value, dtype, shape or output structure differs from eager, or a
mutated input was not updated as eager updates it); "runtime" (loading or calling failed);
"import" (Kiln's or torch-mlir's capture/import failed); "export" (torch.export itself
rejected the module: neither path can run it); "compile" (a pass pipeline or IREE failed);
"refused" (Kiln raised KilnUnsupportedError before running: a clear refusal naming the op or
input); "timeout" and "crash" (set by the driver when a worker hangs or dies).
"""

from __future__ import annotations

import time
import traceback
from dataclasses import asdict, dataclass
from typing import Any, Optional

import numpy as np
import torch
from torch.utils import _pytree

from tests.conformance.samples import Sample, eager, equal

PATHS = ("kiln", "plain")
OUTCOMES = ("pass", "wrong", "runtime", "import", "export", "compile", "refused", "timeout",
            "crash")
# The plain user's flags: llvm-cpu for this CPU, IREE's defaults otherwise.
PLAIN_IREE_FLAGS = ("--iree-hal-target-device=local",
                    "--iree-hal-local-target-device-backends=llvm-cpu",
                    "--iree-llvmcpu-target-cpu=host", "--iree-input-type=torch")


@dataclass
class Outcome:
    kind: str
    detail: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def _first_line(error: BaseException, limit: int = 300) -> str:
    text = f"{type(error).__name__}: {error}"
    lines = [line for line in text.splitlines() if line.strip()]
    # IREE's messages put the useful line after the tool's banner
    useful = [line for line in lines if "error:" in line]
    line = useful[0] if useful else lines[0] if lines else type(error).__name__
    return line.strip()[:limit]


def run_path(path: str, sample: Sample) -> Outcome:
    start = time.perf_counter()
    outcome = (run_kiln if path == "kiln" else run_plain)(sample)
    outcome.seconds = round(time.perf_counter() - start, 3)
    return outcome


# -- Kiln ----------------------------------------------------------------------------------
def run_kiln(sample: Sample) -> Outcome:
    import kiln
    from kiln.errors import KilnCompileError, KilnImportError

    unsupported = getattr(kiln.errors, "KilnUnsupportedError", ())
    want, want_inputs = eager(sample)
    try:
        vmfb = kiln.compile_to_vmfb(sample.module, sample.inputs, cache=False)
    except Exception as error:  # noqa: BLE001 - every failure is classified
        if unsupported and isinstance(error, unsupported):
            return Outcome("refused", _first_line(error))
        if isinstance(error, KilnImportError):
            kind = "export" if "torch.export could not capture" in str(error) else "import"
            return Outcome(kind, _first_line(error))
        if isinstance(error, KilnCompileError):
            return Outcome("compile", _first_line(error))
        frames = " ".join(f.filename for f in traceback.extract_tb(error.__traceback__))
        importing = any(part in frames for part in ("kiln/frontend.py", "kiln/fx_constants.py",
                                                    "torch/export", "fx_importer"))
        return Outcome("import" if importing else "compile", _first_line(error))
    args = tuple(t.clone() for t in sample.inputs)
    try:
        module = kiln.load(vmfb)
        got = module(*args)
    except Exception as error:  # noqa: BLE001
        if unsupported and isinstance(error, unsupported):
            return Outcome("refused", _first_line(error))
        return Outcome("runtime", _first_line(error))
    problem = equal(got, want, sample.compare_values)
    if problem is None:
        for index, (arg, expected) in enumerate(zip(args, want_inputs)):
            mutated = equal(arg, expected, sample.compare_values)
            if mutated is not None:
                problem = f"input #{index} after the call: {mutated}"
                break
    return Outcome("pass") if problem is None else Outcome("wrong", problem)


# -- torch.export → torch-mlir fx importer → IREE llvm-cpu --------------------------------
def run_plain(sample: Sample) -> Outcome:
    from iree import compiler as iree_compiler
    from iree import runtime as iree_runtime
    from torch_mlir import fx
    from torch_mlir.extras.fx_decomp_util import get_decomposition_table

    want, want_inputs = eager(sample)
    try:
        with torch.no_grad():
            program = torch.export.export(sample.module, sample.inputs)
    except Exception as error:  # noqa: BLE001
        return Outcome("export", _first_line(error))
    try:
        # export_and_import's own default decompositions, run here so that the signature
        # read below (mutations) is the one of the imported program
        program = program.run_decompositions(get_decomposition_table())
        module = fx.export_and_import(program, func_name="main", decomposition_table={})
    except Exception as error:  # noqa: BLE001
        return Outcome("import", _first_line(error))
    try:
        vmfb = iree_compiler.compile_str(str(module), extra_args=list(PLAIN_IREE_FLAGS))
    except Exception as error:  # noqa: BLE001
        return Outcome("compile", _first_line(error))
    try:
        loaded = iree_runtime.load_vm_flatbuffer(vmfb, driver="local-task")
        results = loaded.main(*(_to_numpy(t) for t in sample.inputs))
        results = results if isinstance(results, (tuple, list)) else (results,)
        got = [_from_iree(r) for r in results]
    except Exception as error:  # noqa: BLE001
        return Outcome("runtime", _first_line(error))
    # The plain artifact returns the mutated inputs first, then the outputs, flat.
    user_inputs = [spec.arg.name for spec in program.graph_signature.input_specs
                   if spec.kind.name == "USER_INPUT"]
    expected = [want_inputs[user_inputs.index(spec.target)]
                for spec in program.graph_signature.output_specs
                if spec.kind.name == "USER_INPUT_MUTATION"]
    expected += _pytree.tree_leaves(want)
    problem = equal(got, expected, sample.compare_values, check_structure=False)
    return Outcome("pass") if problem is None else Outcome("wrong", problem)


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    if tensor.dtype == torch.bfloat16:
        import ml_dtypes

        return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return tensor.numpy()


def _from_iree(value: Any) -> Any:
    if hasattr(value, "to_host"):
        value = value.to_host()
    if isinstance(value, np.ndarray):
        if value.dtype.name == "bfloat16":
            return torch.from_numpy(value.view(np.int16).copy()).view(torch.bfloat16)
        return torch.from_numpy(np.array(value))
    return value


def describe(outcome: Optional[Outcome]) -> str:
    return "-" if outcome is None else outcome.kind
