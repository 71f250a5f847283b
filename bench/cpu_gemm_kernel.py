"""A hand-written f32 GEMM dispatch for IREE's CPU backend against IREE's own matmul and torch.

Issue 13's question: can a Kiln-written kernel beat IREE's mmt4d microkernel (16x16x1 tile, a
broadcast load per FMA row) on the hosts where IREE's GEMMs lose to oneDNN/MKL? The kernel is
MLIR (scf + vector dialect) in a `hal.executable.source`, so IREE compiles it like its own code;
no external compiler. Register tile: `rows` rows x `vectors` 16-wide vectors of accumulators
(8 x 2: 16 zmm accumulators, 2 vector loads + 8 broadcasts per 16 FMAs), the reduction loop
unrolled `unroll` times, the weights pre-packed in panels [N / (16·vectors)][K][16·vectors] (what
Kiln does once at compile time: the weights are constants). One workgroup per panel (and row
block). The kernel text is Kiln's (kiln.cpu_kernels.executable_text); the tile "kiln" is what
`cpu_kernels="on"` uses for the shape (8 x 3 where N is a multiple of 48, else 8 x 2; the next
panel prefetched).

    python -m bench.cpu_gemm_kernel                       # 128x768x2048, the sweep below
    python -m bench.cpu_gemm_kernel --shape 128x768x3072,128x3072x768 --tiles kiln,8x2x4x0
    python -m bench.cpu_gemm_kernel --shape 128x768x3072 --tiles 8x3x4x0,8x3x4x0x0x1 \
        --chain 12 --distinct-weights --workers 2          # weights from memory, as in a model

Each variant is checked against numpy before it is timed (iree-benchmark-module, median of 5
repetitions, two workers and one), in `--rounds` rounds over all variants (the order reversed
every other round), each after waiting for other processes' load to drop; torch's `linear` is
timed in this process (1 and 2 threads).

iree-benchmark-module runs under SCHED_BATCH: with Linux's default policy, IREE 3.13's caller
thread, woken at the end of each call, preempts the worker that woke it and spins until that
worker runs again (up to a time slice: one worker sharing the caller's CPU took 5.3 ms instead
of 3.4, two workers 2.5-3.0 ms instead of 1.8; docs/decisions.md "CPU GEMM: the caller's
wait"). A model pays that once per call, a one-dispatch benchmark once per dispatch.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import compile_for_host, iree_tool, run_main_on_cpu


def kernel_module(m: int, k: int, n: int, rows: int, vectors: int, unroll: int,
                  row_groups: int = 1, k_block: int = 0, chain: int = 1,
                  prefetch_panels: int = 0, distinct_weights: bool = False,
                  lanes: int = 16) -> str:
    """MLIR text: `@main(a: MxK, packed_b: PxKxW) -> MxN` through `chain` dispatches of Kiln's
    kernel (kiln.cpu_kernels.executable_text) with this register tile, each waiting for the
    previous one (an optimization barrier on A and the previous result), as a model's GEMMs
    follow each other in one command buffer: the time per dispatch without the caller's wait
    at the end of each call (see main's docstring). With `distinct_weights`, `main` takes
    `chain` weights (b0, b1, ...), one per dispatch, as a model's layers each read their own
    (from memory, not from the last call's caches)."""
    from kiln.cpu_kernels import entry_name, executable_text

    width = lanes * vectors
    panels = n // width
    a, b, c = (f"tensor<{m}x{k}xf32>", f"tensor<{panels}x{k}x{width}xf32>",
               f"tensor<{m}x{n}xf32>")
    dispatch = f"flow.dispatch @kiln_gemm::@{entry_name(m, k, n)}"
    weight = (lambda i: f"%b{i}") if distinct_weights else (lambda i: "%b")
    body = [f"  %r0 = {dispatch}(%a, {weight(0)}) : ({a}, {b}) -> {c}"]
    for i in range(1, chain):
        body += [f"  %a{i}, %d{i} = util.optimization_barrier %a, %r{i - 1} : {a}, {c}",
                 f"  %r{i} = {dispatch}(%a{i}, {weight(i)}) : ({a}, {b}) -> {c}"]
    arguments = ", ".join(f"{weight(i)}: {b}" for i in range(chain if distinct_weights else 1))
    text = executable_text(m, k, n, rows, vectors, unroll, "kiln_gemm", row_groups,
                           k_block or None, prefetch_panels, lanes)
    return (f"module {{\n{text}util.func public @main(%a: {a}, {arguments}) -> {c} {{\n" +
            "\n".join(body) + f"\n  util.return %r{chain - 1} : {c}\n}}\n}}\n")


def pack_weights(b: np.ndarray, width: int) -> np.ndarray:
    """[K, N] → [N / width][K][width] (each panel contiguous along K)."""
    k, n = b.shape
    return np.ascontiguousarray(b.reshape(k, n // width, width).transpose(1, 0, 2))


def _batch_policy() -> None:
    """SCHED_BATCH for the benchmark process (see the module docstring: the caller's wait)."""
    os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


def benchmark(vmfb: Path, inputs: list[str], workers: int, chain: int = 1) -> float:
    """Median ms per dispatch (iree-benchmark-module, 5 repetitions) under SCHED_BATCH."""
    args = [iree_tool("iree-benchmark-module"), f"--module={vmfb}", "--device=local-task",
            "--function=main", "--benchmark_repetitions=5", "--benchmark_min_time=0.2s"]
    args += [f"--input={i}" for i in inputs]
    if workers == 1:
        args.append("--task_topology_max_group_count=1")
    out = subprocess.run(args, capture_output=True, text=True, check=True,
                         preexec_fn=_batch_policy).stdout
    line = next(x for x in out.splitlines() if "real_time_median" in x)
    return float(line.split()[1]) / chain


def check(vmfb: Path, a: np.ndarray, packed: np.ndarray, expected: np.ndarray,
          n: int, weights: int = 1) -> float:
    got = run_main_on_cpu(vmfb, a, *[packed] * weights)[:, :n]
    return float(np.abs(got - expected).max() / np.abs(expected).max())


def torch_times(m: int, k: int, n: int) -> dict:
    import torch

    x, w = torch.randn(m, k), torch.randn(n, k)
    times = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        with torch.no_grad():
            for _ in range(5):
                torch.nn.functional.linear(x, w)
            samples = []
            for _ in range(50):
                start = time.perf_counter()
                torch.nn.functional.linear(x, w)
                samples.append(time.perf_counter() - start)
        times[threads] = statistics.median(samples) * 1e3
    return times


def build(work: Path, m: int, k: int, n: int, spec: str, chain: int, a: np.ndarray,
          b: np.ndarray, expected: np.ndarray, distinct_weights: bool = False,
          lanes: int = 16):
    """(vmfb, inputs, error) of tile `spec` (rows x vectors x unroll[x row groups[x k
    block[x prefetch panels]]]); columns padded to whole panels with zero weights, as kiln-select-cpu-kernels
    does. Raises ValueError for a tile that does not fit the shape."""
    rows, vectors, unroll, *groups = map(int, spec.split("x"))
    width = lanes * vectors
    padded = -(-n // width) * width
    source = work / f"gemm_{m}x{k}x{n}_{spec}_l{lanes}_c{chain}.mlir"
    row_groups, k_block, prefetch = (groups + [1, 0, 0][len(groups):])[:3]
    source.write_text(kernel_module(m, k, padded, rows, vectors, unroll, row_groups, k_block,
                                    chain, prefetch, distinct_weights, lanes))
    vmfb = compile_for_host(source)
    b_padded = np.pad(b, ((0, 0), (0, padded - n)))
    weights = chain if distinct_weights else 1
    error = check(vmfb, a, pack_weights(b_padded, width), expected, n, weights)
    return vmfb, [f"{m}x{k}xf32"] + [f"{padded // width}x{k}x{width}xf32"] * weights, error


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="128x768x2048",
                        help="MxKxN, or several comma-separated")
    parser.add_argument("--tiles", default="kiln,8x2x4x0,8x3x4x0,8x2x8,16x1x8",
                        help="rows x vectors x unroll[x row groups[x k block[x prefetch panels]]], "
                             "comma-separated "
                             "(row groups 0: Kiln's choice, kiln.cpu_kernels.gemm_row_groups; "
                             "prefetch panels default 0); 'kiln': Kiln's default for the shape")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds over all variants (interleaved: noise falls on all)")
    parser.add_argument("--chain", type=int, default=1,
                        help="dependent dispatches per call (time is per dispatch)")
    parser.add_argument("--distinct-weights", action="store_true",
                        help="with --chain: each dispatch reads its own weights")
    parser.add_argument("--lanes", type=int, default=16,
                        help="f32 per vector register the kernel is written for: 16 (AVX-512), "
                             "8 (AVX2)")
    parser.add_argument("--workers", default="2,1", help="IREE workers to time with")
    parser.add_argument("--no-iree", action="store_true", help="skip IREE's own matmul")
    parser.add_argument("--quiet-wait", type=float, default=20.0,
                        help="seconds to wait for other processes' load to drop before each "
                             "round")
    args = parser.parse_args(argv)
    from bench.suite.load import ForeignLoad, wait_for_quiet

    workers = [int(w) for w in args.workers.split(",")]
    work = Path(tempfile.mkdtemp(prefix="kiln-gemm-"))
    for shape in args.shape.split(","):
        m, k, n = map(int, shape.split("x"))
        rng = np.random.default_rng(0)
        a, b = rng.standard_normal((m, k), np.float32), rng.standard_normal((k, n), np.float32)
        expected = a @ b
        print(f"GEMM {m}x{k}x{n} f32 ({2 * m * k * n / 1e9:.3f} GFLOP)", flush=True)
        variants = {}
        if not args.no_iree:
            import torch

            import kiln

            linear = torch.nn.Linear(k, n, bias=False).eval()
            iree_own = work / f"iree_{shape}.vmfb"
            kiln.compile_to_vmfb(linear, (torch.randn(1, m, k),), cache=False,
                                 output=iree_own, cpu_kernels="off")  # Kiln's other flags
            variants["IREE's matmul"] = (iree_own, [f"1x{m}x{k}xf32"], 1, None)
        for spec in args.tiles.split(","):
            if spec == "kiln":  # Kiln's default for this shape
                from kiln import cpu_kernels as ck

                lanes = args.lanes
                vectors = ck.gemm_vectors(m, n, lanes)
                groups = ck.gemm_row_groups(m, n, vectors=vectors, lanes=lanes)
                rows = ck.gemm_rows(m, lanes)
                prefetch = ck.PREFETCH_PANELS if m // groups >= 2 * rows else 0
                unroll = ck.register_tiles(lanes).unroll
                spec = f"{rows}x{vectors}x{unroll}x{groups}x0x{prefetch}"
            fields = spec.split("x")
            if len(fields) > 3 and fields[3] == "0":  # Kiln's row groups for this shape
                from kiln.cpu_kernels import gemm_row_groups

                fields[3] = str(gemm_row_groups(m, n, vectors=int(fields[1]), lanes=args.lanes))
                spec = "x".join(fields)
            try:
                vmfb, inputs, error = build(work, m, k, n, spec, args.chain, a, b, expected,
                                            args.distinct_weights, args.lanes)
            except ValueError as problem:
                print(f"kernel {spec}: skipped ({problem})")
                continue
            variants[f"kernel {spec}"] = (vmfb, inputs, args.chain, error)
        times = {(v, w): [] for v in variants for w in workers}
        foreign = []
        for round_ in range(args.rounds):
            wait_for_quiet(args.quiet_wait)
            order = list(variants) if round_ % 2 == 0 else list(variants)[::-1]
            with ForeignLoad() as load:
                for variant in order:
                    vmfb, inputs, chain, _ = variants[variant]
                    for w in workers:
                        times[(variant, w)].append(benchmark(vmfb, inputs, w, chain))
            foreign.append(load.cores)
        for variant, (_, _, _, error) in variants.items():
            cells = []
            for w in workers:
                samples = times[(variant, w)]
                cells.append(f"{w} worker{'s' if w > 1 else ''} {statistics.median(samples):.2f}"
                             f" (min {min(samples):.2f})")
            note = "" if error is None else f"; max error / max |ref| {error:.1e}"
            print(f"  {variant}: " + ", ".join(cells) + f" ms{note}", flush=True)
        t = torch_times(m, k, n)
        print(f"  torch linear: 2 threads {t[2]:.2f} ms, 1 thread {t[1]:.2f} ms; other "
              f"processes' load during the rounds {max(foreign):.2f} cores at most", flush=True)


if __name__ == "__main__":
    main()
