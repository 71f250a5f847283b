"""GPU correctness of every kernel family against torch (f64 reference on the same inputs).

    export PYTHONPATH=$PWD/python PYTHONUNBUFFERED=1 && python3 -m bench.gpu.kernel_check

Each case runs three ways: "aot" (Triton's CompiledKernel from the ahead-of-time compile, the
PTX Kiln ships), "jit" (the @triton.jit function, Triton's JIT) and, for plans built through
the public API, "plan" (kiln.kernels.execute.run_plan: buffers from launch.args and params).
Writes $OUT/kernel_check.json; exit status 1 when a case fails.
"""

from __future__ import annotations

import math
import sys
import time

from bench.gpu import kernel_common as common
import torch  # noqa: E402

from kiln import kernels  # noqa: E402
from kiln.kernels import execute, reference, selfcheck  # noqa: E402
from kiln.kernels.attention import attention_spec  # noqa: E402
from kiln.kernels.configs import GemmConfig  # noqa: E402
from kiln.kernels.linear import linear_spec  # noqa: E402

LINEAR = [
    dict(m=77, n=1000, k=520, weight_layout="out_in", has_bias=True, activation="gelu",
         has_residual=True),
    dict(m=1, n=1500, k=3000, weight_layout="in_out", has_bias=False, activation="silu",
         has_residual=False),
    dict(m=8, n=2304, k=768, weight_layout="in_out", has_bias=True, activation="gelu_tanh",
         has_residual=False),
    dict(m=300, n=257, k=129, weight_layout="out_in", has_bias=True, activation="relu",
         has_residual=False),
    dict(m=4096, n=3072, k=768, weight_layout="in_out", has_bias=True, activation="gelu_tanh",
         has_residual=False),
    dict(m=1024, n=1024, k=2816, weight_layout="out_in", has_bias=False, activation="none",
         has_residual=True),
    dict(m=64, n=768, k=3072, weight_layout="out_in", has_bias=True, activation="none",
         has_residual=True, config=GemmConfig(64, 64, 64, 8, 4, 4, 3)),
    dict(m=777, n=1000, k=520, weight_layout="out_in", has_bias=True, activation="gelu",
         has_residual=True, config=GemmConfig(64, 128, 64, 8, 1, 4, 4)),
]
ATTENTION = [
    dict(b=2, hq=8, hkv=2, sq=200, sk=333, d=80, causal=True, mask_shape=(2, 1, 200, 333),
         mask_kind="additive", mask_dtype="f32"),
    dict(b=1, hq=12, hkv=12, sq=300, sk=100, d=128, causal=True),
    dict(b=2, hq=4, hkv=4, sq=257, sk=257, d=64, causal=False, mask_shape=(1, 1, 257, 257),
         mask_kind="bool", mask_dtype="i8"),
    dict(b=1, hq=16, hkv=4, sq=512, sk=512, d=64, causal=True),
    dict(b=8, hq=12, hkv=12, sq=128, sk=128, d=64, causal=True),
    dict(b=1, hq=2, hkv=2, sq=64, sk=64, d=256, causal=False),
    dict(b=1, hq=4, hkv=4, sq=100, sk=1000, d=64, causal=False, mask_shape=(1, 4, 100, 1000),
         mask_kind="additive", mask_dtype="q"),
    dict(b=3, hq=32, hkv=8, sq=1, sk=5000, d=128, causal=False, mask_shape=(3, 1, 1, 5000),
         mask_kind="bool", mask_dtype="i8"),
    dict(b=1, hq=12, hkv=12, sq=1, sk=4096, d=64, causal=False),
    dict(b=8, hq=16, hkv=4, sq=1, sk=1024, d=64, causal=False, mask_shape=(8, 16, 1, 1024),
         mask_kind="additive", mask_dtype="q"),
    dict(b=2, hq=8, hkv=8, sq=1, sk=77, d=96, causal=False),
    dict(b=1, hq=4, hkv=4, sq=1, sk=100, d=64, causal=True),
]


