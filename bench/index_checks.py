"""The cost of index bounds checks (kiln.guards, `index_checks=True`) on the CPU.

    python -m bench.index_checks      # markdown table: dispatches and per-call latency, off/on

Models: the bundled TinyGPT (default config, batch 1, 64 tokens) and a tiny GPT-2
(GPT2LMHeadModel: 2 layers, d=128, 4 heads, vocab 1000; batch 1, 64 tokens). Dispatches: the
`flow.dispatch`es of the iree-input IR (kiln.dispatches.count_dispatches). Latency: median of
`run(tokens)` through kiln.load (the guard's result read and checked by the runtime included)
per round; the two artifacts are timed in alternating rounds so machine load hits both alike,
and the best round is the least disturbed one.
"""

from __future__ import annotations

import statistics

import torch

import kiln
from bench.common import median_ms
from kiln.dispatches import count_dispatches
from kiln.examples.tiny_gpt import TinyGPTConfig, build_tiny_gpt

ROUNDS = 7


def tiny_gpt():
    return build_tiny_gpt(TinyGPTConfig(), batch=1, seq_len=64)


def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=1000, n_positions=64, n_embd=128, n_layer=2, n_head=4,
                        bos_token_id=0, eos_token_id=0, use_cache=False)
    model = GPT2LMHeadModel(config).eval()
    return model, (torch.randint(0, 1000, (1, 64)),)


def measure(build) -> dict:
    model, args = build()
    result = {}
    runs = {}
    for checks in (False, True):
        text = kiln.compile_to_vmfb(model, args, compile_to="iree-input", index_checks=checks,
                                    cache=False)
        result[checks] = {"dispatches": count_dispatches(text).count, "ms": []}
        vmfb = kiln.compile_to_vmfb(model, args, index_checks=checks, cache=False)
        runs[checks] = kiln.load(vmfb)
    for _ in range(ROUNDS):
        for checks, run in runs.items():
            result[checks]["ms"].append(median_ms(lambda: run(*args), iters=300))
    return result


def main() -> None:
    print("| model | index checks | dispatches | per-call ms: best round | median round | rounds |")
    print("|---|---|---|---|---|---|")
    for name, build in (("TinyGPT", tiny_gpt), ("GPT-2 tiny", tiny_gpt2)):
        result = measure(build)
        for checks in (False, True):
            rounds = result[checks]["ms"]
            print(f"| {name} | {'on' if checks else 'off'} | {result[checks]['dispatches']} | "
                  f"{min(rounds):.3f} | {statistics.median(rounds):.3f} | "
                  f"{', '.join(f'{m:.3f}' for m in rounds)} |")


if __name__ == "__main__":
    main()
