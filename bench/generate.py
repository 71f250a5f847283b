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

On the GPU (`--device cuda --dtype float16`) the machine has no IREE compiler: Kiln's
artifacts are compiled here first with external weights (`--prepare-kiln DIR`, one per model,
variant and shape; the weight archive is dropped, only its record is kept), and the GPU run
loads them (`--kiln-artifacts DIR`) with an archive written there from the same seeded model's
state dict, so Kiln and transformers run identical weights. `--kiln-variant` picks the kernel
options (kernels: Kiln's default; nofuse: kernels without whole-layer fusion; nokernels: IREE's
code only; scatter: the decode writes its cache row with IREE's scatter instead of the select,
which failed on an H100 with IREE 3.13; nosplitk: kernels without split-K GEMMs, one launch per
linear; chain: each decoder layer's kernel calls as one launch, `cuda_chain`; chainpf: chain with
the weights prefetched into L2 before each stage waits, `cuda_chain_prefetch`). Run each system in its own process there (an illegal
address poisons the CUDA context) with `--out` on one file: rows keep their tokens, so agreement with eager (and with
an f32 eager run) is computed over the file (`--agreement FILE`).
ONNX Runtime (`onnxruntime`, `pip install -r bench/requirements.txt`) runs Kiln's own capture
(kiln.kv_cache.DecoderStep) exported to ONNX, the cache passed as arrays from call to call.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
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


DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
KILN_VARIANTS = {"kernels": {}, "nofuse": {"cuda_kernels": "on", "cuda_fuse": False},
                 "nokernels": {"cuda_kernels": "off"},
                 "scatter": {"decode_cache_write": "scatter"},
                 "nosplitk": {"cuda_kernels": "on", "cuda_split_k": False},
                 "chain": {"cuda_kernels": "on", "cuda_chain": True},
                 "chainpf": {"cuda_kernels": "on", "cuda_chain": True,
                             "cuda_chain_prefetch": True},
                 "pipelined": {"pipeline_loops": True},
                 "unpipelined": {"pipeline_loops": False}}


def _submission_flags(streams: bool) -> tuple[str, ...]:
    """Kiln's CUDA runtime flags (kiln.runtime.CUDA_RUNTIME_FLAGS) with IREE's command
    buffers as CUDA graphs (False) or streams (True)."""
    from kiln.runtime import CUDA_RUNTIME_FLAGS

    return (f"--cuda_use_streams={str(streams).lower()}",) + tuple(
        f for f in CUDA_RUNTIME_FLAGS if not f.startswith("--cuda_use_streams="))


# IREE's CUDA runtime flags per submission mode ("default": kiln.runtime.CUDA_RUNTIME_FLAGS,
# streams since 2026-12-06); another mode's name is added to Kiln's system name.
CUDA_SUBMISSION = {"default": None, "graphs": _submission_flags(False),
                   "streams": _submission_flags(True)}


def artifact_stem(name: str, variant: str, dtype: str, batch: int, prompt: int, new: int) -> str:
    return f"{name}-{variant}-{dtype}-b{batch}-p{prompt}-n{new}"


def prepare_kiln(args, chunks) -> None:
    """Here (IREE installed): the generation artifacts a GPU run loads (`--device cuda`), weights external;
    the archive is dropped (the GPU run writes one from the same seeded model) and its record
    kept beside the .vmfb."""
    import kiln
    from kiln.artifact import PARAMETERS_KEY, parameters_path
    from kiln.runtime import _iree_runtime

    folder = Path(args.prepare_kiln)
    folder.mkdir(parents=True, exist_ok=True)
    for name in args.models.split(","):
        model = build_model(name)
        for variant in args.kiln_variant.split(","):
            stem = artifact_stem(name, variant, args.dtype, args.batch, args.prompt, args.new)
            path = folder / f"{stem}.vmfb"
            start = time.perf_counter()
            kiln.compile_generator(model, max_seq_len=args.prompt + args.new,
                                   batch_size=args.batch, target=args.device,
                                   dtype=DTYPES[args.dtype],
                                   prefill_chunks=chunks or (args.prompt,), weights="external",
                                   output=path, cache=False, **KILN_VARIANTS[variant])
            rt = _iree_runtime()
            module = rt.VmModule.copy_buffer(rt.VmInstance(), path.read_bytes())
            record = next(json.loads(dict(module.lookup_function(f).reflection)[PARAMETERS_KEY])
                          for f in module.function_names
                          if PARAMETERS_KEY in dict(module.lookup_function(f).reflection))
            (folder / f"{stem}.record.json").write_text(json.dumps(record))
            parameters_path(path).unlink()
            print(f"prepared {path} ({path.stat().st_size} bytes) in "
                  f"{time.perf_counter() - start:.0f} s", flush=True)


