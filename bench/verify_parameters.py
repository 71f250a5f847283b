"""What checking an external-weights archive against its artifact costs (GPT-2 small, CPU).

    python -m bench.verify_parameters --loads 7 --out bench/results/verify_parameters-cpu.json

GPT-2 small (default GPT2Config, random weights, nothing downloaded) is compiled once with
weights="external". Then `kiln.load` runs in fresh processes, alternating
`verify_parameters=True` (the default: sha256 of every parameter in the archive, compared with
the artifact's record) and `False` (keys and byte lengths only); the files are in the page cache
(warm load). Reported: load time per mode (median, min), the verification alone (index load +
`kiln.archive.verify`, timed in the verifying process after its load), and at compile time the
cost of building the record (`kiln.archive.record`) and of hashing on one thread.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from bench.external_weights import _cpu_name, build_gpt2


def do_compile(args) -> dict:
    import numpy as np

    import kiln
    from kiln import archive

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model, ids = build_gpt2(args.seq)
    np.save(work / "tokens.npy", ids.numpy())
    start = time.perf_counter()
    compiled = kiln.compile_model(model, (ids,), target="cpu", weights="external", cache=False)
    compile_s = time.perf_counter() - start
    path = compiled.save(work / "gpt2.vmfb")
    arrays = list(compiled.parameters.values())
    start = time.perf_counter()
    archive.record("model", [(k, a, str(a.dtype)) for k, a in compiled.parameters.items()])
    record_s = time.perf_counter() - start
    start = time.perf_counter()
    for array in arrays:
        hashlib.sha256(array).hexdigest()
    one_thread_s = time.perf_counter() - start
    return {"compile_s": compile_s, "serialize_s": compiled.report.phase_seconds["serialize"],
            "record_s": record_s, "sha256_one_thread_s": one_thread_s,
            "parameters": len(arrays),
            "archive_bytes": archive.parameters_path(path).stat().st_size,
            "parameter_bytes": sum(a.nbytes for a in arrays)}


def do_load(args) -> dict:
    import numpy as np

    import kiln.runtime
    from kiln import archive

    work = Path(args.work)
    path = work / "gpt2.vmfb"
    verify = args.verify == "on"
    start = time.perf_counter()
    module = kiln.runtime.load(path, device="cpu", verify_parameters=verify)
    load_s = time.perf_counter() - start
    module(np.load(work / "tokens.npy"))  # it runs
    result = {"verify": verify, "load_s": load_s}
    if verify:
        import iree.runtime as rt

        info = json.loads(dict(module._entries["main"].vm_function.reflection)[
            kiln.runtime.PARAMETERS_KEY])
        start = time.perf_counter()
        index = rt.ParameterIndex()
        index.load(str(archive.parameters_path(path)))
        entries = [archive.ArchiveEntry(e.key, e.length, e.file_view) for e in
                   (index[i] for i in range(len(index)))]
        archive.verify(info, entries, path)
        result["verify_s"] = time.perf_counter() - start
    return result


def _child(*argv: str) -> dict:
    result = subprocess.run([sys.executable, "-m", "bench.verify_parameters", *argv],
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stderr[-4000:])
        raise SystemExit(f"child {' '.join(argv)} failed ({result.returncode})")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(args) -> None:
    load_start = os.getloadavg()[0]
    common = ["--work", args.work, "--seq", str(args.seq)]
    print("[bench] compiling GPT-2 with weights=external ...", file=sys.stderr, flush=True)
    compiled = _child("_compile", *common)
    loads = {"on": [], "off": []}
    for _ in range(args.loads):
        for mode in loads:
            loads[mode].append(_child("_load", *common, "--verify", mode))
    summary = {}
    for mode, rows in loads.items():
        times = [r["load_s"] for r in rows]
        summary[f"load_verify_{mode}_s"] = {"median": statistics.median(times), "min": min(times),
                                            "all": times}
    verify = [r["verify_s"] for r in loads["on"]]
    summary["verify_alone_s"] = {"median": statistics.median(verify), "min": min(verify),
                                 "all": verify}
    result = {"machine": f"{os.cpu_count()}-core {platform.machine()} CPU ({_cpu_name()})",
              "command": "python -m bench.verify_parameters " + " ".join(sys.argv[1:]),
              "load_average_1min": [load_start, os.getloadavg()[0]],
              "compile": compiled, **summary}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", nargs="?", default="all", choices=("all", "_compile", "_load"))
    parser.add_argument("--verify", choices=("on", "off"))
    parser.add_argument("--work", default="/tmp/kiln-bench-verify-parameters")
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--loads", type=int, default=5, help="load processes per mode")
    parser.add_argument("--out", help="write the results as JSON here")
    parsed = parser.parse_args()
    if parsed.step == "_compile":
        print(json.dumps(do_compile(parsed)))
    elif parsed.step == "_load":
        print(json.dumps(do_load(parsed)))
    else:
        main(parsed)
