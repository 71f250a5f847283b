"""The benchmark suite: every (model, batch, dtype, system) cell in its own process.

CPU (here):
    python -m bench.run_suite --device cpu                      # full: batches 1 and 8
    python -m bench.run_suite --device cpu --quick              # batch 1, few runs
    python -m bench.run_suite --device cpu --models mlp,bert --batches 1 --systems eager,kiln
GPU (two halves: the GPU machine has no IREE compiler and no torch-mlir):
    python -m bench.run_suite --device cuda --prepare-only --out .device/suite     # here
    python3 -m bench.run_suite --device cuda --artifacts .device/suite --out $OUT  # there
    # the cells of the GPU suite (in priority order; --cells takes model:batch:dtype,...):
    python -m bench.run_suite --device cuda --prepare-only --out .device/suite --cells gpu
    python3 -m bench.run_suite --device cuda --artifacts .device/suite --out $OUT --cells gpu \
        --lanes 2
    # Kiln alone again (e.g. after a compiler change), and a Kiln variant as its own system:
    python -m bench.run_suite --device cuda --prepare-only --out .device/suite --cells gpu \
        --systems kiln,kiln+kernels
    python3 -m bench.run_suite ... --cells gpu --systems kiln,kiln+kernels   # there; merge with
    python -m bench.run_suite --merge old.json new.json --into bench/results/suite-cuda-<tag>.json

Systems. CPU: eager, torch.compile (inductor), onnxruntime (CPU provider, torch.onnx.export),
kiln. GPU: eager, torch.compile (default, reduce-overhead, max-autotune-no-cudagraphs), kiln
(CUDA graph command buffers, as kiln.load sets them). Dtypes: f32 on CPU; f16 and bf16 on GPU.
Kiln variants are systems of their own (KILN_SYSTEMS: name → compile options), e.g.
"kiln+kernels" (the Hopper library kernels on); plain "kiln" pins them off where Kiln has the
switch, so its cells stay comparable across commits.

GPU lanes (--lanes N, cuda only): N cells run side by side so that process start-up, model
builds and compiles overlap, while every measurement stays alone on the GPU: a timed loop,
iree-benchmark-module and each kernel benchmark inductor runs while compiling (max-autotune's
autotuning, the default mode's reduction configs) hold an exclusive lock on the GPU; the
reference forward and Kiln's load and first call hold it shared; the rest of a compile (CPU
work, a first run, CUDA graph capture) holds none. The timing thread runs on CPUs of its own
(the first 4), everything else on the rest, and "foreign_cores" is measured on the timing CPUs.
On the GPU machine the reference stage also pickles the built model for the cell's other
stages (the zoo's build of a 124M model takes about 20 s there).

Each cell runs in fresh processes:
  reference  eager forward of the zoo model (kiln.examples.zoo: deterministic weights and
             inputs); saves the inputs and the output once per (model, batch, dtype)
  prepare    systems with an ahead-of-time step: Kiln compiles a .vmfb, ONNX Runtime exports
             the .onnx; records compile time and the compile's peak RSS
  run        builds or loads the system (a torch.compile cell compiles here: its compile time is
             the first call), checks the output against the reference (max abs error, and the
             error relative to max(1, max|eager|); above TOLERANCE the cell is FAILED-CHECK and
             is not timed), then times: warm-up calls, then up to N calls within a time budget
             (a slow cell gets fewer calls, never none): median, p10, p90, min. Peak RSS is the
             run process's VmHWM (Kiln's and ONNX Runtime's run processes never import
             torch: their RSS is what serving takes). On CUDA also torch's max_memory_allocated
             and the process's GPU memory by nvidia-smi.
The parent merges cells into bench/results/suite-<device>-<machine tag>.json and .csv (a rerun
replaces the cells it ran) and writes the report (bench/report.py).

The machine may be shared: during each timed loop the CPU time used by other processes is
sampled from /proc/stat and stored with the cell ("foreign_cores"); on CPU the harness waits
(up to --quiet-wait seconds) for other load to drop below half a core before timing, and times
a loop again (--attempts) if others still took more than half a core during it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.suite.config import KILN_SYSTEMS, TIMEOUT_S, use_kiln_python
from bench.suite.orchestrate import prepare_cuda, run_suite
from bench.suite.results import merge_files
from bench.suite.stages import child_main, stage_prepare_cuda


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--models", help="comma-separated zoo names (default: all)")
    parser.add_argument("--batches", help="comma-separated (default 1,8; --quick: 1)")
    parser.add_argument("--dtypes", help="default f32 on cpu, f16,bf16 on cuda")
    parser.add_argument("--systems", help="comma-separated (default: all for the device; "
                                          "--prepare-only: kiln). Kiln variants: "
                                          + ", ".join(KILN_SYSTEMS))
    parser.add_argument("--cells", help="model:batch:dtype,... in this order instead of "
                                        "--models/--batches/--dtypes; 'gpu' = the GPU suite's "
                                        "cells (GPU_CELLS)")
    parser.add_argument("--lanes", type=int, default=1,
                        help="cuda: cells run side by side, measurements alone on the GPU "
                             "(see the docstring)")
    parser.add_argument("--quick", action="store_true",
                        help="batch 1, fewer runs, results to suite-...-quick.json, no report")
    parser.add_argument("--runs", type=int, help="max timed calls per cell")
    parser.add_argument("--budget", type=float, help="seconds of timed calls per cell")
    parser.add_argument("--tag", help="machine tag in the result file name")
    parser.add_argument("--out", help="results folder (default bench/results); with "
                                      "--prepare-only the artifact folder")
    parser.add_argument("--work", help="scratch folder (default: a temp dir)")
    parser.add_argument("--prepare-only", action="store_true",
                        help="cuda: compile Kiln artifacts here, for --artifacts there")
    parser.add_argument("--artifacts", help="cuda: folder written by --prepare-only")
    parser.add_argument("--weights", default="external", choices=("inline", "external"),
                        help="cuda --prepare-only: where the artifacts' weights live")
    parser.add_argument("--quiet-wait", type=float, default=None,
                        help="cpu: wait up to this long for other load before timing "
                             "(default 30 s; 0 = never)")
    parser.add_argument("--attempts", type=int, default=None,
                        help="cpu: time a cell again (up to this many loops) when other "
                             "processes took over half a core during the loop (default 2)")
    parser.add_argument("--prepare-timeout", type=float, default=TIMEOUT_S["prepare"])
    parser.add_argument("--run-timeout", type=float, default=TIMEOUT_S["run"])
    parser.add_argument("--no-report", action="store_true")
    parser.add_argument("--deadline-min", type=float,
                        help="start no new cell after this many minutes (results so far are "
                             "written; continue with --resume)")
    parser.add_argument("--resume", action="append",
                        help="results JSON of an earlier run: its finished cells are kept and "
                             "not run again (repeatable)")
    parser.add_argument("--rerun-loaded", type=float, metavar="CORES",
                        help="with --resume: run again the cells timed while other processes "
                             "used more than CORES cores")
    parser.add_argument("--merge", nargs="+", metavar="JSON",
                        help="merge these results files into --into and exit")
    parser.add_argument("--into", type=Path, help="target of --merge")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    use_kiln_python()
    if args.child:
        spec = json.loads(args.child)
        if spec["stage"] == "prepare-cuda":
            print("RESULT " + json.dumps(stage_prepare_cuda(spec)), flush=True)
        else:
            child_main(spec)
        return
    if args.merge:
        if not args.into:
            raise SystemExit("--merge needs --into <results json>")
        merge_files(args.merge, args.into)
        return
    if args.quiet_wait is None:
        args.quiet_wait = 30.0 if args.device == "cpu" else 0.0
    if args.attempts is None:
        args.attempts = 2 if args.device == "cpu" else 1
    if args.prepare_only:
        if args.device != "cuda" or not args.out:
            raise SystemExit("--prepare-only is for --device cuda with --out <folder>")
        prepare_cuda(args)
        return
    if args.device == "cuda" and not args.artifacts:
        raise SystemExit("--device cuda needs --artifacts <folder from --prepare-only> "
                         "(Kiln artifacts are compiled on a machine with IREE's compiler)")
    run_suite(args)


if __name__ == "__main__":
    main()
