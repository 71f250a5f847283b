"""Kiln's CPU attention kernel (kiln.cpu_attention) on zoo models: A/B in one process.

Each model is compiled twice with Kiln's defaults for this host, once with attention="cpu_kernel"
(the kernel) and once with attention="decomposed" (QKᵀ, softmax, P·V dispatches); the two
artifacts are loaded and called alternately (rounds of `--calls` calls each, so that the shared
machine's noise falls on both), and the medians of the per-call times are printed, with the
largest difference between the two outputs. Eager torch is not timed here: in the same process
as IREE's workers it ran 5-9x slower than alone (829 ms for llama), so its numbers come from its
own process (bench.profile_dispatches --torch, the suite).

    python -m bench.cpu_attention_ab --models llama,gpt2-prefill,bert --rounds 15
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="llama,gpt2-prefill,bert")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args(argv)
    import torch

    import kiln
    from bench.common import interleaved_ms
    from kiln.cpu_attention import CPU_ATTENTION_TAKEN
    from kiln.examples import zoo

    for name in args.models.split(","):
        model, inputs = zoo.build(name, args.batch)
        runs = {}
        for variant, attention in (("kernel", "cpu_kernel"), ("decomposed", "decomposed")):
            compiled = kiln.compile_model(model, tuple(inputs), attention=attention,
                                          cache=False)
            runs[variant] = kiln.load(compiled.vmfb)
            taken = sum(1 for r in compiled.report.rewrites if r.detail == CPU_ATTENTION_TAKEN)
            print(f"{name} {variant}: {taken} attentions through the kernel", flush=True)
        outputs = {v: np.asarray(torch.as_tensor(f(*inputs))) for v, f in runs.items()}
        difference = float(np.abs(outputs["kernel"] - outputs["decomposed"]).max())
        samples = interleaved_ms(runs, inputs, args.rounds, args.calls)
        kernel, decomposed = (statistics.median(samples[v]) for v in ("kernel", "decomposed"))
        print(f"{name} b{args.batch}: kernel {kernel:.2f} ms, decomposed {decomposed:.2f} ms "
              f"per call (median of {args.rounds} rounds of {args.calls}), "
              f"{decomposed / kernel:.3f}x; max |difference| {difference:.1e}",
              flush=True)


if __name__ == "__main__":
    main()