def load_prebuilt(model, folder: Path, stem: str, device: str, cuda_flags=None,
                  allocators: bool = True):
    """A Generator of the prepared artifact `stem` with `model`'s weights: the archive is
    written from its state dict under the recorded keys (DecoderStep holds the model as
    `model.`), in the recorded dtypes; run as kiln.load_generator runs it (GENERATOR_RUNTIME),
    without its CUDA allocators where `allocators` is False."""
    import numpy as np

    from kiln.generate import GENERATOR_RUNTIME, Generator
    from kiln.runtime import load, write_parameter_archive

    record = json.loads((folder / f"{stem}.record.json").read_text())
    state = model.state_dict()
    arrays = {}
    for parameter in record["parameters"]:
        name = parameter["key"].removeprefix("model.")
        if name not in state:
            raise SystemExit(f"{stem}: the artifact's weight {parameter['key']!r} is not in "
                             f"the model's state dict")
        value = state[name].detach().to("cpu", torch.float32).numpy()
        arrays[parameter["key"]] = np.ascontiguousarray(value.astype(parameter["dtype"]))
        if list(value.shape) != list(parameter["shape"]):
            raise SystemExit(f"{stem}: {name} has shape {list(value.shape)}, the artifact "
                             f"records {parameter['shape']}")
    archive = write_parameter_archive(Path("/tmp") / f"{stem}.irpa", arrays)
    options = dataclasses.replace(GENERATOR_RUNTIME, cuda_flags=cuda_flags or None,
                                  cuda_allocators=GENERATOR_RUNTIME.cuda_allocators
                                  if allocators else ())
    return Generator(load(folder / f"{stem}.vmfb", device=device, parameters=archive,
                          options=options))


def prompt_ids(batch: int, length: int, vocab: int) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(1))


class KilnSystem:
    name = "kiln"

    def __init__(self, model, batch, prompt, new, chunks, prebuilt=None, device="cpu",
                 per_step=False, generator=None, cuda_flags=None, allocators=True):
        import kiln

        # per_step ("kiln-steps"): one `decode` call from Python per token (Generator.stream)
        # instead of the device loop `generate` runs (kiln.decode_loop).
        self.per_step = per_step
        suffix = "-steps" if per_step else ""
        # prebuilt: (folder, stem) compiled by --prepare-kiln
        self.name = ("kiln" if prebuilt is None else f"kiln[{prebuilt[1].split('-')[1]}]") + \
            suffix + next((f"+{mode}" for mode, flags in CUDA_SUBMISSION.items()
                           if flags and flags == cuda_flags), "") + \
            ("" if allocators else "+no-allocators")
        self.compile_s = 0.0
        start = time.perf_counter()
        if generator is not None:  # the other Kiln system's, loaded once
            self.generator = generator
        elif prebuilt is not None:
            self.generator = load_prebuilt(model, *prebuilt, device, cuda_flags, allocators)
        else:
            artifact = kiln.compile_generator(model, max_seq_len=prompt + new,
                                              batch_size=batch, prefill_chunks=chunks)
            self.compile_s = time.perf_counter() - start
            self.generator = kiln.load_generator(artifact)

    def run(self, ids, new):
        if self.per_step:
            out = torch.cat([ids, torch.stack(list(self.generator.stream(
                ids, max_new_tokens=new)), dim=1)], dim=1)
        else:
            out = self.generator.generate(ids, max_new_tokens=new)
        stats = self.generator.stats
        return out, stats.time_to_first_token_s, stats.decode_s


