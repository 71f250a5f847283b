"""Sweep IREE compile flags and runtime flags for Kiln's CPU target on zoo models.

    python -m bench.sweep_flags                                  # default models and configs
    python -m bench.sweep_flags --models mlp,bert --configs default,no-data-tiling
    python -m bench.report --sweep bench/results/sweep-cpu.json  # (run at the end anyway)

Per model, every config is compiled first (Kiln → .vmfb, a fresh process each; compile time
recorded), then all configs are timed in --passes interleaved passes (rotating order; each
timing a fresh process: kiln.load, check against eager, warm-up, median of up to N calls within
a time budget, with the harness of bench.run_suite: same checks, same foreign-load
bookkeeping). A config's time is the median of its passes' medians, so slow drift of the
machine's load spreads over all configs instead of favouring whichever ran at a quiet moment. Runtime-flag configs reuse the default artifact and pass IREE runtime flags
(iree.runtime.flags.parse_flags) before kiln.load. Results: bench/results/sweep-cpu.json and a
table in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.suite.machine import machine_info
from bench.suite.orchestrate import run_child
from bench.suite.results import cell_dir

HERE = Path(__file__).resolve().parent

NO_PREPROCESSING = "--iree-preprocessing-pass-pipeline=builtin.module()"
# name → (compile options, runtime flags, description). Kiln's defaults (python/kiln/targets.py):
# --iree-opt-level=O3 --iree-opt-data-tiling --iree-llvmcpu-enable-ukernels=all
# --iree-llvmcpu-target-cpu=host --iree-global-opt-propagate-transposes=false, convolutions
# channels-last. A later duplicate of a flag overrides the default's.
CONFIGS = {
    "default": ({}, [], "Kiln default: O3, data tiling, ukernels=all, target-cpu=host, "
                        "channels-last convolutions, no transpose propagation, the host "
                        "kind's presets (kiln.targets)"),
    "no-data-tiling": ({"data_tiling": False}, [], "default without --iree-opt-data-tiling"),
    "no-ukernels": ({"extra_iree_flags": ["--iree-llvmcpu-enable-ukernels=none"]}, [],
                    "default with --iree-llvmcpu-enable-ukernels=none"),
    "no-dt-no-uk": ({"data_tiling": False,
                     "extra_iree_flags": ["--iree-llvmcpu-enable-ukernels=none"]}, [],
                    "neither data tiling nor ukernels"),
    "x86-64-v3": ({"cpu": "x86-64-v3"}, [],
                  "--iree-llvmcpu-target-cpu=x86-64-v3 (AVX2, portable; host has AVX-512)"),
    "O2": ({"opt_level": "O2"}, [], "--iree-opt-level=O2"),
    "aggressive-fusion": ({"extra_iree_flags": [
        "--iree-dispatch-creation-enable-aggressive-fusion"]}, [],
        "+ --iree-dispatch-creation-enable-aggressive-fusion"),
    "reassoc-fp": ({"extra_iree_flags": ["--iree-llvmcpu-reassociate-fp-reductions"]}, [],
                   "+ --iree-llvmcpu-reassociate-fp-reductions"),
    # (a list option: one flag per op family; "matmul,scaled_matmul,convolution" is rejected)
    "conv-data-tiling": ({"extra_iree_flags": [
        f"--iree-dispatch-creation-experimental-set-data-tiling-ops={family}"
        for family in ("matmul", "scaled_matmul", "convolution")]}, [],
        "+ data tiling of convolutions (experimental)"),
    # Convolution layouts. Kiln's default rewrites NCHW convolutions to NHWC
    # (kiln.targets.CHANNELS_LAST_PIPELINE); an empty preprocessing pipeline undoes that.
    "nchw-convs": ({"extra_iree_flags": [NO_PREPROCESSING]}, [],
                   "convolutions left NCHW (Kiln's default before channels-last)"),
    "im2col": ({"extra_iree_flags": ["--iree-global-opt-use-im2col-for-convs"]}, [],
               "+ --iree-global-opt-use-im2col-for-convs (convs as im2col + matmul)"),
    "nchw-im2col": ({"extra_iree_flags": [NO_PREPROCESSING,
                                          "--iree-global-opt-use-im2col-for-convs"]}, [],
                    "NCHW convolutions as im2col + matmul"),
    "chlast-tile16": ({"extra_iree_flags": [
        "--iree-preprocessing-pass-pipeline=builtin.module(util.func("
        "iree-preprocessing-convert-conv-to-channels-last{tile-size=16}))"]}, [],
        "channels-last with channel tiles of 16 (NCHW16c-like)"),
    "transposes-propagated": ({"extra_iree_flags": [
        "--iree-global-opt-propagate-transposes=true"]}, [],
        "IREE's transpose propagation on (Kiln's default before it was turned off)"),
    # the flag Kiln falls back to when IREE's CPU codegen rejects a fused norm dispatch
    "no-multi-use-fusion": ({"extra_iree_flags": [
        "--iree-dispatch-creation-fuse-multi-use=false"]}, [],
        "+ --iree-dispatch-creation-fuse-multi-use=false (Kiln's codegen-limit fallback)"),
    # Distribution tile of data-tiled matmuls (IREE's default: --iree-llvmcpu-matmul-tile-bytes
    # chosen for many cores; one 128x768x2048 f32 GEMM on the 2-core Xeon: 2 workers were no
    # faster than 1 at the default, docs/decisions.md)
    **{f"tile-bytes-{label}": ({"extra_iree_flags": [
        f"--iree-llvmcpu-matmul-tile-bytes={size}"]}, [],
        f"+ --iree-llvmcpu-matmul-tile-bytes={size}")
       for label, size in (("256k", 1 << 18), ("1m", 1 << 20), ("4m", 1 << 22))},
    "cpu-kernels": ({"cpu_kernels": "on"}, [],
                    "Kiln's own f32 GEMM (kiln.cpu_kernels) for the linears it takes"),
    "sapphirerapids": ({"cpu": "sapphirerapids"}, [],
                       "--iree-llvmcpu-target-cpu=sapphirerapids (host resolves to rocketlake)"),
    "rt-spin-100us": ({}, ["--task_worker_spin_us=100"],
                      "default artifact; runtime --task_worker_spin_us=100"),
    "rt-1-worker": ({}, ["--task_topology_group_count=1"],
                    "default artifact; runtime --task_topology_group_count=1 (one worker)"),
}
DEFAULT_MODELS = "mlp:1,bert:1,gpt2-decode:1,resnet:1"
# convolution configs only matter where there are convolutions
ONLY_FOR = {name: {"resnet"} for name in ("conv-data-tiling", "nchw-convs", "im2col",
                                          "nchw-im2col", "chlast-tile16")}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=DEFAULT_MODELS,
                        help="model:batch,... from python/kiln/examples/zoo.py")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--runs", type=int, default=30, help="max timed calls per pass")
    parser.add_argument("--passes", type=int, default=3,
                        help="timing passes over all configs (interleaved)")
    parser.add_argument("--budget", type=float, default=15.0)
    parser.add_argument("--quiet-wait", type=float, default=60.0)
    parser.add_argument("--attempts", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "sweep-cpu.json")
    parser.add_argument("--work")
    args = parser.parse_args(argv)
    configs = args.configs.split(",")
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown config(s) {unknown}; known: {list(CONFIGS)}")
    configs = ["default"] + [c for c in configs if c != "default"]  # runtime configs reuse it
    work = Path(args.work or tempfile.mkdtemp(prefix="kiln-sweep-"))
    plan = [3, args.runs, args.budget, 5]
    info = machine_info("cpu")
    sweep = {"device": "cpu", "machine": info,
             "machine_line": run_suite_machine_line(info),
             "command": "python -m bench.sweep_flags " + " ".join(sys.argv[1:] if argv is None
                                                                  else argv),
             "default": "default", "timing": plan,
             "configs": {n: {"options": CONFIGS[n][0], "runtime_flags": CONFIGS[n][1],
                             "description": CONFIGS[n][2]} for n in configs},
             "rows": []}
    if args.out.exists():
        old = json.loads(args.out.read_text())
        sweep["rows"] = old.get("rows", [])
        for name, config in old.get("configs", {}).items():
            sweep["configs"].setdefault(name, config)
    for item in args.models.split(","):
        model, batch = item.split(":") if ":" in item else (item, "1")
        batch = int(batch)
        base = {"model": model, "batch": batch, "dtype": "f32", "device": "cpu",
                "work": str(work)}
        _log(f"{model} b{batch}: reference")
        ref = run_child(dict(base, stage="reference"), 600)
        if ref["status"] != "ok":
            _log(f"reference failed: {ref.get('error')}")
            continue
        names = [n for n in configs if n not in ONLY_FOR or model in ONLY_FOR[n]]
        rows, specs = {}, {}
        # 1. compile every config (runtime-flag configs reuse the default's artifact)
        for name in names:
            options, runtime_flags, _ = CONFIGS[name]
            rows[name] = {"model": model, "batch": batch, "config": name,
                          "kiln_commit": info.get("kiln_commit"), "command": sweep["command"],
                          "description": CONFIGS[name][2]}
            artifact = "kiln-default.vmfb" if not options and name != "default" else \
                f"kiln-{name}.vmfb"
            specs[name] = dict(base, system="kiln", artifact=artifact, plan=plan,
                               quiet_wait=args.quiet_wait, attempts=args.attempts,
                               runtime_flags=runtime_flags)
            if name == "default" or options:
                prep = run_child(dict(specs[name], stage="prepare",
                                                kiln_options=options), 2400)
                if prep["status"] != "ok":
                    rows[name].update(status=prep["status"], error=prep.get("error", "")[:400])
                    _log(f"{model} {name}: compile {prep['status']} {rows[name]['error']}")
                    continue
                rows[name].update(compile_s=prep["compile_s"], artifact_mb=prep["artifact_mb"])
                _log(f"{model} b{batch} {name}: compiled in {prep['compile_s']:.0f} s")
        # 2. time them in interleaved passes (rotating the order), so that drift in the
        #    machine's load spreads over all configs; a config's time = median of its passes
        runs: dict = {name: [] for name in names}
        for number in range(args.passes):
            order = names[number % len(names):] + names[:number % len(names)]
            for name in order:
                row = rows[name]
                if row.get("status") not in (None, "ok"):
                    continue
                if not (cell_dir(work, model, batch, "f32") /
                        specs[name]["artifact"]).exists():
                    row.update(status="SKIPPED", error="artifact missing")
                    continue
                run = run_child(dict(specs[name], stage="run"), 1200)
                if run["status"] != "ok" or run.get("check") != "ok":
                    row.update({k: v for k, v in run.items() if k != "wall_s"})
                    row["status"] = run["status"] if run["status"] != "ok" else "FAILED-CHECK"
                    row["error"] = run.get("error", row.get("check_detail", ""))[:400]
                    continue
                runs[name].append(run)
                _log(f"{model} b{batch} {name} pass {number + 1}: {run['ms']:.2f} ms (p10 "
                     f"{run['p10_ms']:.2f}, p90 {run['p90_ms']:.2f}), foreign "
                     f"{run['foreign_cores']:.2f}, err {run.get('rel_err', 0):.1e}")
        for name in names:
            row = rows[name]
            if runs[name] and row.get("status") in (None, "ok"):
                times = sorted(r["ms"] for r in runs[name])
                last = runs[name][-1]
                row.update({k: v for k, v in last.items()
                            if k in ("max_abs_err", "rel_err", "check", "peak_rss_mb")})
                row.update(status="ok", ms=statistics.median(times),
                           pass_ms=[r["ms"] for r in runs[name]],
                           p10_ms=statistics.median(r["p10_ms"] for r in runs[name]),
                           p90_ms=statistics.median(r["p90_ms"] for r in runs[name]),
                           min_ms=min(r["min_ms"] for r in runs[name]),
                           foreign_cores=max(r["foreign_cores"] for r in runs[name]))
            _store(sweep, row, args.out)
        shutil.rmtree(cell_dir(work, model, batch, "f32"), ignore_errors=True)
    from bench import report

    report.main(["--sweep", str(args.out)])


def run_suite_machine_line(info: dict) -> str:
    from bench import report

    return report.machine_line({"device": "cpu", "machine": info}).replace("**", "")


def _store(sweep: dict, row: dict, out: Path) -> None:
    # rows of earlier sweep commands stay (each command's table has its own default)
    key = ("model", "batch", "config", "command")
    sweep["rows"] = [r for r in sweep["rows"]
                     if tuple(r.get(k) for k in key) != tuple(row.get(k) for k in key)] + [row]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(sweep, indent=1) + "\n")


def _log(message: str) -> None:
    print(f"[sweep {time.strftime('%H:%M:%S')}] {message}", flush=True)


if __name__ == "__main__":
    main()
