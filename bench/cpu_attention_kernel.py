"""Kiln's CPU attention kernel (kiln.cpu_attention) alone: checked against numpy, then timed
with iree-benchmark-module (2 workers) next to torch's SDPA (2 threads).

    python -m bench.cpu_attention_kernel                         # zoo Llama: 12 q / 4 kv heads, T=128, causal
    python -m bench.cpu_attention_kernel --heads 12 --kv-heads 12 --mask   # BERT-like padding mask
    python -m bench.cpu_attention_kernel --tiles 4x2x32,4x1x32,8x1x32       # rows x key vectors x query block
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import compile_for_host, iree_tool, run_main_on_cpu


def kernel_module(spec, rows: int, key_vectors: int, query_block: int, unroll: int = 4) -> str:
    from kiln.cpu_attention import _tensor, entry_name, executable_text, operand_shapes

    shapes = [_tensor(s) for s in operand_shapes(spec)]
    inputs, out = shapes[:-1], shapes[-1]
    params = ", ".join(f"%a{i}: {t}" for i, t in enumerate(inputs))
    args = ", ".join(f"%a{i}" for i in range(len(inputs)))
    text = executable_text(spec, "kiln_attention", rows, key_vectors, query_block, unroll)
    return (f"module {{\n{text}util.func public @main({params}) -> {out} {{\n"
            f"  %r = flow.dispatch @kiln_attention::@{entry_name(spec)}({args}) : "
            f"({', '.join(inputs)}) -> {out}\n  util.return %r : {out}\n}}\n}}\n")


def reference(spec, q, k, v, mask):
    group = spec.heads // spec.kv_heads
    k = np.repeat(k, group, axis=1)
    v = np.repeat(v, group, axis=1)
    s = np.einsum("bhqd,bhkd->bhqk", q, k).astype(np.float64) * spec.scale
    if mask is not None:
        s = s + mask
    if spec.causal:
        s = s + np.triu(np.full((spec.q_len, spec.k_len), -np.inf), 1)
    s = np.exp(s - s.max(-1, keepdims=True))
    p = s / s.sum(-1, keepdims=True)
    return np.einsum("bhqk,bhkd->bhqd", p, v)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--kv-heads", type=int, default=4)
    parser.add_argument("--len", type=int, default=128)
    parser.add_argument("--mask", action="store_true", help="additive [B,1,1,S] mask, not causal")
    parser.add_argument("--tiles", default="4x2x32", help="rows x key vectors x query block[x unroll], comma-separated")
    args = parser.parse_args(argv)
    from kiln.cpu_attention import AttentionSpec

    b, h, hk, t, d = args.batch, args.heads, args.kv_heads, args.len, 64
    spec = AttentionSpec(b, h, hk, t, t, d, 0.125, causal=not args.mask,
                         mask_shape=(b, 1, 1, t) if args.mask else None)
    rng = np.random.default_rng(0)
    q = rng.standard_normal((b, h, t, d), np.float32)
    k = rng.standard_normal((b, hk, t, d), np.float32)
    v = rng.standard_normal((b, hk, t, d), np.float32)
    mask = None
    if args.mask:
        mask = np.zeros((b, 1, 1, t), np.float32)
        mask[..., t * 3 // 4:] = np.finfo(np.float32).min
    expected = reference(spec, q, k, v, mask)
    kt = np.ascontiguousarray(k.transpose(0, 1, 3, 2))
    inputs = [q, kt, v] + ([mask] if mask is not None else [])
    work = Path(tempfile.mkdtemp(prefix="kiln-attention-"))
    for tile in args.tiles.split(","):
        rows, key_vectors, query_block, *unroll = map(int, tile.split("x"))
        source = work / f"attention_{tile}.mlir"
        source.write_text(kernel_module(spec, rows, key_vectors, query_block, *unroll))
        vmfb = compile_for_host(source)
        got = run_main_on_cpu(vmfb, *inputs).transpose(0, 2, 1, 3)
        error = float(np.abs(got - expected).max())
        names = []
        for i, x in enumerate(inputs):
            np.save(work / f"in{i}.npy", x)
            names.append(f"--input=@{work / f'in{i}.npy'}")
        out = subprocess.run([iree_tool("iree-benchmark-module"), f"--module={vmfb}",
                              "--device=local-task", "--function=main",
                              "--benchmark_repetitions=7", "--benchmark_min_time=0.3s", *names],
                             capture_output=True, text=True, check=True).stdout
        line = next(x for x in out.splitlines() if "real_time_median" in x)
        print(f"kernel {tile}: {float(line.split()[1]):.3f} ms, max |error| {error:.1e}")
    import torch

    tq, tk, tv = map(torch.from_numpy, (q, k, v))
    tmask = torch.from_numpy(mask) if mask is not None else None
    torch.set_num_threads(2)
    samples = []
    for _ in range(60):
        start = time.perf_counter()
        torch.nn.functional.scaled_dot_product_attention(
            tq, tk, tv, attn_mask=tmask, is_causal=not args.mask, scale=0.125,
            enable_gqa=h != hk)
        samples.append(time.perf_counter() - start)
    print(f"torch SDPA (2 threads): {statistics.median(samples[10:]) * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
