"""Per-call cost of `kiln.load(...)` modules on CUDA: host arrays vs device-resident data.

Two halves, because the GPU machine has no IREE compiler:
  python -m bench.gpu.call_overhead prepare --out .device/callov          (here: .vmfb files)
  python3 -m bench.gpu.call_overhead measure --artifacts .device/callov --out $OUT   (GPU)

Models (all f16, compiled for target="cuda"):
  - one-op: `x + 1` on a 64×512 tensor (the size of TinyGPT's logits); chains output → input;
  - tinygpt: the bundled example, batch 1 × 64 tokens → logits 1×64×512;
  - decode: TinyGPT's decode step with a fixed-size KV cache ([2, 1, 4, 128, 32] keys and
    values, written at `position`), so that a step's cache outputs are the next step's inputs.
Each configuration runs in its own process (IREE reads its CUDA flags once per process):
  - before: kiln.runtime as of BEFORE_COMMIT (numpy/torch in, host out), its flags;
  - sync-alloc: today's runtime and flags (--cuda_async_allocations=false: results can be
    exported through DLPack);
  - async: today's runtime with stream-ordered (async) allocations (IREE's default);
  - sync-alloc-caching: sync-alloc with IREE's caching allocator on the device;
  - sync-alloc-streams: sync-alloc with stream command buffers instead of CUDA graphs.
Times are medians of many calls (wall clock around each call from Python, the call being
synchronous); decode loops report the median step. Device time: iree-benchmark-module.
Results: one JSON file ($OUT/call-overhead.json), copied to bench/results/call-overhead-<gpu>.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
# Where git runs (prepare): a `git archive` copy of a commit has no .git; point this at the repo.
GIT_DIR = Path(os.environ.get("KILN_GIT_DIR", ROOT))
BEFORE_COMMIT = "40ac1da"  # the last commit of python/kiln/runtime.py before device tensors
BASE_FLAGS = ("--cuda_use_streams=false", "--cuda_tracing=0")
SYNC_ALLOC = ("--cuda_async_allocations=false",)
STREAMS = ("--cuda_use_streams=true", "--cuda_tracing=0", *SYNC_ALLOC)
CONFIG_FLAGS = {"before": BASE_FLAGS, "sync-alloc": BASE_FLAGS + SYNC_ALLOC, "async": BASE_FLAGS,
                "sync-alloc-caching": BASE_FLAGS + SYNC_ALLOC, "sync-alloc-streams": STREAMS}
CONFIGS = ("before", "sync-alloc", "async", "sync-alloc-caching")
MAX_LEN = 128  # decode cache slots (TinyGPT's max_seq_len)
# KILN_BENCH_DEVICE=cpu runs the same script on the CPU (artifacts from `prepare --target cpu`),
# to debug it without a GPU; the numbers that matter are CUDA's.
DEVICE = os.environ.get("KILN_BENCH_DEVICE", "cuda")
TORCH_DEVICE = "cuda" if DEVICE == "cuda" else "cpu"


# ---------------------------------------------------------------------------------------------
# Models


def _static_cache_decode(gpt):
    import torch
    from torch import nn

    class StaticCacheDecode(nn.Module):
        """One token after a fixed-size KV cache [L, B, H, T, D] holding `position` tokens:
        writes the token's keys/values at slot `position`, attends to slots <= position."""

        def __init__(self, gpt):
            super().__init__()
            self.gpt = gpt

        def forward(self, token, position, keys, values):
            gpt = self.gpt
            slots = keys.shape[3]
            index = torch.arange(slots, device=token.device)
            write = (index == position).view(1, 1, slots, 1)
            bias = torch.where(index <= position, 0.0, float("-inf")).to(keys.dtype)
            x = gpt.token_embedding(token) + gpt.position_embedding(position)
            batch, _, width = x.shape
            new_keys, new_values = [], []
            for layer, block in enumerate(gpt.blocks):
                attn = block.attn
                q, k, v = attn.qkv(block.norm1(x)).split(width, dim=-1)
                q, k, v = (t.view(batch, 1, attn.n_heads, attn.head_dim).transpose(1, 2)
                           for t in (q, k, v))
                k = torch.where(write, k, keys[layer])
                v = torch.where(write, v, values[layer])
                scores = q @ k.transpose(-2, -1) / math.sqrt(attn.head_dim) + bias
                y = torch.softmax(scores, dim=-1) @ v
                x = x + attn.proj(y.transpose(1, 2).reshape(batch, 1, width))
                x = x + block.mlp(block.norm2(x))
                new_keys.append(k)
                new_values.append(v)
            return gpt.lm_head(gpt.norm(x)), torch.stack(new_keys), torch.stack(new_values)

    return StaticCacheDecode(gpt)


