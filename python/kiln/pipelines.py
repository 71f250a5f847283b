"""Kiln's phases and pipelines: one commented builder per phase, each runnable by name.

    torch       the FX importer's output (torch dialect)
    kiln        after raising: attention and linear layers are kiln ops
    iree-input  after lowering for the target: torch dialect that IREE's torch input accepts
    vmfb        IREE's compiled artifact

A pipeline is a list of steps, each a Kiln pass object or an upstream/torch-mlir pass name, so it
prints as the `kiln-opt -p` text that reproduces it.
"""

from __future__ import annotations

import enum
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from kiln.bindings import ir, passmanager
from kiln.errors import KilnCompileError
from kiln.passes import KilnPass, PassError, create_pass
from kiln.report import Rewrite
from kiln.targets import CompileTarget

Step = Union[KilnPass, str]
REPRODUCER_ELEMENTS_LIMIT = 1 << 16


class Phase(enum.Enum):
    TORCH = "torch"
    KILN = "kiln"
    IREE_INPUT = "iree-input"
    VMFB = "vmfb"

    @classmethod
    def parse(cls, value: "str | Phase | None") -> "Phase":
        if value is None:
            return cls.VMFB
        if isinstance(value, Phase):
            return value
        for phase in cls:
            if phase.value == value:
                return phase
        raise ValueError(f"unknown compile_to phase {value!r}; choose one of "
                         f"{', '.join(p.value for p in cls)}")


@dataclass
class Pipeline:
    name: str
    steps: list[Step] = field(default_factory=list)

    def text(self) -> str:
        return ",".join(s.pipeline_text() if isinstance(s, KilnPass) else s for s in self.steps)

    def rewrites(self) -> list[Rewrite]:
        return [r for s in self.steps if isinstance(s, KilnPass) for r in s.rewrites]

    def run(self, module: ir.Module, *, print_ir_after_all: bool = False) -> None:
        """Run in place; on failure save the input IR and raise with a reproducer command."""
        if not self.steps:
            return
        try:
            pm = build_pass_manager(self.steps, module.context)
        except ValueError as error:
            raise KilnCompileError(f"{self.name}: invalid pipeline '{self.text()}': {error}") \
                from None
        if print_ir_after_all:
            pm.enable_ir_printing()
        # The reproducer is the IR before the pipeline: a clone, printed only on failure (printing
        # the module of a 124M-parameter model takes seconds even with its weights elided: the
        # zoo Llama's 1 GB of blobs cost 1.6 s per pipeline), large constants elided since pass
        # bugs do not depend on weight values.
        before = module.operation.clone()
        try:
            pm.run(module.operation)
        except Exception as error:
            reproducer = Path(tempfile.mkdtemp(prefix="kiln-repro-")) / f"{self.name}.mlir"
            reproducer.write_text(before.get_asm(large_elements_limit=REPRODUCER_ELEMENTS_LIMIT,
                                                 large_resource_limit=REPRODUCER_ELEMENTS_LIMIT,
                                                 enable_debug_info=True))
            raise KilnCompileError(
                f"{self.name} failed: {error}\nreproduce with:\n"
                f"  kiln-opt {reproducer} -p '{self.text()}'") from error
        finally:
            before.erase()


def build_pass_manager(steps: list[Step], context: ir.Context) -> passmanager.PassManager:
    with context:
        pm = passmanager.PassManager("builtin.module")
        for step in steps:
            if isinstance(step, KilnPass):
                step.run_in(pm)
            else:
                pm.add(step)
    return pm


# The raising passes in pipeline order (torch → kiln): the one list, which tests and benchmarks
# read to switch raising off entirely (tests/test_fusion.py's "off" configuration).
RAISE_PASSES: tuple[str, ...] = (
    # Identities (dropout in eval, clones, same-dtype casts) hide the patterns below.
    "kiln-drop-identities",
    # Before linear raising: attention's q·kᵀ and p·v matmuls are not linear layers.
    "kiln-raise-attention",
    # Arithmetic GELU/SiLU become one op, which kiln-raise-linear folds into the linear.
    "kiln-raise-activations",
    "kiln-raise-linear",
    "kiln-raise-norms",
    # norm(x + r) → one op returning the norm and the sum (the pre-norm residual step).
    "kiln-fuse-residual-norms",
    # x·cos + rotate(x)·sin → kiln.rope, lowered as one gather-and-FMA IREE fuses.
    "kiln-raise-rope",
    # SiLU(gate(x))·up(x) → one linear with the gated epilogue "swiglu".
    "kiln-raise-swiglu",
    # Q/K/V projections of one input → one linear + slices (after kiln-raise-linear) ...
    "kiln-merge-linears",
    # ... and the slices of any fused QKV projection → slices of whole heads (no copies).
    "kiln-hoist-head-split",
    # The q and k rotations of those heads → one kiln.rope (one dispatch instead of two).
    "kiln-merge-ropes",
)


