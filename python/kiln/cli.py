"""The `kiln` command line: compile a model, run an artifact, or run the bundled demo.

    kiln compile path/model.py:factory --input 1x128x768xf32 --target cpu -o out.vmfb
    kiln run out.vmfb --input tokens.npy
    kiln demo
    kiln check path/model.py:factory --input 1x16xi64 --target cpu --samples 3
    kiln generate path/model.py:factory --prompt-ids 1,2,3 --max-new-tokens 32 --stream
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

from kiln.cpu_attention import ATTENTION_CHOICES
from kiln.dtypes import by_element, numpy_dtype
from kiln.targets import normalize_target

# Dtype names an input spec may use (signless ints are signed) → the numpy names.
INPUT_DTYPES = {name: by_element(name).numpy for name in
                ("f16", "f32", "f64", "i1", "i8", "i16", "i32", "i64", "si64", "si32", "ui8",
                 "bf16")}
_SPEC = re.compile(r"^(?P<dims>(\d+x)*)(?P<dtype>[a-z]+\d+)$")
# Random inputs are drawn as float64 / int64 before the cast to their dtype.
_DRAW_BYTES = 8


class UsageError(Exception):
    """The command line asks for something that cannot work (a bad input spec, an output path
    that is a directory, ...): `main` prints the message in one line and exits with 2."""


def parse_input_spec(spec: str, rng: np.random.Generator, int_high: int) -> np.ndarray:
    """'1x128x768xf32' → random array; 'path.npy' → that array; ints drawn in [0, int_high)."""
    if spec.endswith(".npy"):
        path = Path(spec)
        if not path.is_file():
            raise UsageError(f"input file {spec} does not exist")
        return np.load(path)
    match = _SPEC.match(spec)
    if not match or match.group("dtype") not in INPUT_DTYPES:
        raise UsageError(f"cannot read input spec '{spec}': write DIMSxDTYPE such as "
                         f"1x128x768xf32 (dtypes: {', '.join(INPUT_DTYPES)}) or a .npy path")
    shape = tuple(int(d) for d in match.group("dims").split("x") if d)
    return random_array(shape, match.group("dtype"), rng, int_high, what=f"input '{spec}'")


def _input_dtype(dtype: str) -> np.dtype:
    """numpy dtype of a spec's dtype ("f32", "bf16") or of a signature's ("float32")."""
    return numpy_dtype(INPUT_DTYPES.get(dtype, dtype))


def random_array(shape, dtype: str, rng: np.random.Generator, int_high: int,
                 what: str = "input") -> np.ndarray:
    """Random values of `shape` and `dtype`: floats standard normal, ints in [0, int_high)."""
    np_dtype = _input_dtype(dtype)
    _check_fits_memory(shape, np_dtype, what)
    try:
        if np_dtype == np.bool_:
            return rng.integers(0, 2, shape).astype(np.bool_)
        if np.issubdtype(np_dtype, np.integer):
            return rng.integers(0, int_high, shape).astype(np_dtype)
        # bf16 goes through float32: numpy casts float64 to ml_dtypes' bfloat16 only that way.
        values = rng.standard_normal(shape)
        return values.astype(np.float32).astype(np_dtype) if np_dtype.name == "bfloat16" \
            else values.astype(np_dtype)
    except MemoryError:
        raise UsageError(f"{what} does not fit in the memory left on this machine "
                         f"({_bytes_text(math.prod(shape) * np_dtype.itemsize)} as "
                         f"{np_dtype.name})") from None


def _check_fits_memory(shape, dtype: np.dtype, what: str) -> None:
    """A UsageError, before numpy tries, for an input larger than this machine's memory."""
    elements = math.prod(shape)
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not on this OS: numpy's MemoryError says it
        return
    if elements * max(dtype.itemsize, _DRAW_BYTES) > memory:
        raise UsageError(f"{what} is too large: {elements:.3g} elements "
                         f"({_bytes_text(elements * dtype.itemsize)} as {dtype.name}) do not fit "
                         f"in this machine's memory ({_bytes_text(memory)})")


def _bytes_text(count: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} PiB"