def _models(dtype):
    """{name: (module, example inputs)} in `dtype` (CPU)."""
    import torch

    from kiln.examples.tiny_gpt import build_tiny_gpt

    class AddOne(torch.nn.Module):
        def forward(self, x):
            return x + 1.0

    gpt, (tokens,) = build_tiny_gpt()
    gpt = gpt.to(dtype)
    cfg = gpt.config
    head_dim = cfg.d_model // cfg.n_heads
    cache = torch.zeros(cfg.n_layers, 1, cfg.n_heads, MAX_LEN, head_dim, dtype=dtype)
    return {
        "one-op": (AddOne(), (torch.zeros(64, 512, dtype=dtype),)),
        "tinygpt": (gpt, (tokens,)),
        "decode": (_static_cache_decode(gpt), (tokens[:, :1], torch.zeros(1, dtype=torch.int64),
                                               cache, cache.clone())),
    }, gpt


def check_decode(steps: int = 6) -> float:
    """Max |logits| difference between the static-cache decode (compiled for the CPU) and
    eager TinyGPT on the growing prefix (f32): the decode model is right."""
    import torch

    import kiln

    models, gpt = _models(torch.float32)
    module, args = models["decode"]
    run = kiln.load(kiln.compile_to_vmfb(module, args, target="cpu"), outputs="device")
    token, position, keys, values = args
    tokens, worst = token, 0.0
    for step in range(steps):
        logits, keys, values = run(token, torch.tensor([step]), keys, values)
        with torch.no_grad():
            expected = gpt(tokens)[:, -1:]
        worst = max(worst, float((logits.torch() - expected).abs().max()))
        token = logits.torch().argmax(-1)
        tokens = torch.cat([tokens, token], dim=1)
    return worst


def prepare(out: Path, target: str = "cuda") -> None:
    import torch

    import kiln

    out.mkdir(parents=True, exist_ok=True)
    error = check_decode()
    print(f"static-cache decode vs eager TinyGPT (f32, CPU): max abs err {error:.2e}")
    assert error < 1e-4, error
    models, _ = _models(torch.float16)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=GIT_DIR,
                            capture_output=True, text=True).stdout.strip()
    manifest = {"decode_check_max_abs_err": error, "models": {}, "kiln_commit": commit,
                "kiln_path": str(Path(kiln.__file__).parent)}
    for name, (module, args) in models.items():
        start = time.perf_counter()
        kiln.compile_to_vmfb(module, args, target=target, output=out / f"{name}.vmfb")
        manifest["models"][name] = {
            "file": f"{name}.vmfb", "compile_s": round(time.perf_counter() - start, 1),
            "inputs": [[list(a.shape), str(a.dtype).replace("torch.", "")] for a in args]}
        for index, arg in enumerate(args):
            np.save(out / f"{name}-input{index}.npy", arg.numpy())
        print(f"compiled {name}", flush=True)
    before = subprocess.run(["git", "show", f"{BEFORE_COMMIT}:python/kiln/runtime.py"],
                            cwd=GIT_DIR, capture_output=True, text=True, check=True).stdout
    (out / "runtime_before.py").write_text(before)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))


# ---------------------------------------------------------------------------------------------
# Measuring (GPU machine)


def _median_ms(fn, iters: int, warmup: int = 10) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return round(1e3 * statistics.median(samples), 4)


