"""Kiln's library kernels inside compiled artifacts, on the GPU: correctness and device time.

Two halves (the GPU machine has no IREE compiler):
  python -m bench.gpu.kernel_artifacts prepare --out .device/kart        # here
  python3 -m bench.gpu.kernel_artifacts check --artifacts .device/kart --out $OUT   # there

prepare compiles every case twice for target cuda, with `cuda_kernels="on"` (Hopper kernels
selected by kiln-select-cuda-kernels) and `"off"` (IREE's own code), and stores the inputs and
an f32 reference computed here from the same low-precision weights (eager on CPU in f32).
check runs both artifacts through `kiln.load(device="cuda")` and compares each against the
reference: a case passes when the kernels' error is within the dtype tolerance or no worse than
1.5× IREE's own (ragged sizes, causal, both mask kinds, GQA, decode, whole small models).
Timing cases (weights passed as inputs, so artifacts stay small) are measured with
`iree-benchmark-module` (device time, no Python) beside torch on the same shapes (CUDA events;
cuBLAS through F.linear, flash SDPA). Writes $OUT/kernel_artifacts.json and prints tables.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

# Relative tolerance of max |error| / max(1, max |reference|) per dtype.
TOLERANCE = {"f16": 2e-2, "bf16": 6e-2}
DTYPES = {"f16": "float16", "bf16": "bfloat16"}
# (name, M, K, N, activation) — GPT-2 small and Llama-style layer shapes, batch 8 × 512 tokens
# and single-token decode.
GEMM_TIMING = [
    ("gpt2-qkv-4096", 4096, 768, 2304, "none"),
    ("gpt2-fc-4096", 4096, 768, 3072, "gelu_tanh"),
    ("gpt2-proj-4096", 4096, 3072, 768, "none"),
    ("gpt2-qkv-1", 1, 768, 2304, "none"),
    ("gpt2-fc-1", 1, 768, 3072, "gelu_tanh"),
    ("llama-gateup-4096", 4096, 1024, 5632, "none"),
]
# (name, batch, q heads, kv heads, query len, key len, head dim, causal)
ATTENTION_TIMING = [
    ("prefill-b1-128", 1, 12, 12, 128, 128, 64, True),
    ("prefill-b8-512", 8, 12, 12, 512, 512, 64, True),
    ("prefill-gqa-b1-512", 1, 16, 4, 512, 512, 64, True),
    ("decode-kv1024", 1, 12, 12, 1, 1024, 64, False),
    ("decode-kv4096", 1, 12, 12, 1, 4096, 64, False),
    ("decode-gqa-kv4096", 1, 16, 4, 1, 4096, 64, False),
]


# ---------------------------------------------------------------------------------------------
# Cases (built here only)


def _torch():
    import torch

    return torch


def _activation_module(activation: str):
    torch = _torch()
    F = torch.nn.functional
    apply = {"none": lambda y: y, "relu": F.relu, "silu": F.silu, "gelu": F.gelu,
             "gelu_tanh": lambda y: F.gelu(y, approximate="tanh")}[activation]

    class LinearAct(torch.nn.Module):
        def __init__(self, bias: bool = True):
            super().__init__()
            self.linear = torch.nn.Linear(96, 200, bias=bias)

        def forward(self, x):
            return apply(self.linear(x))

    return LinearAct


def _in_out_module():
    torch = _torch()

    class Conv1DLike(torch.nn.Module):  # GPT-2's Conv1D: addmm with an [in, out] weight
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.randn(96, 200) * 0.1)
            self.bias = torch.nn.Parameter(torch.randn(200) * 0.1)

        def forward(self, x):
            return torch.addmm(self.bias, x.reshape(-1, 96), self.weight).reshape(
                x.shape[0], x.shape[1], 200)

    return Conv1DLike()


def _attention_module(causal=False, gqa=False):
    torch = _torch()
    F = torch.nn.functional

    class Attention(torch.nn.Module):
        def forward(self, q, k, v, mask=None):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                                  enable_gqa=gqa)

    return Attention()


def correctness_cases():
    """(name, dtype, module factory(dtype) → (module, inputs))."""
    torch = _torch()

    def linear(activation, bias=True):
        def make(dtype):
            module = _activation_module(activation)(bias)
            return module.to(dtype), (torch.randn(3, 37, 96).to(dtype),)
        return make

    def in_out(dtype):
        return _in_out_module().to(dtype), (torch.randn(3, 37, 96).to(dtype),)

    def attention(b, hq, hkv, sq, sk, d=64, causal=False, mask=None):
        def make(dtype):
            q = torch.randn(b, hq, sq, d).to(dtype)
            k, v = (torch.randn(b, hkv, sk, d).to(dtype) for _ in range(2))
            args = [q, k, v]
            if mask == "additive":
                bias = torch.randn(b, 1, sq, sk) * 2
                bias[..., :, ::7] = -1e4  # masked-out keys, every row keeps others
                args.append(bias.to(dtype))
            elif mask == "bool":
                keep = torch.rand(1, 1, sq, sk) > 0.3
                keep[..., 0] = True  # no fully masked row (torch gives NaN there)
                args.append(keep)
            return _attention_module(causal, gqa=hq != hkv), tuple(args)
        return make

    def hf(kind):
        def make(dtype):
            from transformers import (GPT2Config, GPT2LMHeadModel, LlamaConfig,
                                      LlamaForCausalLM)

            if kind == "gpt2":
                config = GPT2Config(n_layer=2, n_embd=128, n_head=4, vocab_size=500,
                                    n_positions=128)
                model = GPT2LMHeadModel(config)
            else:
                config = LlamaConfig(num_hidden_layers=2, hidden_size=128, num_attention_heads=4,
                                     num_key_value_heads=2, intermediate_size=352,
                                     vocab_size=500, max_position_embeddings=128)
                model = LlamaForCausalLM(config)
            model.config.use_cache = False

            class Logits(torch.nn.Module):
                def __init__(self):
                    super().__init__()
                    self.lm = model

                def forward(self, ids):
                    return self.lm(input_ids=ids, use_cache=False).logits

            return Logits().eval().to(dtype), (torch.randint(0, 500, (2, 40)),)
        return make

    def tiny_gpt(dtype):
        from kiln.examples.tiny_gpt import build_tiny_gpt

        model, args = build_tiny_gpt()
        return model.to(dtype), args

    cases = []
    for dtype in ("f16", "bf16"):
        for activation in ("none", "gelu", "gelu_tanh", "relu", "silu"):
            cases.append((f"linear-{activation}", dtype, linear(activation)))
        cases += [
            ("linear-nobias", dtype, linear("none", bias=False)),
            ("linear-in-out", dtype, in_out),
            ("attn-causal-77", dtype, attention(2, 4, 4, 77, 77, causal=True)),
            ("attn-additive-77", dtype, attention(2, 4, 4, 77, 77, mask="additive")),
            ("attn-bool-77", dtype, attention(2, 4, 4, 77, 77, mask="bool")),
            ("attn-gqa-causal-77", dtype, attention(1, 8, 2, 77, 77, causal=True)),
            ("attn-cross-causal-20x77", dtype, attention(1, 4, 4, 20, 77, causal=True)),
            ("attn-decode-300", dtype, attention(2, 8, 8, 1, 300)),
            ("attn-decode-gqa-1000", dtype, attention(1, 8, 2, 1, 1000)),
            ("gpt2-2layer", dtype, hf("gpt2")),
            ("llama-2layer", dtype, hf("llama")),
        ]
    cases.append(("tiny-gpt", "f16", tiny_gpt))
    return cases


def _numpy(tensor):
    torch = _torch()
    if tensor.dtype == torch.bfloat16:
        import ml_dtypes

        return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return tensor.numpy()


def _kernel_count(report) -> int:
    return sum(1 for r in report.rewrites
               if r.pass_name == "kiln-select-cuda-kernels" and r.detail.startswith("kernel "))


def prepare(out: Path, only: str | None, timing: bool = True) -> None:
    torch = _torch()
    import kiln

    out.mkdir(parents=True, exist_ok=True)
    manifest = {"correctness": [], "timing": []}
    torch_dtype = {"f16": torch.float16, "bf16": torch.bfloat16}
    for name, dtype, make in correctness_cases():
        if only and only not in name:
            continue
        torch.manual_seed(0)
        module, args = make(torch_dtype[dtype])
        module = module.eval()
        with torch.no_grad():
            reference = module.float()(*[a.float() if a.is_floating_point() else a
                                         for a in args]).float().numpy()
        module = module.to(torch_dtype[dtype])
        stem = f"{name}-{dtype}"
        entry = {"name": name, "dtype": dtype, "inputs": []}
        for i, arg in enumerate(args):
            array = _numpy(arg)
            # bf16 travels as its bits (np.load cannot rebuild ml_dtypes' dtype).
            np.save(out / f"{stem}.in{i}.npy", array.view(np.uint16) if
                    str(array.dtype) == "bfloat16" else array)
            entry["inputs"].append(f"{stem}.in{i}.npy")
            entry.setdefault("input_dtypes", []).append(str(array.dtype))
        np.save(out / f"{stem}.ref.npy", reference)
        for mode in ("on", "off"):
            start = time.perf_counter()
            compiled = kiln.compile_model(module, args, target="cuda", cuda_kernels=mode,
                                          cache=False)
            compiled.save(out / f"{stem}.{mode}.vmfb")
            entry[f"kernels_{mode}"] = _kernel_count(compiled.report)
            entry[f"compile_s_{mode}"] = round(time.perf_counter() - start, 2)
        print(f"prepared {stem}: {entry['kernels_on']} kernel op(s)", flush=True)
        manifest["correctness"].append(entry)
    for name, m, k, n, activation in GEMM_TIMING if timing else ():
        if only and only not in name:
            continue
        manifest["timing"].append(_prepare_gemm(out, name, m, k, n, activation))
    for spec in ATTENTION_TIMING if timing else ():
        if only and only not in spec[0]:
            continue
        manifest["timing"].append(_prepare_attention(out, *spec))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))


def _compile_timing(out: Path, name: str, module, args) -> dict:
    import kiln

    entry = {"name": name}
    for mode in ("on", "off"):
        compiled = kiln.compile_model(module, args, target="cuda", cuda_kernels=mode, cache=False)
        compiled.save(out / f"time-{name}.{mode}.vmfb")
        entry[f"kernels_{mode}"] = _kernel_count(compiled.report)
    entry["inputs"] = [f"{'x'.join(map(str, a.shape))}xf16" for a in args]
    print(f"prepared timing {name}: {entry['kernels_on']} kernel op(s)", flush=True)
    return entry


def _prepare_gemm(out, name, m, k, n, activation):
    torch = _torch()
    F = torch.nn.functional
    apply = {"none": lambda y: y, "gelu_tanh": lambda y: F.gelu(y, approximate="tanh")}[activation]

    class Gemm(torch.nn.Module):
        def forward(self, x, w, b):
            return apply(F.linear(x, w, b))

    args = (torch.zeros(m, k, dtype=torch.float16), torch.zeros(n, k, dtype=torch.float16),
            torch.zeros(n, dtype=torch.float16))
    entry = _compile_timing(out, name, Gemm(), args)
    entry.update(kind="gemm", m=m, k=k, n=n, activation=activation)
    return entry


def _prepare_attention(out, name, b, hq, hkv, sq, sk, d, causal):
    torch = _torch()
    args = (torch.zeros(b, hq, sq, d, dtype=torch.float16),
            torch.zeros(b, hkv, sk, d, dtype=torch.float16),
            torch.zeros(b, hkv, sk, d, dtype=torch.float16))
    entry = _compile_timing(out, name, _attention_module(causal, gqa=hq != hkv), args)
    entry.update(kind="attention", b=b, hq=hq, hkv=hkv, sq=sq, sk=sk, d=d, causal=causal)
    return entry


# ---------------------------------------------------------------------------------------------
# Check (on the GPU machine)


def _error(actual: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    diff = np.abs(actual.astype(np.float32) - reference)
    finite = np.isfinite(diff)
    if not finite.all():
        return float("inf"), float("inf")
    error = float(diff.max())
    return error, error / max(1.0, float(np.abs(reference).max()))


WHOLE_MODELS = ("gpt2-2layer", "llama-2layer", "tiny-gpt")
_SPEC_DTYPE = {"float16": "f16", "bfloat16": "bf16", "uint16": "bf16", "float32": "f32", "int64": "i64",
               "bool": "i1"}


def _input_spec(array: np.ndarray) -> str:
    """iree-benchmark-module's --input for an array's shape and dtype (zeros)."""
    return "x".join(str(d) for d in array.shape) + "x" + _SPEC_DTYPE[str(array.dtype)]


def check_correctness(artifacts: Path, manifest: dict) -> list[dict]:
    import kiln

    rows = []
    for entry in manifest["correctness"]:
        stem = f"{entry['name']}-{entry['dtype']}"
        inputs = [np.load(artifacts / f) for f in entry["inputs"]]
        for i, dtype in enumerate(entry.get("input_dtypes", [])):
            if dtype == "bfloat16":
                import ml_dtypes

                inputs[i] = inputs[i].view(ml_dtypes.bfloat16)
        reference = np.load(artifacts / f"{stem}.ref.npy")
        row = {"name": entry["name"], "dtype": entry["dtype"], "kernels": entry["kernels_on"]}
        for mode in ("on", "off"):
            try:
                module = kiln.load(artifacts / f"{stem}.{mode}.vmfb", device="cuda")
                actual = np.asarray(module(*inputs))
                row[f"abs_{mode}"], row[f"rel_{mode}"] = _error(actual, reference)
            except Exception as error:  # a failing artifact is a result, not a crash
                row[f"error_{mode}"] = f"{type(error).__name__}: {str(error)[:300]}"
                row[f"rel_{mode}"] = float("inf")
        bound = max(TOLERANCE[entry["dtype"]], 1.5 * row["rel_off"])
        row["passed"] = math.isfinite(row["rel_on"]) and row["rel_on"] <= bound
        if entry["name"] in WHOLE_MODELS:  # device time of the whole model, kernels on vs off
            specs = [_input_spec(x) for x in inputs]
            for mode in ("on", "off"):
                try:
                    row[f"ms_{mode}"] = _iree_ms(artifacts / f"{stem}.{mode}.vmfb", specs)
                except subprocess.CalledProcessError as error:
                    row[f"ms_error_{mode}"] = (error.stderr or "")[-300:]
        rows.append(row)
        print(f"{stem:<32} kernels {row['kernels']:>2}  rel err on {row['rel_on']:.2e}  "
              f"off {row['rel_off']:.2e}  {'ok' if row['passed'] else 'FAIL'} "
              f"{row.get('error_on', '')}" +
              (f"  device ms on {row.get('ms_on', math.nan):.4f} off "
               f"{row.get('ms_off', math.nan):.4f}" if entry["name"] in WHOLE_MODELS else ""),
              flush=True)
    return rows


def _iree_ms(module: Path, inputs: list[str]) -> float:
    from bench.common import iree_benchmark_ms

    return iree_benchmark_ms(module, inputs)


def _torch_ms(entry: dict) -> float:
    import torch
    import torch.nn.functional as F

    if entry["kind"] == "gemm":
        x = torch.randn(entry["m"], entry["k"], device="cuda", dtype=torch.float16)
        w = torch.randn(entry["n"], entry["k"], device="cuda", dtype=torch.float16) * 0.05
        b = torch.randn(entry["n"], device="cuda", dtype=torch.float16)
        act = (lambda y: F.gelu(y, approximate="tanh")) if entry["activation"] != "none" \
            else (lambda y: y)
        call = lambda: act(F.linear(x, w, b))  # noqa: E731
    else:
        q = torch.randn(entry["b"], entry["hq"], entry["sq"], entry["d"], device="cuda",
                        dtype=torch.float16)
        k, v = (torch.randn(entry["b"], entry["hkv"], entry["sk"], entry["d"], device="cuda",
                            dtype=torch.float16) for _ in range(2))
        gqa = entry["hq"] != entry["hkv"]
        call = lambda: F.scaled_dot_product_attention(  # noqa: E731
            q, k, v, is_causal=entry["causal"], enable_gqa=gqa)
    for _ in range(20):
        call()
    torch.cuda.synchronize()
    times = []
    for _ in range(7):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(50):
            call()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 50)
    return statistics.median(times)


def check_timing(artifacts: Path, manifest: dict) -> list[dict]:
    rows = []
    for entry in manifest["timing"]:
        row = {k: v for k, v in entry.items() if k != "inputs"}
        for mode in ("on", "off"):
            try:
                row[f"kiln_{mode}_ms"] = _iree_ms(artifacts / f"time-{entry['name']}.{mode}.vmfb",
                                                  entry["inputs"])
            except subprocess.CalledProcessError as error:
                row[f"error_{mode}"] = (error.stderr or "")[-300:]
        row["torch_ms"] = _torch_ms(entry)
        if "kiln_on_ms" in row:
            row["on_vs_torch"] = row["kiln_on_ms"] / row["torch_ms"]
        if "kiln_on_ms" in row and "kiln_off_ms" in row:
            row["speedup_vs_iree"] = row["kiln_off_ms"] / row["kiln_on_ms"]
        rows.append(row)
        print(f"{entry['name']:<22} kernels {entry['kernels_on']}  kiln+kernels "
              f"{row.get('kiln_on_ms', math.nan):.4f} ms  IREE {row.get('kiln_off_ms', math.nan):.4f}"
              f" ms  torch {row['torch_ms']:.4f} ms  (kernels/torch "
              f"{row.get('on_vs_torch', math.nan):.2f}x)", flush=True)
    return rows


def check(artifacts: Path, out: Path) -> None:
    import torch

    manifest = json.loads((artifacts / "manifest.json").read_text())
    result = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
              "correctness": check_correctness(artifacts, manifest),
              "timing": check_timing(artifacts, manifest)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "kernel_artifacts.json").write_text(json.dumps(result, indent=1))
    failed = [r["name"] + "-" + r["dtype"] for r in result["correctness"] if not r["passed"]]
    print(f"{len(result['correctness']) - len(failed)}/{len(result['correctness'])} "
          f"correctness cases passed" + (f"; FAILED: {', '.join(failed)}" if failed else ""))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--only", help="only cases whose name contains this")
    p.add_argument("--no-timing", action="store_true", help="correctness cases only")
    c = sub.add_parser("check")
    c.add_argument("--artifacts", type=Path, required=True)
    c.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "prepare":
        prepare(args.out, args.only, timing=not args.no_timing)
    else:
        check(args.artifacts, args.out)


if __name__ == "__main__":
    main()