def check_output_path(output: Optional[str]) -> None:
    """A UsageError, before compiling, for an -o that cannot be written as a file."""
    if output is None:
        return
    path = Path(output)
    if path.is_dir():
        raise UsageError(f"-o {output} is a directory: give a file path, e.g. "
                         f"{path / 'out.vmfb'}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"-o {output}: {parent} is a file, not a directory")
            break


def load_factory(target: str):
    """'path/model.py:factory' → the callable `factory` defined in that file."""
    path_text, sep, name = target.rpartition(":")
    if not sep or not path_text:
        raise UsageError(f"expected MODEL as path/to/file.py:factory, got '{target}'")
    path = Path(path_text)
    if not path.is_file():
        raise UsageError(f"model file {path} does not exist")
    spec = importlib.util.spec_from_file_location(f"kiln_user_model_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent.resolve()))
    # Registered before running it: dataclasses and pickling look modules up by name.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    if not hasattr(module, name):
        raise UsageError(f"{path} defines no '{name}'")
    return getattr(module, name)


def _to_torch(arrays):
    import torch

    def convert(array: np.ndarray):
        array = np.ascontiguousarray(array)
        if array.dtype.name == "bfloat16":  # torch cannot read ml_dtypes' bfloat16: its bits
            return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
        return torch.from_numpy(array)

    return tuple(convert(a) for a in arrays)


def _model_inputs_target(args):
    """(model, example_args, target) from MODEL, --input specs and --target."""
    import torch

    built = load_factory(args.model)()
    model, example_args = built if isinstance(built, tuple) else (built, None)
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"{args.model} returned {type(model).__name__}, expected a "
                         f"torch.nn.Module or (module, example_args)")
    if args.input:
        rng = np.random.default_rng(args.seed)
        example_args = _to_torch(parse_input_spec(s, rng, args.int_high) for s in args.input)
    if example_args is None:
        raise UsageError("give --input specs (e.g. --input 1x128x768xf32) or return "
                         "(module, example_args) from the factory")
    return model, example_args, compile_target(args)


def cmd_compile(args) -> int:
    import kiln
    from kiln.artifact import parameters_path

    check_output_path(args.output)  # before the compile, which takes seconds to minutes
    # Phases and their times go to stderr unless --quiet: compiles take seconds to minutes.
    options = compile_options(args, verbose_default=True, writes_output=True)
    model, example_args, target = _model_inputs_target(args)
    compiled = kiln.compile_model(model, example_args, target=target,
                                  compile_to=args.compile_to, **options)
    if args.report:
        print(compiled.report, file=sys.stderr)
    if compiled.vmfb is None:
        text = compiled.ir_text
        Path(args.output).write_text(text) if args.output else sys.stdout.write(text)
        return 0
    output = compiled.save(Path(args.output or "out.vmfb"))
    extra = f" + {parameters_path(output)}" if compiled.parameters else ""
    print(f"wrote {output} ({len(compiled.vmfb)} bytes){extra} for target {args.target}")
    return 0


def _time_ms(fn, repeat: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def cmd_run(args) -> int:
    import kiln

    module = kiln.load(args.artifact, device=args.device)
    rng = np.random.default_rng(args.seed)
    if args.input:
        inputs = [parse_input_spec(s, rng, args.int_high) for s in args.input]
    elif module.signature:
        inputs = [random_array(tuple(d or 1 for d in spec["shape"]), spec["dtype"], rng,
                               args.int_high) for spec in module.signature["inputs"]]
    else:
        raise UsageError("this artifact carries no signature; pass --input specs")
    from kiln.outputs import output_leaves

    for index, out in enumerate(output_leaves(module(*inputs))):
        if not hasattr(out, "shape"):  # a Python number or None the model returns
            print(f"output {index}: {out!r}")
            continue
        flat = np.asarray(out, dtype=np.float64).ravel()
        print(f"output {index}: shape {tuple(out.shape)} {out.dtype}, first values "
              f"{np.array2string(flat[:4], precision=4)}")
    if args.repeat:
        print(f"latency: median {_time_ms(lambda: module(*inputs), args.repeat):.3f} ms over "
              f"{args.repeat} runs on {args.device}")
    return 0


# The demo's model sizes: GPT-2 small's shape (what people run; the README's figure) and the toy
# the tests use (compiles in seconds).
DEMO_SIZES = {"gpt2-small": dict(vocab_size=50257, max_seq_len=1024, d_model=768, n_heads=12,
                                 n_layers=12),
              "tiny": {}}


def cmd_demo(args) -> int:
    """Kiln's main job on the bundled example: compile, run, compare with eager."""
    import torch

    import kiln
    from kiln.examples.tiny_gpt import TinyGPTConfig, build_tiny_gpt

    torch.set_num_threads(max(1, torch.get_num_threads()))
    config = TinyGPTConfig(attention=args.attention_style, **DEMO_SIZES[args.size])
    seq_len = args.seq_len or (128 if args.size == "gpt2-small" else 64)
    model, example_args = build_tiny_gpt(config, batch=1, seq_len=seq_len)
    print(f"kiln demo: TinyGPT ({config.n_layers} layers, d={config.d_model}, "
          f"{config.n_heads} heads, vocab {config.vocab_size}, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters), "
          f"tokens 1x{seq_len}, "
          f"target {args.target}")
    start = time.perf_counter()
    compiled = kiln.compile_model(model, example_args, target=args.target, verbose=True)
    print(f"compiled in {time.perf_counter() - start:.1f} s: "
          f"{compiled.report.count('attention/')} attention and "
          f"{compiled.report.count('linear/')} linear layers specialized, "
          f"{len(compiled.vmfb)} bytes")
    device = "cuda" if args.target == "cuda" else "cpu"
    run = kiln.load(compiled.vmfb, device=device)
    with torch.no_grad():
        expected = model(*example_args)
    got = run(*example_args)
    abs_err = (got - expected).abs().max().item()
    rel_err = abs_err / max(expected.abs().max().item(), 1e-30)
    with torch.no_grad():
        eager_ms = _time_ms(lambda: model(*example_args), args.repeat)
    kiln_ms = _time_ms(lambda: run(*example_args), args.repeat)
    print(f"max abs error vs eager: {abs_err:.3e} (relative {rel_err:.3e})")
    print(f"latency (median of {args.repeat}): eager {eager_ms:.3f} ms, kiln {kiln_ms:.3f} ms "
          f"({eager_ms / kiln_ms:.2f}x eager)")
    tolerance = 1e-4
    if rel_err > tolerance:
        print(f"FAIL: relative error {rel_err:.3e} exceeds {tolerance}")
        return 1
    print("OK")
    return 0


def cmd_check(args) -> int:
    """Compile, then compare with eager on several inputs; exit 1 on a mismatch."""
    import kiln

    options = compile_options(args, verbose_default=False, writes_output=False)
    model, example_args, target = _model_inputs_target(args)
    result = kiln.check(model, example_args, target=target, samples=args.samples,
                        seed=args.seed, rtol=args.rtol, atol=args.atol,
                        locate=not args.no_locate, **options)
    print(result)
    return 0 if result.passed else 1


def _prompt_ids(text: str) -> list[int]:
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SystemExit(f"kiln: --prompt-ids takes comma-separated token ids such as 1,2,3, "
                         f"got '{text}'") from None
    if not ids:
        raise SystemExit("kiln: --prompt-ids is empty")
    return ids


def cmd_generate(args) -> int:
    """Compile a causal LM for generation, generate from --prompt-ids, print tokens/s."""
    import torch

    import kiln

    prompt = torch.tensor([_prompt_ids(args.prompt_ids)], dtype=torch.long)
    options = compile_options(args, verbose_default=False, writes_output=False)
    built = load_factory(args.model)()
    model = built[0] if isinstance(built, tuple) else built
    if not isinstance(model, torch.nn.Module):
        raise SystemExit(f"kiln: {args.model} returned {type(model).__name__}, expected a "
                         f"causal LM (torch.nn.Module)")
    max_seq_len = args.max_seq_len or prompt.shape[1] + max(args.max_new_tokens - 1, 1)
    dtype = getattr(torch, args.dtype) if args.dtype else None
    start = time.perf_counter()
    artifact = kiln.compile_generator(model, max_seq_len=max_seq_len,
                                      target=compile_target(args), dtype=dtype, **options)
    print(f"compiled in {time.perf_counter() - start:.1f} s (max_seq_len {max_seq_len})",
          file=sys.stderr)
    device = args.device or ("cuda" if "cuda" in normalize_target(args.target) else "cpu")
    generator = kiln.load_generator(artifact, device=device)
    sampling = dict(max_new_tokens=args.max_new_tokens, do_sample=args.do_sample,
                    temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                    eos_token_id=args.eos_token_id, seed=args.seed)
    if args.stream:
        print(" ".join(str(t) for t in prompt[0].tolist()), end="", flush=True)
        for tokens in generator.stream(prompt, **sampling):
            print(f" {int(tokens[0])}", end="", flush=True)
        print()
    else:
        output = generator.generate(prompt, **sampling)
        print(" ".join(str(t) for t in output[0].tolist()))
    stats = generator.stats
    print(f"{stats.new_tokens} new tokens on {device}: time to first token "
          f"{stats.time_to_first_token_s * 1e3:.1f} ms, decode {stats.decode_tokens_per_s:.1f} "
          f"tokens/s", file=sys.stderr)
    return 0


def add_compile_option_flags(parser: argparse.ArgumentParser) -> None:
    """The compile-option flags, one set for every subcommand that compiles a model (compile,
    check, generate), so that they cannot drift apart. `compile_options(args, ...)` turns them
    into the **options of kiln.compile_model / kiln.check / kiln.compile_generator."""
    group = parser.add_argument_group("compile options (kiln.compiler.CompileOptions)")
    group.add_argument("--target", default="cpu", help="cpu, cuda, or cpu,cuda for one "
                                                       "artifact that runs on both (default: cpu)")
    group.add_argument("--attention", default="auto",
                       choices=ATTENTION_CHOICES,
                       help="how kiln.attention is lowered (auto: measured best per target; "
                            "cpu_kernel: Kiln's CPU attention kernel where cpu kernels are on)")
    group.add_argument("--cpu", default="host", help="LLVM CPU for the cpu target: host (this "
                                                     "machine) or an ISA such as x86-64-v3")
    group.add_argument("--cuda-arch", default="sm_90a",
                       help="GPU architecture: sm_90a (H100/H200; IREE's own code sm_80), sm_80 "
                            "(A100), sm_86, sm_89, ...; Kiln's kernels are compiled for it")
    group.add_argument("--cuda-kernels", default="auto", choices=("auto", "on", "off"),
                       help="target cuda: Kiln's Triton kernels (PTX for --cuda-arch) for the "
                            "linears and attentions they support; auto = on when triton is "
                            "installed (else a warning)")
    group.add_argument("--cuda-split-k", default=True, action=argparse.BooleanOptionalAction,
                       help="target cuda with Kiln's kernels: allow split-K GEMMs (f32 partial "
                            "sums + one reduce launch, where the kernel config table chose them "
                            "for decode-shaped GEMMs); --no-cuda-split-k keeps every GEMM one "
                            "launch (default: on, faster on the H100 for decode)")
    group.add_argument("--cuda-chain", default=False, action=argparse.BooleanOptionalAction,
                       help="target cuda with Kiln's kernels: run consecutive kernel calls "
                            "that feed each other (a decoder layer's five) as few launches "
                            "as IREE's 16 bindings per dispatch allow "
                            "(default: off, slower than separate launches on an H100)")
    group.add_argument("--cuda-chain-prefetch", default=False,
                       action=argparse.BooleanOptionalAction,
                       help="with --cuda-chain: each later stage's programs ask L2 for their "
                            "weights before they wait for the previous stage (default: off, "
                            "no gain on an H100)")
    group.add_argument("--cpu-kernels", default="auto", choices=("auto", "on", "off"),
                       help="target cpu: Kiln's own f32 GEMM for the linears it takes; auto = "
                            "on for --cpu host on host kinds where it measured faster "
                            "(Intel AVX-512)")
    group.add_argument("--opt-level", default="O3", choices=("O0", "O1", "O2", "O3"),
                       help="IREE optimization level (default O3)")
    group.add_argument("--data-tiling", default=True, action=argparse.BooleanOptionalAction,
                       help="IREE's data tiling (packed matmul layouts) on the cpu target "
                            "(default: on)")
    group.add_argument("--disable-passes", default="", metavar="PASSES",
                       help="comma-separated kiln passes to leave out of the pipelines, e.g. "
                            "kiln-raise-attention (kiln-opt --list-passes lists them)")
    group.add_argument("--weights", default="inline", choices=("inline", "external"),
                       help="external: weights go to an .irpa beside the .vmfb (OUTPUT with "
                            ".vmfb replaced by .irpa; kiln run and kiln.load find it and check "
                            "it is this artifact's); inline (default): inside the .vmfb")
    group.add_argument("--no-index-checks", action="store_true",
                       help="leave out the bounds checks of indices read from inputs (token "
                            "ids): an out-of-range id then reads other memory instead of "
                            "raising IndexError; saves one small dispatch per indexing op")
    # compile prints its phases unless --quiet, check and generate only with --verbose
    # (`compile_options`' verbose_default); --quiet wins, as it always did for compile.
    group.add_argument("--verbose", action="store_true", help="print phases and their times")
    group.add_argument("--quiet", action="store_true",
                       help="do not print phases and their times")


def compile_target(args):
    """--target as compile_model takes it: "cpu", or a tuple for "cpu,cuda"."""
    return tuple(args.target.split(",")) if "," in args.target else args.target


def compile_options(args, *, verbose_default: bool, writes_output: bool) -> dict:
    """The **options (kiln.compiler.CompileOptions fields) that the flags of
    `add_compile_option_flags` ask for. `writes_output`: whether the command writes an
    artifact file; the others compile in memory, so an option that needs one is a
    UsageError rather than silently dropped."""
    if args.weights == "external" and not writes_output:
        raise UsageError(f"--weights external writes the weights to an .irpa beside an output "
                         f"file; kiln {args.command} compiles in memory: use kiln compile -o")
    disabled = tuple(name.strip() for name in args.disable_passes.split(",") if name.strip())
    from kiln.passes import PASS_REGISTRY

    unknown = [name for name in disabled if name not in PASS_REGISTRY]
    if unknown:
        raise UsageError(f"--disable-passes: unknown kiln pass(es) {', '.join(unknown)}; "
                         f"known: {', '.join(PASS_REGISTRY)}")
    verbose = not args.quiet and (args.verbose or verbose_default)
    return dict(attention=args.attention, cpu=args.cpu, cuda_arch=args.cuda_arch,
                cuda_kernels=args.cuda_kernels, cuda_split_k=args.cuda_split_k,
                cuda_chain=args.cuda_chain, cuda_chain_prefetch=args.cuda_chain_prefetch,
                cpu_kernels=args.cpu_kernels, opt_level=args.opt_level,
                data_tiling=args.data_tiling, disable_passes=disabled, weights=args.weights,
                index_checks=not args.no_index_checks, verbose=verbose)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kiln", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compile", help="compile a PyTorch model to a .vmfb (or to a phase's IR)")
    c.add_argument("model", help="path/to/model.py:factory; factory() returns an nn.Module or "
                                 "(module, example_args)")
    c.add_argument("--input", action="append", default=[], metavar="SPEC",
                   help="example input, repeatable: DIMSxDTYPE (1x128x768xf32, 1x16xi64) for a "
                        "random tensor, or a .npy file")
    c.add_argument("-o", "--output", help="output file (default out.vmfb; IR goes to stdout)")
    c.add_argument("--compile-to", choices=("torch", "kiln", "iree-input"),
                   help="stop after this phase and write its IR instead of a .vmfb")
    c.add_argument("--int-high", type=int, default=32,
                   help="random integer inputs are drawn from [0, N) (default 32)")
    c.add_argument("--seed", type=int, default=0, help="seed for random inputs")
    c.add_argument("--report", action="store_true",
                   help="print what each pass rewrote (with source lines) and unmatched "
                        "softmaxes")
    add_compile_option_flags(c)
    c.set_defaults(func=cmd_compile)

    r = sub.add_parser("run", help="run a .vmfb on random or .npy inputs")
    r.add_argument("artifact", help="a .vmfb written by kiln compile")
    r.add_argument("--input", action="append", default=[], metavar="SPEC",
                   help="DIMSxDTYPE for a random tensor or a .npy file, repeatable (default: "
                        "random inputs from the artifact's signature)")
    r.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    r.add_argument("--repeat", type=int, default=0, help="also time N runs, print the median")
    r.add_argument("--int-high", type=int, default=32,
                   help="random integer inputs are drawn from [0, N) (default 32)")
    r.add_argument("--seed", type=int, default=0, help="seed for random inputs")
    r.set_defaults(func=cmd_run)

    d = sub.add_parser("demo", help="compile the bundled TinyGPT example (GPT-2 small's shape by "
                                    "default), run it, compare with eager")
    d.add_argument("--target", default="cpu", choices=("cpu", "cuda"))
    d.add_argument("--size", default="gpt2-small", choices=tuple(DEMO_SIZES),
                   help="the example at GPT-2 small's shape (124M parameters, default) or a toy")
    d.add_argument("--seq-len", type=int, default=None,
                   help="prompt length (default 128 for gpt2-small, 64 for tiny)")
    d.add_argument("--attention-style", default="eager", choices=("eager", "sdpa"),
                   help="how the example model writes attention")
    d.add_argument("--repeat", type=int, default=50, help="timed runs per system")
    d.set_defaults(func=cmd_demo)

    k = sub.add_parser("check", help="compile a model and compare it with eager PyTorch on "
                                     "several inputs (exit 1 on a mismatch)")
    k.add_argument("model", help="path/to/model.py:factory; factory() returns an nn.Module or "
                                 "(module, example_args)")
    k.add_argument("--input", action="append", default=[], metavar="SPEC",
                   help="example input, repeatable: DIMSxDTYPE (1x128x768xf32, 1x16xi64) for a "
                        "random tensor, or a .npy file; sample 0 of the check")
    k.add_argument("--samples", type=int, default=3,
                   help="inputs to compare on: the example plus random ones (default 3)")
    k.add_argument("--rtol", type=float, default=None,
                   help="relative part of the per-element tolerance |err| <= atol + "
                        "rtol*|ref| (default by the model's dtype: f32 1e-4, f16 1e-2, bf16 "
                        "5e-2)")
    k.add_argument("--atol", type=float, default=None,
                   help="absolute part of the per-element tolerance (default by the model's "
                        "dtype: f32 1e-5, f16 2e-3, bf16 2e-2)")
    k.add_argument("--no-locate", action="store_true",
                   help="on a mismatch, skip the bisection for the first diverging op")
    k.add_argument("--int-high", type=int, default=32,
                   help="random integer example inputs are drawn from [0, N) (default 32)")
    k.add_argument("--seed", type=int, default=0, help="seed for random inputs")
    add_compile_option_flags(k)
    k.set_defaults(func=cmd_check)

    g = sub.add_parser("generate", help="compile a causal LM (prefill + decode, KV cache on the "
                                        "device) and generate tokens from a prompt")
    g.add_argument("model", help="path/to/model.py:factory; factory() returns a transformers "
                                 "causal LM (or (model, ...))")
    g.add_argument("--prompt-ids", required=True, metavar="IDS",
                   help="the prompt as comma-separated token ids, e.g. 1,2,3")
    g.add_argument("--max-new-tokens", type=int, default=32)
    g.add_argument("--max-seq-len", type=int, default=None,
                   help="cache slots to compile for (default: prompt + new tokens)")
    g.add_argument("--device", default=None, choices=("cpu", "cuda"),
                   help="where to run (default: cuda when the target has it)")
    g.add_argument("--dtype", default=None, choices=("float32", "float16", "bfloat16"),
                   help="compile the model in this dtype (default: as built)")
    g.add_argument("--stream", action="store_true", help="print each token as it comes")
    g.add_argument("--do-sample", action="store_true", help="sample instead of greedy")
    g.add_argument("--temperature", type=float, default=1.0)
    g.add_argument("--top-k", type=int, default=None)
    g.add_argument("--top-p", type=float, default=None)
    g.add_argument("--eos-token-id", type=int, default=None,
                   help="stop when this token is generated")
    g.add_argument("--seed", type=int, default=None, help="seed for sampling")
    add_compile_option_flags(g)
    g.set_defaults(func=cmd_generate)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as error:  # exit 2, as argparse does for the arguments it rejects
        print(f"kiln: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # one clear line instead of a traceback for known errors
        from kiln.errors import KilnError

        if isinstance(error, (KilnError, ValueError, OSError, MemoryError, IndexError)):
            print(f"kiln: error: {error}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
