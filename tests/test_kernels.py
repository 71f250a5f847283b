"""kiln.kernels: plan structure of ahead-of-time compiled kernels (PTX for sm_90a, no GPU), the
config table, the compile cache, and numerics in Triton's interpreter against torch."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kiln import kernels
from kiln.kernels import configs
from kiln.kernels.attention import attention_spec
from kiln.kernels.configs import DecodeConfig, GemmConfig, PrefillConfig
from kiln.kernels.linear import linear_spec
from kiln.kernels.plan import compile_plan, ptx_entry_params

REPO = Path(__file__).resolve().parents[1]
MLIR_SYMBOL = re.compile(r"^[A-Za-z_][A-Za-z0-9_$.]*$")
needs_triton = pytest.mark.skipif(kernels.triton_available() is not None,
                                  reason=str(kernels.triton_available()))


def check_plan(plan, n_inputs: int, out_shape, out_dtype) -> None:
    """The contract Kiln's compiler relies on (python/kiln/cuda_kernels.py)."""
    temps = {name: (tuple(shape), dtype) for name, shape, dtype in plan.temps}
    semaphores = {name: (tuple(shape), dtype) for name, shape, dtype in plan.semaphores}
    seen_inputs, writes_out = set(), False
    for launch in plan.launches:
        kernel = launch.kernel
        assert MLIR_SYMBOL.match(kernel.symbol) and MLIR_SYMBOL.match(kernel.entry)
        assert isinstance(kernel.ptx, bytes)
        ptx = kernel.ptx.decode()
        assert ".target sm_90a" in ptx
        declared = ptx_entry_params(ptx, kernel.entry)
        assert len(declared) == len(kernel.params) == len(launch.args)
        assert all(kind == "u64" for kind, _ in declared)  # pointers only: no scalars
        # Triton's scratch pointers are dropped from the entry: no Kiln kernel uses them
        assert "scratch" not in [p.role for p in kernel.params]
        assert "scratch" not in launch.args
        assert not any(name.endswith("_scratch") for _, name in declared)
        assert 0 <= kernel.shared_bytes <= 232448
        assert len(kernel.grid) == 3 and all(g >= 1 for g in kernel.grid)
        assert kernel.num_warps in (1, 2, 4, 8, 16)
        for param, arg in zip(kernel.params, launch.args):
            assert param.dtype in ("f16", "bf16", "f32", "i8", "i32")
            if arg.startswith("in"):
                assert param.role == "input"
                seen_inputs.add(arg)
            elif arg.startswith("tmp"):
                assert param.role == "temp" and temps[arg] == (param.shape, param.dtype)
            elif arg.startswith("sem"):
                assert param.role == "semaphore" and param.dtype == "i32"
                assert semaphores[arg] == (param.shape, param.dtype)
                # one counter per output tile, each counted to by every split: GEMM tiles
                # along grid x and splits along y; decode attention splits along x
                x, y = kernel.grid[:2]
                assert (param.shape, y > 1) == ((x,), True) if launch.kernel.entry.startswith(
                    "linear") else (param.shape, x > 1) == ((y,), True)
            else:
                assert arg == "out" and param.role == "output"
                assert (param.shape, param.dtype) == (tuple(out_shape), out_dtype)
                writes_out = True
    assert writes_out
    assert seen_inputs == {f"in{i}" for i in range(n_inputs)}
    symbols = [launch.kernel.symbol for launch in plan.launches]
    assert len(set(symbols)) == len(symbols)


