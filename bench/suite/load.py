"""Sharing the machine: the GPU lanes' lock, the load other processes put on the CPUs, and the
timed loop that waits for quiet and measures that load (see bench.run_suite's docstring)."""

from __future__ import annotations

import os
import re
import resource
import statistics
import threading
import time
from pathlib import Path


class GpuLock:
    """The GPU lanes' lock (see the docstring): exclusive for measurements, shared for other GPU
    work; the timing thread moves to its own CPUs while it holds the lock exclusively. A no-op
    without lanes."""

    def __init__(self, spec: dict, exclusive: bool):
        self.path = spec.get("gpu_lock")
        self.exclusive = exclusive
        self.timing_cpus = spec.get("timing_cpus")

    def __enter__(self):
        if self.path:
            import fcntl

            self.file = open(self.path, "a+")
            fcntl.flock(self.file, fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH)
            if self.exclusive and self.timing_cpus:
                self.cpus = os.sched_getaffinity(0)
                os.sched_setaffinity(0, self.timing_cpus)
        return self

    def __exit__(self, *exc):
        if self.path:
            import fcntl

            if self.exclusive and self.timing_cpus:
                os.sched_setaffinity(0, self.cpus)
            fcntl.flock(self.file, fcntl.LOCK_UN)
            self.file.close()


def lock_inductor_benchmarks(spec) -> str | None:
    """GPU lanes: every kernel benchmark inductor runs while compiling (max-autotune's
    autotuning, the default mode's choice of reduction configs) takes the GPU lock exclusively,
    so it neither disturbs nor is disturbed by another lane's timed loop."""
    path = spec.get("gpu_lock")
    if not path:
        return None
    import contextlib
    import fcntl
    import functools

    local = threading.local()

    @contextlib.contextmanager
    def locked():
        depth = getattr(local, "depth", 0)
        if depth == 0:
            local.file = open(path, "a+")
            fcntl.flock(local.file, fcntl.LOCK_EX)
        local.depth = depth + 1
        try:
            yield
        finally:
            local.depth -= 1
            if local.depth == 0:
                fcntl.flock(local.file, fcntl.LOCK_UN)
                local.file.close()

    from torch._inductor.runtime import benchmarking

    if hasattr(benchmarking, "set_gpu_benchmark_lock_context"):
        benchmarking.set_gpu_benchmark_lock_context(locked)
        return "hook"

    def wrap(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with locked():
                return fn(*args, **kwargs)
        return wrapper

    bench = benchmarking.benchmarker
    for name in ("benchmark_gpu", "benchmark_gpu_with_cuda_graph", "benchmark"):
        if getattr(bench, name, None) is not None:
            setattr(bench, name, wrap(getattr(bench, name)))
    import torch._inductor.utils as inductor_utils

    if hasattr(inductor_utils, "do_bench_using_profiling"):
        inductor_utils.do_bench_using_profiling = wrap(inductor_utils.do_bench_using_profiling)
    return "patched"


def peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM (ru_maxrss would carry the parent's peak over fork+exec)."""
    try:
        text = Path("/proc/self/status").read_text()
        return int(re.findall(r"^VmHWM:\s+(\d+) kB", text, re.M)[0]) / 1024
    except (OSError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class ForeignLoad:
    """CPU used by other processes while a loop runs, in cores (from /proc/stat); with `cpus`,
    only on those CPUs (the GPU lanes' timing CPUs)."""

    def __init__(self, cpus=None):
        self.tick = os.sysconf("SC_CLK_TCK")
        self.cpus = {f"cpu{c}" for c in cpus} if cpus else None

    def _busy_jiffies(self) -> int:
        busy = 0
        with open("/proc/stat") as f:
            for line in f:
                name, *values = line.split()
                if not name.startswith("cpu"):
                    break
                if (self.cpus is None) != (name == "cpu") or \
                        (self.cpus is not None and name not in self.cpus):
                    continue
                fields = [int(x) for x in values]
                idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
                busy += sum(fields[:8]) - idle
        return busy

    @staticmethod
    def _self_seconds() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime

    def __enter__(self):
        self.wall, self.busy, self.mine = (time.perf_counter(), self._busy_jiffies(),
                                           self._self_seconds())
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self.wall
        busy = (self._busy_jiffies() - self.busy) / self.tick
        mine = self._self_seconds() - self.mine
        self.cores = max(0.0, (busy - mine) / wall) if wall > 0 else 0.0
        self.own_cores = mine / wall if wall > 0 else 0.0


def wait_for_quiet(max_wait_s: float, threshold_cores: float = 0.5) -> float:
    """Wait until other processes use less than `threshold_cores` (1 s samples), at most
    `max_wait_s`; returns the last sample."""
    deadline = time.monotonic() + max_wait_s
    while True:
        with ForeignLoad() as load:
            time.sleep(1.0)
        if load.cores < threshold_cores or time.monotonic() >= deadline:
            return load.cores


def time_calls(fn, sync, plan, first_s: float, quiet_wait: float = 0.0,
               attempts: int = 1, cpus=None) -> dict:
    """Warm-up, then up to `max_n` timed calls within the budget (at least `min_n`).

    With `quiet_wait`, first wait (up to that long) for other processes to calm down; if they
    still took more than half a core during the loop, wait and time again (up to `attempts`
    loops), keeping the loop with the least foreign load."""
    warmup, max_n, budget_s, min_n = plan
    warmup = max(1, min(warmup, int(0.25 * budget_s / max(first_s, 1e-6))))
    if first_s > budget_s / 10:  # a slow cell: fewer calls, never none
        min_n = min(min_n, 3)
    best = None
    for attempt in range(attempts):
        if quiet_wait > 0:
            wait_for_quiet(quiet_wait)
        for _ in range(warmup):
            fn()
        sync()
        samples = []
        start = time.perf_counter()
        with ForeignLoad(cpus) as load:
            while len(samples) < max_n:
                t0 = time.perf_counter()
                fn()
                sync()
                samples.append((time.perf_counter() - t0) * 1e3)
                if len(samples) >= min_n and time.perf_counter() - start > budget_s:
                    break
        samples.sort()

        def pct(q):
            return samples[min(len(samples) - 1, int(round(q * (len(samples) - 1))))]

        timing = {"ms": statistics.median(samples), "p10_ms": pct(0.1), "p90_ms": pct(0.9),
                  "min_ms": samples[0], "runs": len(samples), "warmup": warmup,
                  "foreign_cores": round(load.cores, 3), "own_cores": round(load.own_cores, 3),
                  "attempt": attempt + 1}
        if best is None or timing["foreign_cores"] < best["foreign_cores"]:
            best = timing
        if best["foreign_cores"] < 0.5:
            break
    return best