def run_case(op: str, args: dict, modes, seed: int = 0) -> list[dict]:
    config = args.get("config")
    if op == "linear":
        spec = linear_spec(**args)
        inputs = reference.random_inputs(spec, None, "cuda", seed)
        ref = reference.linear(inputs, args["weight_layout"], args["has_bias"],
                               args["activation"], args["has_residual"])
    else:
        spec = attention_spec(**args)
        inputs = reference.random_inputs(spec, args.get("mask_kind"), "cuda", seed)
        ref = reference.attention(inputs, args["scale"], args["causal"], args.get("mask_kind"))
    results = []
    label = op + "(" + ", ".join(f"{k}={v}" for k, v in args.items() if k != "config") + ")"
    for mode in modes:
        start = time.time()
        try:
            if mode == "plan":
                plan_args = {k: v for k, v in args.items() if k != "config"}
                plan = getattr(kernels, f"{op}_plan")(**plan_args)
                out = execute.run_plan(plan, inputs)
            else:
                out = execute.run_spec(spec, inputs, mode=mode)
            torch.cuda.synchronize()
            error = reference.relative_error(out, ref)
            problem = None
        except Exception as exc:
            error, problem = math.inf, f"{type(exc).__name__}: {str(exc)[:300]}"
        tolerance = reference.TOLERANCE[args["dtype"]]
        results.append({"case": label, "mode": mode, "dtype": args["dtype"],
                        "config": (config or spec.config).label(),
                        "launches": len(spec.launches), "error": error,
                        "tolerance": tolerance, "ok": error <= tolerance,
                        "exception": problem, "seconds": round(time.time() - start, 2)})
        r = results[-1]
        print(f"{'ok  ' if r['ok'] else 'FAIL'} {mode:4s} err={error:.2e} tol={tolerance:.0e} "
              f"{r['config']:>22s} {label}" + (f"  !! {problem}" if problem else ""),
              flush=True)
    return results


def all_cases():
    for _, args in selfcheck._cases(quick=False):
        if "position" in args:
            # decode writing its KV cache: run_case does not compare the written caches;
            # `python -m kiln.kernels.selfcheck --device cuda --mode aot` does
            continue
        yield ("linear" if "m" in args else "attention"), dict(args), ("aot", "jit")[
            :2 if args["dtype"] == "f16" else 1]
        if args["dtype"] == "f16":  # the bf16 twin (Triton's interpreter cannot run bf16 dots)
            twin = dict(args, dtype="bf16")
            if twin.get("mask_dtype") == "f16":
                twin["mask_dtype"] = "bf16"
            yield ("linear" if "m" in args else "attention"), twin, ("aot",)
    # Triton's JIT compiles serially when its cache key differs from the ahead-of-time one:
    # JIT on a few cases only.
    for dtype in ("f16", "bf16"):
        for index, args in enumerate(LINEAR):
            jit = ("jit",) if dtype == "f16" and index < 2 else ()
            yield "linear", dict(args, dtype=dtype), ("aot", "plan") + jit
        for index, args in enumerate(ATTENTION):
            a = dict(args, dtype=dtype, scale=1 / math.sqrt(args["d"]))
            if a.get("mask_dtype") == "q":
                a["mask_dtype"] = dtype
            jit = ("jit",) if dtype == "f16" and index in (0, 7) else ()
            yield "attention", a, ("aot", "plan") + jit


def torch_fully_masked() -> dict:
    """What torch's CUDA SDPA gives for a query row whose keys are all masked."""
    q = torch.randn(1, 2, 4, 64, device="cuda", dtype=torch.float16)
    k, v = torch.randn_like(q), torch.randn_like(q)
    keep = torch.ones(1, 1, 4, 4, dtype=torch.bool, device="cuda")
    keep[..., 1, :] = False
    out = {}
    for kind, mask in (("bool", keep),
                       ("additive -inf", torch.zeros(1, 1, 4, 4, device="cuda",
                                                     dtype=torch.float16).masked_fill(
                           ~keep, float("-inf")))):
        row = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)[0, 0, 1]
        out[kind] = "nan" if torch.isnan(row).any().item() else \
            f"max |row| = {row.abs().max().item():.3g}"
    return out


def main() -> int:
    cases = list(all_cases())
    specs = []
    for op, args, _ in cases:
        spec = linear_spec(**args) if op == "linear" else attention_spec(**args)
        specs.extend(spec.launches)
        if "config" in args:  # the public API's plan (table config) for the same arguments
            specs.extend((linear_spec if op == "linear" else attention_spec)(
                **{k: v for k, v in args.items() if k != "config"}).launches)
    errors = common.precompile(specs)
    info = common.machine()
    print("#", info, flush=True)
    for key, error in errors.items():
        print("# compile failed:", key[:12], error)
    results = []
    for op, args, modes in cases:
        results.extend(run_case(op, args, modes))
    failed = [r for r in results if not r["ok"]]
    masked = torch_fully_masked()
    print(f"# {len(results) - len(failed)}/{len(results)} passed; torch CUDA SDPA on a fully "
          f"masked row: {masked}", flush=True)
    common.write_json("kernel_check.json", {"machine": info, "results": results,
                                            "torch_fully_masked_row": masked,
                                            "compile_errors": errors})
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
