"""GPT-2 small text generation on the GPU: Kiln's decode step against the card's weight-read
time and against transformers (eager `generate`, static cache + torch.compile reduce-overhead).

Two halves (the GPU machine has no IREE compiler and takes at most 64 MiB of files):
    python -m bench.gpu.generate_decode prepare --out .device/gen      # here: artifact + record
    python3 -m bench.gpu.generate_decode measure --artifacts .device/gen --out $OUT   # there
The artifact is compiled with weights="external" (f16, max_seq_len 256, one 128-token prefill
chunk); the archive (250 MB) is not carried: `measure` writes random weights of the recorded
keys, shapes and dtypes and loads with verify_parameters=False (timing does not depend on the
weights' values). transformers runs its own random GPT-2 small in f16 with the same shapes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

PROMPT, NEW, MAX_SEQ = 128, 64, 256


def compile_gpt2_small(path: Path, record_path: Path, **options) -> None:
    """GPT-2 small's f16 CUDA generator (max_seq_len MAX_SEQ, one PROMPT-token chunk) with
    external weights; its parameter record goes to `record_path` and the archive (250 MB) is
    deleted: `load_with_random_weights` rebuilds one there (also used by
    generate_variants.py)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    import kiln
    from kiln.runtime import PARAMETERS_KEY, _iree_runtime

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(use_cache=False)).eval()
    kiln.compile_generator(model, max_seq_len=MAX_SEQ, batch_size=1, target="cuda",
                           dtype=torch.float16, prefill_chunks=(PROMPT,), weights="external",
                           output=path, cache=False, **options)
    rt = _iree_runtime()
    module = rt.VmModule.copy_buffer(rt.VmInstance(), path.read_bytes())
    record = next(json.loads(dict(module.lookup_function(n).reflection)[PARAMETERS_KEY])
                  for n in module.function_names
                  if PARAMETERS_KEY in dict(module.lookup_function(n).reflection))
    record_path.write_text(json.dumps(record))
    path.with_suffix(".irpa").unlink()


def load_with_random_weights(vmfb: Path, record_path: Path, archive: Path):
    """(Generator of `vmfb` on cuda, weight bytes) with random values of the recorded keys,
    shapes and dtypes written to `archive` (timing does not depend on the values)."""
    import numpy as np

    from kiln.generate import Generator
    from kiln.runtime import load, write_parameter_archive

    record = json.loads(record_path.read_text())
    rng = np.random.default_rng(0)
    arrays = {p["key"]: (rng.standard_normal(p["shape"]) * 0.02).astype(p["dtype"])
              for p in record["parameters"]}
    write_parameter_archive(archive, arrays)
    generator = Generator(load(vmfb, device="cuda", parameters=archive,
                               verify_parameters=False))
    return generator, sum(a.nbytes for a in arrays.values())


def prepare(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "gpt2.vmfb"
    compile_gpt2_small(path, out / "record.json")
    print(f"prepared {path} ({path.stat().st_size} bytes) and record.json")


def timed_generate(fn, repeats: int) -> list[float]:
    import torch

    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def measure(args) -> None:
    import torch

    folder, out = Path(args.artifacts), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"gpu": torch.cuda.get_device_name(), "prompt": PROMPT, "new_tokens": NEW}
    generator, weight_bytes = load_with_random_weights(
        folder / "gpt2.vmfb", folder / "record.json", Path("/tmp/gpt2.irpa"))
    ids = torch.randint(0, 50257, (1, PROMPT))
    generator.generate(ids, max_new_tokens=4)  # warm-up
    steps, ttft = [], []
    for _ in range(3):
        generator.generate(ids, max_new_tokens=NEW)
        steps += generator.stats.step_times_s[1:]
        ttft.append(generator.stats.time_to_first_token_s)
    step = statistics.median(steps)
    bandwidth = {"H100": 3.35e12, "H200": 4.8e12}
    card = next((v for k, v in bandwidth.items() if k in results["gpu"]), 3.35e12)
    results["kiln"] = {"decode_step_ms": step * 1e3, "decode_tokens_per_s": 1 / step,
                       "time_to_first_token_ms": statistics.median(ttft) * 1e3,
                       "weight_bytes": weight_bytes,
                       "weight_read_ms": weight_bytes / card * 1e3,
                       "step_over_weight_read": step / (weight_bytes / card)}
    print("kiln", json.dumps(results["kiln"]), flush=True)

    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config()).to("cuda", torch.float16).eval()
    cuda_ids = ids.cuda()
    kwargs = dict(max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        model.generate(cuda_ids, max_new_tokens=4, pad_token_id=0)
        eager = timed_generate(lambda: model.generate(cuda_ids, **kwargs), 3)
    results["transformers_eager"] = {"decode_tokens_per_s": NEW / statistics.median(eager),
                                     "seconds_per_generate": statistics.median(eager)}
    print("eager", json.dumps(results["transformers_eager"]), flush=True)
    try:
        model.generation_config.cache_implementation = "static"
        model.forward = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)
        start = time.perf_counter()
        with torch.no_grad():
            model.generate(cuda_ids, **kwargs)
            model.generate(cuda_ids, **kwargs)
            warm = time.perf_counter() - start
            compiled = timed_generate(lambda: model.generate(cuda_ids, **kwargs), 3)
        results["transformers_static_compile"] = {
            "decode_tokens_per_s": NEW / statistics.median(compiled),
            "seconds_per_generate": statistics.median(compiled), "warmup_s": warm}
    except Exception as error:  # noqa: BLE001 - a peer that fails is reported, not fatal
        results["transformers_static_compile"] = {"error": f"{type(error).__name__}: {error}"}
    print("static+compile", json.dumps(results["transformers_static_compile"]), flush=True)
    (out / "generate-gpu.json").write_text(json.dumps(results, indent=1))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--out", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--artifacts", required=True)
    m.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    (prepare if args.command == "prepare" else measure)(args)


if __name__ == "__main__":
    sys.exit(main())
