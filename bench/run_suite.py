"""The benchmark suite: every (model, batch, dtype, system) cell in its own process.

CPU (here):
    python -m bench.run_suite --device cpu                      # full: batches 1 and 8
    python -m bench.run_suite --device cpu --quick              # batch 1, few runs
    python -m bench.run_suite --device cpu --models mlp,bert --batches 1 --systems eager,kiln
GPU (two halves: the GPU machine has no IREE compiler and no torch-mlir):
    python -m bench.run_suite --device cuda --prepare-only --out .device/suite     # here
    python3 -m bench.run_suite --device cuda --artifacts .device/suite --out $OUT  # there
    # the cells of the GPU suite (in priority order; --cells takes model:batch:dtype,...):
    python -m bench.run_suite --device cuda --prepare-only --out .device/suite --cells gpu
    python3 -m bench.run_suite --device cuda --artifacts .device/suite --out $OUT --cells gpu \
        --lanes 2
    # Kiln alone again (e.g. after a compiler change), and a Kiln variant as its own system:
    python -m bench.run_suite --device cuda --prepare-only --out .device/suite --cells gpu \
        --systems kiln,kiln+kernels
    python3 -m bench.run_suite ... --cells gpu --systems kiln,kiln+kernels   # there; merge with
    python -m bench.run_suite --merge old.json new.json --into bench/results/suite-cuda-<tag>.json

Systems. CPU: eager, torch.compile (inductor), onnxruntime (CPU provider, torch.onnx.export),
kiln. GPU: eager, torch.compile (default, reduce-overhead, max-autotune-no-cudagraphs), kiln
(CUDA graph command buffers, as kiln.load sets them). Dtypes: f32 on CPU; f16 and bf16 on GPU.
Kiln variants are systems of their own (KILN_SYSTEMS: name → compile options), e.g.
"kiln+kernels" (the Hopper library kernels on); plain "kiln" pins them off where Kiln has the
switch, so its cells stay comparable across commits.

GPU lanes (--lanes N, cuda only): N cells run side by side so that process start-up, model
builds and compiles overlap, while every measurement stays alone on the GPU: a timed loop,
iree-benchmark-module and each kernel benchmark inductor runs while compiling (max-autotune's
autotuning, the default mode's reduction configs) hold an exclusive lock on the GPU; the
reference forward and Kiln's load and first call hold it shared; the rest of a compile (CPU
work, a first run, CUDA graph capture) holds none. The timing thread runs on CPUs of its own
(the first 4), everything else on the rest, and "foreign_cores" is measured on the timing CPUs.
On the GPU machine the reference stage also pickles the built model for the cell's other
stages (the zoo's build of a 124M model takes about 20 s there).

Each cell runs in fresh processes:
  reference  eager forward of the zoo model (zoo.py: deterministic weights and inputs); saves the
             inputs and the output once per (model, batch, dtype)
  prepare    systems with an ahead-of-time step: Kiln compiles a .vmfb, ONNX Runtime exports
             the .onnx; records compile time and the compile's peak RSS
  run        builds or loads the system (a torch.compile cell compiles here: its compile time is
             the first call), checks the output against the reference (max abs error, and the
             error relative to max(1, max|eager|); above TOLERANCE the cell is FAILED-CHECK and
             is not timed), then times: warm-up calls, then up to N calls within a time budget
             (a slow cell gets fewer calls, never none): median, p10, p90, min. Peak RSS is the
             run process's VmHWM (Kiln's and ONNX Runtime's run processes never import
             torch: their RSS is what serving takes). On CUDA also torch's max_memory_allocated
             and the process's GPU memory by nvidia-smi.
The parent merges cells into bench/results/suite-<device>-<machine tag>.json and .csv (a rerun
replaces the cells it ran) and writes the report (bench/report.py).

The machine may be shared: during each timed loop the CPU time used by other processes is
sampled from /proc/stat and stored with the cell ("foreign_cores"); on CPU the harness waits
(up to --quiet-wait seconds) for other load to drop below half a core before timing, and times
a loop again (--attempts) if others still took more than half a core during it.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
# Where `kiln` is imported from (default: this checkout's python/). On the GPU machine a frozen
# copy of the runtime keeps the run independent of uncommitted edits in the tree.
KILN_PYTHON = Path(os.environ.get("KILN_BENCH_KILN_PYTHON", REPO / "python"))


def use_kiln_python() -> None:
    """Import `kiln` (and the zoo in kiln.examples) from KILN_PYTHON in this process too, as the
    children do: the folder is chosen at run time (KILN_BENCH_KILN_PYTHON), which no import
    statement can name. The one place the suite touches sys.path."""
    if str(KILN_PYTHON) not in sys.path:
        sys.path.insert(0, str(KILN_PYTHON))

SYSTEMS = {
    "cpu": ["eager", "torch.compile", "onnxruntime", "kiln"],
    "cuda": ["eager", "torch.compile", "torch.compile:reduce-overhead",
             "torch.compile:max-autotune-no-cudagraphs", "kiln"],
}
DTYPES = {"cpu": ["f32"], "cuda": ["f16", "bf16"]}
# Kiln systems: name → compile options ("options": always passed; "if_known": passed when this
# Kiln's CompileOptions has the field — older commits lack it and behave as that value).
# A new variant is one entry here (and --systems <name> in both halves).
KILN_SYSTEMS = {
    "kiln": {"if_known": {"cuda_kernels": "off"}},
    "kiln+kernels": {"options": {"cuda_kernels": "on"}},
    # issue 14's A/B on the same card: the kernels as before the fused layers (one kernel per
    # linear/attention, split-K reduces, separate q/k/v and gate/up as with external weights
    # then), and the fused layers with split-K GEMMs allowed
    "kiln+kernels-unfused": {"options": {"cuda_kernels": "on", "disable_passes": [
                                 "kiln-merge-linears", "kiln-raise-swiglu"]},
                             "if_known": {"cuda_fuse": False, "cuda_split_k": True}},
    "kiln+kernels-splitk": {"options": {"cuda_kernels": "on"},
                            "if_known": {"cuda_split_k": True}},
}
# The GPU suite's cells in priority order (--cells gpu): the goal cells first (single-token
# decode b1 and prefill 8×512 in f16 and bf16), then the rest of the zoo.
GPU_CELLS = ["gpt2-decode:1:f16", "gpt2-prefill-512:8:f16", "gpt2-decode:1:bf16",
             "gpt2-prefill-512:8:bf16", "llama:1:f16", "llama:8:f16", "bert:8:f16", "mlp:1:f16",
             "resnet:1:f16", "mlp:8:f16", "resnet:8:f16", "bert:1:f16", "gpt2-decode:8:f16",
             "llama:1:bf16", "llama:8:bf16"]
# Max abs error allowed, relative to max(1, max|eager|). Looser than tests/compare.py for the
# 12-layer models: rounding compounds with depth in f16/bf16.
TOLERANCE = {"f32": 1e-4, "f16": 5e-2, "bf16": 1e-1}
TORCH_DTYPES = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}
IREE_ELEMENT = {"float32": "f32", "float16": "f16", "bfloat16": "bf16", "int64": "i64",
                "int32": "i32"}

# Timing plan: (warm-up calls, max timed calls, time budget per cell in s, min timed calls).
TIMING = {"full": (3, 50, 20.0, 5), "quick": (2, 10, 5.0, 3)}
GPU_TIMING = {"full": (10, 100, 3.0, 10), "quick": (5, 30, 1.0, 5)}
TIMEOUT_S = {"reference": 600, "prepare": 2400, "run": 1200, "params": 900}
# Harness self-test without a GPU: KILN_BENCH_FAKE_CUDA=1 runs the "cuda" flow on the CPU
# (artifacts compiled for cpu, torch on cpu, no CUDA memory or device-time measurements).
FAKE_CUDA = os.environ.get("KILN_BENCH_FAKE_CUDA") == "1"


def _torch_device(device: str) -> str:
    return "cpu" if FAKE_CUDA else device


def is_kiln(system: str) -> bool:
    return system in KILN_SYSTEMS


def kiln_variant_suffix(system: str) -> str:
    """'' for kiln, '-kernels' for kiln+kernels: artifact file names."""
    return "" if system == "kiln" else "-" + re.sub(r"[^a-z0-9]+", "-", system.split("+", 1)[1])


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


# =============================================================================================
# Helpers used in children


def _peak_rss_mb() -> float:
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


def check(actual, expected, dtype: str) -> dict:
    import numpy as np

    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        return {"check": "FAILED-CHECK", "check_detail": f"shape {actual.shape} != eager "
                                                          f"{expected.shape}"}
    finite = bool(np.all(np.isfinite(actual)))
    error = float(np.max(np.abs(actual - expected))) if finite else float("inf")
    scale = max(1.0, float(np.max(np.abs(expected))))
    result = {"max_abs_err": error, "rel_err": error / scale, "ref_max_abs": scale,
              "tolerance": TOLERANCE[dtype]}
    result["check"] = "ok" if finite and error <= TOLERANCE[dtype] * scale else "FAILED-CHECK"
    if not finite:
        result["check_detail"] = "non-finite output"
    return result


def _to_numpy_f32(value):
    """A torch tensor or numpy array (incl. ml_dtypes bfloat16) → float32 numpy."""
    import numpy as np

    if type(value).__module__.startswith("torch"):
        return value.detach().float().cpu().numpy()
    array = np.asarray(value)
    if array.dtype.kind == "V" or str(array.dtype) == "bfloat16":
        array = (array.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    return array.astype(np.float32)


def cell_dir(work: Path, model: str, batch: int, dtype: str) -> Path:
    return Path(work) / f"{model}-b{batch}-{dtype}"


def _save_inputs(directory: Path, inputs) -> list:
    import numpy as np
    import torch

    specs = []
    for i, tensor in enumerate(inputs):
        dtype = str(tensor.dtype).replace("torch.", "")
        array = tensor.view(torch.int16).numpy() if tensor.dtype == torch.bfloat16 else \
            tensor.numpy()
        np.save(directory / f"input{i}.npy", array)
        specs.append({"shape": list(tensor.shape), "dtype": dtype})
    return specs


def _load_inputs(directory: Path, as_torch: bool = False):
    """Inputs saved by the reference stage (bf16 stored as int16 bits)."""
    import numpy as np

    specs = json.loads((directory / "reference.json").read_text())["inputs"]
    arrays = []
    for i, spec in enumerate(specs):
        array = np.load(directory / f"input{i}.npy")
        if as_torch:
            import torch

            tensor = torch.from_numpy(array)
            arrays.append(tensor.view(torch.bfloat16) if spec["dtype"] == "bfloat16" else tensor)
        elif spec["dtype"] == "bfloat16":
            import ml_dtypes

            arrays.append(array.view(ml_dtypes.bfloat16))
        else:
            arrays.append(array)
    return arrays


def _model_cache(spec):
    """GPU suite: the reference stage pickles the built model into the cell's folder, so the
    other stages of the cell skip the zoo's build (about 20 s for a 124M model there)."""
    if spec.get("device") != "cuda" or not spec.get("work"):
        return None
    return cell_dir(spec["work"], spec["model"], spec["batch"], spec["dtype"]) / "model.pt"