def driver_calls(api: list, gpu: list, steps: int, gap_us: float = 50) -> tuple[list, list]:
    """From host API spans and GPU spans, each (start µs, end µs, name): per API name, its
    calls per token, µs per token and longest call in µs (most time first); and per API name,
    the µs it overlapped GPU gaps longer than `gap_us` per token (what the host did while the
    GPU waited for it)."""
    per_name: dict = {}
    for start, end, name in api:
        entry = per_name.setdefault(name, [0, 0.0, 0.0])
        entry[0] += 1
        entry[1] += end - start
        entry[2] = max(entry[2], end - start)
    calls = sorted(([name, round(n / steps, 2), round(total / steps, 1), round(longest, 1)]
                    for name, (n, total, longest) in per_name.items()), key=lambda c: -c[2])
    gpu = sorted(gpu)
    gaps = [(a[1], b[0]) for a, b in zip(gpu, gpu[1:]) if b[0] - a[1] > gap_us]
    during: collections.Counter = collections.Counter()
    for gap_start, gap_end in gaps:
        for start, end, name in api:
            overlap = min(end, gap_end) - max(start, gap_start)
            if overlap > 0:
                during[name] += overlap
    in_gaps = [[name, round(us / steps, 1)] for name, us in during.most_common(8)]
    return calls[:12], in_gaps


def profile_generation(system, ids, new: int) -> dict:
    """Where a GPU generate's time goes (`--profile`): kernels and copies per decode step from
    CUPTI (torch.profiler; IREE's graph-launched kernels included), and the host side from
    cProfile (which Python calls hold the step)."""
    import cProfile
    import io
    import pstats

    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        system.run(ids, new)
        torch.cuda.synchronize()
    kernels: dict = {}
    spans = []
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            entry = kernels.setdefault(event.name, [0, 0.0])
            entry[0] += 1
            entry[1] += event.time_range.elapsed_us()
            spans.append((event.time_range.start, event.time_range.end, event.name))
    # Idle time between consecutive GPU events: many short gaps are launch-bound, a few long
    # ones per token are the host not keeping the GPU fed (waits, recording).
    spans.sort()
    gaps = [b[0] - a[1] for a, b in zip(spans, spans[1:]) if b[0] > a[1]]
    # where the long gaps fall: the operations on either side, most frequent pairs first
    long_gaps = collections.Counter(
        (a[2][:70], b[2][:70]) for a, b in zip(spans, spans[1:]) if b[0] - a[1] > 50)
    steps = new  # the prompt's calls and new - 1 decode calls, about one per token
    busy_us = sum(total for _, total in kernels.values())
    # The CUDA driver/runtime calls CUPTI saw on the host (IREE's cuLaunchKernel, cuMemAlloc,
    # cuMemFree, event waits ...): what each costs per token, and which ran while the GPU idled.
    api = [(e.time_range.start, e.time_range.end, e.name) for e in prof.events()
           if e.device_type != torch.autograd.DeviceType.CUDA and e.name.startswith("cu")]
    api_calls, api_in_gaps = driver_calls(api, spans, steps)
    top = sorted(kernels.items(), key=lambda kv: -kv[1][1])[:12]
    host = cProfile.Profile()
    host.enable()
    system.run(ids, new)
    host.disable()
    text = io.StringIO()
    pstats.Stats(host, stream=text).sort_stats("tottime").print_stats(12)
    result = {"gpu_busy_ms_per_token": busy_us / 1e3 / steps,
              "gpu_events_per_token": sum(n for n, _ in kernels.values()) / steps,
              "gpu_idle_ms_per_token": sum(gaps) / 1e3 / steps,
              "gpu_gaps_over_50us_per_token": sum(g > 50 for g in gaps) / steps,
              "gpu_idle_in_gaps_over_50us_ms_per_token": sum(g for g in gaps if g > 50) / 1e3 / steps,
              "top_gpu_events": [(name[:120], n, round(total / 1e3, 3)) for name, (n, total) in top],
              "gaps_over_50us_between": [(before, after, n) for (before, after), n
                                         in long_gaps.most_common(6)],
              "driver_calls_per_token": api_calls,
              "driver_calls_in_gaps_over_50us": api_in_gaps,
              "host_profile": text.getvalue()[-4000:]}
    for key, value in result.items():  # one line each (bench/gpu scripts grep them)
        if key != "host_profile":
            print(f" {json.dumps(key)}: {json.dumps(value)}")
    print(result["host_profile"], flush=True)
    return result


