"""Per-dispatch GPU time of the GPU suite's Kiln artifacts (on the GPU machine).

    python3 -m bench.gpu.kiln_cuda_profile --artifacts .device/suite-cuda \
        --cells gpt2-decode:1:f16,gpt2-prefill-512:8:f16 --work /tmp/w --out $OUT

For each cell: rebuilds the artifact's .irpa from the zoo (bench.run_suite's params stage,
digests checked), runs `main` once with `iree-run-module` under
`ncu --metrics gpu__time_duration.sum` (streams, not CUDA graphs, so every dispatch is a kernel
launch of its own; inputs are splats of 1 as in the suite's device_ms) and sums the kernel times
per dispatch and per kind (matmul, attention, reduction, elementwise ...). The sum is the GPU's
busy time with no launch gaps; compare with the suite's device_ms (iree-benchmark-module, CUDA
graphs) and the Python call. With --work shared with a running suite (--lanes), ncu holds the
suite's GPU lock, so it never overlaps a timed loop. Writes <out>/kiln-cuda-profile.json.

Where Nsight Compute is not installed (`--profiler auto` picks it when `ncu` is on PATH), the
kernels are read from CUPTI through torch.profiler instead (`--profiler cupti`): the artifact
runs in a child process through `kiln.load` as users call it (CUDA graphs), `--calls` times
under the profiler; CUPTI records every kernel of the process, IREE's graph-launched dispatches
included, and the times are per call.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench import profile_dispatches
from bench.profile_dispatches import short_name
from bench.suite.config import IREE_ELEMENT, TORCH_DTYPES, use_kiln_python
from bench.suite.load import GpuLock
from bench.suite.machine import machine_info
from bench.suite.orchestrate import run_child
from bench.suite.results import cell_dir

HERE = Path(__file__).resolve().parent

KINDS = [  # (kind, pattern on the dispatch name), first match wins
    ("Kiln GEMM", r"linear_kernel|splitk_reduce_kernel"),
    ("attention / softmax", r"attention|softmax"),
    ("matmul / matvec", r"matmul|matvec|vecmat|mmt|contract|conv|batch_mm"),
    ("reduction (norms)", r"reduction|reduce"),
    ("gather / embedding", r"gather|index|slice"),
    ("transpose / copy", r"transpose|copy|memcpy|fill"),
    ("elementwise", r"elementwise|generic"),
]
UNITS_NS = {"nsecond": 1.0, "ns": 1.0, "usecond": 1e3, "us": 1e3, "msecond": 1e6, "ms": 1e6,
            "second": 1e9, "s": 1e9}


def kind_of(name: str) -> str:
    return profile_dispatches.kind_of(name, KINDS)


def parse_ncu_csv(text: str) -> list:
    """[(kernel name, ns)] from `ncu --csv` output (lines before the header are dropped)."""
    lines = [ln for ln in text.splitlines() if not ln.startswith("==")]
    start = next((i for i, ln in enumerate(lines) if ln.startswith('"ID"')), None)
    if start is None:
        return []
    rows = []
    for row in csv.DictReader(io.StringIO("\n".join(lines[start:]))):
        if row.get("Metric Name") != "gpu__time_duration.sum":
            continue
        value = float(row["Metric Value"].replace(",", ""))
        rows.append((row["Kernel Name"], value * UNITS_NS.get(row.get("Metric Unit", "ns"), 1.0)))
    return rows


def summarize(rows: list, calls: int = 1) -> dict:
    """Kernel times per dispatch and per kind, per call of the artifact (`rows` over `calls`)."""
    per_dispatch: dict = {}
    for name, ns in rows:
        entry = per_dispatch.setdefault(name, {"name": short_name(name), "kind": kind_of(name),
                                               "launches": 0, "total_us": 0.0})
        entry["launches"] += 1 / calls
        entry["total_us"] += ns / 1e3 / calls
    dispatches = sorted(per_dispatch.values(), key=lambda e: -e["total_us"])
    kinds: dict = {}
    for entry in dispatches:
        kind = kinds.setdefault(entry["kind"], {"launches": 0, "total_us": 0.0})
        kind["launches"] += entry["launches"]
        kind["total_us"] += entry["total_us"]
    total = sum(e["total_us"] for e in dispatches)
    return {"kernel_us": total, "launches": sum(e["launches"] for e in dispatches),
            "kinds": dict(sorted(kinds.items(), key=lambda kv: -kv[1]["total_us"])),
            "dispatches": dispatches}


def profile_cell(args, model: str, batch: int, dtype: str, manifest: dict) -> dict:
    entry = next((e for e in manifest["artifacts"] if (e["model"], e["batch"], e["dtype"],
                  e.get("system", "kiln")) == (model, batch, dtype, args.system)), None)
    if entry is None:
        return {"status": "SKIPPED", "error": "no artifact"}
    # Cell folders of its own (a suite sharing --work removes its own when a cell is done),
    # the suite's lock.
    spec = {"model": model, "batch": batch, "dtype": dtype, "device": "cuda",
            "work": str(Path(args.work) / "profile"), "artifacts": str(args.artifacts),
            "gpu_lock": str(Path(args.work) / "gpu.lock"), "params_file": "profile.irpa"}
    directory = cell_dir(spec["work"], model, batch, dtype)
    directory.mkdir(parents=True, exist_ok=True)
    vmfb = Path(args.artifacts) / entry["file"]
    command = [shutil.which("iree-run-module") or "iree-run-module", f"--module={vmfb}",
               "--device=cuda", "--cuda_use_streams=true", "--function=main",
               f"--output=@{directory / 'out.npy'}"]
    if entry.get("params_manifest"):
        params = run_child(dict(spec, stage="params",
                                          params_manifest=entry["params_manifest"]), 900)
        if params["status"] != "ok":
            return {"status": "FAILED", "error": "params: " + params.get("error", "")}
        command.append(f"--parameters=model={directory / 'profile.irpa'}")
    inputs = _zoo_inputs(model, batch, dtype)
    if args.profiler == "cupti":
        child = [sys.executable, "-m", "bench.gpu.kiln_cuda_profile", "--child-vmfb", str(vmfb),
                 "--child-inputs", json.dumps(inputs), "--calls", str(args.calls)]
        if entry.get("params_manifest"):
            child += ["--child-params", str(directory / "profile.irpa")]
        start = time.perf_counter()
        with GpuLock(spec, exclusive=True):
            proc = subprocess.run(child, capture_output=True, text=True, timeout=args.timeout)
        result = {"profiler": "cupti", "calls": args.calls,
                  "wall_s": round(time.perf_counter() - start, 1), "returncode": proc.returncode}
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("[")]
        rows = json.loads(lines[-1]) if proc.returncode == 0 and lines else []
        if not rows:
            result.update(status="FAILED", stderr_tail=(proc.stderr or proc.stdout)[-2000:])
            return result
        result.update(status="ok", **summarize(rows, args.calls))
        shutil.rmtree(directory, ignore_errors=True)
        return result
    for shape, element in inputs:
        command.append(f"--input={'x'.join(str(d) for d in shape)}x{element}=1")
    log = directory / "ncu.csv"
    ncu = [args.ncu, "--metrics", "gpu__time_duration.sum", "--csv", "--print-units", "base",
           "--log-file", str(log)] + command
    start = time.perf_counter()
    with GpuLock(spec, exclusive=True):
        proc = subprocess.run(ncu, capture_output=True, text=True, timeout=args.timeout)
    result = {"command": " ".join(ncu), "wall_s": round(time.perf_counter() - start, 1),
              "returncode": proc.returncode}
    rows = parse_ncu_csv(log.read_text()) if log.exists() else []
    if proc.returncode != 0 or not rows:
        result.update(status="FAILED", stderr_tail=(proc.stderr or proc.stdout)[-2000:])
        return result
    result.update(status="ok", **summarize(rows))
    shutil.rmtree(directory, ignore_errors=True)
    return result


def _zoo_inputs(model: str, batch: int, dtype: str) -> list:
    """The zoo's example inputs as (shape, IREE element type)."""
    import torch

    from kiln.examples import zoo

    torch_dtype = getattr(torch, TORCH_DTYPES[dtype])
    tensors = zoo.MODELS[model][1](batch, torch_dtype)
    return [(list(t.shape), IREE_ELEMENT[str(t.dtype).replace("torch.", "")])
            for t in tensors]


