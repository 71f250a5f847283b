"""Helpers shared by Kiln's benchmark scripts (which run as `python -m bench.<script>`)."""

from __future__ import annotations

import re
import statistics
import subprocess
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


def iree_benchmark_ms(module: Path, inputs: list[str], device: str = "cuda") -> float:
    """Median time of `main` in `module` by iree-benchmark-module (device time, no Python)."""
    command = ["iree-benchmark-module", f"--module={module}", f"--device={device}",
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