class HFSystem:
    def __init__(self, model, batch, prompt, new, compiled: bool):
        self.model = model
        self.name = "static-compile" if compiled else "eager"
        self.options = dict(do_sample=False, eos_token_id=None, pad_token_id=0,
                            min_new_tokens=None)
        self.compile_s = 0.0
        if compiled:
            # transformers' documented recipe: a static cache and the forward compiled with
            # mode="reduce-overhead". On CUDA `generate` compiles it itself when the cache is
            # static (its CompileConfig; compiling forward again on top failed there: "accessing
            # tensor output of CUDAGraphs that has been overwritten"); on the CPU it does not.
            self.options["cache_implementation"] = "static"
            if next(model.parameters()).device.type == "cpu":
                model.forward = torch.compile(model.forward, mode="reduce-overhead",
                                              fullgraph=True)
            else:
                from transformers import CompileConfig

                self.options["compile_config"] = CompileConfig(mode="reduce-overhead",
                                                               fullgraph=True)
            start = time.perf_counter()
            ids = prompt_ids(batch, prompt, model.config.vocab_size)
            for _ in range(2):
                self._generate(ids, new)
                self._generate(ids, 1)
            self.compile_s = time.perf_counter() - start

    def _generate(self, ids, new):
        device = next(self.model.parameters()).device
        ids = ids.to(device)
        with torch.no_grad():
            out = self.model.generate(ids, attention_mask=torch.ones_like(ids),
                                      max_new_tokens=new, **self.options)
        return out.cpu()  # waits for the device

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


def machine(device: str = "cpu") -> str:
    cpu = read_cpuinfo().model_name or platform.processor()
    host = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"
    return host if device == "cpu" else f"{torch.cuda.get_device_name()}; host {host}"


