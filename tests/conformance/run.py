"""Run OpInfo samples through Kiln and the plain path in worker processes; write the results.

    python -m tests.conformance.run --subset ci                 # the CI subset, both paths
    python -m tests.conformance.run --full --out tests/conformance/results/full.jsonl
    python -m tests.conformance.run --ops 'nn.functional.pad.*' --paths kiln -v
    python -m tests.conformance.run --ids tests/conformance/results/after.jsonl --paths kiln \
        --out /tmp/kiln-only.jsonl                                  # rerun the recorded samples
    python -m tests.conformance.run --report tests/conformance/results/after.jsonl \
        --before tests/conformance/results/before.jsonl             # docs/conformance.md

Each sample runs in a worker process (tests.conformance.worker) with a time limit; a sample
that hangs or kills its worker is recorded as "timeout" / "crash" for the path that was
running, and a fresh worker takes the next sample. Results are appended as JSON lines as they
come (a long run can be read, or resumed with --resume, at any time); --report writes
docs/conformance.md from a results file. One worker runs at a time, at nice 10 (the CI
machine has 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import select
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Callable, Iterable, Optional

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CI_SAMPLES = HERE / "ci_samples.json"
DEFAULT_TIMEOUT = 180.0
# Samples per op and dtype of the full run (float32 is every op's main dtype).
FULL_PER_OP = {"float32": 2, "float64": 1, "int64": 1, "bool": 1, "float16": 1,
               "bfloat16": 1, "complex64": 1}


class Worker:
    """One worker process and a line reader over its protocol stream."""

    def __init__(self, log):
        self.process = subprocess.Popen(
            ["nice", "-n", "10", sys.executable, "-m", "tests.conformance.worker"],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1",
                                         "KILN_CACHE": "0"})
        self.buffer = b""

    def send(self, payload: dict) -> None:
        self.process.stdin.write((json.dumps(payload) + "\n").encode())
        self.process.stdin.flush()

    def read(self, deadline: float) -> Optional[tuple[str, dict]]:
        """The next protocol line, or None at the deadline or when the worker died."""
        stream = self.process.stdout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([stream], [], [], left)
            if not ready:
                return None
            chunk = os.read(stream.fileno(), 65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        text = line.decode(errors="replace")
        if not text.startswith("@@"):
            return self.read(deadline)
        tag, _, payload = text.partition(" ")
        return tag, json.loads(payload)

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)  # the worker and its iree-compile
            except ProcessLookupError:
                pass
        self.process.wait()


def run_samples(ids: Iterable[str], paths: tuple[str, ...] = ("kiln", "plain"),
                timeout: float = DEFAULT_TIMEOUT, on_result: Callable[[dict], None] = None,
                log_path: Optional[Path] = None) -> list[dict]:
    """Run each sample id through `paths`; returns (and passes to `on_result`) one record per
    sample: {"id", "family", "skip"} or {"id", "family", <path>: outcome dict, ...}."""
    from tests.conformance.samples import SampleId

    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    worker: Optional[Worker] = None
    records = []
    try:
        for sample_id in ids:
            if worker is None:
                worker = Worker(log)
            record: dict = {"id": sample_id, "family": SampleId.parse(sample_id).family}
            worker.send({"id": sample_id, "paths": list(paths)})
            deadline = time.monotonic() + timeout * len(paths) + 60  # + building the sample
            running = None
            while True:
                message = worker.read(deadline)
                if message is None:
                    died = worker.process.poll() is not None
                    kind = "crash" if died else "timeout"
                    worker.stop()
                    worker = None
                    if running is not None:
                        record[running] = {"kind": kind, "detail": f"worker {kind} while "
                                           f"running {running}", "seconds": 0.0}
                    else:
                        record["skip"] = f"worker {kind} while building the sample"
                    break
                tag, payload = message
                if tag == "@@BEGIN":
                    running = payload["path"]
                    deadline = time.monotonic() + timeout
                elif tag == "@@OUT":
                    record[payload["path"]] = payload["outcome"]
                    running = None
                elif tag == "@@END":
                    if payload.get("skip"):
                        record["skip"] = payload["skip"]
                    break
            if not record.get("skip"):
                for path in paths:  # paths the worker never reached after a crash
                    record.setdefault(path, {"kind": "crash", "detail": "not run: the worker "
                                             "died on an earlier path", "seconds": 0.0})
            records.append(record)
            if on_result is not None:
                on_result(record)
    finally:
        if worker is not None:
            worker.process.stdin.close()
            worker.stop()
        if log_path:
            log.close()
    return records


def ci_samples() -> dict[str, str]:
    """The CI subset: sample id → Kiln's expected outcome."""
    return json.loads(CI_SAMPLES.read_text())


