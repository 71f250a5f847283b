"""torch.compile(backend="kiln") against compile_to_vmfb and inductor on the zoo's CPU cells, and
on a model torch.export rejects (a `.item()` check in the middle of GPT-2 small).

    python -m bench.dynamo_backend                                   # all models, batch 1
    python -m bench.dynamo_backend --models mlp,gpt2-guarded --rounds 3
    python -m bench.dynamo_backend --systems kiln-vmfb,kiln-dynamo   # the 5% goal only

Systems (each in its own process, all of a model's processes alive at once so timing can be
interleaved):
  eager        the model under torch.inference_mode()
  inductor     torch.compile(model) (the default backend), called under inference_mode
  kiln-vmfb    kiln.load(kiln.compile_to_vmfb(model, inputs)) called with the torch inputs
               (zero-copy in and out, the path the backend uses)
  kiln-dynamo  torch.compile(model, backend="kiln"), called under inference_mode
Kiln compiles with the compile cache off (compile times are real ones); inductor uses its own
caches as a user's second run would.

Per model: every process builds the zoo model (deterministic weights), compiles (one process at
a time), runs once and checks its output against eager (tolerance of bench/run_suite.py). Then
`--rounds` rounds: in each, every system in turn (the order rotates, and reverses every other
round) waits for the machine to be quiet (up to --quiet-wait s) and half a second more, runs
warm-up calls, then a batch of calls filling about --batch-seconds; reported: the median over all rounds' calls, p10/p90, and the CPU time
other processes took during the system's batches (the machine may be shared).
Results: bench/results/dynamo-cpu-<tag>.json; `--markdown` prints the table for
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

SYSTEMS = ("eager", "inductor", "kiln-vmfb", "kiln-dynamo")
MODELS = ("mlp", "bert", "gpt2-prefill", "gpt2-decode", "llama", "resnet", "gpt2-guarded")
GUARDED_AFTER_BLOCK = 6  # gpt2-guarded: the .item() check runs after this many blocks


# =============================================================================================
# The model torch.export rejects


def guarded_gpt2(batch: int, dtype):
    """The zoo's GPT-2 small (prefill, 128 tokens) with a finiteness check after block 6, as
    research code writes it: `if not torch.isfinite(h).all().item(): raise`. The `.item()` and
    the Python branch on it make torch.export fail (data-dependent control flow); Dynamo breaks
    the graph there and compiles the blocks before and after as separate regions."""
    import torch
    from kiln.examples import zoo

    model, inputs = zoo.build("gpt2-prefill", batch, dtype)

    def check_finite(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        if not torch.isfinite(hidden).all().item():
            raise FloatingPointError(f"non-finite activations after block "
                                     f"{GUARDED_AFTER_BLOCK}")

    model.lm.transformer.h[GUARDED_AFTER_BLOCK - 1].register_forward_hook(check_finite)
    return model, inputs


def build(name: str, batch: int):
    import torch
    from kiln.examples import zoo

    if name == "gpt2-guarded":
        return guarded_gpt2(batch, torch.float32)
    return zoo.build(name, batch, torch.float32)


# =============================================================================================
# Worker: one system, one model; commands on stdin, one JSON line per answer on stdout


def worker(model_name: str, system: str, batch: int) -> None:
    import torch

    from bench.suite.load import ForeignLoad, peak_rss_mb
    from bench.suite.results import check

    out = sys.stdout
    sys.stdout = sys.stderr  # prints from models or compilers must not break the protocol

    def answer(payload: dict) -> None:
        out.write(json.dumps(payload) + "\n")
        out.flush()

    model, inputs = build(model_name, batch)
    with torch.inference_mode():
        expected = model(*inputs)
    status: dict = {"system": system, "model": model_name, "batch": batch}
    start = time.perf_counter()
    try:
        call = _prepare(system, model, inputs, status)
        output = call()  # torch.compile systems compile here
    except Exception as error:  # noqa: BLE001 - recorded as the cell's status
        message = str(error).strip().splitlines()
        status.update(status="FAILED", error=f"{type(error).__name__}: "
                                             f"{message[0] if message else ''}"[:300])
        answer(status)
        return
    status["compile_s"] = round(time.perf_counter() - start, 2)
    status.update(check(_as_numpy(output), _as_numpy(expected), "f32"))
    status["status"] = status.pop("check")
    if system == "kiln-dynamo":
        import kiln

        report = kiln.compile_report(model)
        status["regions"] = len(report.regions)
        status["kiln_regions"] = report.count("kiln")
        status["breaks"] = len(report.breaks)
        status["report"] = str(report)
    elif system == "inductor":
        status["graphs"] = _dynamo_graph_count()
    answer(status)
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "quit":
            break
        for _ in range(command["warmup"]):
            call()
        samples = []
        with ForeignLoad() as load:
            deadline = time.perf_counter() + command["seconds"]
            while len(samples) < command["min_calls"] or time.perf_counter() < deadline:
                t0 = time.perf_counter()
                call()
                samples.append((time.perf_counter() - t0) * 1e3)
        answer({"samples": samples, "foreign_cores": round(load.cores, 3),
                "peak_rss_mb": round(peak_rss_mb())})


def _prepare(system: str, model, inputs, status: dict):
    import torch

    if system == "eager":
        def call():
            with torch.inference_mode():
                return model(*inputs)
        return call
    if system == "inductor":
        compiled = torch.compile(model)
    elif system == "kiln-dynamo":
        compiled = torch.compile(model, backend="kiln", options={"cache": False})
    elif system == "kiln-vmfb":
        import kiln

        start = time.perf_counter()
        run = kiln.load(kiln.compile_to_vmfb(model, tuple(inputs), cache=False))
        status["vmfb_compile_s"] = round(time.perf_counter() - start, 2)
        return lambda: run(*inputs)
    else:
        raise ValueError(f"unknown system {system!r}")

    def call():
        with torch.inference_mode():
            return compiled(*inputs)
    return call


def _dynamo_graph_count() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def _as_numpy(value):
    import numpy as np

    if isinstance(value, (tuple, list)):
        value = value[0]
    if hasattr(value, "detach"):
        return value.detach().float().cpu().numpy()
    return np.asarray(value, dtype=np.float32)


# =============================================================================================
# Parent


class Worker:
    def __init__(self, model: str, system: str, batch: int, env: dict):
        self.system = system
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.dynamo_backend", "--worker", model, system, str(batch)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
        self.status = self._read()

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            return {"system": self.system, "status": "FAILED",
                    "error": f"worker exited with code {self.process.returncode}"}
        return json.loads(line)

    @property
    def ok(self) -> bool:
        return self.status.get("status") == "ok"

    def time(self, warmup: int, seconds: float, min_calls: int) -> dict:
        self.process.stdin.write(json.dumps({"op": "time", "warmup": warmup,
                                             "seconds": seconds, "min_calls": min_calls})
                                 + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.process.stdin.flush()
                self.process.wait(timeout=60)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()


def run_model(model: str, args, env: dict) -> dict:
    from bench.suite.load import wait_for_quiet

    workers = []
    try:
        for system in args.systems:  # compiles one at a time
            print(f"[{model}] {system}: building and compiling ...", file=sys.stderr, flush=True)
            worker = Worker(model, system, args.batch, env)
            print(f"[{model}] {system}: {worker.status.get('status')} "
                  f"{worker.status.get('error', '')}", file=sys.stderr, flush=True)
            workers.append(worker)
        timed = [w for w in workers if w.ok]
        samples = {w.system: [] for w in timed}
        foreign = {w.system: [] for w in timed}
        rss = {}
        for round_index in range(args.rounds):
            # rotate, and reverse every other round: each system follows each other one
            order = timed[round_index % len(timed):] + timed[:round_index % len(timed)] \
                if timed else []
            if round_index % 2:
                order.reverse()
            for worker in order:
                if args.quiet_wait > 0:
                    wait_for_quiet(args.quiet_wait)
                time.sleep(0.5)  # the previous system's threads settle (OpenMP spin-waits)
                result = worker.time(args.warmup, args.batch_seconds, args.min_calls)
                samples[worker.system] += result["samples"]
                foreign[worker.system].append(result["foreign_cores"])
                rss[worker.system] = result["peak_rss_mb"]
            print(f"[{model}] round {round_index + 1}/{args.rounds}: " + ", ".join(
                f"{s} {statistics.median(v):.2f} ms" for s, v in samples.items() if v),
                file=sys.stderr, flush=True)
        cells = {}
        for worker in workers:
            cell = dict(worker.status)
            values = sorted(samples.get(worker.system, []))
            if values:
                cell.update(ms=statistics.median(values), p10_ms=_pct(values, 0.1),
                            p90_ms=_pct(values, 0.9), min_ms=values[0], calls=len(values),
                            foreign_cores=round(statistics.mean(foreign[worker.system]), 2),
                            peak_rss_mb=rss.get(worker.system))
            cells[worker.system] = cell
        return cells
    finally:
        for worker in workers:
            worker.close()


def _pct(values: list, q: float) -> float:
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def machine_tag() -> str:
    from bench.suite.machine import machine_info, machine_tag as suite_machine_tag

    return suite_machine_tag(machine_info("cpu"), "cpu")


def markdown(results: dict) -> str:
    lines = ["| model | eager | inductor | kiln-vmfb | kiln-dynamo | dynamo ÷ vmfb | "
             "inductor ÷ dynamo | regions (Kiln) / breaks | foreign cores |",
             "|---|---|---|---|---|---|---|---|---|"]
    for model, cells in results["models"].items():
        def ms(system):
            cell = cells.get(system, {})
            if "ms" in cell:
                return f"{cell['ms']:.3g}"
            return cell.get("status", "—") if cell else "—"

        def ratio(a, b):
            if "ms" in cells.get(a, {}) and "ms" in cells.get(b, {}):
                return f"{cells[a]['ms'] / cells[b]['ms']:.3f}"
            return "—"

        dynamo = cells.get("kiln-dynamo", {})
        regions = f"{dynamo.get('regions', '?')} ({dynamo.get('kiln_regions', '?')}) / " \
                  f"{dynamo.get('breaks', '?')}" if dynamo.get("status") == "ok" else "—"
        foreign = max((c.get("foreign_cores", 0) for c in cells.values()), default=0)
        lines.append(f"| {model} | {ms('eager')} | {ms('inductor')} | {ms('kiln-vmfb')} | "
                     f"{ms('kiln-dynamo')} | {ratio('kiln-dynamo', 'kiln-vmfb')} | "
                     f"{ratio('inductor', 'kiln-dynamo')} | {regions} | {foreign:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-seconds", type=float, default=2.0)
    parser.add_argument("--min-calls", type=int, default=3)
    parser.add_argument("--quiet-wait", type=float, default=10.0)
    parser.add_argument("--tag", default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, help="print the table of a results JSON")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        model, system, batch = args.worker
        worker(model, system, int(batch))
        return
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text())))
        return
    args.systems = [s for s in args.systems.split(",") if s]
    unknown = [s for s in args.systems if s not in SYSTEMS]
    if unknown:
        raise SystemExit(f"unknown system(s) {unknown}; known: {', '.join(SYSTEMS)}")
    tag = args.tag or machine_tag()
    out = args.out or HERE / "results" / f"dynamo-cpu-{tag}.json"
    results = json.loads(out.read_text()) if out.exists() else {"models": {}}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO / "python"), str(REPO), os.environ.get("PYTHONPATH", "")]))
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    import subprocess as sp

    commit = sp.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                    cwd=REPO).stdout.strip()
    for model in [m for m in args.models.split(",") if m]:
        cells = run_model(model, args, env)
        results["models"][model] = cells
        results.update(machine=tag, cpu=platform.processor() or platform.machine(),
                       cores=os.cpu_count(), commit=commit, batch=args.batch,
                       omp_wait_policy=os.environ.get("OMP_WAIT_POLICY", "(unset)"),
                       command=" ".join(["python -m bench.dynamo_backend"] + (argv or
                                                                           sys.argv[1:])))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))
    print(markdown(results))


if __name__ == "__main__":
    main()