def print_agreement(path: Path) -> None:
    """Each row's generated tokens against eager's of the same model and shape: in the row's
    dtype and in float32 (the f16/bf16 agreement rate the issue asks to state). Agreement is the
    share of tokens equal to the reference's, and the first step where any row differs."""
    rows = json.loads(path.read_text())

    def key(row, dtype):
        return (row["model"], row["batch"], row["prompt"], row["new"], row["device"], dtype)

    eager = {key(r, r["dtype"]): r["tokens"] for r in rows if r["system"] == "eager"}
    for row in rows:
        cells = []
        for dtype in dict.fromkeys((row["dtype"], "float32")):
            reference = eager.get(key(row, dtype))
            if reference is None or row["system"] == "eager" and dtype == row["dtype"]:
                continue
            got, want = torch.tensor(row["tokens"]), torch.tensor(reference)
            differs = (got != want).any(dim=0).nonzero()
            first = int(differs[0]) if len(differs) else None
            cells.append(f"vs eager {dtype}: {float((got == want).float().mean()):.0%} same, "
                         f"first difference at step {first}")
        print(f"{row['model']} b{row['batch']} p{row['prompt']} {row['device']} {row['dtype']} "
              f"{row['system']}: " + ("; ".join(cells) or "(reference)"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="gpt2,llama")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--new", type=int, default=32)
    parser.add_argument("--systems", default="kiln,eager,static-compile,onnxruntime",
                        help="kiln (greedy steps in the device loop), kiln-steps (one decode "
                             "call per token from Python), eager, static-compile, onnxruntime")
    parser.add_argument("--chunks", default=None,
                        help="Kiln prefill chunk lengths, e.g. 64,256 (default: Kiln's)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--onnx-dir", default="/tmp/kiln-bench-onnx",
                        help="where the ONNX Runtime system writes its .onnx files")
    parser.add_argument("--out", default=None, help="append results to this JSON file")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    parser.add_argument("--kiln-variant", default="kernels",
                        help=f"CUDA kernel options of Kiln's artifact: {', '.join(KILN_VARIANTS)}"
                             " (comma-separated for --prepare-kiln)")
    parser.add_argument("--prepare-kiln", metavar="DIR", default=None,
                        help="compile Kiln's CUDA artifacts for these models and shape into DIR "
                             "and stop (needs IREE; no GPU)")
    parser.add_argument("--kiln-artifacts", metavar="DIR", default=None,
                        help="load Kiln's artifacts from DIR (made by --prepare-kiln)")
    parser.add_argument("--cuda-submission", default="default", choices=sorted(CUDA_SUBMISSION),
                        help="how IREE submits Kiln's GPU work: Kiln's default (streams), CUDA "
                             "graphs recorded per call, or streams (each dispatch launched as "
                             "recorded)")
    parser.add_argument("--no-allocators", action="store_true",
                        help="run Kiln's prepared artifacts without the CUDA allocators "
                             "kiln.load_generator gives them (GENERATOR_RUNTIME)")
    parser.add_argument("--profile", action="store_true",
                        help="--device cuda: after timing, one profiled generate per system "
                             "(CUPTI kernels and copies per token, cProfile of the host side)")
    parser.add_argument("--agreement", metavar="FILE", default=None,
                        help="print the token agreement of every row of FILE with its eager "
                             "rows (same dtype, and float32) and stop")
    args = parser.parse_args(argv)
    chunks = tuple(int(c) for c in args.chunks.split(",")) if args.chunks else None
    if args.agreement:
        print_agreement(Path(args.agreement))
        return 0
    if args.prepare_kiln:
        prepare_kiln(args, chunks)
        return 0
    if args.device == "cuda" and "onnxruntime" in args.systems.split(","):
        raise SystemExit("--device cuda: the onnxruntime system runs on the CPU only")
    if args.device == "cuda" and {"kiln", "kiln-steps"} & set(args.systems.split(",")) and \
            not args.kiln_artifacts:
        raise SystemExit("--device cuda: Kiln's artifacts come from --prepare-kiln (the GPU "
                         "machine has no IREE compiler); pass --kiln-artifacts DIR")
    results = []
    for name in args.models.split(","):
        model = build_model(name).to(args.device, DTYPES[args.dtype])
        ids = prompt_ids(args.batch, args.prompt, model.config.vocab_size)
        systems = []
        for system in args.systems.split(","):
            print(f"[{name}] preparing {system} ...", file=sys.stderr, flush=True)
            if system in ("kiln", "kiln-steps"):
                prebuilt = None if not args.kiln_artifacts else (
                    Path(args.kiln_artifacts),
                    artifact_stem(name, args.kiln_variant, args.dtype, args.batch, args.prompt,
                                  args.new))
                loaded = next((s.generator for s in systems if isinstance(s, KilnSystem)),
                              None)
                systems.append(KilnSystem(model, args.batch, args.prompt, args.new, chunks,
                                          prebuilt, args.device, system == "kiln-steps",
                                          generator=loaded, cuda_flags=CUDA_SUBMISSION.get(
                                              args.cuda_submission),
                                          allocators=not args.no_allocators))
            elif system == "onnxruntime":
                systems.append(OrtSystem(build_model(name), args.batch, args.prompt, args.new,
                                         Path(args.onnx_dir) / f"{name}-b{args.batch}"))
            elif system in ("eager", "static-compile"):
                # torch.compile replaces forward: one model each
                copy = build_model(name).to(args.device, DTYPES[args.dtype])
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
        profiles = {}
        if args.profile and args.device == "cuda":
            for system in systems:
                print(f"[{name}] profile of {system.name}", flush=True)
                try:
                    profiles[system.name] = profile_generation(system, ids, args.new)
                except Exception as error:  # noqa: BLE001 - the timings are kept
                    profiles[system.name] = {"error": f"{type(error).__name__}: {error}"}
                    print(f"profile failed: {profiles[system.name]['error']}", flush=True)
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
                   "machine": machine(args.device), "load_average": os.getloadavg()[0],
                   "device": args.device, "dtype": args.dtype,
                   "tokens": outputs[system.name][:, args.prompt:].tolist(),
                   "profile": profiles.get(system.name)}
            if isinstance(system, KilnSystem) and args.kiln_artifacts:
                row["kiln_artifacts"] = args.kiln_artifacts
            results.append(row)
            print(f"{name:6s} b{args.batch} p{args.prompt} {system.name:15s} "
                  f"TTFT {ttft:9.1f} ms  decode {tps:8.2f} tok/s  same-as-eager {same}"
                  f"{'  ' + row['kiln_artifacts'] if 'kiln_artifacts' in row else ''}",
                  flush=True)
    if args.out:
        path = Path(args.out)
        previous = json.loads(path.read_text()) if path.exists() else []
        path.write_text(json.dumps(previous + results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
