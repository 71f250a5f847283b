"""Helpers shared by Kiln's benchmark scripts (which run as `python -m bench.<script>`)."""

from __future__ import annotations

import contextlib
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

# Graph command buffers and no tracing, as kiln.runtime uses on CUDA.
CUDA_BENCHMARK_FLAGS = ("--cuda_use_streams=false", "--cuda_tracing=0")


def median_ms(fn, sync=lambda: None, warmup: int = 20, iters: int = 200) -> float:
    """Median wall time of `fn()` in milliseconds, `sync()` after each call."""
    for _ in range(warmup):
        fn()
    sync()
    samples = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        sync()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def interleaved_ms(runs: dict, inputs, rounds: int, calls: int,
                   each_round=contextlib.nullcontext, warmup: int = 3) -> dict[str, list[float]]:
    """Per-call ms of each callable in `runs` (name → f, called as f(*inputs)), interleaved:
    `rounds` rounds of `calls` calls of each, the order reversed every other round, so that a
    shared machine's drifting load falls on all of them; each round runs inside the context
    `each_round()` (e.g. waiting for quiet and measuring other processes' load). Returns each
    name's per-round means, after `warmup` calls of each."""
    for _ in range(warmup):
        for f in runs.values():
            f(*inputs)
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(rounds):
        order = list(runs.items()) if round_ % 2 == 0 else list(runs.items())[::-1]
        with each_round():
            for name, f in order:
                start = time.perf_counter()
                for _ in range(calls):
                    f(*inputs)
                samples[name].append((time.perf_counter() - start) / calls * 1e3)
    return samples


def iree_tool(name: str) -> str:
    """The path of an IREE command-line tool (iree-compile, iree-benchmark-module,
    iree-profile): on PATH, else beside this Python (a venv's bin/, not activated)."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        raise SystemExit(f"{name} not found (install iree-base-compiler / iree-base-runtime)")
    return found


def compile_for_host(source: Path) -> Path:
    """`source` (MLIR text holding hand-written CPU executables and a `main`) compiled for this
    machine's CPU at O3, as the kernel benchmarks time it: the .vmfb beside it."""
    vmfb = source.with_suffix(".vmfb")
    subprocess.run([iree_tool("iree-compile"), str(source), "--iree-hal-target-device=local",
                    "--iree-hal-local-target-device-backends=llvm-cpu",
                    "--iree-llvmcpu-target-cpu=host", "--iree-opt-level=O3",
                    "-o", str(vmfb)], check=True)
    return vmfb


def run_main_on_cpu(vmfb: Path, *arrays):
    """`main` of `vmfb` on `arrays` through IREE's local-task runtime, as a numpy array."""
    import iree.runtime as rt
    import numpy as np

    context = rt.SystemContext(config=rt.Config("local-task"))
    context.add_vm_module(rt.VmModule.copy_buffer(context.instance, vmfb.read_bytes()))
    return np.asarray(context.modules.module["main"](*arrays))


def iree_benchmark_ms(module: Path, inputs: list[str], device: str = "cuda") -> float:
    """Median time of `main` in `module` by iree-benchmark-module (device time, no Python)."""
    command = [iree_tool("iree-benchmark-module"), f"--module={module}", f"--device={device}",
               "--function=main", "--benchmark_repetitions=5", "--benchmark_min_time=0.2s"]
    if device == "cuda":
        command += list(CUDA_BENCHMARK_FLAGS)
    command += [f"--input={i}" for i in inputs]
    text = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    medians = re.findall(r"_median\s+([\d.]+) ms", text) or re.findall(r"\s([\d.]+) ms", text)
    return float(medians[0])


def sdpa_module(causal: bool):
    """A module that is one scaled_dot_product_attention call (raised to one kiln.attention)."""
    import torch

    class Attention(torch.nn.Module):
        def forward(self, q, k, v):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)

    return Attention()