@needs_triton
def test_linear_plans():
    plan = kernels.linear_plan(128, 96, 72, "f16", "in_out", True, "gelu_tanh",
                               has_residual=True)
    check_plan(plan, 4, (128, 96), "f16")
    assert len(plan.launches) == 1 and plan.temps == ()
    assert [p.name for p in plan.launches[0].kernel.params] == [
        "x_ptr", "w_ptr", "b_ptr", "r_ptr", "y_ptr"]
    assert plan.launches[0].args == ("in0", "in1", "in2", "in3", "out")
    # decode-shaped: split-K in two launches through an f32 temporary
    plan = compile_plan(linear_spec(1, 64, 4096, "bf16", "out_in", False, "silu",
                                    reduce_in_kernel=False))
    check_plan(plan, 2, (1, 64), "bf16")
    assert len(plan.launches) == 2 and plan.semaphores == ()
    (name, shape, dtype), = plan.temps
    assert name == "tmp0" and dtype == "f32" and shape[1:] == (1, 64) and shape[0] > 1
    assert plan.launches[1].args == ("tmp0", "out")
    # or in one (the default): the last split of a tile to arrive (counted at a persistent
    # semaphore) reduces
    plan = kernels.linear_plan(1, 64, 4096, "bf16", "out_in", False, "silu")
    check_plan(plan, 2, (1, 64), "bf16")
    assert len(plan.launches) == 1
    (name, shape, dtype), = plan.temps
    assert name == "tmp0" and dtype == "f32" and shape[1:] == (1, 64) and shape[0] > 1
    assert plan.semaphores == (("sem0", (plan.launches[0].kernel.grid[0],), "i32"),)
    assert plan.launches[0].args == ("in0", "in1", "out", "tmp0", "sem0")
    assert plan.launches[0].kernel.grid[1] == shape[0]
    assert kernels.linear_plan(128, 96, 72, "f16", "in_out", True, "gelu_tanh",
                               has_residual=True) is not plan  # cached compile, fresh plan


@needs_triton
def test_attention_plans():
    plan = kernels.attention_plan(2, 8, 2, 33, 70, 40, "bf16", 0.15, True,
                                  mask_shape=(2, 1, 33, 70), mask_kind="bool", mask_dtype="i8")
    check_plan(plan, 4, (2, 8, 33, 40), "bf16")
    assert len(plan.launches) == 1
    assert plan.launches[0].kernel.params[3].shape == (2, 1, 33, 70)
    # decode: split-KV partials (f32) and log-sum-exp, then the merge in a second launch
    plan = compile_plan(attention_spec(1, 16, 4, 1, 4096, 64, "f16", 0.125, False,
                                       mask_shape=(1, 1, 1, 4096), mask_kind="additive",
                                       mask_dtype="f32", merge_in_kernel=False))
    check_plan(plan, 4, (1, 16, 1, 64), "f16")
    assert len(plan.launches) == 2
    assert [t[0] for t in plan.temps] == ["tmp0", "tmp1"]
    splits = plan.temps[0][1][2]
    assert plan.launches[0].kernel.grid == (splits, 4, 1) and splits > 1
    # or one launch (the default): the last split of each kv head to arrive merges
    plan = kernels.attention_plan(1, 16, 4, 1, 4096, 64, "f16", 0.125, False,
                                  mask_shape=(1, 1, 1, 4096), mask_kind="additive",
                                  mask_dtype="f32")
    check_plan(plan, 4, (1, 16, 1, 64), "f16")
    assert len(plan.launches) == 1 and plan.launches[0].kernel.grid == (splits, 4, 1)
    assert [t[0] for t in plan.temps] == ["tmp0", "tmp1"]
    assert plan.semaphores == (("sem0", (4,), "i32"),)
    assert plan.launches[0].args[-4:] == ("tmp0", "tmp1", "out", "sem0")
    # a short decode needs one launch
    plan = kernels.attention_plan(1, 4, 4, 1, 16, 64, "f16", 0.125, False)
    check_plan(plan, 3, (1, 4, 1, 64), "f16")
    assert len(plan.launches) == 1 and plan.temps == ()