def select_ids(args) -> list[str]:
    from tests.conformance.samples import enumerate_samples, op_table

    if args.subset == "ci":
        return list(ci_samples())
    if args.ids:
        if args.ids.endswith(".jsonl"):  # the samples of an earlier results file
            return list(load_results(Path(args.ids)))
        return [line.strip() for line in Path(args.ids).read_text().splitlines()
                if line.strip()]
    per_op = dict(FULL_PER_OP) if not args.per_op else {}
    for item in args.per_op or ():
        dtype, _, count = item.partition("=")
        per_op[dtype] = int(count)
    ops = None
    if args.ops:
        pattern = re.compile(args.ops)
        ops = [key for key in op_table() if pattern.fullmatch(key)]
    return [str(sample_id) for sample_id in enumerate_samples(per_op, ops)]


def load_results(path: Path) -> dict[str, dict]:
    records = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                records[record["id"]] = record
    return records


# -- the report ----------------------------------------------------------------------------
def machine() -> str:
    from kiln.targets import read_cpuinfo

    cpu = read_cpuinfo().model_name or platform.processor() or platform.machine()
    import importlib.metadata as md

    versions = ", ".join(f"{name} {md.version(name)}" for name in
                         ("torch", "torch-mlir", "iree-base-compiler", "iree-base-runtime"))
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}; {versions}"


def summarize(records: Iterable[dict]) -> dict:
    """Counts by family and outcome for both paths, and the samples only the plain path
    passes (Kiln's regressions against the plain path) with their reasons."""
    from tests.conformance.paths import OUTCOMES

    by_family: dict = defaultdict(lambda: {"samples": 0, "kiln": Counter(), "plain": Counter(),
                                           "plain_only": 0, "kiln_only": 0})
    plain_only = []
    for record in records:
        if record.get("skip") or "kiln" not in record or "plain" not in record:
            continue
        row = by_family[record["family"]]
        row["samples"] += 1
        kiln, plain = record["kiln"]["kind"], record["plain"]["kind"]
        row["kiln"][kiln] += 1
        row["plain"][plain] += 1
        if plain == "pass" and kiln != "pass":
            row["plain_only"] += 1
            plain_only.append(record)
        if kiln == "pass" and plain != "pass":
            row["kiln_only"] += 1
    totals = {"samples": sum(r["samples"] for r in by_family.values()),
              "kiln": sum((r["kiln"] for r in by_family.values()), Counter()),
              "plain": sum((r["plain"] for r in by_family.values()), Counter()),
              "plain_only": len(plain_only),
              "kiln_only": sum(r["kiln_only"] for r in by_family.values())}
    return {"families": dict(sorted(by_family.items())), "totals": totals,
            "plain_only": plain_only, "outcomes": OUTCOMES}


