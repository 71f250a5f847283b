"""Kiln's CPU convolution kernel (kiln.cpu_conv: implicit GEMM over the padded NHWC input)
against IREE's own convolution (as Kiln compiles it with its kernels off: the host's preset,
im2col on AVX2 hosts) and torch, one convolution at a time.

    python -m bench.cpu_conv_kernel                        # ResNet-18's convolutions, batch 1
    python -m bench.cpu_conv_kernel --batch 8 --tiles kiln,6x2,4x2,4x3
    python -m bench.cpu_conv_kernel --convs 64x56x64k3s1p1 --tiles 6x2x0,6x2x16

A convolution is `CxHxF k K s S p P` (input channels, input size, output channels, kernel,
stride, padding); a tile `rows x vectors[x row groups][h|r]` (row groups 0 or absent: Kiln's
choice, kiln.cpu_conv.conv_row_groups; "h": the kernel rows outermost, "r": the row tiles,
neither: Kiln's choice, conv_kh_outer), or "kiln" (Kiln's tile; "kilnh", "kilnr"). Each variant is checked against torch before it is
timed: iree-benchmark-module (median of 5 repetitions, two IREE workers, SCHED_BATCH as in
bench/cpu_gemm_kernel.py), interleaved over `--rounds` rounds; the kernel's time is the
dispatch alone (the input's padding and layout change, which a model pays as one more copy, is
not in it; IREE's own includes its im2col).
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import compile_for_host, run_main_on_cpu
from bench.cpu_gemm_kernel import benchmark, pack_weights

# ResNet-18 at 224x224: (input channels, input size, output channels, kernel, stride, padding)
RESNET18 = "3x224x64k7s2p3,64x56x64k3s1p1,64x56x128k3s2p1,128x28x128k3s1p1,64x56x128k1s2p0," \
    "128x28x256k3s2p1,256x14x256k3s1p1,128x28x256k1s2p0,256x14x512k3s2p1,512x7x512k3s1p1," \
    "256x14x512k1s2p0"
_CONV = re.compile(r"(\d+)x(\d+)x(\d+)k(\d+)s(\d+)p(\d+)")


def spec_for(conv: str, batch: int, lanes: int, tile: str):
    """(ConvSpec, padding, channels, features) of `conv` with the tile `tile` ("kiln" or
    rows x vectors[x row groups]; a suffix "h": kernel rows outermost, "r": row tiles
    outermost; neither: Kiln's choice, kiln.cpu_conv.conv_kh_outer)."""
    from kiln.cpu_conv import ConvSpec

    c, size, f, k, s, p = map(int, _CONV.fullmatch(conv).groups())
    rows = vectors = groups = 0
    kh_outer = {"h": True, "r": False}.get(tile[-1:])
    tile = tile.rstrip("hr")
    if tile != "kiln":
        rows, vectors, *rest = map(int, tile.split("x"))
        groups = rest[0] if rest else 0
    spec = ConvSpec.of((batch, c, size, size), (f, c, k, k), (s, s), (p, p), lanes, rows,
                       vectors, groups, kh_outer)
    return spec, p, c, f


def kernel_module(spec) -> str:
    from kiln.cpu_conv import executable_text, operand_types

    x, w, out = operand_types(spec)
    return (f"module {{\n{executable_text(spec, 'kiln_conv')}"
            f"util.func public @main(%x: {x}, %w: {w}) -> {out} {{\n"
            f"  %o = flow.dispatch @kiln_conv::@{spec.entry()}(%x, %w) : ({x}, {w}) -> {out}\n"
            f"  util.return %o : {out}\n}}\n}}\n")


def kernel_operands(spec, padding: int, x: np.ndarray, w: np.ndarray):
    """The kernel's inputs from torch's NCHW input and [F, C, KH, KW] weight."""
    n, c = x.shape[:2]
    f = w.shape[0]
    xp = np.pad(x, ((0, 0), (0, spec.channels - c), (padding, padding), (padding, padding)))
    flat = np.ascontiguousarray(xp.transpose(0, 2, 3, 1)).reshape(-1)
    wp = np.pad(w, ((0, spec.features - f), (0, spec.channels - c), (0, 0), (0, 0)))
    matrix = wp.transpose(2, 3, 1, 0).reshape(spec.reduction, spec.features)
    return flat, pack_weights(np.ascontiguousarray(matrix), spec.panel)


def torch_ms(x, w, stride: int, padding: int) -> float:
    import torch

    torch.set_num_threads(2)
    xt, wt = torch.from_numpy(x), torch.from_numpy(w)
    with torch.no_grad():
        for _ in range(3):
            torch.nn.functional.conv2d(xt, wt, stride=stride, padding=padding)
        samples = []
        for _ in range(30):
            start = time.perf_counter()
            torch.nn.functional.conv2d(xt, wt, stride=stride, padding=padding)
            samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e3


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--convs", default=RESNET18, help="comma-separated CxHxFkKsSpP")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--tiles", default="kiln", help="comma-separated: kiln, RxV[xG]")
    parser.add_argument("--lanes", type=int, default=0,
                        help="f32 per vector (default: this host's, kiln.targets)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-iree", action="store_true", help="skip IREE's own convolution")
    parser.add_argument("--quiet-wait", type=float, default=10.0)
    args = parser.parse_args(argv)
    import torch

    import kiln
    from bench.suite.load import wait_for_quiet
    from kiln.targets import cpu_vector_lanes

    lanes = args.lanes or cpu_vector_lanes("host")
    work = Path(tempfile.mkdtemp(prefix="kiln-conv-"))
    total: dict[str, float] = {}
    for conv in args.convs.split(","):
        c, size, f, k, s, p = map(int, _CONV.fullmatch(conv).groups())
        rng = np.random.default_rng(0)
        x = rng.standard_normal((args.batch, c, size, size), np.float32)
        w = (rng.standard_normal((f, c, k, k), np.float32) / np.sqrt(c * k * k)).astype(np.float32)
        expected = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w),
                                              stride=s, padding=p).numpy()
        out = expected.shape[2]
        gflop = 2 * expected.size * c * k * k / 1e9
        print(f"conv {conv} batch {args.batch}: out {out}x{out}, {gflop:.3f} GFLOP", flush=True)
        variants = {}
        if not args.no_iree:
            module = torch.nn.Conv2d(c, f, k, s, p, bias=False).eval()
            module.weight.data = torch.from_numpy(w)
            vmfb = work / f"iree_{conv}.vmfb"
            kiln.compile_to_vmfb(module, (torch.from_numpy(x),), cache=False, output=vmfb,
                                 cpu_kernels="off")
            variants["IREE"] = (vmfb, [f"{args.batch}x{c}x{size}x{size}xf32"])
        for tile in args.tiles.split(","):
            spec, padding, _, _ = spec_for(conv, args.batch, lanes, tile)
            source = work / f"conv_{conv}_{tile}.mlir"
            source.write_text(kernel_module(spec))
            vmfb = compile_for_host(source)
            flat, packed = kernel_operands(spec, padding, x, w)
            got = run_main_on_cpu(vmfb, flat, packed)[:spec.pixels, :f]
            want = expected.transpose(0, 2, 3, 1).reshape(spec.pixels, f)
            error = float(np.abs(got - want).max() / np.abs(want).max())
            label = f"kiln {tile}"  # the same name for every convolution (the totals)
            print(f"  {label}: tile {spec.rows}x{spec.vectors}x{spec.row_groups}, error "
                  f"{error:.1e}", flush=True)
            if error > 1e-4:
                raise SystemExit(f"{label} is wrong on {conv}: {error}")
            variants[label] = (vmfb, [f"{flat.size}xf32",
                                      "{}x{}x{}xf32".format(*packed.shape)])
        times: dict[str, list[float]] = {name: [] for name in variants}
        for round_ in range(args.rounds):
            wait_for_quiet(args.quiet_wait)
            order = list(variants) if round_ % 2 == 0 else list(variants)[::-1]
            for name in order:
                vmfb, shapes = variants[name]
                times[name].append(benchmark(vmfb, shapes, workers=2))
        times["torch"] = [torch_ms(x, w, s, p)]
        for name, samples in times.items():
            ms = statistics.median(samples)
            total[name] = total.get(name, 0.0) + ms
            print(f"  {name:>24}: {ms:7.3f} ms  ({gflop / ms * 1e3:6.1f} GFLOP/s)", flush=True)
    print("total over the convolutions: " +
          ", ".join(f"{name} {ms:.2f} ms" for name, ms in total.items()))


if __name__ == "__main__":
    main()