def _load_before(artifacts: Path):
    spec = importlib.util.spec_from_file_location("kiln_runtime_before",
                                                  artifacts / "runtime_before.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _child(config: str, artifacts: Path, iters: int) -> None:
    """One configuration in this process: prints RESULT lines (JSON)."""
    import torch

    import iree.runtime as rt

    import kiln.runtime as kr

    def emit(**row):
        print("RESULT " + json.dumps(dict(config=config, **row)), flush=True)

    manifest = json.loads((artifacts / "manifest.json").read_text())
    flags = CONFIG_FLAGS[config]
    options = kr.RuntimeOptions(cuda_flags=flags)
    if config == "before":
        runtime = _load_before(artifacts)
        if DEVICE == "cuda":
            rt.flags.parse_flags(*flags)
            runtime._cuda_flags_parsed = True
    else:
        runtime = kr
        if DEVICE == "cuda":
            kr.parse_cuda_flags(flags)
    if config == "sync-alloc-caching" and DEVICE == "cuda":
        from iree.runtime import system_setup

        system_setup._GLOBAL_DEVICES_BY_URI["cuda"] = rt.get_driver("cuda").create_default_device(
            allocators=["caching"])
    sync = torch.cuda.current_stream().synchronize if DEVICE == "cuda" else (lambda: None)
    inputs = {name: [np.load(artifacts / f"{name}-input{i}.npy") for i in range(len(m["inputs"]))]
              for name, m in manifest["models"].items()}
    runs = {name: runtime.load(artifacts / m["file"], device=DEVICE,
                               **({} if config == "before" else {"options": options}))
            for name, m in manifest["models"].items()}
    emit(kind="info", flags=list(flags), torch=torch.__version__,
         gpu=torch.cuda.get_device_name(0) if DEVICE == "cuda" else "cpu")

    for name in ("one-op", "tinygpt", "decode"):
        run, host = runs[name], inputs[name]
        cpu = [torch.from_numpy(a) for a in host]
        cuda = [t.to(TORCH_DEVICE, copy=True) for t in cpu]  # (aligned on the CPU too)
        sync()
        reference = run(*host)
        reference = [np.asarray(r, dtype=np.float32) for r in
                     (reference if isinstance(reference, tuple) else (reference,))]

        def case(label, fn, n=iters):
            try:
                emit(kind="call", model=name, case=label, ms=_median_ms(fn, n))
            except Exception as error:  # noqa: BLE001 - report and go on
                emit(kind="error", model=name, case=label, error=repr(error)[:400])

        case("numpy in, numpy out", lambda: run(*host))
        case("torch CPU in, torch CPU out", lambda: run(*cpu))
        if config == "before":
            case("torch CUDA in, torch CPU out (host copies)", lambda: run(*cuda))
            continue
        case("torch CUDA in, numpy out", lambda: run(*cuda, outputs="numpy"))
        case("torch CUDA in, torch CUDA out", lambda: run(*cuda))
        case("torch CUDA in, device out", lambda: run(*cuda, outputs="device"))
        resident = [run.to_device(a) for a in host]
        case("device in, device out", lambda: run(*resident, outputs="device"))
        outs = run(*resident, outputs="device")
        outs = outs if isinstance(outs, tuple) else (outs,)
        case("DeviceTensor.torch() (first output)", lambda: outs[0].torch())
        case("DeviceTensor.numpy() (first output)", lambda: outs[0].numpy())
        # Floor: the VM invoke alone with prepared arguments (what a call cannot go below).
        arguments = rt.VmVariantList(len(resident))
        for r in resident:
            arguments.push_ref(r._view)
        case("raw VM invoke (prepared device arguments)",
             lambda: run._vm_context.invoke(run._entry.vm_function, arguments,
                                            rt.VmVariantList(3)))
        imported = rt.VmVariantList(len(cuda))
        for t in cuda:
            imported.push_ref(run._device.hal.from_dlpack_capsule(torch.utils.dlpack.to_dlpack(t)))
        case("raw VM invoke (prepared imports of torch CUDA tensors)",
             lambda: run._vm_context.invoke(run._entry.vm_function, imported,
                                            rt.VmVariantList(3)))

        def fresh_imports():
            fresh = rt.VmVariantList(len(cuda))
            for t in cuda:
                fresh.push_ref(run._device.hal.from_dlpack_capsule(
                    torch.utils.dlpack.to_dlpack(t)))
            run._vm_context.invoke(run._entry.vm_function, fresh, rt.VmVariantList(3))

        case("raw VM invoke (fresh imports of torch CUDA tensors)", fresh_imports)
        run.options = dataclasses.replace(options, cache_imports=False)
        case("torch CUDA in, device out (import cache off)",
             lambda: run(*cuda, outputs="device"))
        run.options = options
        # Correctness of each path against numpy in/out.
        for label, got in (("torch CUDA out", run(*cuda)),
                           ("device out", run(*resident, outputs="device"))):
            got = got if isinstance(got, tuple) else (got,)
            err = max(float(np.abs(np.asarray(
                (g.torch() if isinstance(g, kr.DeviceTensor) else g).float().cpu()) - r).max())
                for g, r in zip(got, reference))
            emit(kind="check", model=name, case=label, max_abs_diff_vs_numpy_path=err)
        emit(kind="export", model=name, exportable=run._device.can_export)
        if name == "one-op":
            state = {"x": resident[0]}

            def chained():
                state["x"] = run(state["x"], outputs="device")

            case("chained: device out → next input", chained, n=iters * 2)
            state["t"] = cuda[0]

            def chained_torch():
                state["t"] = run(state["t"])

            case("chained: torch CUDA out → next input", chained_torch, n=iters * 2)
            # Micro costs behind a call.
            t = cuda[0]
            case("micro: DLPack import of a CUDA tensor",
                 lambda: run._device.hal.from_dlpack_capsule(torch.utils.dlpack.to_dlpack(t)),
                 n=iters * 2)
            case("micro: torch current_stream().synchronize()", sync, n=iters * 2)
            for strategy in ("staging", "iree", "torch"):
                run.options = dataclasses.replace(options, host_transfer=strategy)
                d = run(t, outputs="device")  # a DeviceTensor keeps its module's options
                case(f"micro: 64 KiB device → numpy ({strategy})", lambda: d.numpy())
            for strategy in ("iree", "torch"):
                run.options = dataclasses.replace(options, host_upload=strategy)
                case(f"micro: 64 KiB numpy → device ({strategy})",
                     lambda: run.to_device(host[0]))
            run.options = options
    _decode_loops(config, runs["decode"], inputs["decode"], runtime, emit, kr)


def _decode_loops(config, run, host, runtime, emit, kr, steps: int = 100, loops: int = 3):
    """Greedy decode from an empty cache, one call per token; the median step time."""
    import torch

    token0, _, keys0, values0 = host

    def timed(label, step_fn, state_fn):
        times, tokens = [], []
        try:
            for _ in range(loops):
                state = state_fn()
                for position in range(steps):
                    start = time.perf_counter()
                    state = step_fn(state, position)
                    times.append(time.perf_counter() - start)
                tokens = state["tokens"]
            emit(kind="decode", case=label, ms=round(1e3 * statistics.median(times[steps:]), 4),
                 first_tokens=[int(t) for t in tokens[:12]])
        except Exception as error:  # noqa: BLE001
            emit(kind="error", model="decode", case=label, error=repr(error)[:400])

    positions_np = [np.array([p], dtype=np.int64) for p in range(steps)]

    def numpy_step(state, position):
        logits, keys, values = run(state["token"], positions_np[position], state["k"], state["v"])
        token = np.asarray(logits)[:, -1:].argmax(-1)
        state.update(token=token, k=keys, v=values)
        state["tokens"].append(int(token[0, 0]))
        return state

    timed("KV cache round-trips the host (numpy in/out)", numpy_step,
          lambda: dict(token=token0, k=keys0, v=values0, tokens=[]))
    if config == "before":
        return
    positions = [torch.tensor([p], device=TORCH_DEVICE) for p in range(steps)]

    def torch_step(state, position):
        logits, keys, values = run(state["token"], positions[position], state["k"], state["v"])
        token = logits[:, -1:].argmax(-1)
        state.update(token=token, k=keys, v=values)
        state["tokens"].append(token)
        return state

    def torch_state():
        return dict(token=torch.from_numpy(token0).to(TORCH_DEVICE),
                    k=torch.from_numpy(keys0).to(TORCH_DEVICE),
                    v=torch.from_numpy(values0).to(TORCH_DEVICE), tokens=[])

    timed("torch CUDA in/out (KV cache as CUDA tensors)", torch_step, torch_state)

    def device_step(state, position):
        logits, keys, values = run(state["token"], positions[position], state["k"], state["v"],
                                   outputs="device")
        token = logits.torch()[:, -1:].argmax(-1)
        state.update(token=token, k=keys, v=values)
        state["tokens"].append(token)
        return state

    timed("KV cache on device (DeviceTensor), token argmax in torch", device_step,
          lambda: dict(token=torch.from_numpy(token0).to(TORCH_DEVICE), k=run.to_device(keys0),
                       v=run.to_device(values0), tokens=[]))
    def host_sampling_step(state, position):
        logits, keys, values = run(state["token"], positions_np[position], state["k"],
                                   state["v"], outputs="device")
        token = logits.numpy()[:, -1:].argmax(-1)
        state.update(token=token, k=keys, v=values)
        state["tokens"].append(int(token[0, 0]))
        return state

    timed("KV cache on device (DeviceTensor), logits to numpy, argmax on host",
          host_sampling_step, lambda: dict(token=token0, k=run.to_device(keys0),
                                           v=run.to_device(values0), tokens=[]))
    token_dev = run.to_device(token0)
    positions_dev = [run.to_device(p) for p in positions_np]

    def resident_step(state, position):
        logits, keys, values = run(token_dev, positions_dev[position], state["k"], state["v"],
                                   outputs="device")
        state.update(k=keys, v=values)
        return state

    timed("all inputs on device, fixed token (call only)", resident_step,
          lambda: dict(k=run.to_device(keys0), v=run.to_device(values0), tokens=[]))


def _device_times(artifacts: Path, manifest: dict, emit) -> None:
    """iree-benchmark-module (device time, no Python) per model, default and sync allocations."""
    for name, model in manifest["models"].items():
        inputs = [f"@{artifacts / f'{name}-input{i}.npy'}" for i in range(len(model["inputs"]))]
        variants = (BASE_FLAGS, BASE_FLAGS + SYNC_ALLOC) if DEVICE == "cuda" else ((),)
        for flags in variants:
            command = ["iree-benchmark-module", f"--module={artifacts / model['file']}",
                       f"--device={'cuda' if DEVICE == 'cuda' else 'local-task'}",
                       "--function=main", "--benchmark_repetitions=3",
                       "--benchmark_min_time=0.1s", *flags,
                       *[f"--input={i}" for i in inputs]]
            try:
                text = subprocess.run(command, capture_output=True, text=True, check=True,
                                      timeout=30).stdout
                import re

                medians = re.findall(r"_median\s+([\d.]+) ms", text) or \
                    re.findall(r"\s([\d.]+) ms", text)
                emit(kind="device_time", model=name, flags=list(flags), ms=float(medians[0]))
            except Exception as error:  # noqa: BLE001
                emit(kind="error", model=name, case="iree-benchmark-module " + " ".join(flags),
                     error=repr(error)[:400])


def measure(artifacts: Path, out: Path, configs, iters: int, budget_s: float,
            repeat: int = 1) -> None:
    out.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((artifacts / "manifest.json").read_text())
    rows = []
    deadline = time.monotonic() + budget_s

    def save():
        (out / "call-overhead.json").write_text(json.dumps({"manifest": manifest, "rows": rows},
                                                           indent=1))

    def emit(**row):
        rows.append(dict(config="iree-benchmark-module", **row))
        print(json.dumps(rows[-1]), flush=True)

    for config in list(configs) * repeat:
        left = deadline - time.monotonic()
        if left < 10:
            rows.append({"config": config, "kind": "skipped", "why": "time budget"})
            continue
        start = time.monotonic()
        try:
            proc = subprocess.run([sys.executable, "-m", "bench.gpu.call_overhead", "child",
                                   config, "--artifacts",
                                   str(artifacts), "--iters", str(iters)], capture_output=True,
                                  text=True, timeout=left)
            stdout, stderr, rc = proc.stdout, proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as error:
            stdout = error.stdout.decode() if isinstance(error.stdout, bytes) else \
                (error.stdout or "")
            stderr, rc = "timeout", "timeout"
        for line in stdout.splitlines():
            if line.startswith("RESULT "):
                rows.append(json.loads(line[7:]))
                print(line[7:], flush=True)
        rows.append({"config": config, "kind": "process", "rc": rc,
                     "s": round(time.monotonic() - start, 1),
                     "stderr_tail": stderr[-1500:] if rc != 0 else ""})
        print(json.dumps(rows[-1]), flush=True)
        save()
    if deadline - time.monotonic() > 15:
        _device_times(artifacts, manifest, emit)
    save()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["prepare", "measure", "child"])
    parser.add_argument("config", nargs="?", default="")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".device/out")))
    parser.add_argument("--artifacts", type=Path, default=Path(".device/callov"))
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=1, help="run the configs N times")
    parser.add_argument("--budget-s", type=float, default=130)
    parser.add_argument("--target", default="cuda", help="prepare: compile target")
    args = parser.parse_args()
    if args.action == "prepare":
        prepare(args.out, args.target)
    elif args.action == "child":
        _child(args.config, args.artifacts, args.iters)
    else:
        measure(args.artifacts, args.out, args.configs.split(","), args.iters, args.budget_s,
                args.repeat)


if __name__ == "__main__":
    main()