def report_markdown(records: list[dict], command: str, results_path: str,
                    before: Optional[list[dict]] = None) -> str:
    summary = summarize(records)
    outcomes = summary["outcomes"]
    skipped = sum(1 for r in records if r.get("skip"))

    def counts(counter) -> str:
        return ", ".join(f"{k} {counter[k]}" for k in outcomes if counter.get(k))

    lines = ["# Op conformance: Kiln vs the plain torch-mlir → IREE path", "",
             "Generated by `python -m tests.conformance.run --report ...` from "
             f"`{results_path}`; do not edit by hand.", "",
             "Each PyTorch OpInfo sample (CPU, inference) is wrapped as a small `nn.Module` and "
             "run through Kiln (`kiln.compile_to_vmfb(..., cache=False)` + `kiln.load`, torch "
             "tensors in) and through the plain path (`torch.export` → torch-mlir "
             "`fx.export_and_import` → IREE llvm-cpu with plain flags → `iree.runtime`); both "
             "are compared with eager PyTorch (tests/conformance/samples.py: float32 rtol/atol "
             "1e-4, float16 1e-2, bfloat16 3e-2, float64 1e-7, integers and booleans exact; "
             "Kiln must also return the model's own output structure and update inputs the "
             "model mutates in place).", "",
             f"- command: `{command}`",
             f"- machine: {machine()}",
             f"- samples: {summary['totals']['samples']} run, {skipped} skipped (eager PyTorch "
             "itself fails them)", ""]
    totals = summary["totals"]
    lines += ["## Totals", "", "| path | pass | outcomes |", "|---|---|---|",
              f"| plain | {totals['plain']['pass']} | {counts(totals['plain'])} |",
              f"| Kiln | {totals['kiln']['pass']} | {counts(totals['kiln'])} |", "",
              f"Samples the plain path passes and Kiln does not: **{totals['plain_only']}**; "
              f"Kiln passes and the plain path does not: {totals['kiln_only']}.", ""]
    if before:
        old = summarize(before)["totals"]
        lines += [f"Before the fixes of this round (same samples): Kiln passed "
                  f"{old['kiln']['pass']} ({counts(old['kiln'])}); plain-only passes "
                  f"{old['plain_only']}.", ""]
    lines += ["## By op family", "",
              "| family | samples | plain pass | Kiln pass | plain-only | Kiln-only | Kiln "
              "outcomes |", "|---|---|---|---|---|---|---|"]
    for family, row in summary["families"].items():
        lines.append(f"| {family} | {row['samples']} | {row['plain']['pass']} | "
                     f"{row['kiln']['pass']} | {row['plain_only']} | {row['kiln_only']} | "
                     f"{counts(row['kiln'])} |")
    lines += ["", "## Samples the plain path passes and Kiln does not", ""]
    if not summary["plain_only"]:
        lines.append("None.")
    for record in summary["plain_only"]:
        detail = record["kiln"]["detail"].replace("|", "\\|").replace("\n", " ")[:200]
        lines.append(f"- `{record['id']}`: {record['kiln']['kind']}: {detail}")
    neither = [r for r in records if not r.get("skip") and "kiln" in r and "plain" in r
               and r["kiln"]["kind"] != "pass" and r["plain"]["kind"] != "pass"]
    lines += ["", "## Neither path runs", "",
              f"{len(neither)} samples; by Kiln outcome: "
              f"{counts(Counter(r['kiln']['kind'] for r in neither)) or 'none'}. Export, "
              "import and compile errors stop before anything runs, with the failing op "
              "(Kiln's report lists every op IREE rejects with its source line); the samples "
              "below run and give wrong values or fail while running:", ""]
    late = [r for r in neither if r["kiln"]["kind"] in ("wrong", "runtime", "timeout",
                                                         "crash")]
    for record in late:
        detail = record["kiln"]["detail"].replace("|", "\\|").replace("\n", " ")[:160]
        lines.append(f"- `{record['id']}`: {record['kiln']['kind']}: {detail} (plain: "
                     f"{record['plain']['kind']})")
    if not late:
        lines.append("None.")
    return "\n".join(lines) + "\n"


# Samples the CI subset always holds: one per fix the conformance work made (tests/test_*.py
# hold the focused tests; these keep the op-level view honest).
CI_ALWAYS = ("add:inplace|float32|0", "index_put:inplace|float32|0", "fill:inplace|float32|0",
             "max.reduction_with_dim|int64|0", "item|float32|0", "sum|float64|0",
             "to|float32|0", "nn.functional.pad.reflect|float32|0", "__getitem__|bool|0",
             "addmm|int64|0", "nn.functional.grid_sample|float32|0", "sort|int64|0",
             "scatter|float32|0", "index_copy|float32|0", "msort|bool|0", "mul|complex64|0",
             "empty_like|float32|0", "scatter_add|bool|0")


