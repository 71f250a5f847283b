"""Generation benchmark: time to first token and decode tokens/s of Kiln's generator against
transformers' eager `generate` (dynamic cache) and its static cache + torch.compile recipe.

    python -m bench.generate --models gpt2,llama --batch 1 --prompt 128 --new 32 \\
        --systems kiln,eager,static-compile --rounds 3 --out bench/results/generate-cpu.json

Models have random weights (GPT-2 small, 124M; Llama-style 109M of kiln.examples.zoo, GQA). Each
round runs every system once, interleaved, so load from other processes spreads over all of
them; the table shows medians over rounds. Greedy decoding, no eos (every row makes `--new`
tokens). Decode tokens/s = batch x (new - 1) / (time after the first token). For
transformers, time to first token is a `generate(max_new_tokens=1)` call and the decode time is
a full call minus it. Kiln's compile and torch.compile's warm-up are not timed.
ONNX Runtime (`onnxruntime`, `pip install -r bench/requirements.txt`) runs Kiln's own capture
(kiln.kv_cache.DecoderStep) exported to ONNX, the cache passed as arrays from call to call.
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

from kiln.examples.zoo import LLAMA_CONFIG
from kiln.targets import read_cpuinfo


def build_model(name: str) -> torch.nn.Module:
    import transformers

    torch.manual_seed(0)
    if name == "gpt2":
        model = transformers.GPT2LMHeadModel(transformers.GPT2Config())
    elif name == "llama":
        config = dict(LLAMA_CONFIG, use_cache=True)
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**config))
    elif name == "tiny":  # a smoke test of the script
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
            vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2))
    else:
        raise SystemExit(f"unknown model {name!r} (gpt2, llama, tiny)")
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


class OrtSystem:
    """ONNX Runtime (CPU provider) over Kiln's capture: kiln.kv_cache.DecoderStep exported with
    torch.onnx.export twice (prefill of the whole prompt, decode of one token), the cache
    passed in and returned as arrays each step (ORT has no device state in this form; the
    returned cache is the next call's input without a host copy)."""

    name = "onnxruntime"

    def __init__(self, model, batch, prompt, new, directory: Path):
        import onnxruntime as ort

        from kiln.kv_cache import CacheGeometry, DecoderStep

        start = time.perf_counter()
        self.max_seq_len = prompt + new
        geometry = CacheGeometry.probe(model, batch, self.max_seq_len)
        step = DecoderStep(model, geometry, self.max_seq_len)
        directory.mkdir(parents=True, exist_ok=True)
        self.sessions = {}
        self.names = None
        for tag, tokens in (("prefill", prompt), ("decode", 1)):
            path = directory / f"{tag}.onnx"
            inputs = step.example_inputs(batch, tokens)
            names = ["input_ids", "position_ids", "cache_position", "attention_mask",
                     *geometry.input_names]
            with torch.no_grad():
                torch.onnx.export(step, inputs, str(path), dynamo=True, input_names=names,
                                  output_names=["next_token", "logits",
                                                *[f"new_{n}" for n in geometry.input_names]])
            self.sessions[tag] = ort.InferenceSession(str(path),
                                                      providers=["CPUExecutionProvider"])
            self.names = names
        self.cache = [t.numpy() for t in geometry.zeros()]
        self.compile_s = time.perf_counter() - start

    def run(self, ids, new):
        import numpy as np

        batch, length = ids.shape
        mask = np.ones((batch, self.max_seq_len), np.int64)
        positions = np.tile(np.arange(length, dtype=np.int64), (batch, 1))
        start = time.perf_counter()
        feed = dict(zip(self.names, [ids.numpy(), positions, np.array([0], np.int64), mask,
                                     *self.cache]))
        outputs = self.sessions["prefill"].run(None, feed)
        first = time.perf_counter() - start
        tokens = [outputs[0]]
        for step in range(1, new):
            feed = dict(zip(self.names, [tokens[-1][:, None], positions[:, -1:] + step,
                                         np.array([length + step - 1], np.int64), mask,
                                         *outputs[2:]]))
            outputs = self.sessions["decode"].run(None, feed)
            tokens.append(outputs[0])
        total = time.perf_counter() - start
        out = torch.cat([ids, torch.from_numpy(np.stack(tokens, axis=1))], dim=1)
        return out, first, max(total - first, 1e-9)


def machine() -> str:
    cpu = read_cpuinfo().model_name or platform.processor()
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="gpt2,llama")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--new", type=int, default=32)
    parser.add_argument("--systems", default="kiln,eager,static-compile,onnxruntime")
    parser.add_argument("--chunks", default=None,
                        help="Kiln prefill chunk lengths, e.g. 64,256 (default: Kiln's)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--onnx-dir", default="/tmp/kiln-bench-onnx",
                        help="where the ONNX Runtime system writes its .onnx files")
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
            elif system == "onnxruntime":
                systems.append(OrtSystem(build_model(name), args.batch, args.prompt, args.new,
                                         Path(args.onnx_dir) / f"{name}-b{args.batch}"))
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