def _build(spec, use_cache: bool = True):
    import torch

    from kiln.examples import zoo

    dtype = getattr(torch, TORCH_DTYPES[spec["dtype"]])
    cache = _model_cache(spec) if use_cache else None
    if cache is not None and cache.exists():
        try:
            model = torch.load(cache, weights_only=False)
            return model, zoo.MODELS[spec["model"]][1](spec["batch"], dtype)
        except Exception as error:  # build it instead
            print(f"model cache {cache}: {type(error).__name__}: {error}", file=sys.stderr)
    return zoo.build(spec["model"], spec["batch"], dtype)


def _lock_inductor_benchmarks(spec) -> str | None:
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


# =============================================================================================
# Child stages


def stage_reference(spec) -> dict:
    """Eager forward once; saves inputs and output (float32) for every other cell."""
    import numpy as np
    import torch

    directory = cell_dir(spec["work"], spec["model"], spec["batch"], spec["dtype"])
    directory.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    model, inputs = _build(spec, use_cache=False)
    build_s = time.perf_counter() - start
    cache = _model_cache(spec)
    if cache is not None:
        try:
            torch.save(model, cache)
        except Exception as error:  # the other stages build it themselves
            print(f"model cache: {type(error).__name__}: {error}", file=sys.stderr)
    device = _torch_device(spec["device"])
    with torch.no_grad(), GpuLock(spec, exclusive=False):
        output = model.to(device)(*[x.to(device) for x in inputs])
    np.save(directory / "reference.npy", _to_numpy_f32(output))
    info = {"inputs": _save_inputs(directory, inputs), "output_shape": list(output.shape),
            "parameters": sum(p.numel() for p in model.parameters()), "build_s": build_s}
    (directory / "reference.json").write_text(json.dumps(info))
    return info


