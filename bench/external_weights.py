"""Inline vs external weights on GPT-2 small (124M parameters, random weights, CPU).

    python -m bench.external_weights --out bench/results/external_weights-cpu.json

For each of weights="inline" and weights="external": compile in a fresh process (export →
.vmfb, written to disk; compile time and peak RSS), then load in fresh processes (`kiln.load`
time, first call, median of later calls, peak RSS, max error against eager). Each load is
repeated (`--loads`) and the median reported; the files are in the page cache (warm load).
Nothing is downloaded: GPT2LMHeadModel is built from the default GPT2Config.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

MODES = ("inline", "external")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_gpt2(seq_len: int):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(use_cache=False)
    model = GPT2LMHeadModel(config).eval()
    ids = torch.randint(0, config.vocab_size, (1, seq_len), dtype=torch.int64)
    return model, ids


def do_compile(args) -> dict:
    import numpy as np
    import torch

    import kiln
    from kiln.archive import parameters_path

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model, ids = build_gpt2(args.seq)
    params = sum(p.numel() for p in model.parameters())
    if not (work / "expected.npy").exists():
        with torch.no_grad():
            np.save(work / "expected.npy", model(ids)[0].numpy())
        np.save(work / "tokens.npy", ids.numpy())
    start = time.perf_counter()
    compiled = kiln.compile_model(model, (ids,), target="cpu", weights=args.mode, cache=False)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    vmfb = compiled.save(work / f"{args.mode}.vmfb")
    save_s = time.perf_counter() - start
    irpa = parameters_path(vmfb)
    return {"mode": args.mode, "parameters": params, "compile_s": compile_s, "save_s": save_s,
            "phases_s": dict(compiled.report.phase_seconds),
            "vmfb_bytes": vmfb.stat().st_size,
            "irpa_bytes": irpa.stat().st_size if args.mode == "external" else 0,
            "compile_peak_rss_mb": _peak_rss_mb()}


def do_load(args) -> dict:
    import numpy as np

    start = time.perf_counter()
    import kiln.runtime  # noqa: F401  (not counted as load time)

    import_s = time.perf_counter() - start
    work = Path(args.work)
    ids = np.load(work / "tokens.npy")
    expected = np.load(work / "expected.npy")
    start = time.perf_counter()
    module = kiln.runtime.load(work / f"{args.mode}.vmfb", device="cpu")
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    out = module(ids)
    first_s = time.perf_counter() - start
    samples = []
    for _ in range(args.calls):
        start = time.perf_counter()
        module(ids)
        samples.append(time.perf_counter() - start)
    logits = out[0] if isinstance(out, tuple) else out
    return {"mode": args.mode, "import_runtime_s": import_s, "load_s": load_s,
            "first_call_s": first_s, "call_median_s": statistics.median(samples),
            "max_abs_error": float(np.abs(logits - expected).max()),
            "load_peak_rss_mb": _peak_rss_mb()}


def do_interleave(args) -> dict:
    """Both artifacts in one process, calls alternating: per-call time with the machine's load
    shared equally (the separate load processes above see whatever else runs at the time)."""
    import numpy as np

    import kiln.runtime

    work = Path(args.work)
    ids = np.load(work / "tokens.npy")
    modules = {mode: kiln.runtime.load(work / f"{mode}.vmfb", device="cpu") for mode in MODES}
    for module in modules.values():
        for _ in range(3):
            module(ids)
    samples = {mode: [] for mode in MODES}
    for _ in range(args.calls):
        for mode, module in modules.items():
            start = time.perf_counter()
            module(ids)
            samples[mode].append(time.perf_counter() - start)
    return {mode: {"min_s": min(v), "median_s": statistics.median(v)}
            for mode, v in samples.items()}


def _cpu_name() -> str:
    from kiln.targets import read_cpuinfo

    return read_cpuinfo().model_name or platform.processor() or "unknown"


def _child(*argv: str) -> dict:
    result = subprocess.run([sys.executable, "-m", "bench.external_weights", *argv],
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stderr[-4000:])
        raise SystemExit(f"child {' '.join(argv)} failed ({result.returncode})")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(args) -> None:
    rows = []
    load_start = os.getloadavg()[0]
    for mode in MODES:
        common = ["--mode", mode, "--work", args.work, "--seq", str(args.seq)]
        print(f"[bench] compiling GPT-2 with weights={mode} ...", file=sys.stderr, flush=True)
        row = _child("_compile", *common)
        loads = [_child("_load", *common, "--calls", str(args.calls)) for _ in range(args.loads)]
        for key in ("load_s", "first_call_s", "call_median_s", "load_peak_rss_mb",
                    "import_runtime_s"):
            row[key] = statistics.median(load[key] for load in loads)
            row[key + "_min"] = min(load[key] for load in loads)
            row[key + "_all"] = [load[key] for load in loads]
        row["max_abs_error"] = max(load["max_abs_error"] for load in loads)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    interleaved = _child("_interleave", "--work", args.work, "--calls", str(2 * args.calls))
    for row in rows:
        row["interleaved_call_min_s"] = interleaved[row["mode"]]["min_s"]
        row["interleaved_call_median_s"] = interleaved[row["mode"]]["median_s"]
    result = {"machine": f"{os.cpu_count()}-core {platform.machine()} CPU ({_cpu_name()})",
              "seq_len": args.seq,
              "command": "python -m bench.external_weights " + " ".join(sys.argv[1:]),
              "load_average_1min": [load_start, os.getloadavg()[0]],
              "rows": rows}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))


def table(result: dict) -> str:
    mb = 1 / 2**20
    lines = ["| weights | compile (s) | .vmfb (MiB) | .irpa (MiB) | compile peak RSS (MiB) | "
             "load (s) | first call (s) | later calls (ms) | load peak RSS (MiB) | "
             "interleaved calls (ms) | max abs err |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['mode']} | {r['compile_s']:.1f} | {r['vmfb_bytes'] * mb:.1f} | "
                     f"{r['irpa_bytes'] * mb:.1f} | {r['compile_peak_rss_mb']:.0f} | "
                     f"{r['load_s']:.3f} ({r['load_s_min']:.3f}) | "
                     f"{r['first_call_s']:.3f} ({r['first_call_s_min']:.3f}) | "
                     f"{r['call_median_s'] * 1e3:.0f} ({r['call_median_s_min'] * 1e3:.0f}) | "
                     f"{r['load_peak_rss_mb']:.0f} | "
                     f"{r['interleaved_call_median_s'] * 1e3:.0f} "
                     f"({r['interleaved_call_min_s'] * 1e3:.0f}) | "
                     f"{r['max_abs_error']:.2e} |")
    phases = ["", "load, first call, later calls: median (min) over the load processes; later "
              "calls: each process's median; interleaved calls: median (min) of calls "
              "alternating between both artifacts in one process", "compile phases (s):"]
    for r in result["rows"]:
        phases.append(f"  {r['mode']}: " + ", ".join(f"{k} {v:.1f}" for k, v in
                                                      r["phases_s"].items()))
    return "\n".join(lines + phases)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", nargs="?", default="all",
                        choices=("all", "_compile", "_load", "_interleave"))
    parser.add_argument("--mode", choices=MODES)
    parser.add_argument("--work", default="/tmp/kiln-bench-external-weights")
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--loads", type=int, default=3, help="load processes per mode")
    parser.add_argument("--calls", type=int, default=5, help="timed calls after the first")
    parser.add_argument("--out", help="write the results as JSON here")
    parsed = parser.parse_args()
    if parsed.step == "_compile":
        print(json.dumps(do_compile(parsed)))
    elif parsed.step == "_load":
        print(json.dumps(do_load(parsed)))
    elif parsed.step == "_interleave":
        print(json.dumps(do_interleave(parsed)))
    else:
        main(parsed)
