"""Run plans on torch tensors: Triton's interpreter (CPU, TRITON_INTERPRET=1), JIT or the
ahead-of-time compiled kernels (GPU). For tests and benchmarks; Kiln's artifacts run the PTX
through IREE instead.

    out = run_spec(spec, [x, w, b], mode="aot")   # the very code compile_plan ships
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from kiln.dtypes import by_element
from kiln.kernels.plan import (DTYPES, KernelPlan, LaunchSpec, PlanSpec, compile_triton, spec_of,
                               triton_function)

TORCH_DTYPES = {name: by_element(name).torch_dtype for name in DTYPES}


def _arguments(launch: LaunchSpec, fn, buffers: dict) -> list:
    pointers = {p.name: arg for p, arg in zip(launch.pointers, launch.args)}
    constants = launch.constants
    return [buffers[pointers[name]] if name in pointers else constants[name]
            for name in fn.arg_names]


def _own_buffers(plan, buffers: dict, device) -> None:
    """Temporaries (uninitialized) and semaphores (zeros: the kernels leave them zero, so the
    same buffers serve every later run, as a module global does in an artifact)."""
    for name, shape, dtype in plan.temps:
        buffers[name] = torch.empty(shape, dtype=TORCH_DTYPES[dtype], device=device)
    for name, shape, dtype in plan.semaphores:
        buffers[name] = torch.zeros(shape, dtype=TORCH_DTYPES[dtype], device=device)


def allocate(spec: PlanSpec, inputs: Sequence[torch.Tensor],
             out: Optional[torch.Tensor] = None) -> dict:
    """The buffers of a plan: inputs (checked), temps, out."""
    if len(inputs) != len(spec.inputs):
        raise ValueError(f"plan takes {len(spec.inputs)} inputs, got {len(inputs)}")
    buffers = {}
    device = inputs[0].device
    for tensor, (name, shape, dtype) in zip(inputs, spec.inputs):
        if tuple(tensor.shape) != tuple(shape) or tensor.dtype != TORCH_DTYPES[dtype]:
            raise ValueError(f"{name}: expected {shape} {dtype}, got {tuple(tensor.shape)} "
                             f"{tensor.dtype}")
        if not tensor.is_contiguous():
            raise ValueError(f"{name} must be contiguous")
        buffers[name] = tensor
    _own_buffers(spec, buffers, device)
    shape, dtype = spec.output
    buffers["out"] = out if out is not None else \
        torch.empty(shape, dtype=TORCH_DTYPES[dtype], device=device)
    return buffers


def launcher(spec: PlanSpec, buffers: dict, mode: str = "aot"):
    """A no-argument callable that runs every launch of the plan on `buffers`.

    mode "aot": Triton's CompiledKernel of `compile_triton` (the PTX `compile_plan` ships);
    "jit": the @triton.jit function (Triton's JIT, or its interpreter under TRITON_INTERPRET=1).
    """
    calls = []
    for launch in spec.launches:
        fn = triton_function(launch)
        args = _arguments(launch, fn, buffers)
        if mode == "aot":
            calls.append((compile_triton(launch)[launch.grid], args, {}))
        elif mode == "jit":
            calls.append((fn[launch.grid], args, dict(num_warps=launch.num_warps,
                                                      num_stages=launch.num_stages)))
        else:
            raise ValueError(f"mode {mode!r}: aot or jit")

    def run():
        for call, args, kwargs in calls:
            call(*args, **kwargs)
    return run


def run_spec(spec: PlanSpec, inputs: Sequence[torch.Tensor], out=None,
             mode: str = "aot") -> torch.Tensor:
    buffers = allocate(spec, inputs, out)
    launcher(spec, buffers, mode)()
    return buffers["out"]


def run_plan(plan: KernelPlan, inputs: Sequence[torch.Tensor], out=None) -> torch.Tensor:
    """Run a compiled KernelPlan the way an artifact does: buffers named by `launch.args`
    (in0.., tmp0.., out) and typed by the kernels' params, each kernel given its params in
    order. Needs a GPU and plans compiled in this process (kernel → Triton handle)."""
    buffers = {f"in{i}": t for i, t in enumerate(inputs)}
    device = inputs[0].device
    _own_buffers(plan, buffers, device)
    calls = []
    for launch in plan.launches:
        kernel = launch.kernel
        spec = spec_of(kernel)
        fn = triton_function(spec)
        by_param = {}
        for param, arg in zip(kernel.params, launch.args):
            if arg == "scratch":
                continue
            if arg not in buffers:
                if arg != "out":
                    raise ValueError(f"{kernel.symbol}: unknown buffer {arg!r}")
                buffers["out"] = out if out is not None else torch.empty(
                    param.shape, dtype=TORCH_DTYPES[param.dtype], device=device)
            tensor = buffers[arg]
            if tuple(tensor.shape) != tuple(param.shape) or \
                    tensor.dtype != TORCH_DTYPES[param.dtype]:
                raise ValueError(f"{kernel.symbol}: {param.name} wants {param.shape} "
                                 f"{param.dtype}, buffer {arg} is {tuple(tensor.shape)} "
                                 f"{tensor.dtype}")
            by_param[param.name] = tensor
        constants = spec.constants
        args = [by_param[name] if name in by_param else constants[name]
                for name in fn.arg_names]
        calls.append((compile_triton(spec)[kernel.grid], args))
    for call, args in calls:
        call(*args)
    return buffers["out"]