def stage_prepare(spec) -> dict:
    """Ahead-of-time step: Kiln .vmfb (CPU) or ONNX export."""
    directory = cell_dir(spec["work"], spec["model"], spec["batch"], spec["dtype"])
    model, inputs = _build(spec)
    system = spec["system"]
    start = time.perf_counter()
    if system == "kiln":
        import kiln

        options = _kiln_options(spec.get("kiln_options", {}))
        compiled = kiln.compile_model(model, tuple(inputs), target="cpu", **options)
        compile_s = time.perf_counter() - start
        path = compiled.save(directory / spec.get("artifact", "kiln.vmfb"))
        return {"compile_s": compile_s, "artifact_mb": path.stat().st_size / 2**20,
                "compile_peak_rss_mb": _peak_rss_mb(),
                "phases_s": {k: round(v, 2) for k, v in compiled.report.phase_seconds.items()}}
    if system == "onnxruntime":
        import torch

        path = directory / "model.onnx"
        exporter, errors = None, []
        for dynamo in (True, False):
            try:
                with torch.no_grad():
                    torch.onnx.export(model, tuple(inputs), str(path), dynamo=dynamo,
                                      input_names=[f"input{i}" for i in range(len(inputs))],
                                      output_names=["output"])
                exporter = "dynamo" if dynamo else "torchscript"
                break
            except Exception as error:  # the other exporter may work
                errors.append(f"dynamo={dynamo}: {type(error).__name__}: {error}"[:500])
        if exporter is None:
            raise RuntimeError("torch.onnx.export failed: " + " | ".join(errors))
        size = sum(p.stat().st_size for p in directory.glob("model.onnx*"))
        return {"compile_s": time.perf_counter() - start, "exporter": exporter,
                "artifact_mb": size / 2**20, "compile_peak_rss_mb": _peak_rss_mb()}
    raise ValueError(f"{system} has no prepare stage")


def _kiln_options(options: dict, if_known: dict | None = None) -> dict:
    """Compile options for a benchmark compile: never the compile cache (compile time is
    measured), when this Kiln has the option; `if_known` only where this Kiln has them."""
    from dataclasses import fields

    from kiln.compiler import CompileOptions

    known = {f.name for f in fields(CompileOptions)}
    missing = sorted(set(options) - known)
    if missing:
        raise RuntimeError(f"this Kiln's CompileOptions has no {', '.join(missing)}")
    result = dict(options)
    result.update({k: v for k, v in (if_known or {}).items() if k in known})
    if "cache" in known:
        result["cache"] = False
    return result


def stage_run(spec) -> dict:
    import numpy as np

    directory = cell_dir(spec["work"], spec["model"], spec["batch"], spec["dtype"])
    expected = np.load(directory / "reference.npy")
    system = spec["system"]
    device = spec["device"]
    torch_device = _torch_device(device)
    plan = tuple(spec["plan"])
    result = {}
    sync = lambda: None  # noqa: E731

    if system in ("eager",) or system.startswith("torch.compile"):
        import torch

        model, _ = _build(spec)
        inputs = [x.to(torch_device) for x in _load_inputs(directory, as_torch=True)]
        model = model.to(torch_device)
        if torch_device == "cuda":
            sync = torch.cuda.synchronize
            torch.cuda.reset_peak_memory_stats()
        if system == "eager":
            fn = model
        else:
            mode = system.split(":", 1)[1] if ":" in system else None
            fn = torch.compile(model, mode=mode)
            result["benchmark_lock"] = _lock_inductor_benchmarks(spec)
        torch.set_grad_enabled(False)
        # The compile (first call) holds no lock: its kernel benchmarks take it one by one.
        start = time.perf_counter()
        # clone: reduce-overhead's CUDA graphs overwrite their outputs on the next replay
        output = fn(*inputs).clone()
        sync()
        first_s = time.perf_counter() - start
        if system != "eager":
            result["compile_s"] = first_s
            start = time.perf_counter()
            fn(*inputs)
            sync()
            first_s = time.perf_counter() - start
        call = lambda: fn(*inputs)  # noqa: E731
        result["threads"] = torch.get_num_threads()
    elif system == "onnxruntime":
        import onnxruntime as ort

        start = time.perf_counter()
        session = ort.InferenceSession(str(directory / "model.onnx"),
                                       providers=["CPUExecutionProvider"])
        result["session_s"] = time.perf_counter() - start
        feeds = {i.name: x for i, x in zip(session.get_inputs(), _load_inputs(directory))}
        start = time.perf_counter()
        output = session.run(None, feeds)[0]
        first_s = time.perf_counter() - start
        call = lambda: session.run(None, feeds)  # noqa: E731
        result["threads"] = session.get_session_options().intra_op_num_threads or os.cpu_count()
    elif is_kiln(system):
        import kiln.runtime  # from KILN_PYTHON: first on the child's PYTHONPATH

        if device == "cuda":
            vmfb = Path(spec["artifacts"]) / spec["artifact"]
            params = directory / spec.get("params_file", "kiln.irpa")
        else:
            vmfb, params = directory / spec.get("artifact", "kiln.vmfb"), None
        if spec.get("runtime_flags"):
            import iree.runtime

            iree.runtime.flags.parse_flags(*spec["runtime_flags"])
        with GpuLock(spec, exclusive=False):
            start = time.perf_counter()
            module = kiln.runtime.load(vmfb, device=torch_device,
                                       parameters=params if params and params.exists() else None)
            result["load_s"] = time.perf_counter() - start
            if torch_device == "cuda":
                # Like the torch systems: inputs live on the GPU and results stay there
                # (zero-copy DLPack in and out, kiln.runtime); the host copies of numpy in/out
                # cost 0.6-3 ms per call (docs/gpu.md).
                import torch

                inputs = [x.to("cuda") for x in _load_inputs(directory, as_torch=True)]
                sync = torch.cuda.synchronize
                result["io"] = "torch-cuda"
            else:
                inputs = _load_inputs(directory)
            start = time.perf_counter()
            output = module(*inputs)
            first_s = time.perf_counter() - start
        call = lambda: module(*inputs)  # noqa: E731
    else:
        raise ValueError(f"unknown system {system}")

    result["first_call_s"] = first_s
    result.update(check(_to_numpy_f32(output), expected, spec["dtype"]))
    if result["check"] != "ok":
        result["peak_rss_mb"] = _peak_rss_mb()
        return result
    with GpuLock(spec, exclusive=True):
        result.update(time_calls(call, sync, plan, first_s, spec.get("quiet_wait", 0.0),
                                 spec.get("attempts", 1), spec.get("timing_cpus")))
        if torch_device == "cuda" and is_kiln(system):
            result["device_ms"] = _iree_device_ms(vmfb, params, module)
    result["peak_rss_mb"] = _peak_rss_mb()
    if torch_device == "cuda":
        result["gpu_process_mb"] = _nvidia_smi_process_mb()
        if not is_kiln(system):
            import torch

            result["gpu_peak_alloc_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def _nvidia_smi_process_mb():
    try:
        text = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory",
                               "--format=csv,noheader,nounits"], capture_output=True, text=True,
                              timeout=30).stdout
    except Exception:
        return None
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0] == str(os.getpid()):
            return float(parts[1])
    return None


