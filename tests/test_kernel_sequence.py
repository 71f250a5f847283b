"""kiln.kernels.sequence: a sequence of kernel launches as one launch ("ticketed stages").

Decoder layers (GPT-2- and Llama-style decode with a KV cache written in place, a prefill
chain) run in Triton's interpreter as their separate plans and as one sequence plan: the same
bits. The composite's plan structure and PTX (sm_90a, no GPU) and what sequence_spec refuses.

Run as a script it prints one JSON line per layer (on a GPU: `python
tests/test_kernel_sequence.py gpt2 llama prefill --device cuda --mode aot --runs 1000
[--prefetch]`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kiln import kernels
from kiln.kernels.attention import attention_spec
from kiln.kernels.configs import DecodeConfig, GemmConfig, PrefillConfig
from kiln.kernels.linear import linear_spec
from kiln.kernels.plan import KernelUnsupported, ptx_entry_params, replace
from kiln.kernels.sequence import SEMAPHORES, sequence_spec

REPO = Path(__file__).resolve().parents[1]
MLIR_SYMBOL = re.compile(r"^[A-Za-z_][A-Za-z0-9_$.]*$")
needs_triton = pytest.mark.skipif(kernels.triton_available() is not None,
                                  reason=str(kernels.triton_available()))

HIDDEN, HEAD_DIM, CACHE, POSITION = 64, 16, 40, 27


def _cache_views(hq: int, hkv: int, rope: bool) -> dict:
    """attention_spec arguments of a decode step reading q and the new k/v rows in place from
    a QKV output [1, (hq + 2·hkv)·d] and writing them into [1, hkv, CACHE, d] caches."""
    d, width = HEAD_DIM, (hq + 2 * hkv) * HEAD_DIM
    cache = (1, hkv, CACHE, d)
    return dict(buffers=((1, width), cache, cache), q_view=(0, 0, width, d, width),
                k_view=(1, 0, hkv * CACHE * d, CACHE * d, d),
                v_view=(2, 0, hkv * CACHE * d, CACHE * d, d),
                new_kv=((0, hq * d, width, d, width), (0, (hq + hkv) * d, width, d, width)),
                rope=(True, True, (1, 1, d), "f16") if rope else None, out_layout="bshd",
                merge_in_kernel=True)


def gpt2_layer():
    """Stage specs and wiring of a GPT-2 decode layer (M = 1): LayerNorm-prologue QKV GEMM with
    bias, decode attention writing the cache, O GEMM + residual, GELU-tanh MLP-in with the
    second LayerNorm, MLP-out + residual; every GEMM split-K and the attention split-KV, all
    reduced in their launch. Composite inputs: x, QKV w/b, ln1 w/b, k/v caches, position, O
    w/b, MLP-in w/b, ln2 w/b, MLP-out w/b."""
    h, heads = HIDDEN, 4
    specs = [
        linear_spec(1, 3 * h, h, "f16", "in_out", True, "none", norm="layer",
                    has_norm_weight=True, has_norm_bias=True,
                    config=GemmConfig(16, 32, 16, 1, 2, 4, 2), reduce_in_kernel=True),
        attention_spec(1, heads, heads, 1, CACHE, HEAD_DIM, "f16", 0.25, False,
                       config=DecodeConfig(16, 12, 4, 1), **_cache_views(heads, heads, False)),
        linear_spec(1, h, h, "f16", "in_out", True, "none", has_residual=True,
                    config=GemmConfig(16, 16, 16, 1, 2, 4, 2), reduce_in_kernel=True),
        linear_spec(1, 4 * h, h, "f16", "in_out", True, "gelu_tanh", norm="layer",
                    has_norm_weight=True, has_norm_bias=True,
                    config=GemmConfig(16, 64, 16, 1, 2, 4, 2), reduce_in_kernel=True),
        linear_spec(1, h, 4 * h, "f16", "in_out", True, "none", has_residual=True,
                    config=GemmConfig(16, 16, 32, 1, 4, 4, 2), reduce_in_kernel=True),
    ]
    wiring = [("in0", "in1", "in2", "in3", "in4"), ("stage0", "in5", "in6", "in7"),
              ("stage1", "in8", "in9", "in0"), ("stage2", "in10", "in11", "in12", "in13"),
              ("stage3", "in14", "in15", "stage2")]
    return specs, wiring


def llama_layer():
    """A Llama decode layer (M = 1): RMSNorm-prologue QKV GEMM over q/k/v weight parts, decode
    attention with RoPE and GQA 4/2 writing the cache, O GEMM + residual without split-K, the
    gated MLP-in (SwiGLU over gate/up parts) with the second RMSNorm, MLP-out + residual.
    Composite inputs: x, wq, wk, wv, attention norm weight, k/v caches, cos, sin, position,
    wo, w_gate, w_up, MLP norm weight, w_down."""
    h, hq, hkv = HIDDEN, 4, 2
    specs = [
        linear_spec(1, (hq + 2 * hkv) * HEAD_DIM, h, "f16", "out_in", False, "none", norm="rms",
                    norm_eps=1e-6, has_norm_weight=True, weight_parts=(64, 32, 32),
                    config=GemmConfig(16, 32, 16, 1, 2, 4, 2), reduce_in_kernel=True),
        attention_spec(1, hq, hkv, 1, CACHE, HEAD_DIM, "f16", 0.25, False,
                       config=DecodeConfig(16, 6, 4, 1), **_cache_views(hq, hkv, True)),
        linear_spec(1, h, h, "f16", "out_in", False, "none", has_residual=True,
                    config=GemmConfig(16, 16, 16, 1, 1, 4, 2)),
        linear_spec(1, 96, h, "f16", "out_in", False, "swiglu", norm="rms", norm_eps=1e-6,
                    has_norm_weight=True, weight_parts=(96, 96),
                    config=GemmConfig(16, 32, 16, 1, 2, 4, 2), reduce_in_kernel=True),
        linear_spec(1, h, 96, "f16", "out_in", False, "none", has_residual=True,
                    config=GemmConfig(16, 16, 32, 1, 3, 4, 2), reduce_in_kernel=True),
    ]
    wiring = [("in0", "in1", "in2", "in3", "in4"),
              ("stage0", "in5", "in6", "in7", "in8", "in9"), ("stage1", "in10", "in0"),
              ("stage2", "in11", "in12", "in13"), ("stage3", "in14", "stage2")]
    return specs, wiring


def prefill_chain():
    """A prefill attention block (8 tokens): QKV GEMM, causal flash attention reading q, k and
    v in place from its output (the prefill program form: k and v past L1 too), O GEMM +
    residual."""
    s, h, heads = 8, HIDDEN, 4
    width = 3 * h
    specs = [
        linear_spec(s, width, h, "f16", "out_in", True, "none",
                    config=GemmConfig(16, 32, 16, 1, 2, 4, 2), reduce_in_kernel=True),
        attention_spec(1, heads, heads, s, s, HEAD_DIM, "f16", 0.25, True,
                       config=PrefillConfig(16, 16, 4, 1), buffers=((1, s, width),),
                       q_view=(0, 0, s * width, HEAD_DIM, width),
                       k_view=(0, h, s * width, HEAD_DIM, width),
                       v_view=(0, 2 * h, s * width, HEAD_DIM, width), out_layout="bshd"),
        linear_spec(s, h, h, "f16", "out_in", True, "none", has_residual=True,
                    config=GemmConfig(16, 16, 16, 1, 1, 4, 2)),
    ]
    return specs, [("in0", "in1", "in2"), ("stage0",), ("stage1", "in3", "in4", "in0")]


LAYERS = {"gpt2": gpt2_layer, "llama": llama_layer, "prefill": prefill_chain}


def layer_inputs(plan, device: str, seed: int = 0) -> list:
    import torch

    from kiln.kernels.execute import TORCH_DTYPES

    generator = torch.Generator().manual_seed(seed)
    tensors = []
    for _, shape, dtype in plan.inputs:
        if dtype == "i64":  # the cache slot
            tensors.append(torch.tensor([POSITION], device=device))
        else:
            value = torch.randn(shape, generator=generator) * 0.5
            tensors.append(value.to(TORCH_DTYPES[dtype]).to(device))
    return tensors


def run_layer(name: str, device: str = "cpu", mode: str = "jit", runs: int = 2,
              prefetch: bool = False) -> dict:
    """The layer's stages as their own plans one after another, and as one sequence plan run
    `runs` times on the same buffers (out and temps poisoned, the caches restored before each
    run; on a GPU, many runs give races a chance to show). `prefetch`: the sequence's later
    stages prefetch their weights (GPU only: the interpreter has no inline assembly)."""
    import torch

    from kiln.kernels import execute

    specs, wiring = LAYERS[name]()
    plan = sequence_spec(specs, wiring, prefetch)
    inputs = layer_inputs(plan, device)

    separate = [t.clone() for t in inputs]
    outputs = []
    for spec, sources in zip(specs, wiring):
        given = [separate[int(s[2:])] if s.startswith("in") else outputs[int(s[5:])]
                 for s in sources]
        given = [t.reshape(shape) for t, (_, shape, _) in zip(given, spec.inputs)]
        outputs.append(execute.run_spec(spec, given, mode=mode))

    fused = [t.clone() for t in inputs]
    buffers = execute.allocate(plan, fused)
    run = execute.launcher(plan, buffers, mode)
    written = [int(buffer[2:]) for buffer in plan.written]
    results = []
    for _ in range(runs):
        for index in written:
            fused[index].copy_(inputs[index])
        for buffer in [temp for temp, _, _ in plan.temps] + ["out"]:
            # the byte arena of the stages' temps: all-ones bytes read as NaN in f16/bf16/f32
            buffers[buffer].fill_(float("nan") if buffers[buffer].is_floating_point() else -1)
        run()
        if device == "cuda":
            torch.cuda.synchronize()
        results.append({
            "out": torch.equal(buffers["out"], outputs[-1]),
            "caches": all(torch.equal(fused[i], separate[i]) for i in written),
            "semaphores_zero": not bool(buffers[SEMAPHORES].any())})
    return {"layer": name, "runs": results, "finite": bool(outputs[-1].isfinite().all()),
            "cache_written": bool(written) and all(not torch.equal(separate[i], inputs[i])
                                                   for i in written),
            "programs": plan.launches[0].grid[0], "prefetch": prefetch}


def test_layers_in_the_interpreter():
    """Separate plans and the sequence plan give the same bits (out and the KV caches), the
    semaphores end at zero and a second run on the same buffers repeats the first."""
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1",
               PYTHONPATH=str(REPO / "python") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, __file__, *LAYERS], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [r["layer"] for r in results] == list(LAYERS)
    for result in results:
        assert result["finite"], result
        assert result["runs"] == [{"out": True, "caches": True, "semaphores_zero": True}] * 2, \
            result
        assert result["cache_written"] == (result["layer"] != "prefill"), result


def _programs(spec) -> int:
    x, y, z = spec.launches[0].grid
    return x * y * z


def test_composite_spec():
    specs, wiring = gpt2_layer()
    plan = sequence_spec(specs, wiring)
    [launch] = plan.launches
    assert launch.grid == (sum(_programs(spec) for spec in specs), 1, 1)
    assert [name for name, _, _ in plan.inputs] == [f"in{j}" for j in range(16)]
    assert plan.output == specs[-1].output and plan.written == ("in5", "in6")
    # the stages' temps and outputs but the last: typed views into one byte arena (one binding
    # for all: IREE's CUDA runtime binds at most 16 buffers), in stage order, each on a
    # 128-byte line of its own and apart from the next
    [(arena, (arena_bytes,), arena_dtype)] = plan.temps
    assert (arena, arena_dtype) == ("tmp0", "i8")
    views = re.findall(r"(t\d+)_ptr = \(tmp0_ptr \+ (\d+)\)\.to\(tl\.pointer_type\(tl\.(\w+)\)\)",
                       launch.source)
    assert [name for name, _, _ in views] == [f"t{i}" for i in range(10)]
    shapes = [(2, 1, 192), (1, 192), (1, 4, 3, 16), (1, 4, 3), (1, 1, 4, 16), (2, 1, 64),
              (1, 64), (2, 1, 256), (1, 256), (4, 1, 64)]
    sizes = [math.prod(shape) * {"float16": 2, "float32": 4}[element]
             for shape, (_, _, element) in zip(shapes, views)]
    offsets = [int(offset) for _, offset, _ in views] + [arena_bytes]
    assert offsets[0] == 0 and all(offset % 128 == 0 for offset in offsets)
    assert all(offsets[i + 1] - offsets[i] >= sizes[i] for i in range(10)), (offsets, sizes)
    # one semaphore buffer: the header (ticket, a done counter per stage), then a region per
    # stage with semaphores, each on a line of its own
    [(name, (size,), dtype)] = plan.semaphores
    assert (name, dtype) == (SEMAPHORES, "i32")
    regions = [int(offset) for offset in re.findall(r"sem_ptr=sem0_ptr \+ (\d+)", launch.source)]
    assert regions == [32, 64, 96, 128, 160] and size == 192  # the last: 4 tiles
    assert launch.args == tuple(name for name, _, _ in plan.inputs) + ("out", "tmp0", SEMAPHORES)
    roles = {p.name: p.role for p in launch.pointers}
    assert roles["in5_ptr"] == roles["in6_ptr"] == "inout" and roles["in0_ptr"] == "input"
    assert roles["out_ptr"] == "output" and roles["sem0_ptr"] == "semaphore"
    # stages after the first read past L1; each stage waits for the one before
    assert launch.source.count("LOAD_CG=False") == 1 and launch.source.count("LOAD_CG=True") == 4
    waits = re.findall(r"wait_for_stage\(sem0_ptr \+ (\d+), (\d+)\)", launch.source)
    assert [(int(done), int(count)) for done, count in waits] == [
        (stage, _programs(specs[stage - 1])) for stage in range(1, 5)]
    assert replace(launch, source=launch.source + "\n").key() != launch.key()


def test_refusals():
    specs, wiring = gpt2_layer()
    two_launches = linear_spec(1, 64, 256, "f16", "in_out", True, "none", has_residual=True,
                               config=GemmConfig(16, 16, 32, 1, 4, 4, 2), reduce_in_kernel=False)
    with pytest.raises(KernelUnsupported, match="stage 4 has 2 launches"):
        sequence_spec(specs[:4] + [two_launches], wiring)
    with pytest.raises(KernelUnsupported, match="at least 2"):
        sequence_spec(specs[:1], wiring[:1])
    with pytest.raises(KernelUnsupported, match=r"stage<k> with k < 1"):
        sequence_spec(specs, [wiring[0], ("stage1",) + wiring[1][1:]] + wiring[2:])
    with pytest.raises(KernelUnsupported, match="in0..in15, every one used"):
        sequence_spec(specs, wiring[:4] + [("stage3", "in14", "in16", "stage2")])
    with pytest.raises(KernelUnsupported, match=r"wants \(64,\) f16, in2 is \(192,\)"):
        sequence_spec(specs, [wiring[0], wiring[1], ("stage1", "in8", "in2", "in0")] + wiring[3:])
    # a weight written by an earlier stage: its loads do not skip L1
    square = linear_spec(8, 8, 8, "f16", "out_in", False, "none",
                         config=GemmConfig(16, 16, 16, 1, 1, 4, 2))
    with pytest.raises(KernelUnsupported, match="through w_ptr, whose loads may hit a stale"):
        sequence_spec([square, square], [("in0", "in1"), ("in0", "stage0")])
    prefill = attention_spec(1, 2, 2, 16, 16, 16, "f16", 0.25, True)
    with pytest.raises(KernelUnsupported, match="different architectures"):
        sequence_spec([prefill, replace(prefill, launches=(replace(
            prefill.launches[0], arch="sm_80"),))], [("in0", "in1", "in2")] * 2)


def _ptxas():
    """Triton's ptxas (the wheel ships it; no GPU needed), or None."""
    import triton

    path = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
    return str(path) if path.exists() else None


