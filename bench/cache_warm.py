"""What a compile-cache hit costs: a miss, then hits of `kiln.compile_model` (TinyGPT sizes), and
the export + key alone for GPT-2 small (124M, random weights, T=128; no compile).

    python -m bench.cache_warm

A hit runs torch.export and the key (kiln.compile_key) but neither Kiln's passes nor IREE
(docs/decisions.md, "Compile cache"). Uses a fresh temporary KILN_CACHE_DIR.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ["KILN_CACHE_DIR"] = tempfile.mkdtemp(prefix="kiln-cache-warm-")

import torch  # noqa: E402

import kiln  # noqa: E402
from kiln import compile_key  # noqa: E402
from kiln.compiler import CompileOptions  # noqa: E402
from kiln.examples.tiny_gpt import TinyGPTConfig, build_tiny_gpt  # noqa: E402
from kiln.frontend import export_model  # noqa: E402
from kiln.pipelines import Phase  # noqa: E402


def tiny_gpt_hits(repeats: int = 5) -> None:
    for config, seq in [(TinyGPTConfig(vocab_size=100, n_layers=1, d_model=64,
                                       max_seq_len=32), 16),
                        (TinyGPTConfig(n_layers=2, d_model=128), 64)]:
        model, args = build_tiny_gpt(config, batch=1, seq_len=seq)
        start = time.perf_counter()
        first = kiln.compile_model(model, args)
        miss = time.perf_counter() - start
        hits, exports, lookups = [], [], []
        for _ in range(repeats):
            start = time.perf_counter()
            compiled = kiln.compile_model(model, args)
            hits.append(time.perf_counter() - start)
            assert compiled.report.cache == "hit" and compiled.vmfb == first.vmfb
            exports.append(compiled.report.phase_seconds["export"])
            lookups.append(compiled.report.phase_seconds["cache-lookup"])
        print(f"TinyGPT {config.n_layers} layer(s), d={config.d_model}, seq {seq}: miss "
              f"{miss:.2f} s, hit median {statistics.median(hits):.2f} s (export "
              f"{statistics.median(exports):.2f} s, key + verified read "
              f"{statistics.median(lookups):.3f} s), vmfb {len(first.vmfb)} bytes")


def gpt2_export_and_key(repeats: int = 3) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(use_cache=False)).eval()
    ids = torch.randint(0, 50257, (1, 128))
    context = compile_key.compile_context(("cpu",), Phase.VMFB, CompileOptions())
    for _ in range(repeats):
        start = time.perf_counter()
        program = export_model(model, (ids,))
        exported = time.perf_counter() - start
        start = time.perf_counter()
        compile_key.artifact_key({"main": program}, context)
        print(f"GPT-2 small: export {exported:.2f} s, key {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    tiny_gpt_hits()
    gpt2_export_and_key()