def _iree_device_ms(vmfb: Path, params, module):
    """Kiln's time with no Python: iree-benchmark-module, splat inputs of the signature."""
    tool = shutil.which("iree-benchmark-module") or shutil.which(
        "iree-benchmark-module", path=str(Path(sys.executable).parent))
    if tool is None or module.signature is None:
        return None
    command = [tool, f"--module={vmfb}", "--device=cuda", "--function=main",
               "--benchmark_repetitions=5", "--benchmark_min_time=0.2s",
               "--cuda_use_streams=false", "--cuda_tracing=0"]
    if params is not None:
        command.append(f"--parameters=model={params}")
    for spec in module.signature["inputs"]:
        shape = "x".join(str(d) for d in spec["shape"])
        command.append(f"--input={shape}x{IREE_ELEMENT[spec['dtype']]}=1")
    try:
        text = subprocess.run(command, capture_output=True, text=True, timeout=300).stdout
    except Exception:
        return None
    medians = re.findall(r"_median\s+([\d.]+) ms", text) or re.findall(r"\s([\d.]+) ms", text)
    return float(medians[0]) if medians else None


def stage_params(spec) -> dict:
    """On the GPU machine: rebuild the .irpa a Kiln CUDA artifact needs from the zoo's
    deterministic weights (verified against the digests recorded at compile time)."""
    import numpy as np
    import torch

    from kiln.runtime import write_parameter_archive

    artifacts = Path(spec["artifacts"])
    manifest = json.loads((artifacts / spec["params_manifest"]).read_text())
    model, _ = _build(spec)
    state = dict(model.state_dict())
    state.update(dict(model.named_buffers()))
    consts = np.load(artifacts / manifest["consts"]) if manifest.get("consts") else {}
    arrays, mismatched = {}, []
    for entry in manifest["parameters"]:
        key = entry["key"]
        if key in state:
            array = _kiln_bytes(state[key])
        else:
            array = consts[key]
        if hashlib.sha256(array.tobytes()).hexdigest() != entry["sha256"]:
            mismatched.append(key)
        arrays[key] = array
    if mismatched:
        raise RuntimeError(f"{len(mismatched)} rebuilt weight(s) differ from the compiled ones "
                           f"(first: {mismatched[:3]})")
    directory = cell_dir(spec["work"], spec["model"], spec["batch"], spec["dtype"])
    write_parameter_archive(directory / spec.get("params_file", "kiln.irpa"), arrays)
    return {"params": len(arrays), "params_mb": sum(a.nbytes for a in arrays.values()) / 2**20}


def _kiln_bytes(tensor):
    """A state tensor as Kiln stores it in a parameter archive (bf16 as int16 bits)."""
    import torch

    tensor = tensor.detach().cpu().contiguous()
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy()
    return tensor.numpy()


def child_main(spec: dict) -> None:
    if spec.get("compile_cpus"):  # GPU lanes: everything but the timed loop off the timing CPUs
        os.sched_setaffinity(0, spec["compile_cpus"])
    result = {"reference": stage_reference, "prepare": stage_prepare, "run": stage_run,
              "params": stage_params}[spec["stage"]](spec)
    print("RESULT " + json.dumps(result), flush=True)


# =============================================================================================
# Parent