@needs_triton
def test_fused_layer_plans():
    """The plans that fold a layer's glue into its kernels (issue 14): a GEMM with the norm of
    its input in the prologue, SwiGLU's two accumulators and the residual epilogue; attention
    reading q, k, v in place from one QKV buffer with the rotary embedding, writing [b, s, h, d]."""
    plan = kernels.linear_plan(64, 1024, 512, "f16", "out_in", False, "swiglu",
                               has_residual=True, norm="rms", norm_eps=1e-6,
                               has_norm_weight=True)
    check_plan(plan, 4, (64, 1024), "f16")
    assert plan.inputs == (("in0", (64, 512), "f16"), ("in1", (2048, 512), "f16"),
                           ("in2", (64, 1024), "f16"), ("in3", (512,), "f16"))
    [launch] = plan.launches
    assert [p.name for p in launch.kernel.params] == ["x_ptr", "w_ptr", "r_ptr", "g_ptr",
                                                          "y_ptr"]
    plan = kernels.linear_plan(1, 2304, 768, "f16", "in_out", True, "none", norm="layer",
                               has_norm_weight=True, has_norm_bias=True, split_k=False)
    check_plan(plan, 5, (1, 2304), "f16")
    assert len(plan.launches) == 1 and plan.launches[0].kernel.grid[0] >= 96  # no split-K
    split = linear_spec(1, 2304, 768, "f16", "in_out", True, "none", norm="layer",
                        has_norm_weight=True, has_norm_bias=True, reduce_in_kernel=False)
    assert len(split.launches) == 2  # the table's split-K config: partials + reduce
    one = linear_spec(1, 2304, 768, "f16", "in_out", True, "none", norm="layer",
                      has_norm_weight=True, has_norm_bias=True)
    assert len(one.launches) == 1 and one.launches[0].grid[1] > 1  # or reduced in the GEMM
    assert [t[0] for t in one.temps] == ["tmp0"] and [s[0] for s in one.semaphores] == ["sem0"]
    # merged q/k/v weights and biases read as their parts (no concatenated copy)
    plan = kernels.linear_plan(32, 768, 512, "f16", "out_in", True, "none",
                               weight_parts=(512, 128, 128), bias_parts=(512, 128, 128),
                               norm="rms", has_norm_weight=True, split_k=False)
    check_plan(plan, 8, (32, 768), "f16")
    assert [p.name for p in plan.launches[0].kernel.params] == [
        "x_ptr", "w_ptr", "w1_ptr", "w2_ptr", "b_ptr", "b1_ptr", "b2_ptr", "g_ptr", "y_ptr"]
    assert 128 % dict(linear_spec(32, 768, 512, "f16", "out_in", True, "none",
                                  weight_parts=(512, 128, 128)).launches[0].constexprs)[
        "BLOCK_N"] == 0
    with pytest.raises(kernels.KernelUnsupported, match="multiples of 16"):
        linear_spec(32, 520, 512, "f16", "out_in", False, "none", weight_parts=(8, 512))

    b, s, hq, hkv, d = 2, 32, 8, 2, 64
    width = (hq + 2 * hkv) * d
    views = dict(buffers=((b, s, width),), q_view=(0, 0, s * width, d, width),
                 k_view=(0, hq * d, s * width, d, width),
                 v_view=(0, (hq + hkv) * d, s * width, d, width),
                 rope=(True, True, (1, s, d), "f16"), out_layout="bshd")
    plan = kernels.attention_plan(b, hq, hkv, s, s, d, "f16", 0.125, True, **views)
    check_plan(plan, 3, (b, s, hq, d), "f16")
    assert plan.launches[0].args[:6] == ("in0", "in0", "in0", "in1", "in2", "out")
    decode = kernels.attention_plan(b, hq, hkv, 1, 1, d, "f16", 0.125, True, **dict(
        views, buffers=((b, 1, width),), q_view=(0, 0, width, d, width),
        k_view=(0, hq * d, width, d, width), v_view=(0, (hq + hkv) * d, width, d, width),
        rope=(True, True, (1, 1, d), "f16")))
    check_plan(decode, 3, (b, 1, hq, d), "f16")
    with pytest.raises(kernels.KernelUnsupported, match="reads element"):
        kernels.attention_plan(b, hq, hkv, s, s, d, "f16", 0.125, True, **dict(
            views, v_view=(0, width, s * width, d, width)))


