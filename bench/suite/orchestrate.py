"""The parent: which cells run, each stage in a child process, GPU lanes, resume and deadline,
and the merged results (see bench.run_suite's docstring)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.suite.config import (DTYPES, GPU_CELLS, GPU_TIMING, KILN_PYTHON, KILN_SYSTEMS, REPO,
                                RESULTS, SYSTEMS, TIMEOUT_S, TIMING, TOLERANCE, is_kiln, log,
                                zoo_names)
from bench.suite.machine import machine_info, machine_tag
from bench.suite.results import cell_dir, cell_key, merge_results, write_atomic, write_csv


def run_child(spec: dict, timeout: float) -> dict:
    """Run one stage in a fresh process; {"status": ok|FAILED|TIMEOUT, ...}."""
    env = dict(os.environ)
    # Kiln from KILN_PYTHON; the repository for `python -m bench.run_suite` from any folder.
    env["PYTHONPATH"] = os.pathsep.join([str(KILN_PYTHON), str(REPO), env.get("PYTHONPATH", "")])
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    cold_cache = None
    if spec.get("system", "").startswith("torch.compile") and spec["stage"] == "run":
        # A cold compile, as Kiln's (cache=False): inductor's on-disk caches would otherwise
        # turn a rerun's compile into a cache lookup.
        Path(spec["work"]).mkdir(parents=True, exist_ok=True)
        cold_cache = Path(tempfile.mkdtemp(prefix="inductor-", dir=spec["work"]))
        env["TORCHINDUCTOR_CACHE_DIR"] = str(cold_cache)
        env["TRITON_CACHE_DIR"] = str(cold_cache / "triton")
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "bench.run_suite", "--child",
                               json.dumps(spec)], capture_output=True, text=True,
                              timeout=timeout, env=env)
    except subprocess.TimeoutExpired as error:
        tail = (error.stderr or b"")[-1500:]
        return {"status": "TIMEOUT", "error": f"{spec['stage']} exceeded {timeout:.0f} s",
                "stderr_tail": tail.decode(errors="replace") if isinstance(tail, bytes) else tail,
                "wall_s": time.perf_counter() - start}
    finally:
        if cold_cache is not None:
            shutil.rmtree(cold_cache, ignore_errors=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        errors = [ln for ln in proc.stderr.splitlines() if "Error" in ln or "error" in ln]
        return {"status": "FAILED", "error": (errors[-1] if errors else
                                              f"exit {proc.returncode}")[:600],
                "stderr_tail": proc.stderr[-3000:], "wall_s": time.perf_counter() - start}
    result = json.loads(lines[-1][7:])
    result["status"] = "ok"
    result["wall_s"] = time.perf_counter() - start
    return result


def selected_cells(args, device: str) -> list:
    """(model, batch, dtype) in run order: --cells (or "gpu" = GPU_CELLS) as given, else the
    product of --models × --batches × --dtypes."""
    if getattr(args, "cells", None):
        words = GPU_CELLS if args.cells == "gpu" else args.cells.split(",")
        cells = []
        for word in words:
            model, batch, dtype = word.split(":")
            if model not in zoo_names():
                raise SystemExit(f"unknown model {model!r} in --cells")
            cells.append((model, int(batch), dtype))
        return cells
    models = args.models.split(",") if args.models else list(zoo_names(device))
    batches = [int(b) for b in args.batches.split(",")] if args.batches else \
        ([1] if getattr(args, "quick", False) else [1, 8])
    dtypes = args.dtypes.split(",") if args.dtypes else DTYPES[device]
    return [(m, b, d) for m in models for b in batches for d in dtypes]


def _command_line(argv) -> str:
    """The command as run, without scratch paths (--work, --out, --resume values)."""
    words, skip = [], False
    for word in argv:
        if skip:
            skip = False
            continue
        if word in ("--work", "--out", "--resume"):
            skip = word != "--out"
            if word == "--out":
                words.append("--out")
                words.append("$OUT")
                skip = True
            continue
        if word.startswith(("--work=", "--resume=")):
            continue
        words.append(word)
    return "python -m bench.run_suite " + " ".join(words)


DONE_STATUSES = ("ok", "FAILED-CHECK", "FAILED", "TIMEOUT", "SKIPPED")


def run_suite(args) -> Path:
    device = args.device
    cells_todo = selected_cells(args, device)
    systems = args.systems.split(",") if args.systems else SYSTEMS[device]
    known = SYSTEMS[device] + ([s for s in KILN_SYSTEMS if s not in SYSTEMS[device]]
                               if device == "cuda" else [])
    unknown = [s for s in systems if s not in known]
    if unknown:
        raise SystemExit(f"unknown system(s) for {device}: {unknown}; known {known}")
    lanes = max(1, args.lanes or 1)
    if lanes > 1 and device != "cuda":
        raise SystemExit("--lanes is for --device cuda (CPU timings need the whole machine)")
    speed = "quick" if args.quick else "full"
    plan = (GPU_TIMING if device == "cuda" else TIMING)[speed]
    if args.runs:
        plan = (plan[0], args.runs, plan[2], min(plan[3], args.runs))
    if args.budget:
        plan = (plan[0], plan[1], args.budget, plan[3])
    deadline = time.monotonic() + 60 * args.deadline_min if args.deadline_min else None
    info = machine_info(device)
    tag = args.tag or machine_tag(info, device)
    out_dir = Path(args.out) if args.out else RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"suite-{device}-{tag}" + ("-quick" if args.quick else "")
    work = Path(args.work or tempfile.mkdtemp(prefix=f"kiln-suite-{device}-"))
    work.mkdir(parents=True, exist_ok=True)
    manifest = None
    if device == "cuda":
        manifest = json.loads((Path(args.artifacts) / "manifest.json").read_text())
        info["kiln_commit"] = f"{manifest.get('kiln_commit')} (artifacts compiled with " \
                              f"{manifest.get('compiled_with')})"
    lane_spec = {}
    if lanes > 1:
        cpus = sorted(os.sched_getaffinity(0))
        lane_spec["gpu_lock"] = str(work / "gpu.lock")
        if len(cpus) >= 8:
            lane_spec["timing_cpus"], lane_spec["compile_cpus"] = cpus[:4], cpus[4:]
    info["lanes"] = lanes
    log(f"{device} suite on {tag}: cells {[f'{m}:{b}:{d}' for m, b, d in cells_todo]}, "
         f"systems {systems}, timing {plan}, lanes {lanes}; work dir {work}")
    result = {"device": device, "tag": tag, "machine": info, "timing": dict(zip(
        ("warmup", "max_runs", "budget_s", "min_runs"), plan)), "tolerance": TOLERANCE,
        "commands": [_command_line(sys.argv[1:])], "cells": []}
    json_path = out_dir / f"{stem}.json"
    done = {}
    if args.resume:
        for path in args.resume:
            if not Path(path).exists():
                log(f"--resume {path}: no such file (nothing resumed from it)")
                continue
            previous = json.loads(Path(path).read_text())
            for cell in previous["cells"]:
                loaded = args.rerun_loaded is not None and \
                    cell.get("foreign_cores", 0) > args.rerun_loaded
                if cell.get("status") in DONE_STATUSES and not loaded:
                    done[cell_key(cell)] = cell
            result["commands"] = sorted(set(result["commands"]) |
                                        set(previous.get("commands", [])))
        result["cells"] = list(done.values())
        log(f"resuming: {len(done)} cells done in {args.resume}")

    lock = threading.Lock()
    state = {"stopped": False}

    def flush():
        with lock:
            merged = merge_results(json_path, dict(result, cells=list(result["cells"])))
            write_atomic(json_path, json.dumps(merged, indent=1) + "\n")
            write_csv(json_path.with_suffix(".csv"), merged)

    def past_deadline(what: str) -> bool:
        if deadline and time.monotonic() > deadline:
            if not state["stopped"]:
                log(f"deadline reached; stopping before {what} (rerun with --resume "
                     f"{json_path})")
            state["stopped"] = True
        return state["stopped"]

    def run_group(model: str, batch: int, dtype: str) -> None:
        todo = [s for s in systems if (model, batch, dtype, s) not in done]
        if not todo or past_deadline(f"{model} b{batch} {dtype}"):
            return
        base = dict(lane_spec, model=model, batch=batch, dtype=dtype, device=device,
                    work=str(work))
        log(f"{model} b{batch} {dtype}: reference")
        ref = run_child(dict(base, stage="reference"), TIMEOUT_S["reference"])
        for system in todo:
            if past_deadline(f"{model} b{batch} {dtype} {system}"):
                break
            cell = dict(model=model, batch=batch, dtype=dtype, system=system)
            if is_kiln(system):  # cuda: the artifact's own commit (from its manifest entry)
                cell["kiln_commit"] = (manifest or {}).get("kiln_commit") or \
                    info.get("kiln_commit")
            if ref["status"] != "ok":
                cell.update(status="FAILED", error="reference: " + ref.get("error", ""),
                            stderr_tail=ref.get("stderr_tail", "")[-1500:])
            else:
                cell["parameters"] = ref["parameters"]
                if lanes > 1:
                    cell["lanes"] = lanes
                cell.update(_run_cell(base, system, plan, args, manifest))
            log(f"{model} b{batch} {dtype} {system}: {_summary(cell)}")
            with lock:
                result["cells"].append(cell)
            flush()
        shutil.rmtree(cell_dir(work, model, batch, dtype), ignore_errors=True)

    if lanes == 1:
        for model, batch, dtype in cells_todo:
            run_group(model, batch, dtype)
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=lanes) as pool:
            for future in [pool.submit(run_group, *key) for key in cells_todo]:
                future.result()
    flush()
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    log(f"wrote {json_path} and {json_path.with_suffix('.csv')}")
    if not args.no_report and not args.quick and device == "cpu":
        try:
            from bench import report

            report.main([str(json_path)])
        except Exception as error:  # results are saved; the report can be rerun
            log(f"report failed: {type(error).__name__}: {error}")
    return json_path


def _run_cell(base: dict, system: str, plan, args, manifest) -> dict:
    cell = {}
    spec = dict(base, system=system, plan=list(plan), quiet_wait=args.quiet_wait,
                attempts=args.attempts)
    if base["device"] == "cpu" and system in ("kiln", "onnxruntime"):
        prep = run_child(dict(spec, stage="prepare", kiln_options={}), args.prepare_timeout)
        if prep["status"] != "ok":
            return dict(status=prep["status"], error="prepare: " + prep.get("error", ""),
                        stderr_tail=prep.get("stderr_tail", "")[-1500:])
        cell.update({k: v for k, v in prep.items() if k not in ("status", "wall_s")})
    if base["device"] == "cuda" and is_kiln(system):
        key = (base["model"], base["batch"], base["dtype"], system)

        def matches(e):
            return (e["model"], e["batch"], e["dtype"], e.get("system", "kiln")) == key

        entry = next((e for e in manifest["artifacts"] if matches(e)), None)
        if entry is None:
            failed = next((f for f in manifest.get("failed", []) if matches(f)), None)
            if failed:
                return {"status": "FAILED", "error": "compile (--prepare-only): " +
                        failed.get("error", "")}
            return {"status": "SKIPPED", "error": f"no {system} artifact prepared for this cell"}
        cell.update(compile_s=entry["compile_s"], artifact_mb=entry["artifact_mb"],
                    compile_peak_rss_mb=entry.get("compile_peak_rss_mb"),
                    compile_options=entry.get("options"))
        if entry.get("kiln_commit"):
            cell["kiln_commit"] = entry["kiln_commit"]
        spec.update(artifacts=str(args.artifacts), artifact=entry["file"],
                    params_file=Path(entry["file"]).stem + ".irpa")
        if entry.get("params_manifest"):
            start = time.perf_counter()
            params = run_child(dict(spec, stage="params",
                                    params_manifest=entry["params_manifest"]),
                               TIMEOUT_S["params"])
            if params["status"] != "ok":
                return dict(cell, status="FAILED", error="params: " + params.get("error", ""),
                            stderr_tail=params.get("stderr_tail", "")[-1500:])
            cell["params_stage_s"] = round(time.perf_counter() - start, 2)
    run = run_child(dict(spec, stage="run"), args.run_timeout)
    cell["run_stage_s"] = round(run.get("wall_s", 0), 2)
    if run["status"] != "ok":
        return dict(cell, status=run["status"], error="run: " + run.get("error", ""),
                    stderr_tail=run.get("stderr_tail", "")[-1500:])
    compile_first = run.pop("compile_s", None)
    if compile_first is not None:
        cell["compile_s"] = compile_first
    elif system == "onnxruntime":
        cell["export_s"] = cell.get("compile_s")
        cell["compile_s"] = (cell.get("compile_s") or 0) + run.get("session_s", 0)
    cell.update({k: v for k, v in run.items() if k != "wall_s"})
    if cell.get("check") != "ok":
        cell["status"] = "FAILED-CHECK"
    return cell


def _summary(cell: dict) -> str:
    if cell.get("status") != "ok":
        return f"{cell.get('status')} {cell.get('error', '')[:300]}"
    parts = [f"{cell['ms']:.2f} ms (p10 {cell['p10_ms']:.2f}, p90 {cell['p90_ms']:.2f}, "
             f"n={cell['runs']})", f"err {cell.get('rel_err', 0):.1e}",
             f"rss {cell.get('peak_rss_mb', 0):.0f} MB",
             f"foreign {cell.get('foreign_cores', 0):.2f} cores"]
    if cell.get("compile_s") is not None:
        parts.append(f"compile {cell['compile_s']:.1f} s")
    return ", ".join(parts)


def prepare_cuda(args) -> None:
    """Compile the Kiln CUDA artifacts with external weights; the GPU machine rebuilds the
    weights from the zoo, so only code (and folded constants) travels."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cells = selected_cells(args, "cuda")
    systems = [s for s in (args.systems.split(",") if args.systems else ["kiln"]) if is_kiln(s)]
    if not systems:
        raise SystemExit(f"--prepare-only compiles Kiln systems: {', '.join(KILN_SYSTEMS)}")
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else \
        {"artifacts": []}
    compiled_on = machine_info("cpu")
    manifest["kiln_commit"] = compiled_on.get("kiln_commit")
    manifest["compiled_with"] = {k: compiled_on.get(k) for k in ("iree-base-compiler",
                                                                   "torch-mlir", "torch")}
    for model, batch, dtype in cells:
        for system in systems:
            spec = {"stage": "prepare-cuda", "model": model, "batch": batch, "dtype": dtype,
                    "device": "cpu", "out": str(out), "weights": args.weights,
                    "system": system}
            log(f"compiling {model} b{batch} {dtype} for cuda ({system})")
            entry = run_child(spec, args.prepare_timeout)
            key = {"model": model, "batch": batch, "dtype": dtype, "system": system}

            def same(e):
                return all(e.get(k, "kiln" if k == "system" else None) == v
                           for k, v in key.items())

            manifest["failed"] = [f for f in manifest.get("failed", []) if not same(f)]
            manifest["artifacts"] = [e for e in manifest["artifacts"] if not same(e)]
            if entry["status"] != "ok":
                log(f"  FAILED: {entry.get('error')}\n{entry.get('stderr_tail', '')[-1500:]}")
                manifest["failed"].append(dict(key, status=entry["status"],
                                               error=entry.get("error", "")[:600],
                                               kiln_commit=manifest["kiln_commit"]))
                write_atomic(manifest_path, json.dumps(manifest, indent=1))
                continue
            entry.pop("status")
            entry.pop("wall_s")
            entry["kiln_commit"] = manifest["kiln_commit"]
            manifest["artifacts"].append(entry)
            write_atomic(manifest_path, json.dumps(manifest, indent=1))
            log(f"  {entry['file']}: {entry['artifact_mb']:.1f} MB in "
                 f"{entry['compile_s']:.0f} s")
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    log(f"{out}: {len(manifest['artifacts'])} artifacts, {total / 2**20:.1f} MB in all")
