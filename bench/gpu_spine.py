"""GPU run of the spine: the bundled example and kiln.attention lowerings on an NVIDIA GPU.

Two halves, because the GPU machine has no IREE compiler and no torch-mlir:
  python -m bench.gpu_spine prepare --out .device/spine     (here: compile the .vmfb files)
  python -m bench.gpu_spine measure --artifacts .device/spine --out $OUT   (on the GPU machine)

`measure` times each system in its own process (eager, torch.compile, Kiln) and reports medians:
  - the example (TinyGPT, batch 1 × 64 tokens): Kiln through `kiln.load(device="cuda")` from
    Python (host arrays in/out, what a user calls) and `iree-benchmark-module` (device time);
    eager and torch.compile (default, reduce-overhead) on CUDA tensors; max error vs eager.
  - attention alone: each lowering of kiln.attention (decomposed, fused) per shape class
    (prefill, decode) in f16, by `iree-benchmark-module`, beside torch SDPA.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import iree_benchmark_ms, median_ms, sdpa_module

EXAMPLE_DTYPES = ("f32", "f16")
LOWERINGS = ("decomposed", "fused")
# (name, batch, heads, query_len, key_len, head_dim)
ATTENTION_SHAPES = [
    ("prefill-128", 1, 12, 128, 128, 64),
    ("prefill-512", 1, 12, 512, 512, 64),
    ("prefill-b8-512", 8, 12, 512, 512, 64),
    ("decode-kv128", 1, 12, 1, 128, 64),
    ("decode-kv1024", 1, 12, 1, 1024, 64),
    ("decode-kv4096", 1, 12, 1, 4096, 64),
]


def prepare(out: Path) -> None:
    import torch

    import kiln
    from kiln.examples.tiny_gpt import build_tiny_gpt

    out.mkdir(parents=True, exist_ok=True)
    model, (tokens,) = build_tiny_gpt()
    np.save(out / "tokens.npy", tokens.numpy())
    manifest = {"example": [], "attention": []}
    for dtype in EXAMPLE_DTYPES:
        for lowering in LOWERINGS:
            m = model.half() if dtype == "f16" else model.float()
            name = f"example-{dtype}-{lowering}.vmfb"
            start = time.perf_counter()
            kiln.compile_to_vmfb(m, (tokens,), target="cuda", attention=lowering,
                                 output=out / name)
            manifest["example"].append({"file": name, "dtype": dtype, "lowering": lowering,
                                        "compile_s": time.perf_counter() - start})
            print(f"compiled {name}", flush=True)
    for shape_name, b, h, sq, sk, d in ATTENTION_SHAPES:
        causal = sq == sk
        q = torch.zeros(b, h, sq, d, dtype=torch.float16)
        k = torch.zeros(b, h, sk, d, dtype=torch.float16)
        for lowering in LOWERINGS:
            name = f"attention-{shape_name}-{lowering}.vmfb"
            kiln.compile_to_vmfb(sdpa_module(causal), (q, k, k), target="cuda",
                                 attention=lowering, output=out / name)
            manifest["attention"].append({"file": name, "shape": shape_name, "lowering": lowering,
                                          "dims": [b, h, sq, sk, d], "causal": causal})
            print(f"compiled {name}", flush=True)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))


def _system_child(args) -> None:
    """One system in its own process: prints one JSON line."""
    import torch

    from kiln.examples.tiny_gpt import build_tiny_gpt

    model, (tokens,) = build_tiny_gpt()
    dtype = {"f32": torch.float32, "f16": torch.float16}[args.dtype]
    model = model.to("cuda", dtype)
    tokens_gpu = tokens.cuda()
    with torch.no_grad():
        reference = model(tokens_gpu).float().cpu()
    sync = torch.cuda.synchronize
    result = {"system": args.system, "dtype": args.dtype}
    if args.system == "eager":
        with torch.no_grad():
            result["ms"] = median_ms(lambda: model(tokens_gpu), sync)
        result["max_abs_err"] = 0.0
    elif args.system.startswith("torch.compile"):
        mode = args.system.split(":")[1] if ":" in args.system else "default"
        compiled = torch.compile(model, mode=None if mode == "default" else mode)
        with torch.no_grad():
            start = time.perf_counter()
            # clone: reduce-overhead's CUDA graphs overwrite their outputs on the next replay.
            out = compiled(tokens_gpu).clone()
            sync()
            result["compile_s"] = time.perf_counter() - start
            result["ms"] = median_ms(lambda: compiled(tokens_gpu), sync)
        result["max_abs_err"] = float((out.float().cpu() - reference).abs().max())
    else:
        import kiln

        run = kiln.load(Path(args.artifacts) / args.system.split(":", 1)[1], device="cuda")
        out = run(tokens)
        result["ms"] = median_ms(lambda: run(tokens), lambda: None)
        result["max_abs_err"] = float((torch.from_numpy(np.asarray(out, dtype=np.float32))
                                       - reference).abs().max())
        result["device_ms"] = iree_benchmark_ms(
            Path(args.artifacts) / args.system.split(":", 1)[1],
            [f"@{Path(args.artifacts) / 'tokens.npy'}"])
    result["ref_max_abs"] = float(reference.abs().max())
    print("RESULT " + json.dumps(result), flush=True)


def _torch_sdpa_ms(b, h, sq, sk, d, causal) -> float:
    import torch

    q = torch.randn(b, h, sq, d, device="cuda", dtype=torch.float16)
    k = torch.randn(b, h, sk, d, device="cuda", dtype=torch.float16)
    return median_ms(lambda: torch.nn.functional.scaled_dot_product_attention(
        q, k, k, is_causal=causal), torch.cuda.synchronize)


def measure(artifacts: Path, out: Path, only: str = "") -> None:
    import torch

    manifest = json.loads((artifacts / "manifest.json").read_text())
    rows = {"device": torch.cuda.get_device_name(0), "example": [], "attention": []}
    for dtype in EXAMPLE_DTYPES:
        systems = ["eager", "torch.compile:default", "torch.compile:reduce-overhead"] + [
            f"kiln:{e['file']}" for e in manifest["example"] if e["dtype"] == dtype]
        for system in systems:
            if only and system.split(":")[0] + (":" + system.split(":")[1]
                                                if system.startswith("torch") else "") \
                    not in only.split(","):
                continue
            child = subprocess.run([sys.executable, "-m", "bench.gpu_spine", "child",
                                    "--system", system,
                                    "--dtype", dtype, "--artifacts", str(artifacts)],
                                   capture_output=True, text=True)
            line = [ln for ln in child.stdout.splitlines() if ln.startswith("RESULT ")]
            if not line:
                print(f"{system} {dtype} FAILED:\n{child.stderr[-3000:]}", flush=True)
                continue
            rows["example"].append(json.loads(line[0][7:]))
            print(rows["example"][-1], flush=True)
    for entry in manifest["attention"] if not only else []:
        b, h, sq, sk, d = entry["dims"]
        inputs = [f"{b}x{h}x{sq}x{d}xf16=0.01", f"{b}x{h}x{sk}x{d}xf16=0.02",
                  f"{b}x{h}x{sk}x{d}xf16=0.03"]
        row = dict(entry, kiln_ms=iree_benchmark_ms(artifacts / entry["file"], inputs),
                   torch_sdpa_ms=_torch_sdpa_ms(b, h, sq, sk, d, entry["causal"]))
        rows["attention"].append(row)
        print(row, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_spine.json").write_text(json.dumps(rows, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("prepare", "measure", "child"))
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".device/out")))
    parser.add_argument("--artifacts", type=Path, default=Path(".device/spine"))
    parser.add_argument("--system", default="eager")
    parser.add_argument("--dtype", default="f32")
    parser.add_argument("--systems", default="",
                        help="measure only these comma-separated example systems")
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.out)
    elif args.command == "measure":
        measure(args.artifacts, args.out, args.systems)
    else:
        _system_child(args)


if __name__ == "__main__":
    main()
