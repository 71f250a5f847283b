"""Which IREE dispatches dominate a Kiln model on the CPU (and which torch ops dominate eager).

    python -m bench.profile_dispatches --model gpt2-prefill --batch 1 [--torch] [--top 12]

Compiles the zoo model with Kiln (target cpu, default options unless --extra-flag/--no-data-
tiling), runs it with `iree-benchmark-module` under IREE's HAL profiler
(`--device_profiling_mode=host-execution`: the local-task driver records each dispatch's host
execution span), and aggregates `iree-profile dispatch --format=jsonl` per dispatch function and
per kind (matmul, mmt4d/ukernel, softmax/reduction, elementwise, data-tiling pack/unpack …).
Per-call times are avg_ns × calls-per-iteration; `min` columns use each dispatch's fastest
sample (less sensitive to other processes on a shared machine). With --torch, eager's top ops
from torch.profiler are listed too. Writes bench/results/profile-<model>-b<batch>-cpu.json.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
from pathlib import Path

from bench.common import iree_tool

HERE = Path(__file__).resolve().parent

KINDS = [  # (kind, pattern on the dispatch name), first match wins
    ("encode/pack (data tiling)", r"encod|pack|unpack|set_encoding|unset_encoding"),
    ("matmul / mmt4d", r"matmul|matvec|mmt4d|contract|batch_matmul|conv|gemm"),  # gemm: Kiln's
    ("softmax / reduction", r"softmax|reduction|reduce"),
    ("gather / embedding", r"gather|slice|index"),
    ("transpose / copy", r"transpose|copy|slow_memcpy|memcpy"),
    ("elementwise", r"elementwise|generic"),
]


def kind_of(name: str, kinds=None) -> str:
    """The first kind of `kinds` (default: this CPU table) whose pattern matches `name`."""
    for kind, pattern in KINDS if kinds is None else kinds:
        if re.search(pattern, name):
            return kind
    return "other"


def short_name(name: str) -> str:
    return re.sub(r"^main\$async_dispatch_\d+_", "", re.sub(r"^_encoding_\d+_", "encoding_",
                                                          name))


def profile_kiln(model_name: str, batch: int, work: Path, iterations: int, options: dict):
    import numpy as np

    import kiln
    from kiln.examples import zoo

    model, inputs = zoo.build(model_name, batch)
    vmfb = work / "model.vmfb"
    kiln.compile_to_vmfb(model, tuple(inputs), target="cpu", output=vmfb, cache=False,
                         **options)
    args = []
    for i, tensor in enumerate(inputs):
        np.save(work / f"input{i}.npy", tensor.numpy())
        args.append(f"--input=@{work / f'input{i}.npy'}")
    profile = work / "model.ireeprof"
    bench = subprocess.run([iree_tool("iree-benchmark-module"), f"--module={vmfb}", "--device=local-task",
                            "--function=main", *args, f"--benchmark_min_time={iterations}x",
                            "--device_profiling_mode=host-execution",
                            f"--device_profiling_output={profile}"],
                           capture_output=True, text=True, check=True)
    wall = re.findall(r"BM_main\S*\s+([\d.]+) ms", bench.stdout)
    text = subprocess.run([iree_tool("iree-profile"), "dispatch", "--format=jsonl", str(profile)],
                          capture_output=True, text=True, check=True).stdout
    groups = [json.loads(line) for line in text.splitlines()
              if '"type":"host_dispatch_group"' in line]
    rows = []
    for g in groups:
        per_call = g["count"] / iterations
        rows.append({"dispatch": short_name(g["key"]), "kind": kind_of(g["key"]),
                     "calls_per_run": per_call, "avg_ms": g["avg_ns"] / 1e6 * per_call,
                     "min_ms": g["min_ns"] / 1e6 * per_call})
    rows.sort(key=lambda r: -r["avg_ms"])
    total = sum(r["avg_ms"] for r in rows)
    total_min = sum(r["min_ms"] for r in rows)
    kinds: dict = {}
    for r in rows:
        k = kinds.setdefault(r["kind"], {"kind": r["kind"], "avg_ms": 0.0, "min_ms": 0.0,
                                         "dispatches": 0})
        k["avg_ms"] += r["avg_ms"]
        k["min_ms"] += r["min_ms"]
        k["dispatches"] += r["calls_per_run"]
    return {"wall_ms": float(wall[0]) if wall else None, "dispatch_ms": total,
            "dispatch_min_ms": total_min, "dispatches_per_run": sum(r["calls_per_run"]
                                                                    for r in rows),
            "by_kind": sorted(kinds.values(), key=lambda k: -k["avg_ms"]), "top": rows}


def profile_torch(model_name: str, batch: int, top: int):
    import torch
    from torch.profiler import ProfilerActivity, profile

    from kiln.examples import zoo

    model, inputs = zoo.build(model_name, batch)
    with torch.no_grad():
        for _ in range(2):
            model(*inputs)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                model(*inputs)
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events)
    return [{"op": e.key, "calls_per_run": e.count / 3,
             "self_ms": e.self_cpu_time_total / 1e3 / 3,
             "share": e.self_cpu_time_total / total if total else 0} for e in events[:top]]


def markdown(result: dict, top: int) -> str:
    k = result["kiln"]
    lines = [f"**{result['model']}** batch {result['batch']}: Kiln wall "
             f"{k['wall_ms']} ms per call (iree-benchmark-module), dispatch time "
             f"{k['dispatch_ms']:.1f} ms (fastest samples: {k['dispatch_min_ms']:.1f} ms), "
             f"{k['dispatches_per_run']:.0f} dispatches per call", "",
             "| kind | dispatches | ms per call | share | ms (fastest samples) |",
             "|---|---|---|---|---|"]
    for row in k["by_kind"]:
        lines.append(f"| {row['kind']} | {row['dispatches']:.0f} | {row['avg_ms']:.2f} | "
                     f"{row['avg_ms'] / k['dispatch_ms']:.0%} | {row['min_ms']:.2f} |")
    lines += ["", "| top dispatch | kind | calls | ms per call | share |", "|---|---|---|---|---|"]
    for row in k["top"][:top]:
        lines.append(f"| `{row['dispatch']}` | {row['kind']} | {row['calls_per_run']:.0f} | "
                     f"{row['avg_ms']:.2f} | {row['avg_ms'] / k['dispatch_ms']:.0%} |")
    if result.get("torch"):
        lines += ["", "| eager top op (torch.profiler) | calls | self ms per call | share |",
                  "|---|---|---|---|"]
        for row in result["torch"]:
            lines.append(f"| `{row['op']}` | {row['calls_per_run']:.0f} | {row['self_ms']:.2f} "
                         f"| {row['share']:.0%} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--torch", action="store_true", help="also profile eager")
    parser.add_argument("--extra-flag", action="append", default=[],
                        help="extra IREE compile flag (repeatable)")
    parser.add_argument("--no-data-tiling", action="store_true")
    parser.add_argument("--attention", help="the compile option (decomposed, cpu_kernel, ...)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    options = {}
    if args.extra_flag:
        options["extra_iree_flags"] = args.extra_flag
    if args.no_data_tiling:
        options["data_tiling"] = False
    if args.attention:
        options["attention"] = args.attention
    with tempfile.TemporaryDirectory(prefix="kiln-profile-") as tmp:
        result = {"model": args.model, "batch": args.batch, "options": options,
                  "kiln": profile_kiln(args.model, args.batch, Path(tmp), args.iterations,
                                       options)}
    if args.torch:
        result["torch"] = profile_torch(args.model, args.batch, args.top)
    out = args.out or HERE / "results" / f"profile-{args.model}-b{args.batch}-cpu.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(result, args.top))


if __name__ == "__main__":
    main()