def run_child(spec: dict, timeout: float) -> dict:
    """Run one stage in a fresh process; {"status": ok|FAILED|TIMEOUT, ...}."""
    env = dict(os.environ)
    # Kiln from KILN_PYTHON; the repository for `python -m bench.run_suite` from any folder.
    env["PYTHONPATH"] = os.pathsep.join([str(KILN_PYTHON), str(REPO), env.get("PYTHONPATH", "")])
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    cold_cache = None
    if spec.get("system", "").startswith("torch.compile") and spec["stage"] == "run":
        # A cold compile, as Kiln's (cache=False): inductor's on-disk caches would otherwise
        # turn a rerun's compile into a cache lookup.
        Path(spec["work"]).mkdir(parents=True, exist_ok=True)
        cold_cache = Path(tempfile.mkdtemp(prefix="inductor-", dir=spec["work"]))
        env["TORCHINDUCTOR_CACHE_DIR"] = str(cold_cache)
        env["TRITON_CACHE_DIR"] = str(cold_cache / "triton")
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "bench.run_suite", "--child",
                               json.dumps(spec)], capture_output=True, text=True,
                              timeout=timeout, env=env)
    except subprocess.TimeoutExpired as error:
        tail = (error.stderr or b"")[-1500:]
        return {"status": "TIMEOUT", "error": f"{spec['stage']} exceeded {timeout:.0f} s",
                "stderr_tail": tail.decode(errors="replace") if isinstance(tail, bytes) else tail,
                "wall_s": time.perf_counter() - start}
    finally:
        if cold_cache is not None:
            shutil.rmtree(cold_cache, ignore_errors=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        errors = [ln for ln in proc.stderr.splitlines() if "Error" in ln or "error" in ln]
        return {"status": "FAILED", "error": (errors[-1] if errors else
                                              f"exit {proc.returncode}")[:600],
                "stderr_tail": proc.stderr[-3000:], "wall_s": time.perf_counter() - start}
    result = json.loads(lines[-1][7:])
    result["status"] = "ok"
    result["wall_s"] = time.perf_counter() - start
    return result


def machine_info(device: str) -> dict:
    info = {"hostname_hash": hashlib.sha256(platform.node().encode()).hexdigest()[:8],
            "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform()}
    try:
        text = Path("/proc/cpuinfo").read_text()
        get = lambda key: (re.findall(rf"^{key}\s*:\s*(.*)$", text, re.M) or [""])[0]  # noqa
        info["cpu"] = get("model name")
        info["cpu_family_model"] = f"{get('cpu family')}/{get('model')}"
        flags = get("flags").split()
        info["isa"] = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni",
                                   "amx_tile") if f in flags]
        mem = re.findall(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        info["ram_gb"] = round(int(mem[0]) / 2**20, 1) if mem else None
    except OSError:
        pass
    for package in ("torch", "transformers", "numpy", "onnxruntime", "onnx", "onnxscript",
                    "iree-base-compiler", "iree-base-runtime", "torch-mlir"):
        try:
            from importlib.metadata import version

            info[package] = version(package)
        except Exception:
            pass
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "python",
                                "passes", "dialects"], capture_output=True, text=True,
                               timeout=30).stdout.strip()
        if commit:
            info["kiln_commit"] = commit + (f" + {len(dirty.splitlines())} uncommitted "
                                            f"file(s) in python/ passes/ dialects/"
                                            if dirty else "")
    except Exception:
        pass
    if device == "cuda":
        try:
            text = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                   "--format=csv,noheader"], capture_output=True, text=True,
                                  timeout=30).stdout.strip().splitlines()[0]
            info["gpu"], info["driver"], info["gpu_memory"] = [p.strip() for p in
                                                               text.split(",")]
        except Exception:
            info["gpu"] = "unknown"
    return info


def machine_tag(info: dict, device: str) -> str:
    if device == "cuda":
        name = info.get("gpu", "gpu")
    else:
        name = f"{info.get('cpu', 'cpu')}-{info['cores']}core"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _cell_key(cell: dict) -> tuple:
    return (cell["model"], cell["batch"], cell["dtype"], cell["system"])


def merge_results(path: Path, new: dict) -> dict:
    if path.exists():
        old = json.loads(path.read_text())
        replaced = {_cell_key(c) for c in new["cells"]}
        new["cells"] = [c for c in old["cells"] if _cell_key(c) not in replaced] + new["cells"]
        new["commands"] = sorted(set(old.get("commands", [])) | set(new["commands"]))
    order = {m: i for i, m in enumerate(_zoo_names())}
    systems = {s: i for i, s in enumerate(SYSTEMS["cpu"] + SYSTEMS["cuda"] + list(KILN_SYSTEMS))}
    new["cells"].sort(key=lambda c: (order.get(c["model"], 99), c["batch"], c["dtype"],
                                     systems.get(c["system"], 99)))
    return new


CSV_FIELDS = ["model", "batch", "dtype", "system", "status", "check", "ms", "p10_ms", "p90_ms",
              "min_ms", "runs", "vs_eager", "vs_kiln", "compile_s", "peak_rss_mb",
              "compile_peak_rss_mb", "gpu_peak_alloc_mb", "gpu_process_mb", "device_ms",
              "max_abs_err", "rel_err", "foreign_cores", "error"]


def write_csv(path: Path, result: dict) -> None:
    by_key = {_cell_key(c): c for c in result["cells"]}
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for cell in result["cells"]:
            row = dict(cell)
            for peer, column in (("eager", "vs_eager"), ("kiln", "vs_kiln")):
                other = by_key.get((cell["model"], cell["batch"], cell["dtype"], peer))
                if other and other.get("ms") and cell.get("ms"):
                    row[column] = round(other["ms"] / cell["ms"], 4)
            writer.writerow(row)


def _zoo_names(device: str | None = None) -> tuple:
    """The zoo's models; for the CPU suite's default list without the GPU-only ones."""
    from kiln.examples import zoo

    if device == "cpu":
        return tuple(m for m in zoo.MODEL_NAMES if m not in getattr(zoo, "GPU_ONLY", ()))
    return zoo.MODEL_NAMES


def selected_cells(args, device: str) -> list:
    """(model, batch, dtype) in run order: --cells (or "gpu" = GPU_CELLS) as given, else the
    product of --models × --batches × --dtypes."""
    if getattr(args, "cells", None):
        words = GPU_CELLS if args.cells == "gpu" else args.cells.split(",")
        cells = []
        for word in words:
            model, batch, dtype = word.split(":")
            if model not in _zoo_names():
                raise SystemExit(f"unknown model {model!r} in --cells")
            cells.append((model, int(batch), dtype))
        return cells
    models = args.models.split(",") if args.models else list(_zoo_names(device))
    batches = [int(b) for b in args.batches.split(",")] if args.batches else \
        ([1] if getattr(args, "quick", False) else [1, 8])
    dtypes = args.dtypes.split(",") if args.dtypes else DTYPES[device]
    return [(m, b, d) for m in models for b in batches for d in dtypes]