def test_unsupported_reasons():
    with pytest.raises(kernels.KernelUnsupported, match="dtype"):
        kernels.linear_plan(4, 4, 4, "f32", "out_in", False, "none")
    cases = [
        ("linear", dict(m=4, n=8, k=8, dtype="f16", weight_layout="nk", has_bias=False,
                        activation="none"), "weight_layout"),
        ("linear", dict(m=4, n=8, k=8, dtype="f16", weight_layout="out_in", has_bias=False,
                        activation="tanh"), "activation"),
        ("attention", dict(b=1, hq=6, hkv=4, sq=8, sk=8, d=64, dtype="f16", scale=0.1,
                           causal=False), "divide"),
        ("attention", dict(b=1, hq=4, hkv=4, sq=8, sk=8, d=512, dtype="f16", scale=0.1,
                           causal=False), "head dim"),
        ("attention", dict(b=1, hq=4, hkv=4, sq=8, sk=8, d=64, dtype="f16", scale=0.1,
                           causal=False, mask_shape=(1, 1, 8, 8), mask_kind="bool",
                           mask_dtype="f16"), "mask dtype"),
        ("attention", dict(b=1, hq=4, hkv=4, sq=8, sk=8, d=64, dtype="f16", scale=0.1,
                           causal=False, mask_shape=(1, 3, 8, 8), mask_kind="additive",
                           mask_dtype="f16"), "broadcast"),
    ]
    for builder, arguments, words in cases:
        reason = kernels.explain_unsupported(builder, **arguments)
        assert reason and words in reason, (arguments, reason)
    if kernels.triton_available() is None:
        assert kernels.explain_unsupported("linear", m=4, n=8, k=8, dtype="f16",
                                           weight_layout="out_in", has_bias=False,
                                           activation="none") is None


def test_specs_without_compiling():
    spec = attention_spec(2, 8, 8, 1, 100, 64, "f16", 0.125, True)
    assert spec.launches[0].constants["KEYS"] == 1  # causal decode: query 0 sees key 0 only
    spec = attention_spec(2, 8, 8, 20, 30, 64, "f16", 0.125, False, (1, 8, 1, 30), "additive",
                          "f16")
    c = spec.launches[0].constants
    assert (c["MS_B"], c["MS_H"], c["MS_Q"], c["MS_K"]) == (0, 30, 0, 1)
    for m, n, k in [(1, 768, 768), (8, 3072, 768), (5, 7, 1000), (4096, 3072, 768)]:
        for split in (1, 3, 8):
            config, k_split, even = configs.fit_gemm(GemmConfig(16, 64, 128, 1, split), m, n, k)
            assert k_split % config.block_k == 0
            assert (config.split_k - 1) * k_split < k <= config.split_k * k_split
            assert even == (k == config.split_k * k_split)


def test_config_table():
    table = json.loads(configs.TABLE_PATH.read_text())
    assert table["format"] == configs.TABLE_FORMAT
    for key, entry in table["entries"].items():
        op = key.split("/")[0]
        configs.CONFIG_TYPES[op](**entry["config"])
        assert configs.lookup(key)[1] == key
    assert configs.lookup(configs.decode_key(1 << 20, 64), {})[0] is None
    fake = {"linear/out_in/m128/n1024/k1024": {"config": {"block_m": 64, "block_n": 64,
                                                          "block_k": 64}}}
    config, key = configs.lookup(configs.linear_key(100, 1000, 1100, "in_out"), fake)
    assert key == "linear/out_in/m128/n1024/k1024" and config.block_m == 64
    assert configs.lookup(configs.linear_key(4096, 16384, 64, "out_in"), fake)[0] is None


