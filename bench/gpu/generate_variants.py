"""Which generation artifacts run on the GPU, and do their greedy tokens match transformers?

The GPT-2 small generator (f16, Kiln's kernels, external weights) stopped with
CUDA_ERROR_ILLEGAL_ADDRESS at its first decode call on an H100. This script isolates the cause in
one GPU call: it compiles the same tiny GPT-2 and Llama generators with the kernel options turned
off one at a time, and each runs in its own process there (an illegal address poisons the CUDA
context), printing `ok` with token agreement against transformers on the same GPU in the same
dtype, or the error.

    python -m bench.gpu.generate_variants prepare --out .device/genvar      # here (IREE)
    python3 -m bench.gpu.generate_variants check --artifacts .device/genvar --out $OUT  # there

`--batch B` (both halves) compiles the generators for B rows and generates B different prompts
at once: each row's tokens against transformers' for that row.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

PROMPT, NEW, MAX_SEQ, VOCAB = 12, 8, 64, 256

# name: (model, dtype, options)
VARIANTS = {
    "gpt2-f32-nokernels": ("gpt2", "float32", {"cuda_kernels": "off"}),
    "gpt2-f16-nokernels": ("gpt2", "float16", {"cuda_kernels": "off"}),
    "gpt2-f16-kernels": ("gpt2", "float16", {"cuda_kernels": "on"}),
    "gpt2-f16-kernels-nofuse": ("gpt2", "float16", {"cuda_kernels": "on", "cuda_fuse": False}),
    "gpt2-f16-kernels-nosplitk": ("gpt2", "float16", {"cuda_kernels": "on",
                                                      "cuda_split_k": False}),
    "gpt2-f16-kernels-sm80": ("gpt2", "float16", {"cuda_kernels": "on", "cuda_arch": "sm_80"}),
    # decode steps as IREE schedules them (host waits), not the pipelined loop
    "gpt2-f16-kernels-nopipeline": ("gpt2", "float16", {"cuda_kernels": "on",
                                                        "pipeline_loops": False}),
    # (decode_cache_write="scatter" generators, IREE's CUDA scatter of the decode row, gave no
    # result in 120 s on an H100 on 2026-12-06, after the greedy-token fix: the select stays)
    "llama-f16-nokernels": ("llama", "float16", {"cuda_kernels": "off"}),
    "llama-f16-kernels": ("llama", "float16", {"cuda_kernels": "on"}),
    # the decode's cache write by IREE's select (and RoPE, attention unfused) against the
    # default, where the decode attention kernel writes the cache row itself
    "llama-f16-kernels-nofuse": ("llama", "float16", {"cuda_kernels": "on", "cuda_fuse": False}),
}


def build(name: str):
    import torch
    import transformers

    torch.manual_seed(0)
    if name == "gpt2":
        config = transformers.GPT2Config(vocab_size=VOCAB, n_embd=128, n_layer=2, n_head=2,
                                         n_positions=MAX_SEQ)
    else:
        config = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=256,
                                          intermediate_size=256, num_hidden_layers=2,
                                          num_attention_heads=4, num_key_value_heads=2,
                                          max_position_embeddings=MAX_SEQ)
    return transformers.AutoModelForCausalLM.from_config(config).eval()


def prepare(args) -> None:
    import torch

    import kiln.generate

    kiln.generate.CUDA_BATCHED_GENERATION = True  # the refused form, compiled to examine it
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for model_name in ("gpt2", "llama"):
        torch.save(build(model_name).state_dict(), out / f"{model_name}.pt")
    for variant, (model_name, dtype, options) in VARIANTS.items():
        if args.only and variant not in args.only:
            continue
        try:
            kiln.compile_generator(build(model_name), max_seq_len=MAX_SEQ, batch_size=args.batch,
                                   target="cuda", dtype=getattr(torch, dtype),
                                   prefill_chunks=(16,), output=out / f"{variant}.vmfb",
                                   cache=False, **options)
            print(f"compiled {variant}", flush=True)
        except Exception as error:  # noqa: BLE001 - a variant that does not compile is reported
            print(f"{variant}: compile failed: {type(error).__name__}: {str(error)[:300]}")


def run_one(args) -> None:
    """One variant, in its own process: generate, compare with transformers, print one JSON."""
    import torch

    import kiln.generate

    kiln.generate.CUDA_BATCHED_GENERATION = True  # the refused form, run to examine it
    model_name, dtype, _ = VARIANTS[args.variant]
    folder = Path(args.artifacts)
    model = build(model_name)
    model.load_state_dict(torch.load(folder / f"{model_name}.pt"))
    model = model.to("cuda", getattr(torch, dtype))
    ids = torch.randint(0, VOCAB, (args.batch, PROMPT),
                        generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model.generate(ids.cuda(), max_new_tokens=NEW, do_sample=False,
                                  pad_token_id=0).cpu()
    generator = kiln.load_generator(folder / f"{args.variant}.vmfb", device="cuda")
    got = generator.generate(ids, max_new_tokens=NEW)  # greedy: the device loop
    stepped = torch.stack(list(generator.stream(ids, max_new_tokens=NEW)), dim=1)  # per token
    same = (got[:, PROMPT:] == expected[:, PROMPT:]).sum(dim=1).tolist()
    print(json.dumps({"variant": args.variant, "ok": True, "same_tokens": same, "of": NEW,
                      "batch": args.batch,
                      "loop_equals_steps": bool(torch.equal(got[:, PROMPT:], stepped)),
                      "got": got[:, PROMPT:].tolist(),
                      "expected": expected[:, PROMPT:].tolist()}))


def run_isolated(module: str, arguments: list[str], identity: dict,
                 timeout: int = 120) -> dict:
    """`python -m module *arguments` in a process of its own (an illegal address poisons the
    CUDA context): the last JSON line it prints, or `identity` with the error (its exit code
    and last stderr lines, or the timeout)."""
    try:
        done = subprocess.run([sys.executable, "-m", module, *arguments],
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**identity, "ok": False, "error": f"no result in {timeout} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode == 0 and lines:
        return json.loads(lines[-1])
    return {**identity, "ok": False, "rc": done.returncode,
            "error": done.stderr.strip().splitlines()[-4:]}


def check(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for variant in VARIANTS:
        if not (Path(args.artifacts) / f"{variant}.vmfb").exists():
            results.append({"variant": variant, "ok": False, "error": "not compiled"})
            continue
        result = run_isolated("bench.gpu.generate_variants",
                              ["one", "--variant", variant, "--artifacts", args.artifacts,
                               "--batch", str(args.batch)], {"variant": variant})
        print(json.dumps(result), flush=True)
        results.append(result)
    (out / "generate-variants.json").write_text(json.dumps(results, indent=1))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--out", required=True)
    p.add_argument("--only", nargs="*", help="variants to compile (default: all)")
    c = sub.add_parser("check")
    c.add_argument("--artifacts", required=True)
    c.add_argument("--out", required=True)
    o = sub.add_parser("one")
    o.add_argument("--variant", required=True)
    o.add_argument("--artifacts", required=True)
    for command in (p, c, o):
        command.add_argument("--batch", type=int, default=1, help="rows per generator")
    args = parser.parse_args(argv)
    {"prepare": prepare, "check": check, "one": run_one}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