def _log(message: str) -> None:
    print(f"[suite {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _command_line(argv) -> str:
    """The command as run, without scratch paths (--work, --out, --resume values)."""
    words, skip = [], False
    for word in argv:
        if skip:
            skip = False
            continue
        if word in ("--work", "--out", "--resume"):
            skip = word != "--out"
            if word == "--out":
                words.append("--out")
                words.append("$OUT")
                skip = True
            continue
        if word.startswith(("--work=", "--resume=")):
            continue
        words.append(word)
    return "python -m bench.run_suite " + " ".join(words)


DONE_STATUSES = ("ok", "FAILED-CHECK", "FAILED", "TIMEOUT", "SKIPPED")


def run_suite(args) -> Path:
    device = args.device
    cells_todo = selected_cells(args, device)
    systems = args.systems.split(",") if args.systems else SYSTEMS[device]
    known = SYSTEMS[device] + ([s for s in KILN_SYSTEMS if s not in SYSTEMS[device]]
                               if device == "cuda" else [])
    unknown = [s for s in systems if s not in known]
    if unknown:
        raise SystemExit(f"unknown system(s) for {device}: {unknown}; known {known}")
    lanes = max(1, args.lanes or 1)
    if lanes > 1 and device != "cuda":
        raise SystemExit("--lanes is for --device cuda (CPU timings need the whole machine)")
    speed = "quick" if args.quick else "full"
    plan = (GPU_TIMING if device == "cuda" else TIMING)[speed]
    if args.runs:
        plan = (plan[0], args.runs, plan[2], min(plan[3], args.runs))
    if args.budget:
        plan = (plan[0], plan[1], args.budget, plan[3])
    deadline = time.monotonic() + 60 * args.deadline_min if args.deadline_min else None
    info = machine_info(device)
    tag = args.tag or machine_tag(info, device)
    out_dir = Path(args.out) if args.out else RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"suite-{device}-{tag}" + ("-quick" if args.quick else "")
    work = Path(args.work or tempfile.mkdtemp(prefix=f"kiln-suite-{device}-"))
    work.mkdir(parents=True, exist_ok=True)
    manifest = None
    if device == "cuda":
        manifest = json.loads((Path(args.artifacts) / "manifest.json").read_text())
        info["kiln_commit"] = f"{manifest.get('kiln_commit')} (artifacts compiled with " \
                              f"{manifest.get('compiled_with')})"
    lane_spec = {}
    if lanes > 1:
        cpus = sorted(os.sched_getaffinity(0))
        lane_spec["gpu_lock"] = str(work / "gpu.lock")
        if len(cpus) >= 8:
            lane_spec["timing_cpus"], lane_spec["compile_cpus"] = cpus[:4], cpus[4:]
    info["lanes"] = lanes
    _log(f"{device} suite on {tag}: cells {[f'{m}:{b}:{d}' for m, b, d in cells_todo]}, "
         f"systems {systems}, timing {plan}, lanes {lanes}; work dir {work}")
    result = {"device": device, "tag": tag, "machine": info, "timing": dict(zip(
        ("warmup", "max_runs", "budget_s", "min_runs"), plan)), "tolerance": TOLERANCE,
        "commands": [_command_line(sys.argv[1:])], "cells": []}
    json_path = out_dir / f"{stem}.json"
    done = {}
    if args.resume:
        for path in args.resume:
            if not Path(path).exists():
                _log(f"--resume {path}: no such file (nothing resumed from it)")
                continue
            previous = json.loads(Path(path).read_text())
            for cell in previous["cells"]:
                loaded = args.rerun_loaded is not None and \
                    cell.get("foreign_cores", 0) > args.rerun_loaded
                if cell.get("status") in DONE_STATUSES and not loaded:
                    done[_cell_key(cell)] = cell
            result["commands"] = sorted(set(result["commands"]) |
                                        set(previous.get("commands", [])))
        result["cells"] = list(done.values())
        _log(f"resuming: {len(done)} cells done in {args.resume}")

    lock = threading.Lock()
    state = {"stopped": False}

    def flush():
        with lock:
            merged = merge_results(json_path, dict(result, cells=list(result["cells"])))
            _write_atomic(json_path, json.dumps(merged, indent=1) + "\n")
            write_csv(json_path.with_suffix(".csv"), merged)

    def past_deadline(what: str) -> bool:
        if deadline and time.monotonic() > deadline:
            if not state["stopped"]:
                _log(f"deadline reached; stopping before {what} (rerun with --resume "
                     f"{json_path})")
            state["stopped"] = True
        return state["stopped"]

    def run_group(model: str, batch: int, dtype: str) -> None:
        todo = [s for s in systems if (model, batch, dtype, s) not in done]
        if not todo or past_deadline(f"{model} b{batch} {dtype}"):
            return
        base = dict(lane_spec, model=model, batch=batch, dtype=dtype, device=device,
                    work=str(work))
        _log(f"{model} b{batch} {dtype}: reference")
        ref = run_child(dict(base, stage="reference"), TIMEOUT_S["reference"])
        for system in todo:
            if past_deadline(f"{model} b{batch} {dtype} {system}"):
                break
            cell = dict(model=model, batch=batch, dtype=dtype, system=system)
            if is_kiln(system):  # cuda: the artifact's own commit (from its manifest entry)
                cell["kiln_commit"] = (manifest or {}).get("kiln_commit") or \
                    info.get("kiln_commit")
            if ref["status"] != "ok":
                cell.update(status="FAILED", error="reference: " + ref.get("error", ""),
                            stderr_tail=ref.get("stderr_tail", "")[-1500:])
            else:
                cell["parameters"] = ref["parameters"]
                if lanes > 1:
                    cell["lanes"] = lanes
                cell.update(_run_cell(base, system, plan, args, manifest))
            _log(f"{model} b{batch} {dtype} {system}: {_summary(cell)}")
            with lock:
                result["cells"].append(cell)
            flush()
        shutil.rmtree(cell_dir(work, model, batch, dtype), ignore_errors=True)

    if lanes == 1:
        for model, batch, dtype in cells_todo:
            run_group(model, batch, dtype)
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=lanes) as pool:
            for future in [pool.submit(run_group, *key) for key in cells_todo]:
                future.result()
    flush()
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    _log(f"wrote {json_path} and {json_path.with_suffix('.csv')}")
    if not args.no_report and not args.quick and device == "cpu":
        try:
            from bench import report

            report.main([str(json_path)])
        except Exception as error:  # results are saved; the report can be rerun
            _log(f"report failed: {type(error).__name__}: {error}")
    return json_path