@needs_triton
def test_compile_cache(tmp_path, monkeypatch):
    from kiln.kernels import plan as plan_module

    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path))
    spec = linear_spec(16, 32, 48, "f16", "out_in", False, "relu",
                       config=GemmConfig(16, 32, 16, 1, 1, 4, 2))
    first = plan_module.compile_plan(spec)
    assert list((tmp_path / "kernels").glob("*.json"))
    assert plan_module.compile_plan(spec).launches[0].kernel is first.launches[0].kernel
    plan_module.clear_memory_cache()

    def no_compile(_):
        raise AssertionError("compiled again despite the disk cache")
    monkeypatch.setattr(plan_module, "compile_triton", no_compile)
    assert plan_module.compile_plan(spec) == first


def test_interpreter_numerics():
    """Every kernel family in Triton's interpreter vs torch (ragged sizes, causal, both mask
    kinds, GQA, split-K, split-KV decode); bf16 dots are GPU-only (bench/gpu/kernel_check.py)."""
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1",
               PYTHONPATH=str(REPO / "python") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-m", "kiln.kernels.selfcheck"], env=env,
                          capture_output=True, text=True, timeout=300)
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(results) >= 25, done.stderr[-2000:]
    failed = [r for r in results if not r["ok"]]
    assert not failed, failed
    assert done.returncode == 0


def test_selfcheck_takes_the_spec_builders_defaults():
    """A case given as linear_spec's keyword arguments may leave out what has a default
    (has_residual): bench/gpu/issue14_measure.py's real-size cases stopped on a KeyError."""
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1",
               PYTHONPATH=str(REPO / "python") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    code = ("import json; from kiln.kernels import selfcheck; selfcheck.patch_interpreter(); "
            "print(json.dumps(selfcheck.check('linear', dict(m=5, n=24, k=40, dtype='f16', "
            "weight_layout='out_in', has_bias=True, activation='none', norm='rms', "
            "has_norm_weight=True))))")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1])["ok"]


@needs_triton
def test_plans_follow_the_architecture():
    """PTX for the requested architecture: mma.sync for Ampere/Ada, wgmma for Hopper; shared
    memory fitted to the architecture's limit; none below sm_80."""
    from kiln.kernels.plan import ARCHS

    for arch, target, instruction in (("sm_80", "sm_80", "mma.sync"),
                                      ("sm_86", "sm_86", "mma.sync"),
                                      ("sm_90", "sm_90a", "wgmma")):
        plan = kernels.linear_plan(64, 256, 128, "f16", "out_in", True, "none", arch=arch)
        ptx = plan.launches[0].kernel.ptx.decode()
        assert f".target {target}\n" in ptx and instruction in ptx, arch
        attention = kernels.attention_plan(1, 4, 2, 32, 32, 64, "f16", 0.125, True, arch=arch)
        assert f".target {target}\n" in attention.launches[0].kernel.ptx.decode()
    # A Hopper-sized pipeline (128x256x64 tiles, 3 stages: 147 KiB) is cut to fit sm_89's 99 KiB.
    big = GemmConfig(128, 256, 64, 8, 1, 8, 3)
    spec = linear_spec(4096, 3072, 768, "f16", "in_out", True, "none", config=big, arch="sm_89")
    assert spec.launches[0].num_stages == 2
    assert linear_spec(4096, 3072, 768, "f16", "in_out", True, "none", config=big)\
        .launches[0].num_stages == 3
    assert (128 * 64 + 64 * 256) * 2 * 2 <= ARCHS["sm_89"][1] < (128 * 64 + 64 * 256) * 2 * 3
    for arch in ("sm_75", "sm_70", "gfx90a"):
        reason = kernels.explain_unsupported("linear", m=4, n=8, k=8, dtype="f16",
                                             weight_layout="out_in", has_bias=False,
                                             activation="none", arch=arch)
        assert reason and arch in reason and "sm_80" in reason
