"""How to lower kiln.attention, measured: every lowering × shape class × dtype × target.

    python -m bench.attention prepare --target cpu  --out .device/attention-cpu
    python -m bench.attention measure --artifacts .device/attention-cpu --out bench/results
    python -m bench.attention prepare --target cuda --out .device/attention-cuda
    # on the GPU machine (iree-base-runtime installed):
    python3 -m bench.attention measure --artifacts .device/attention-cuda --out $OUT
    python -m bench.attention table bench/results/attention-*.json

Kiln's time is the device time of the compiled attention alone (`iree-benchmark-module`), the
baseline is torch's scaled_dot_product_attention on the same device (CUDA events via
synchronize; CPU with torch's default threads). Shape classes: prefill (S = 128, 512; causal)
and decode (one query against KV 128 … 4096), B=1, 12 heads, head dim 64.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

from bench.common import iree_benchmark_ms, median_ms, sdpa_module

LOWERINGS = ("decomposed", "fused")
DTYPES = {"cpu": ("f32",), "cuda": ("f16", "bf16")}
# (name, class, batch, heads, query_len, key_len, head_dim)
SHAPES = [
    ("prefill-128", "prefill", 1, 12, 128, 128, 64),
    ("prefill-512", "prefill", 1, 12, 512, 512, 64),
    ("decode-kv128", "decode", 1, 12, 1, 128, 64),
    ("decode-kv1024", "decode", 1, 12, 1, 1024, 64),
    ("decode-kv4096", "decode", 1, 12, 1, 4096, 64),
]
TORCH_DTYPES = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}


def prepare(target: str, out: Path) -> None:
    import torch

    import kiln

    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for dtype in DTYPES[target]:
        torch_dtype = getattr(torch, TORCH_DTYPES[dtype])
        for name, shape_class, b, h, sq, sk, d in SHAPES:
            q = torch.zeros(b, h, sq, d, dtype=torch_dtype)
            k = torch.zeros(b, h, sk, d, dtype=torch_dtype)
            for lowering in LOWERINGS:
                file = f"attention-{name}-{dtype}-{lowering}.vmfb"
                kiln.compile_to_vmfb(sdpa_module(sq == sk), (q, k, k), target=target,
                                     attention=lowering, output=out / file)
                entries.append({"file": file, "shape": name, "class": shape_class,
                                "dims": [b, h, sq, sk, d], "causal": sq == sk, "dtype": dtype,
                                "lowering": lowering})
                print(f"compiled {file}", flush=True)
    (out / "manifest.json").write_text(json.dumps({"target": target, "entries": entries},
                                                  indent=1))


def _torch_sdpa_ms(device: str, dtype: str, b, h, sq, sk, d, causal) -> float:
    import torch

    torch_dtype = getattr(torch, TORCH_DTYPES[dtype])
    q = torch.randn(b, h, sq, d, device=device, dtype=torch_dtype)
    k = torch.randn(b, h, sk, d, device=device, dtype=torch_dtype)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    return median_ms(lambda: torch.nn.functional.scaled_dot_product_attention(
        q, k, k, is_causal=causal), sync, iters=100)


def measure(artifacts: Path, out: Path) -> None:
    import torch

    manifest = json.loads((artifacts / "manifest.json").read_text())
    target = manifest["target"]
    iree_device = "cuda" if target == "cuda" else "local-task"
    machine = torch.cuda.get_device_name(0) if target == "cuda" else \
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    rows = []
    baselines = {}
    for entry in manifest["entries"]:
        b, h, sq, sk, d = entry["dims"]
        element = entry["dtype"]
        inputs = [f"{b}x{h}x{sq}x{d}x{element}=0.01", f"{b}x{h}x{sk}x{d}x{element}=0.02",
                  f"{b}x{h}x{sk}x{d}x{element}=0.03"]
        key = (entry["shape"], element)
        if key not in baselines:
            baselines[key] = _torch_sdpa_ms("cuda" if target == "cuda" else "cpu", element,
                                            b, h, sq, sk, d, entry["causal"])
        row = dict(entry, kiln_ms=iree_benchmark_ms(artifacts / entry["file"], inputs,
                                                    iree_device),
                   torch_sdpa_ms=baselines[key])
        rows.append(row)
        print(json.dumps(row), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    result = {"target": target, "machine": machine, "rows": rows}
    (out / f"attention-{target}.json").write_text(json.dumps(result, indent=1))


def table(paths: list[Path]) -> str:
    lines = []
    for path in paths:
        result = json.loads(path.read_text())
        lines += [f"### {result['target']} — {result['machine']}", "",
                  "| shape (B, H, Sq, Sk, D) | dtype | decomposed | fused | torch SDPA | best |",
                  "|---|---|---|---|---|---|"]
        grouped: dict = {}
        for row in result["rows"]:
            grouped.setdefault((row["shape"], row["dtype"]), {})[row["lowering"]] = row
        for (shape, dtype), by_lowering in grouped.items():
            any_row = next(iter(by_lowering.values()))
            times = {k: v["kiln_ms"] for k, v in by_lowering.items()}
            best = min(times, key=times.get)
            dims = "×".join(str(x) for x in any_row["dims"])
            causal = ", causal" if any_row["causal"] else ""
            lines.append(f"| {shape} {dims}{causal} | {dtype} | "
                         f"{times.get('decomposed', float('nan')):.3f} ms | "
                         f"{times.get('fused', float('nan')):.3f} ms | "
                         f"{any_row['torch_sdpa_ms']:.3f} ms | {best} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("prepare", "measure", "table"))
    parser.add_argument("paths", nargs="*", type=Path, help="result JSON files (table)")
    parser.add_argument("--target", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--artifacts", type=Path)
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.target, args.out)
    elif args.command == "measure":
        measure(args.artifacts, args.out)
    else:
        print(table(args.paths))


if __name__ == "__main__":
    main()
