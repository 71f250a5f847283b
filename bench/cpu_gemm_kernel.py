"""A hand-written f32 GEMM dispatch for IREE's CPU backend against IREE's own matmul and torch.

Issue 13's question: can a Kiln-written kernel beat IREE's mmt4d microkernel (16x16x1 tile, a
broadcast load per FMA row) on the hosts where IREE's GEMMs lose to oneDNN/MKL? The kernel is
MLIR (scf + vector dialect) in a `hal.executable.source`, so IREE compiles it like its own code;
no external compiler. Register tile: `rows` rows x `vectors` 16-wide vectors of accumulators
(8 x 2: 16 zmm accumulators, 2 vector loads + 8 broadcasts per 16 FMAs), the reduction loop
unrolled `unroll` times, the weights pre-packed in panels [N / (16·vectors)][K][16·vectors] (what
Kiln does once at compile time: the weights are constants). One workgroup per panel. The kernel
text is Kiln's (kiln.cpu_kernels.executable_text); `cpu_kernels="on"` uses its 8x2x4 tile.

    python -m bench.cpu_gemm_kernel                       # 128x768x2048, the sweep below
    python -m bench.cpu_gemm_kernel --shape 128x768x3072 --tiles 8x2x8

Each variant is checked against numpy before it is timed (iree-benchmark-module, median of 7
repetitions, two workers and one); torch's `linear` is timed in this process (1 and 2 threads).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def kernel_module(m: int, k: int, n: int, rows: int, vectors: int, unroll: int,
                  row_groups: int = 1, k_block: int = 0) -> str:
    """MLIR text: `@main(a: MxK, packed_b: PxKxW) -> MxN` through one dispatch of Kiln's
    kernel (kiln.cpu_kernels.executable_text) with this register tile."""
    from kiln.cpu_kernels import entry_name, executable_text

    width = 16 * vectors
    panels = n // width
    a, b, c = (f"tensor<{m}x{k}xf32>", f"tensor<{panels}x{k}x{width}xf32>",
               f"tensor<{m}x{n}xf32>")
    return (f"module {{\n{executable_text(m, k, n, rows, vectors, unroll, 'kiln_gemm', row_groups, k_block or None)}"
            f"util.func public @main(%a: {a}, %b: {b}) -> {c} {{\n"
            f"  %r = flow.dispatch @kiln_gemm::@{entry_name(m, k, n)}(%a, %b) : ({a}, {b}) -> {c}\n"
            f"  util.return %r : {c}\n}}\n}}\n")


def pack_weights(b: np.ndarray, width: int) -> np.ndarray:
    """[K, N] → [N / width][K][width] (each panel contiguous along K)."""
    k, n = b.shape
    return np.ascontiguousarray(b.reshape(k, n // width, width).transpose(1, 0, 2))


def tool(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(found).exists():
        raise SystemExit(f"{name} not found (install iree-base-compiler / iree-base-runtime)")
    return found


def benchmark(vmfb: Path, inputs: list[str], workers: int) -> float:
    args = [tool("iree-benchmark-module"), f"--module={vmfb}", "--device=local-task",
            "--function=main", "--benchmark_repetitions=7", "--benchmark_min_time=0.3s"]
    args += [f"--input={i}" for i in inputs]
    if workers == 1:
        args.append("--task_topology_max_group_count=1")
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if "real_time_median" in x)
    return float(line.split()[1])


def check(vmfb: Path, a: np.ndarray, packed: np.ndarray, expected: np.ndarray) -> float:
    import iree.runtime as rt

    context = rt.SystemContext(config=rt.Config("local-task"))
    context.add_vm_module(rt.VmModule.copy_buffer(context.instance, vmfb.read_bytes()))
    got = np.asarray(context.modules.module["main"](a, packed))
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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="128x768x2048", help="MxKxN")
    parser.add_argument("--tiles", default="8x2x1,8x2x4,8x2x8,8x2x16,16x1x8,4x4x8",
                        help="rows x vectors x unroll[x row groups[x k block]], comma-separated")
    args = parser.parse_args(argv)
    m, k, n = map(int, args.shape.split("x"))
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((m, k), np.float32), rng.standard_normal((k, n), np.float32)
    expected = a @ b
    work = Path(tempfile.mkdtemp(prefix="kiln-gemm-"))
    print(f"GEMM {m}x{k}x{n} f32 ({2 * m * k * n / 1e9:.3f} GFLOP)")

    import torch

    import kiln

    linear = torch.nn.Linear(k, n, bias=False).eval()
    iree_own = work / "iree.vmfb"
    kiln.compile_to_vmfb(linear, (torch.randn(1, m, k),), cache=False, output=iree_own,
                         cpu_kernels="off")  # IREE's own matmul, with Kiln's other flags
    own = {w: benchmark(iree_own, [f"1x{m}x{k}xf32"], w) for w in (2, 1)}
    print(f"IREE's matmul (Kiln's default flags): 2 workers {own[2]:.2f} ms, 1 worker "
          f"{own[1]:.2f} ms")
    for spec in args.tiles.split(","):
        rows, vectors, unroll, *groups = map(int, spec.split("x"))
        width = 16 * vectors
        source = work / f"gemm_{spec}.mlir"
        try:
            source.write_text(kernel_module(m, k, n, rows, vectors, unroll, *groups))
        except ValueError as error:
            print(f"kernel {spec}: skipped ({error})")
            continue
        vmfb = source.with_suffix(".vmfb")
        subprocess.run([tool("iree-compile"), str(source), "--iree-hal-target-device=local",
                        "--iree-hal-local-target-device-backends=llvm-cpu",
                        "--iree-llvmcpu-target-cpu=host", "--iree-opt-level=O3",
                        "-o", str(vmfb)], check=True)
        error = check(vmfb, a, pack_weights(b, width), expected)
        inputs = [f"{m}x{k}xf32", f"{n // width}x{k}x{width}xf32"]
        times = {w: benchmark(vmfb, inputs, w) for w in (2, 1)}
        print(f"kernel rows {rows} x vectors {vectors}, unroll {unroll}, row groups "
              f"{groups[0] if groups else 1}, k block {groups[1] if len(groups) > 1 else k}: "
              f"2 workers "
              f"{times[2]:.2f} ms ({own[2] / times[2]:.2f}x IREE's), 1 worker {times[1]:.2f} ms "
              f"({own[1] / times[1]:.2f}x); max error / max |ref| {error:.1e}")
    t = torch_times(m, k, n)
    print(f"torch linear: 2 threads {t[2]:.2f} ms, 1 thread {t[1]:.2f} ms")


if __name__ == "__main__":
    main()