def _write_atomic(path: Path, text: str) -> None:
    """A results file is never half-written (a run may be killed at its time limit)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def merge_files(paths: list, into: Path) -> None:
    """Merge result files of one device and machine (e.g. several GPU-machine runs)."""
    merged = None
    for path in paths:
        part = json.loads(Path(path).read_text())
        if merged is None:
            merged = part
            continue
        if (part["device"], part["tag"]) != (merged["device"], merged["tag"]):
            raise SystemExit(f"{path}: {part['device']}/{part['tag']} is not "
                             f"{merged['device']}/{merged['tag']}")
        keys = {_cell_key(c) for c in part["cells"]}
        merged["cells"] = [c for c in merged["cells"] if _cell_key(c) not in keys] + \
            part["cells"]
        merged["commands"] = sorted(set(merged.get("commands", [])) |
                                    set(part.get("commands", [])))
    into.parent.mkdir(parents=True, exist_ok=True)
    if into.exists():
        into.unlink()
    merged = merge_results(into, merged)
    into.write_text(json.dumps(merged, indent=1) + "\n")
    write_csv(into.with_suffix(".csv"), merged)
    _log(f"merged {len(paths)} files into {into} ({len(merged['cells'])} cells)")


def _run_cell(base: dict, system: str, plan, args, manifest) -> dict:
    cell = {}
    spec = dict(base, system=system, plan=list(plan), quiet_wait=args.quiet_wait,
                attempts=args.attempts)
    if base["device"] == "cpu" and system in ("kiln", "onnxruntime"):
        prep = run_child(dict(spec, stage="prepare", kiln_options={}), args.prepare_timeout)
        if prep["status"] != "ok":
            return dict(status=prep["status"], error="prepare: " + prep.get("error", ""),
                        stderr_tail=prep.get("stderr_tail", "")[-1500:])
        cell.update({k: v for k, v in prep.items() if k not in ("status", "wall_s")})
    if base["device"] == "cuda" and is_kiln(system):
        key = (base["model"], base["batch"], base["dtype"], system)

        def matches(e):
            return (e["model"], e["batch"], e["dtype"], e.get("system", "kiln")) == key

        entry = next((e for e in manifest["artifacts"] if matches(e)), None)
        if entry is None:
            failed = next((f for f in manifest.get("failed", []) if matches(f)), None)
            if failed:
                return {"status": "FAILED", "error": "compile (--prepare-only): " +
                        failed.get("error", "")}
            return {"status": "SKIPPED", "error": f"no {system} artifact prepared for this cell"}
        cell.update(compile_s=entry["compile_s"], artifact_mb=entry["artifact_mb"],
                    compile_peak_rss_mb=entry.get("compile_peak_rss_mb"),
                    compile_options=entry.get("options"))
        if entry.get("kiln_commit"):
            cell["kiln_commit"] = entry["kiln_commit"]
        spec.update(artifacts=str(args.artifacts), artifact=entry["file"],
                    params_file=Path(entry["file"]).stem + ".irpa")
        if entry.get("params_manifest"):
            start = time.perf_counter()
            params = run_child(dict(spec, stage="params",
                                    params_manifest=entry["params_manifest"]),
                               TIMEOUT_S["params"])
            if params["status"] != "ok":
                return dict(cell, status="FAILED", error="params: " + params.get("error", ""),
                            stderr_tail=params.get("stderr_tail", "")[-1500:])
            cell["params_stage_s"] = round(time.perf_counter() - start, 2)
    run = run_child(dict(spec, stage="run"), args.run_timeout)
    cell["run_stage_s"] = round(run.get("wall_s", 0), 2)
    if run["status"] != "ok":
        return dict(cell, status=run["status"], error="run: " + run.get("error", ""),
                    stderr_tail=run.get("stderr_tail", "")[-1500:])
    compile_first = run.pop("compile_s", None)
    if compile_first is not None:
        cell["compile_s"] = compile_first
    elif system == "onnxruntime":
        cell["export_s"] = cell.get("compile_s")
        cell["compile_s"] = (cell.get("compile_s") or 0) + run.get("session_s", 0)
    cell.update({k: v for k, v in run.items() if k != "wall_s"})
    if cell.get("check") != "ok":
        cell["status"] = "FAILED-CHECK"
    return cell


def _summary(cell: dict) -> str:
    if cell.get("status") != "ok":
        return f"{cell.get('status')} {cell.get('error', '')[:300]}"
    parts = [f"{cell['ms']:.2f} ms (p10 {cell['p10_ms']:.2f}, p90 {cell['p90_ms']:.2f}, "
             f"n={cell['runs']})", f"err {cell.get('rel_err', 0):.1e}",
             f"rss {cell.get('peak_rss_mb', 0):.0f} MB",
             f"foreign {cell.get('foreign_cores', 0):.2f} cores"]
    if cell.get("compile_s") is not None:
        parts.append(f"compile {cell['compile_s']:.1f} s")
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# GPU: prepare here


def prepare_cuda(args) -> None:
    """Compile the Kiln CUDA artifacts with external weights; the GPU machine rebuilds the
    weights from the zoo, so only code (and folded constants) travels."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cells = selected_cells(args, "cuda")
    systems = [s for s in (args.systems.split(",") if args.systems else ["kiln"]) if is_kiln(s)]
    if not systems:
        raise SystemExit(f"--prepare-only compiles Kiln systems: {', '.join(KILN_SYSTEMS)}")
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else \
        {"artifacts": []}
    compiled_on = machine_info("cpu")
    manifest["kiln_commit"] = compiled_on.get("kiln_commit")
    manifest["compiled_with"] = {k: compiled_on.get(k) for k in ("iree-base-compiler",
                                                                   "torch-mlir", "torch")}
    for model, batch, dtype in cells:
        for system in systems:
            spec = {"stage": "prepare-cuda", "model": model, "batch": batch, "dtype": dtype,
                    "device": "cpu", "out": str(out), "weights": args.weights,
                    "system": system}
            _log(f"compiling {model} b{batch} {dtype} for cuda ({system})")
            entry = run_child(spec, args.prepare_timeout)
            key = {"model": model, "batch": batch, "dtype": dtype, "system": system}

            def same(e):
                return all(e.get(k, "kiln" if k == "system" else None) == v
                           for k, v in key.items())

            manifest["failed"] = [f for f in manifest.get("failed", []) if not same(f)]
            manifest["artifacts"] = [e for e in manifest["artifacts"] if not same(e)]
            if entry["status"] != "ok":
                _log(f"  FAILED: {entry.get('error')}\n{entry.get('stderr_tail', '')[-1500:]}")
                manifest["failed"].append(dict(key, status=entry["status"],
                                               error=entry.get("error", "")[:600],
                                               kiln_commit=manifest["kiln_commit"]))
                _write_atomic(manifest_path, json.dumps(manifest, indent=1))
                continue
            entry.pop("status")
            entry.pop("wall_s")
            entry["kiln_commit"] = manifest["kiln_commit"]
            manifest["artifacts"].append(entry)
            _write_atomic(manifest_path, json.dumps(manifest, indent=1))
            _log(f"  {entry['file']}: {entry['artifact_mb']:.1f} MB in "
                 f"{entry['compile_s']:.0f} s")
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    _log(f"{out}: {len(manifest['artifacts'])} artifacts, {total / 2**20:.1f} MB in all")


