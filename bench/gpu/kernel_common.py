"""Shared by the kernel scripts on the GPU machine: parallel ahead-of-time compiles (Triton's
disk cache is filled by worker processes; the main process then loads the cached binaries),
CUDA-graph timing, and the machine's description.

Run from the repository root with PYTHONPATH=$PWD/python (see docs/kernels.md).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch  # noqa: E402

from kiln.kernels.plan import LaunchSpec, compile_triton  # noqa: E402


def out_dir() -> Path:
    path = Path(os.environ.get("OUT") or ".device/kernels")
    path.mkdir(parents=True, exist_ok=True)
    return path


def machine() -> dict:
    import triton

    props = torch.cuda.get_device_properties(0)
    return {"gpu": torch.cuda.get_device_name(0), "sms": props.multi_processor_count,
            "capability": f"{props.major}.{props.minor}", "torch": torch.__version__,
            "triton": triton.__version__, "cuda": torch.version.cuda}


def _compile_one(spec: LaunchSpec):
    try:
        compile_triton(spec)
        return None
    except Exception as error:  # reported per spec
        return f"{type(error).__name__}: {str(error)[:300]}"


def precompile(specs, workers: int | None = None) -> dict[str, str]:
    """Compile every distinct spec in worker processes; {spec key: error} for failures.

    Workers are forked (no re-import of torch); call this before CUDA is initialized."""
    unique = {}
    for spec in specs:
        unique.setdefault(spec.key(), spec)
    if not unique:
        return {}
    workers = workers or max(1, min(len(unique), (os.cpu_count() or 2) - 1))
    start = time.time()
    if torch.cuda.is_initialized():
        print("# warning: CUDA initialized before the compile workers fork", flush=True)
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        results = list(pool.map(_compile_one, unique.values(), chunksize=1))
    errors = {key: err for key, err in zip(unique, results) if err}
    print(f"# precompiled {len(unique)} kernels on {workers} processes in "
          f"{time.time() - start:.1f} s ({len(errors)} failed)", flush=True)
    return errors


def time_us(fn, inner: int = 20, trials: int = 7) -> float:
    """Median device time of one fn() in µs: fn captured `inner` times in a CUDA graph,
    the graph replayed `trials` times between CUDA events (launch overhead excluded)."""
    fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        fn()  # warm-up on the capture stream
        stream.synchronize()
        with torch.cuda.graph(graph, stream=stream):
            for _ in range(inner):
                fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph.replay()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(trials):
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000.0 / inner)
    del graph
    return statistics.median(times)


def l2_bytes() -> int:
    props = torch.cuda.get_device_properties(0)
    return int(getattr(props, "L2_cache_size", 0) or 50 << 20)


def time_us_cold(runs) -> float:
    """Median device time of one call in µs when its operands are not in L2: `runs` are
    callables over distinct copies of the operands (together several times the L2), called
    in turn inside one CUDA graph, so each call reads what the previous calls evicted — as a
    decode step does, whose weights (hundreds of MB) pass through the L2 once per step."""
    def cycle():
        for run in runs:
            run()
    return time_us(cycle, inner=2) / len(runs)


def write_json(name: str, payload) -> Path:
    path = out_dir() / name
    path.write_text(json.dumps(payload, indent=1, default=str))
    print(f"# wrote {path}", flush=True)
    return path


class Deadline:
    def __init__(self, seconds: float):
        self.end = time.time() + seconds

    def left(self) -> float:
        return self.end - time.time()

    def passed(self) -> bool:
        return self.left() <= 0