@needs_triton
def test_composite_compiles(tmp_path, monkeypatch):
    """The composite's one kernel: PTX for sm_90a whose entry takes pointers only, one per
    buffer plus Triton's scratch pointers, as python/kiln/cuda_kernels.py reads plans; its
    generated source compiled from a file in the kernel cache."""
    from kiln.kernels import plan as plan_module

    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path))
    plan_module.clear_memory_cache()
    specs, wiring = gpt2_layer()
    spec = sequence_spec(specs, wiring)
    plan = kernels.compile_plan(spec)
    [launch] = plan.launches
    kernel = launch.kernel
    assert MLIR_SYMBOL.match(kernel.symbol) and kernel.entry == "kiln_sequence"
    ptx = kernel.ptx.decode()
    assert ".target sm_90a" in ptx
    declared = ptx_entry_params(ptx, kernel.entry)
    # in, out, the arena, the semaphores; Triton's unused scratch pointers dropped from the
    # entry (two bindings fewer against IREE's 16), the PTX still assembles
    assert len(declared) == len(kernel.params) == len(launch.args) == 16 + 1 + 1 + 1
    assert all(kind == "u64" for kind, _ in declared)
    assert "scratch" not in launch.args and "scratch" not in {p.role for p in kernel.params}
    ptxas = _ptxas()
    if ptxas:
        (tmp_path / "sequence.ptx").write_text(ptx)
        done = subprocess.run([ptxas, "-arch=sm_90a", str(tmp_path / "sequence.ptx"), "-o",
                               str(tmp_path / "sequence.cubin")], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    assert kernel.grid == spec.launches[0].grid and kernel.num_warps == 4
    assert 0 <= kernel.shared_bytes <= 232448
    inputs = {name: (shape, dtype) for name, shape, dtype in plan.inputs}
    temps = {name: (shape, dtype) for name, shape, dtype in plan.temps}
    semaphores = {name: (shape, dtype) for name, shape, dtype in plan.semaphores}
    for param, arg in zip(kernel.params, launch.args):
        if arg in inputs:
            assert param.role == ("inout" if arg in plan.written else "input")
            assert (param.shape, param.dtype) == inputs[arg]
        elif arg in temps:
            assert param.role == "temp" and (param.shape, param.dtype) == temps[arg]
        elif arg in semaphores:
            assert param.role == "semaphore" and (param.shape, param.dtype) == semaphores[arg]
        else:
            assert arg == "out" and param.role == "output"
            assert (param.shape, param.dtype) == plan.output
    assert len(set(launch.args)) == len(launch.args)  # one param per buffer
    assert set(launch.args) == {*inputs, *temps, *semaphores, "out"}
    # the waits and counts as atomics at GPU scope; loads of earlier stages' writes past L1
    assert "atom.global.gpu.relaxed.add" in ptx and "ld.global.gpu.acquire" in ptx
    assert "atom.global.gpu.release.add" in ptx and "ld.global.cg" in ptx
    [source] = (tmp_path / "kernels" / "generated").glob("kiln_generated_*.py")
    assert source.read_text() == spec.launches[0].source
    plan_module.clear_memory_cache()

    def no_compile(_):
        raise AssertionError("compiled again despite the disk cache")
    monkeypatch.setattr(plan_module, "compile_triton", no_compile)
    assert kernels.compile_plan(spec) == plan


@needs_triton
def test_prefetch_before_the_wait(tmp_path, monkeypatch):
    """prefetch=True: each later GEMM stage asks L2 for its weight lines before it waits (the
    PTX has the prefetches; without prefetch there are none), with the stage program's
    arguments of the names it takes (the weights, the tile, the shape); the attention stage
    has no prefetch form."""
    from kiln.kernels import plan as plan_module

    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path))
    plan_module.clear_memory_cache()
    specs, wiring = gpt2_layer()
    plain, fetched = (sequence_spec(specs, wiring, prefetch=p).launches[0] for p in (False, True))
    assert "prefetch" not in plain.source and plain.key() != fetched.key()
    source = fetched.source
    # stages 2, 3, 4 are GEMMs after the first stage: prefetch, then wait, then the program
    for stage in (2, 3, 4):
        block = source.split(f"# stage {stage}:")[1].split("# stage")[0]
        prefetch, wait, program = (block.index(word) for word in
                                   ("linear_prefetch(", "wait_for_stage(", "linear_program("))
        assert prefetch < wait < program, block
        calls = [dict(re.findall(r"(\w+)=([^,]+?)(?:,\s|\s*$)", " ".join(call.split())))
                 for call in re.findall(r"linear_(?:prefetch|program)\((.*?)\)\n", block, re.S)]
        assert len(calls) == 2, calls
        fetched, program = calls
        assert {"w_ptr", "pid", "pid_k", "K_SPLIT", "BLOCK_K"} <= set(fetched), fetched
        assert all(program[name] == value for name, value in fetched.items()), (fetched, program)
    assert "linear_prefetch" not in source.split("# stage 1:")[1].split("# stage 2:")[0]
    ptx = kernels.compile_plan(sequence_spec(specs, wiring, prefetch=True)) \
        .launches[0].kernel.ptx.decode()
    assert "prefetch.global.L2 [" in ptx
    if _ptxas():  # the inline assembly assembles
        (tmp_path / "prefetch.ptx").write_text(ptx)
        done = subprocess.run([_ptxas(), "-arch=sm_90a", str(tmp_path / "prefetch.ptx"), "-o",
                               str(tmp_path / "prefetch.cubin")], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    plain_ptx = kernels.compile_plan(sequence_spec(specs, wiring)).launches[0].kernel.ptx.decode()
    assert "prefetch.global.L2" not in plain_ptx


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("layers", nargs="+", choices=sorted(LAYERS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--mode", default="jit", choices=("jit", "aot"))
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--prefetch", action="store_true",
                        help="the sequences' later stages prefetch their weights (GPU only)")
    options = parser.parse_args(argv)
    from kiln.kernels.selfcheck import patch_interpreter

    patch_interpreter()
    for name in options.layers:
        print(json.dumps(run_layer(name, options.device, options.mode, options.runs,
                                   options.prefetch)),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
