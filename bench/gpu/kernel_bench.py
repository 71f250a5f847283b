"""Kiln's kernels against cuBLAS (torch.nn.functional.linear / torch.addmm) and torch's SDPA
(flash backend), f16 and bf16, on the shapes of GPT-2 small and a Llama-style layer.

    export PYTHONPATH=$PWD/python PYTHONUNBUFFERED=1 && python3 -m bench.gpu.kernel_bench
    [KILN_KERNEL_TABLE=$OUT/table.json]   # a table fresh from autotune_kernels.py

Device time by CUDA graphs (median of 7 replays of 20 calls), so launch overhead is left out on
both sides. Configs come from the table through the public builders' config choice. Also checks
every result against an f64 reference. Writes $OUT/kernel_bench.json.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from bench.gpu import autotune_kernels as tune
from bench.gpu import kernel_common as common
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402

from kiln.kernels import configs, execute, reference  # noqa: E402
from kiln.kernels.attention import attention_spec  # noqa: E402
from kiln.kernels.linear import linear_spec  # noqa: E402

DTYPES = ("f16", "bf16")
PREFILL = [(1, 12, 12, 128), (8, 12, 12, 128), (1, 12, 12, 512), (8, 12, 12, 512),
           (1, 16, 4, 512), (8, 16, 4, 512)]
DECODE = tune.DECODE
MASKED = [(1, 12, 12, 512), (8, 12, 12, 128)]  # causal + bool padding mask [b, 1, 1, t]


def gemm_rows():
    for dtype in DTYPES:
        for layout, bias, n, k in tune.GEMM_WEIGHTS:
            for m in tune.GEMM_M:
                yield dict(m=m, n=n, k=k, dtype=dtype, weight_layout=layout, has_bias=bias,
                           activation="none", has_residual=False)


def attention_rows():
    for dtype in DTYPES:
        for b, hq, hkv, t in PREFILL:
            yield "prefill", dict(b=b, hq=hq, hkv=hkv, sq=t, sk=t, d=64, dtype=dtype,
                                  scale=0.125, causal=True)
        for b, hq, hkv, kv in DECODE:
            yield "decode", dict(b=b, hq=hq, hkv=hkv, sq=1, sk=kv, d=64, dtype=dtype,
                                 scale=0.125, causal=False)
        for b, hq, hkv, t in MASKED:
            yield "prefill+mask", dict(b=b, hq=hq, hkv=hkv, sq=t, sk=t, d=64, dtype=dtype,
                                       scale=0.125, causal=True, mask_shape=(b, 1, 1, t),
                                       mask_kind="bool", mask_dtype="i8")


def torch_linear(args, inputs):
    x, w = inputs[0], inputs[1]
    b = inputs[2] if args["has_bias"] else None
    if args["weight_layout"] == "out_in":
        return lambda: F.linear(x, w, b)
    if b is not None:
        return lambda: torch.addmm(b, x, w)
    return lambda: torch.matmul(x, w)


def torch_attention(args, inputs, backend):
    q, k, v = inputs[:3]
    gqa = args["hq"] != args["hkv"]
    mask = None
    if args.get("mask_kind") == "bool":
        keep = inputs[3] != 0
        t = args["sq"]
        mask = keep & torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
    causal = args["causal"] and mask is None

    def run():
        with sdpa_kernel([backend]):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                                  scale=args["scale"], enable_gqa=gqa)
    return run


def markdown(path: str) -> str:
    """The results file as Markdown tables (for docs/kernels.md)."""
    import json

    data = json.loads(Path(path).read_text())
    lines = []
    for op, title, other in (("linear", "GEMM (bias, no activation)", "cuBLAS"),
                             ("prefill", "Attention prefill", "SDPA"),
                             ("prefill+mask", "Attention prefill with a bool mask", "SDPA"),
                             ("decode", "Attention decode (Sq = 1)", "SDPA")):
        rows = [r for r in data["rows"] if r["op"] == op]
        if not rows:
            continue
        lines += [f"#### {title}", "",
                  f"| shape | config | f16 Kiln µs | f16 {other} µs | f16 ratio | "
                  f"bf16 Kiln µs | bf16 {other} µs | bf16 ratio |",
                  "|---|---|---|---|---|---|---|---|"]
        by_shape = {}
        for r in rows:
            by_shape.setdefault(r["shape"], {})[r["dtype"]] = r
        for shape, pair in by_shape.items():
            cells = [shape, next(iter(pair.values()))["config"]]
            for dtype in DTYPES:
                r = pair.get(dtype)
                cells += ([f"{r['kiln_us']:.2f}", f"{r['torch_us']:.2f}",
                           f"**{r['ratio']:.2f}**" if r["ratio"] > 1.3 else f"{r['ratio']:.2f}"]
                          if r else ["", "", ""])
            lines.append("| " + " | ".join(cells) + " |")
        ratios = [r["ratio"] for r in rows]
        geo = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
        lines += ["", f"{op}: geometric mean ratio {geo:.2f}, worst {max(ratios):.2f}, "
                      f"{sum(x <= 1.3 for x in ratios)}/{len(ratios)} within 1.3×; backends: "
                      f"{', '.join(sorted({r['torch'] for r in rows}))}", ""]
    return "\n".join(lines)


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=float, default=1e9, help="seconds; rows past it are "
                        "skipped")
    parser.add_argument("--markdown", default="", help="print this results file as Markdown "
                        "tables and exit")
    options = parser.parse_args()
    if options.markdown:
        print(markdown(options.markdown))
        return 0
    deadline = common.Deadline(options.budget)
    gemms = list(gemm_rows())
    attns = list(attention_rows())
    specs = [l for a in gemms for l in linear_spec(**a).launches] + \
            [l for _, a in attns for l in attention_spec(**a).launches]
    errors = common.precompile(specs)
    info = common.machine()
    print("#", info, "table:", configs.table_path(), flush=True)
    rows = []
    for args in gemms:
        if deadline.passed():
            print("# out of time:", args)
            continue
        spec = linear_spec(**args)
        inputs = reference.random_inputs(spec, None, "cuda", 0)
        buffers = execute.allocate(spec, inputs)
        run = execute.launcher(spec, buffers, "aot")
        ours = common.time_us(run)
        error = reference.relative_error(buffers["out"], reference.linear(
            inputs, args["weight_layout"], args["has_bias"], "none", False))
        theirs = common.time_us(torch_linear(args, inputs))
        flops = 2 * args["m"] * args["n"] * args["k"]
        row = {"op": "linear", "dtype": args["dtype"],
               "shape": f"m{args['m']} n{args['n']} k{args['k']} {args['weight_layout']}"
                        f"{' +bias' if args['has_bias'] else ''}",
               "config": spec.config.label(), "config_from": spec.config_key,
               "launches": len(spec.launches), "kiln_us": round(ours, 2),
               "torch_us": round(theirs, 2), "torch": "cuBLAS", "ratio": round(ours / theirs, 3),
               "kiln_tflops": round(flops / ours / 1e6, 1), "error": error,
               "ok": error <= reference.TOLERANCE[args["dtype"]]}
        rows.append(row)
        print(f"{row['dtype']:4s} {row['shape']:34s} {row['config']:>20s} kiln {ours:8.2f} us "
              f"cuBLAS {theirs:8.2f} us ratio {row['ratio']:5.2f} err {error:.1e}", flush=True)
    for kind, args in attns:
        if deadline.passed():
            print("# out of time:", kind, args)
            continue
        spec = attention_spec(**args)
        inputs = reference.random_inputs(spec, args.get("mask_kind"), "cuda", 0,
                                         masked_rows=False)
        buffers = execute.allocate(spec, inputs)
        run = execute.launcher(spec, buffers, "aot")
        ours = common.time_us(run)
        error = reference.relative_error(buffers["out"], reference.attention(
            inputs, args["scale"], args["causal"], args.get("mask_kind")))
        theirs, backend = math.inf, None
        for candidate in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                          SDPBackend.CUDNN_ATTENTION, SDPBackend.MATH):
            try:
                theirs = common.time_us(torch_attention(args, inputs, candidate))
                backend = candidate.name.lower()
                break
            except Exception:
                continue
        shape = (f"b{args['b']} h{args['hq']}/{args['hkv']} q{args['sq']} k{args['sk']} "
                 f"d{args['d']}{' causal' if args['causal'] else ''}"
                 f"{' +bool mask' if args.get('mask_kind') else ''}")
        row = {"op": kind, "dtype": args["dtype"], "shape": shape,
               "config": spec.config.label(), "config_from": spec.config_key,
               "launches": len(spec.launches), "kiln_us": round(ours, 2),
               "torch_us": round(theirs, 2), "torch": f"SDPA {backend}",
               "ratio": round(ours / theirs, 3), "error": error,
               "ok": error <= reference.TOLERANCE[args["dtype"]]}
        rows.append(row)
        print(f"{row['dtype']:4s} {shape:40s} {row['config']:>16s} kiln {ours:8.2f} us "
              f"{row['torch']:>16s} {theirs:8.2f} us ratio {row['ratio']:5.2f} err {error:.1e}",
              flush=True)
    for group in ("linear", "prefill", "decode", "prefill+mask"):
        ratios = [r["ratio"] for r in rows if r["op"] == group and math.isfinite(r["ratio"])]
        if ratios:
            geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
            print(f"# {group}: geomean ratio {geo:.3f}, worst {max(ratios):.2f}, "
                  f"within 1.3x: {sum(r <= 1.3 for r in ratios)}/{len(ratios)}", flush=True)
    common.write_json("kernel_bench.json", {"machine": info, "table": str(configs.table_path()),
                                            "rows": rows, "compile_errors": errors})
    return 0


if __name__ == "__main__":
    sys.exit(main())