def profile_child(vmfb: str, params, inputs: list, calls: int) -> list:
    """[(kernel name, ns)] of `calls` calls of the artifact's main on CUDA, from CUPTI."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from kiln.runtime import load

    dtypes = {element: getattr(torch, name) for name, element in IREE_ELEMENT.items()}
    module = load(vmfb, device="cuda", parameters=params)
    tensors = [torch.ones(shape, dtype=dtypes[element], device="cuda")
               for shape, element in inputs]
    for _ in range(3):
        module(*tensors)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            module(*tensors)
        torch.cuda.synchronize()
    return [(event.name, event.time_range.elapsed_us() * 1e3) for event in prof.events()
            if event.device_type == torch.autograd.DeviceType.CUDA]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", type=Path, required=True)
    parser.add_argument("--cells", required=True, help="model:batch:dtype,...")
    parser.add_argument("--system", default="kiln", help="which Kiln system's artifacts")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--ncu", default=shutil.which("ncu") or "ncu")
    parser.add_argument("--profiler", choices=("auto", "ncu", "cupti"), default="auto",
                        help="Nsight Compute, or CUPTI through torch.profiler (auto: ncu when "
                             "it is on PATH)")
    parser.add_argument("--calls", type=int, default=20, help="profiled calls (cupti)")
    parser.add_argument("--timeout", type=float, default=300)
    if "--child-vmfb" in (argv if argv is not None else sys.argv[1:]):
        # the process profile_cell starts for one artifact under CUPTI
        child = argparse.ArgumentParser()
        for flag in ("--child-vmfb", "--child-params", "--child-inputs"):
            child.add_argument(flag)
        child.add_argument("--calls", type=int, default=20)
        args = child.parse_args(argv)
        print(json.dumps(profile_child(args.child_vmfb, args.child_params,
                                       json.loads(args.child_inputs), args.calls)))
        return
    args = parser.parse_args(argv)
    if args.profiler == "auto":
        args.profiler = "ncu" if shutil.which(args.ncu) else "cupti"
    use_kiln_python()  # the zoo, from the Kiln the suite's children use
    manifest = json.loads((args.artifacts / "manifest.json").read_text())
    info = machine_info("cuda")
    results = {"machine": info, "kiln_commit": manifest.get("kiln_commit"), "cells": {}}
    args.out.mkdir(parents=True, exist_ok=True)
    for word in args.cells.split(","):
        model, batch, dtype = word.split(":")
        key = f"{model}-b{batch}-{dtype}"
        try:
            results["cells"][key] = profile_cell(args, model, int(batch), dtype, manifest)
        except Exception as error:  # the next cell may work
            results["cells"][key] = {"status": "FAILED", "error": f"{type(error).__name__}: "
                                                                  f"{error}"}
        cell = results["cells"][key]
        print(f"[profile] {key}: {cell.get('status')} "
              f"{cell.get('kernel_us', 0) / 1e3:.3f} ms in {cell.get('launches', 0)} kernels "
              f"{cell.get('error', '')}", flush=True)
        for entry in cell.get("dispatches", [])[:8]:
            print(f"    {entry['total_us']:9.1f} us  x{entry['launches']:<5.3g} {entry['kind']:<22}"
                  f" {entry['name'][:90]}", flush=True)
        (args.out / "kiln-cuda-profile.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