def pick_ci(records: dict[str, dict], count: int) -> dict[str, str]:
    """The CI subset from a full run's results: CI_ALWAYS, then samples Kiln passes spread
    over families and dtypes (round robin, in id order); id → Kiln's outcome there."""
    runnable = {i: r for i, r in records.items() if not r.get("skip") and "kiln" in r}
    chosen = {i: runnable[i]["kiln"]["kind"] for i in CI_ALWAYS if i in runnable}
    buckets: dict = defaultdict(list)
    for sample_id in sorted(runnable):
        record = runnable[sample_id]
        if record["kiln"]["kind"] == "pass" and record["kiln"].get("seconds", 0) < 10:
            buckets[(record["family"], sample_id.split("|")[1])].append(sample_id)
    keys = sorted(buckets)
    step = 0
    while len(chosen) < count and any(buckets.values()):
        key = keys[step % len(keys)]
        if buckets[key]:
            # spread inside a bucket too: every 7th id, wrapping
            index = (step * 7) % len(buckets[key])
            sample_id = buckets[key].pop(index)
            chosen.setdefault(sample_id, "pass")
        step += 1
    return dict(sorted(chosen.items()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    pick = parser.add_mutually_exclusive_group()
    pick.add_argument("--subset", choices=["ci"], help="the recorded CI subset")
    pick.add_argument("--full", action="store_true", help="every op (see FULL_PER_OP)")
    pick.add_argument("--ids", help="a file of sample ids, one a line, or a results file "
                                    "(.jsonl) whose samples to rerun")
    pick.add_argument("--ops", help="regular expression over OpInfo keys")
    parser.add_argument("--per-op", action="append", metavar="DTYPE=N",
                        help="samples per op for a dtype (repeatable; replaces FULL_PER_OP)")
    parser.add_argument("--paths", default="kiln,plain")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help="seconds per sample and path")
    parser.add_argument("--out", help="results file (JSON lines), appended as samples finish")
    parser.add_argument("--resume", action="store_true", help="skip ids already in --out")
    parser.add_argument("--limit", type=int, help="run at most this many samples")
    parser.add_argument("--report", metavar="RESULTS",
                        help="write docs/conformance.md from a results file and stop")
    parser.add_argument("--before", help="with --report: an earlier results file to compare")
    parser.add_argument("--command", default="python -m tests.conformance.run --full",
                        help="with --report: the command the report names")
    parser.add_argument("--markdown", default=str(ROOT / "docs" / "conformance.md"))
    parser.add_argument("--list", action="store_true", help="print the sample ids and stop")
    parser.add_argument("--pick-ci", metavar="RESULTS",
                        help="write tests/conformance/ci_samples.json from a results file")
    parser.add_argument("--ci-count", type=int, default=120)
    parser.add_argument("--merge", nargs=2, metavar=("NEWER", "OLDER"),
                        help="write --out: each sample of OLDER with the paths NEWER ran "
                             "replaced (e.g. a Kiln-only rerun over a run of both paths)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)

    if args.report:
        records = list(load_results(Path(args.report)).values())
        before = list(load_results(Path(args.before)).values()) if args.before else None
        if before:
            ids = {r["id"] for r in records}
            before = [r for r in before if r["id"] in ids]
        Path(args.markdown).write_text(report_markdown(records, args.command,
                                                       os.path.relpath(args.report, ROOT),
                                                       before))
        print(f"wrote {args.markdown}")
        return 0
    if args.merge:
        newer, older = (load_results(Path(p)) for p in args.merge)
        with open(args.out, "w") as handle:
            for sample_id, record in older.items():
                merged = {**record, **newer.get(sample_id, {})}
                if merged.get("skip") and not record.get("skip"):
                    merged = record  # a rerun that could not build the sample keeps the old
                handle.write(json.dumps(merged) + "\n")
        print(f"wrote {len(older)} samples to {args.out}")
        return 0
    if args.pick_ci:
        chosen = pick_ci(load_results(Path(args.pick_ci)), args.ci_count)
        CI_SAMPLES.write_text(json.dumps(chosen, indent=1) + "\n")
        print(f"wrote {len(chosen)} samples to {CI_SAMPLES}")
        return 0
    ids = select_ids(args)
    if args.list:
        print("\n".join(ids))
        return 0
    out = Path(args.out) if args.out else None
    if out and args.resume:
        done = load_results(out)
        ids = [i for i in ids if i not in done]
    if args.limit:
        ids = ids[:args.limit]
    paths = tuple(p for p in args.paths.split(",") if p)
    print(f"{len(ids)} samples through {', '.join(paths)}", flush=True)
    start = time.monotonic()
    handle = open(out, "a") if out else None

    def on_result(record: dict) -> None:
        if handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
        if args.verbose or record.get("skip"):
            text = record.get("skip") or "  ".join(
                f"{p} {record[p]['kind']:<8}" for p in paths)
            print(f"{record['id']:<50} {text}", flush=True)
            for p in paths:
                if not record.get("skip") and record[p]["kind"] != "pass" and args.verbose:
                    print(f"    {p}: {record[p]['detail'][:300]}", flush=True)

    log_path = out.with_suffix(".log") if out else None
    records = run_samples(ids, paths, args.timeout, on_result, log_path)
    if handle:
        handle.close()
    counts = {p: Counter(r[p]["kind"] for r in records if p in r) for p in paths}
    for path, counter in counts.items():
        print(f"{path}: " + ", ".join(f"{k} {v}" for k, v in counter.most_common()))
    if "kiln" in paths and "plain" in paths:
        behind = [r["id"] for r in records if "kiln" in r and r["plain"]["kind"] == "pass"
                  and r["kiln"]["kind"] != "pass"]
        print(f"plain passes, Kiln does not: {len(behind)}")
    print(f"{len(records)} samples in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
