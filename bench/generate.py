"""Generation benchmark: time to first token and decode tokens/s of Kiln's generator against
transformers' eager `generate` (dynamic cache) and its static cache + torch.compile recipe.

    python bench/generate.py --models gpt2,llama --batch 1 --prompt 128 --new 32 \\
        --systems kiln,eager,static-compile --rounds 3 --out bench/results/generate-cpu.json

Models have random weights (GPT-2 small, 124M; Llama-style 109M of bench/zoo.py, GQA). Each
round runs every system once, interleaved, so load from other processes spreads over all of
them; the table shows medians over rounds. Greedy decoding, no eos (every row makes `--new`
tokens). Decode tokens/s = batch x (new - 1) / (time after the first token). For
transformers, time to first token is a `generate(max_new_tokens=1)` call and the decode time is
a full call minus it. Kiln's compile and torch.compile's warm-up are not timed.
ONNX Runtime is not measured: exporting a decoder with its KV cache to ONNX needs optimum's
exporters, which this environment does not have.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from zoo import LLAMA_CONFIG  # noqa: E402


def build_model(name: str) -> torch.nn.Module:
    import transformers

    torch.manual_seed(0)
    if name == "gpt2":
        model = transformers.GPT2LMHeadModel(transformers.GPT2Config())
    elif name == "llama":
        config = dict(LLAMA_CONFIG, use_cache=True)
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**config))
    else:
        raise SystemExit(f"unknown model {name!r} (gpt2, llama)")
    return model.eval()


def prompt_ids(batch: int, length: int, vocab: int) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(1))


class KilnSystem:
    name = "kiln"

    def __init__(self, model, batch, prompt, new, chunks):
        import kiln

        start = time.perf_counter()
        artifact = kiln.compile_generator(model, max_seq_len=prompt + new, batch_size=batch,
                                          prefill_chunks=chunks)
        self.compile_s = time.perf_counter() - start
        self.generator = kiln.load_generator(artifact)

    def run(self, ids, new):
        out = self.generator.generate(ids, max_new_tokens=new)
        stats = self.generator.stats
        return out, stats.time_to_first_token_s, stats.decode_s


class HFSystem:
    def __init__(self, model, batch, prompt, new, compiled: bool):
        self.model = model
        self.name = "static-compile" if compiled else "eager"
        self.options = dict(do_sample=False, eos_token_id=None, pad_token_id=0,
                            min_new_tokens=None)
        self.compile_s = 0.0
        if compiled:
            # transformers' documented recipe: static cache + torch.compile(reduce-overhead)
            self.options["cache_implementation"] = "static"
            model.forward = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)
            start = time.perf_counter()
            ids = prompt_ids(batch, prompt, model.config.vocab_size)
            for _ in range(2):
                self._generate(ids, new)
                self._generate(ids, 1)
            self.compile_s = time.perf_counter() - start

    def _generate(self, ids, new):
        with torch.no_grad():
            return self.model.generate(ids, attention_mask=torch.ones_like(ids),
                                       max_new_tokens=new, **self.options)

    def run(self, ids, new):
        start = time.perf_counter()
        self._generate(ids, 1)
        first = time.perf_counter() - start
        start = time.perf_counter()
        out = self._generate(ids, new)
        total = time.perf_counter() - start
        return out, first, max(total - first, 1e-9)


def machine() -> str:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="gpt2,llama")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--new", type=int, default=32)
    parser.add_argument("--systems", default="kiln,eager,static-compile")
    parser.add_argument("--chunks", default=None,
                        help="Kiln prefill chunk lengths, e.g. 64,256 (default: Kiln's)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=None, help="append results to this JSON file")
    args = parser.parse_args(argv)
    chunks = tuple(int(c) for c in args.chunks.split(",")) if args.chunks else None
    results = []
    for name in args.models.split(","):
        model = build_model(name)
        ids = prompt_ids(args.batch, args.prompt, model.config.vocab_size)
        systems = []
        for system in args.systems.split(","):
            print(f"[{name}] preparing {system} ...", file=sys.stderr, flush=True)
            if system == "kiln":
                systems.append(KilnSystem(model, args.batch, args.prompt, args.new, chunks))
            elif system in ("eager", "static-compile"):
                copy = build_model(name)  # torch.compile replaces forward: one model each
                systems.append(HFSystem(copy, args.batch, args.prompt, args.new,
                                        system == "static-compile"))
            else:
                raise SystemExit(f"unknown system {system!r}")
        samples = {s.name: {"ttft": [], "decode": []} for s in systems}
        outputs = {}
        for round_index in range(args.rounds):
            for system in systems:
                out, first, decode = system.run(ids, args.new)
                outputs[system.name] = out
                samples[system.name]["ttft"].append(first)
                samples[system.name]["decode"].append(args.batch * (args.new - 1) / decode)
        reference = outputs.get("eager")
        for system in systems:
            ttft = statistics.median(samples[system.name]["ttft"]) * 1e3
            tps = statistics.median(samples[system.name]["decode"])
            same = None if reference is None else \
                float((outputs[system.name] == reference).float().mean())
            row = {"model": name, "system": system.name, "batch": args.batch,
                   "prompt": args.prompt, "new": args.new, "ttft_ms": round(ttft, 1),
                   "decode_tokens_per_s": round(tps, 2), "token_agreement_with_eager": same,
                   "compile_s": round(system.compile_s, 1), "rounds": args.rounds,
                   "ttft_ms_all": [round(t * 1e3, 1) for t in samples[system.name]["ttft"]],
                   "decode_tokens_per_s_all": [round(t, 2)
                                               for t in samples[system.name]["decode"]],
                   "machine": machine(), "load_average": os.getloadavg()[0]}
            results.append(row)
            print(f"{name:6s} b{args.batch} p{args.prompt} {system.name:15s} "
                  f"TTFT {ttft:9.1f} ms  decode {tps:8.2f} tok/s  same-as-eager {same}",
                  flush=True)
    if args.out:
        path = Path(args.out)
        previous = json.loads(path.read_text()) if path.exists() else []
        path.write_text(json.dumps(previous + results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