def build_raise_pipeline(target: CompileTarget = CompileTarget(), *,
                         raise_attention: bool = True, raise_linear: bool = True,
                         disabled: tuple[str, ...] = (),
                         external_weights: bool = False) -> Pipeline:
    """torch → kiln: recognise what Kiln specializes (RAISE_PASSES minus `disabled`)."""
    switched_off = set(disabled)
    if not raise_attention:
        switched_off.add("kiln-raise-attention")
    if not raise_linear:
        switched_off.add("kiln-raise-linear")
    if external_weights and not target.cuda_kernels:
        # Concatenated weights of external parameters cannot be folded at compile time: the
        # module initializer would copy them (36 copies for a 12-layer Llama, more than the 32
        # concurrent nodes a CUDA graph command buffer takes: "exceeded max concurrent node
        # limit" at load on an H200) and hold every weight twice. Kiln's kernels read merged
        # weights part by part instead (weight_parts: no concatenation is left).
        switched_off |= {"kiln-merge-linears", "kiln-raise-swiglu"}
    steps: list[Step] = [create_pass(n) for n in RAISE_PASSES if n not in switched_off]
    # Fold the constants and drop the ops the rewrites left dead.
    steps.append("canonicalize")
    return Pipeline("kiln-raise-pipeline", steps)


def build_lower_pipeline(target: CompileTarget = CompileTarget(), *,
                         attention: str = "auto") -> Pipeline:
    """kiln → iree-input: lower kiln ops the way measured fastest on `target`; where it says
    so (`target.cuda_kernels`, `target.cpu_kernels`), Kiln's kernels take the ops they
    support first."""
    steps: list[Step] = []
    if target.cuda_kernels:
        steps.append(create_pass("kiln-select-cuda-kernels", {
            "arch": target.cuda_arch, "split_k": str(target.cuda_split_k),
            "fuse": str(target.cuda_fuse)}))
        if target.cuda_chain:
            steps.append(create_pass("kiln-chain-cuda-kernels", {
                "arch": target.cuda_arch, "prefetch": str(target.cuda_chain_prefetch)}))
    if target.cpu_kernels and target.cpu_only:
        steps.append(create_pass("kiln-select-cpu-kernels", {
            "attention": attention, "lanes": str(target.cpu_lanes),
            "fold_epilogues": str(target.cpu_epilogues),
            "convolutions": str(target.cpu_convolutions)}))
    steps += [
        create_pass("convert-kiln-to-torch", {"target": target.pass_option,
                                              "attention": attention}),
    ]
    if target.has_cuda:
        # IREE 3.13 miscompiles strided 1x1 convolutions for CUDA (f16, H200; decisions.md).
        steps.append(create_pass("kiln-pointwise-conv-to-matmul"))
    steps += [
        # Merge the constants the lowering created per op.
        "canonicalize",
        "cse",
    ]
    return Pipeline("kiln-lower-pipeline", steps)


def _raise_pipeline_from_options(raise_attention: bool = True, raise_linear: bool = True,
                                 external_weights: bool = False) -> Pipeline:
    """torch → kiln: recognise what Kiln specializes (kiln-opt's textual options)."""
    return build_raise_pipeline(raise_attention=raise_attention, raise_linear=raise_linear,
                                external_weights=external_weights)


def _lower_pipeline_from_options(target: str = "cpu", attention: str = "auto",
                                 cuda_kernels: bool = False, cuda_arch: str = "sm_90a",
                                 cuda_split_k: bool = False, cuda_fuse: bool = True,
                                 cuda_chain: bool = False, cuda_chain_prefetch: bool = False,
                                 cpu_kernels: bool = False) -> Pipeline:
    """kiln → iree-input: lower kiln ops for `target` (kiln-opt's textual options: the kernel
    switches are taken as given, not decided as CompileTarget.resolve does)."""
    try:
        compile_target = CompileTarget(devices=target, cuda_arch=cuda_arch,
                                       cuda_kernels=cuda_kernels, cuda_split_k=cuda_split_k,
                                       cuda_fuse=cuda_fuse, cuda_chain=cuda_chain,
                                       cuda_chain_prefetch=cuda_chain_prefetch,
                                       cpu_kernels=cpu_kernels)
    except ValueError as error:
        raise PassError(f"kiln-lower-pipeline: {error}") from None
    return build_lower_pipeline(compile_target, attention=attention)


# kiln-opt's named pipelines: the builders above behind textual options.
NAMED_PIPELINES = {
    "kiln-raise-pipeline": _raise_pipeline_from_options,
    "kiln-lower-pipeline": _lower_pipeline_from_options,
}