def stage_prepare_cuda(spec) -> dict:
    import numpy as np

    import kiln

    model, inputs = _build(spec)
    out = Path(spec["out"])
    system = spec.get("system", "kiln")
    stem = f"{spec['model']}-b{spec['batch']}-{spec['dtype']}{kiln_variant_suffix(system)}"
    variant = KILN_SYSTEMS[system]
    options = _kiln_options(dict(variant.get("options", {}), weights=spec["weights"]),
                            variant.get("if_known"))
    start = time.perf_counter()
    compiled = kiln.compile_model(model, tuple(inputs),
                                  target=spec.get("target", "cpu" if FAKE_CUDA else "cuda"),
                                  **options)
    compile_s = time.perf_counter() - start
    file = f"{stem}.vmfb"
    (out / file).write_bytes(compiled.vmfb)
    entry = {"file": file, "model": spec["model"], "batch": spec["batch"],
             "dtype": spec["dtype"], "system": system, "compile_s": compile_s,
             "options": {k: v for k, v in options.items() if k != "cache"},
             "phases_s": {k: round(v, 2) for k, v in compiled.report.phase_seconds.items()},
             "compile_peak_rss_mb": _peak_rss_mb(),
             "artifact_mb": (out / file).stat().st_size / 2**20}
    if compiled.parameters:
        state = dict(model.state_dict())
        state.update(dict(model.named_buffers()))
        params, consts = [], {}
        for key, array in compiled.parameters.items():
            array = np.ascontiguousarray(array)
            if key not in state or _kiln_bytes(state[key]).tobytes() != array.tobytes():
                consts[key] = array
            params.append({"key": key, "shape": list(array.shape), "dtype": str(array.dtype),
                           "sha256": hashlib.sha256(array.tobytes()).hexdigest()})
        manifest = {"parameters": params}
        if consts:
            np.savez(out / f"{stem}-consts.npz", **consts)
            manifest["consts"] = f"{stem}-consts.npz"
            entry["consts_mb"] = (out / manifest["consts"]).stat().st_size / 2**20
        (out / f"{stem}-params.json").write_text(json.dumps(manifest))
        entry["params_manifest"] = f"{stem}-params.json"
        entry["params_mb"] = sum(a.nbytes for a in compiled.parameters.values()) / 2**20
    return entry


# ---------------------------------------------------------------------------------------------


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--models", help="comma-separated zoo names (default: all)")
    parser.add_argument("--batches", help="comma-separated (default 1,8; --quick: 1)")
    parser.add_argument("--dtypes", help="default f32 on cpu, f16,bf16 on cuda")
    parser.add_argument("--systems", help="comma-separated (default: all for the device; "
                                          "--prepare-only: kiln). Kiln variants: "
                                          + ", ".join(KILN_SYSTEMS))
    parser.add_argument("--cells", help="model:batch:dtype,... in this order instead of "
                                        "--models/--batches/--dtypes; 'gpu' = the GPU suite's "
                                        "cells (GPU_CELLS)")
    parser.add_argument("--lanes", type=int, default=1,
                        help="cuda: cells run side by side, measurements alone on the GPU "
                             "(see the docstring)")
    parser.add_argument("--quick", action="store_true",
                        help="batch 1, fewer runs, results to suite-...-quick.json, no report")
    parser.add_argument("--runs", type=int, help="max timed calls per cell")
    parser.add_argument("--budget", type=float, help="seconds of timed calls per cell")
    parser.add_argument("--tag", help="machine tag in the result file name")
    parser.add_argument("--out", help="results folder (default bench/results); with "
                                      "--prepare-only the artifact folder")
    parser.add_argument("--work", help="scratch folder (default: a temp dir)")
    parser.add_argument("--prepare-only", action="store_true",
                        help="cuda: compile Kiln artifacts here, for --artifacts there")
    parser.add_argument("--artifacts", help="cuda: folder written by --prepare-only")
    parser.add_argument("--weights", default="external", choices=("inline", "external"),
                        help="cuda --prepare-only: where the artifacts' weights live")
    parser.add_argument("--quiet-wait", type=float, default=None,
                        help="cpu: wait up to this long for other load before timing "
                             "(default 30 s; 0 = never)")
    parser.add_argument("--attempts", type=int, default=None,
                        help="cpu: time a cell again (up to this many loops) when other "
                             "processes took over half a core during the loop (default 2)")
    parser.add_argument("--prepare-timeout", type=float, default=TIMEOUT_S["prepare"])
    parser.add_argument("--run-timeout", type=float, default=TIMEOUT_S["run"])
    parser.add_argument("--no-report", action="store_true")
    parser.add_argument("--deadline-min", type=float,
                        help="start no new cell after this many minutes (results so far are "
                             "written; continue with --resume)")
    parser.add_argument("--resume", action="append",
                        help="results JSON of an earlier run: its finished cells are kept and "
                             "not run again (repeatable)")
    parser.add_argument("--rerun-loaded", type=float, metavar="CORES",
                        help="with --resume: run again the cells timed while other processes "
                             "used more than CORES cores")
    parser.add_argument("--merge", nargs="+", metavar="JSON",
                        help="merge these results files into --into and exit")
    parser.add_argument("--into", type=Path, help="target of --merge")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    use_kiln_python()
    if args.child:
        spec = json.loads(args.child)
        if spec["stage"] == "prepare-cuda":
            print("RESULT " + json.dumps(stage_prepare_cuda(spec)), flush=True)
        else:
            child_main(spec)
        return
    if args.merge:
        if not args.into:
            raise SystemExit("--merge needs --into <results json>")
        merge_files(args.merge, args.into)
        return
    if args.quiet_wait is None:
        args.quiet_wait = 30.0 if args.device == "cpu" else 0.0
    if args.attempts is None:
        args.attempts = 2 if args.device == "cpu" else 1
    if args.prepare_only:
        if args.device != "cuda" or not args.out:
            raise SystemExit("--prepare-only is for --device cuda with --out <folder>")
        prepare_cuda(args)
        return
    if args.device == "cuda" and not args.artifacts:
        raise SystemExit("--device cuda needs --artifacts <folder from --prepare-only> "
                         "(Kiln artifacts are compiled on a machine with IREE's compiler)")
    run_suite(args)


if __name__ == "__main__":
    main()
