"""RuntimeOptions.cpu_batch_wait on and off for zoo models on this host's CPU: one artifact per
model, the option switched between rounds of calls in one process (interleaved, the order
alternating), median ms per call.

    python -m bench.cpu_batch_wait --models mlp,gpt2-decode,llama --rounds 12 --calls 5
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import kiln
from kiln.examples.zoo import build


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="mlp,gpt2-decode,llama")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args()
    for name in args.models.split(","):
        model, inputs = build(name)
        run = kiln.load(kiln.compile_to_vmfb(model, inputs, target="cpu"))
        for _ in range(3):
            run(*inputs)
        variants = {"batch wait": True, "default policy": False}
        times = {v: [] for v in variants}
        for r in range(args.rounds):
            for label in (list(variants) if r % 2 == 0 else list(variants)[::-1]):
                run.options = dataclasses.replace(run.options, cpu_batch_wait=variants[label])
                start = time.perf_counter()
                for _ in range(args.calls):
                    run(*inputs)
                times[label].append((time.perf_counter() - start) / args.calls * 1e3)
        on, off = (statistics.median(times[v]) for v in variants)
        print(f"{name}: cpu_batch_wait on {on:.2f} ms (min {min(times['batch wait']):.2f}), "
              f"off {off:.2f} ms (min {min(times['default policy']):.2f}), "
              f"off / on {off / on:.3f}", flush=True)


if __name__ == "__main__":
    main()
