"""The glue that carries library kernels into IREE input (kiln.cuda_kernels), on hand-made plans.

No GPU and no kernel library needed: plans are built from plain records with a PTX stand-in
(IREE embeds PTX without reading it at compile time). The library's own kernels are tested in
tests/test_kernels.py; that they run correctly inside artifacts is checked on the GPU
(bench/gpu/kernel_artifacts.py, docs/kernels.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from kiln.cuda_kernels import (KernelRenderError, decode_spec, encode_spec, plan_problem,
                               render_kernel_calls)


@dataclass(frozen=True)
class Param:
    name: str
    shape: tuple
    dtype: str
    role: str


@dataclass(frozen=True)
class Kernel:
    symbol: str
    entry: str
    ptx: bytes
    num_warps: int
    shared_bytes: int
    grid: tuple
    params: tuple


@dataclass(frozen=True)
class Launch:
    kernel: Kernel
    args: tuple


@dataclass(frozen=True)
class Plan:
    launches: tuple
    temps: tuple = ()


SCRATCH = (Param("g", (16,), "i8", "scratch"), Param("p", (16,), "i8", "scratch"))
PTX = b"// stand-in PTX\n.version 8.7\n.target sm_90a\n"


def gemm_plan(m=8, n=32, k=16):
    kernel = Kernel(f"gemm_{m}x{n}x{k}", "gemm_kernel", PTX, 4, 1024, (1, 2, 1),
                    (Param("x", (m, k), "f16", "input"), Param("w", (n, k), "f16", "input"),
                     Param("y", (m, n), "f16", "output")) + SCRATCH)
    return Plan((Launch(kernel, ("in0", "in1", "out", "scratch", "scratch")),))


def split_decode_plan():
    """Two launches chained through temporaries, like a split-KV decode."""
    partial = Kernel("partial", "partial_kernel", PTX, 4, 0, (4, 1, 1),
                     (Param("q", (1, 64), "f16", "input"), Param("k", (128, 64), "f16", "input"),
                      Param("o", (4, 64), "f32", "temp"), Param("l", (4,), "f32", "temp"))
                     + SCRATCH)
    reduce = Kernel("reduce", "reduce_kernel", PTX, 2, 0, (1, 1, 1),
                    (Param("o", (4, 64), "f32", "temp"), Param("l", (4,), "f32", "temp"),
                     Param("y", (1, 64), "f16", "output")) + SCRATCH)
    return Plan((Launch(partial, ("in0", "in1", "tmp0", "tmp1", "scratch", "scratch")),
                 Launch(reduce, ("tmp0", "tmp1", "out", "scratch", "scratch"))),
                (("tmp0", (4, 64), "f32"), ("tmp1", (4,), "f32")))


def module_with(declarations: str, body: str) -> str:
    return f"module {{\n{declarations}\n{body}\n}}\n"


@pytest.fixture
def plans(monkeypatch):
    table = {}
    monkeypatch.setattr("kiln.cuda_kernels.build_plan",
                        lambda builder, arguments: table[encode_spec(builder, arguments)])
    return table


def test_spec_round_trips_python_literals():
    arguments = dict(b=1, hq=12, causal=True, scale=0.125, mask_shape=(1, 1, 8, 8),
                     mask_kind="bool", mask_dtype=None)
    spec = encode_spec("attention", arguments)
    assert '"' not in spec
    assert decode_spec(spec) == ("attention", arguments)
    with pytest.raises(KernelRenderError, match="malformed"):
        decode_spec("attention(b=1, os.system('x'))")
    with pytest.raises(ValueError, match="unknown kernel builder"):
        encode_spec("conv", {})


def test_declaration_becomes_dispatch_and_executable_is_added_once(plans):
    spec = encode_spec("linear", dict(m=8, n=32, k=16))
    plans[spec] = gemm_plan()
    declaration = (f'  func.func private @kiln_kernel_0(tensor<8x16xf16>, tensor<32x16xf16>) -> '
                   f'tensor<8x32xf16> attributes {{kiln.kernel = "{spec}"}}')
    text = render_kernel_calls(module_with(declaration, "  // body"))
    assert text.count("hal.executable.source private @kiln_exe_gemm_8x32x16") == 1
    assert f'dense<"0x{PTX.hex()}"> : vector<{len(PTX)}xi8>' in text
    assert "workgroup_size = [128 : index, 1 : index, 1 : index]" in text
    assert "workgroup_local_memory = 1024" in text
    # Inputs read-only, the output and both scratch pointers writable, in parameter order.
    layout = re.search(r"bindings = \[(.*?)\]\>", text).group(1)
    assert layout.count("ReadOnly") == 2 and layout.count("storage_buffer") == 5
    dispatch = re.search(r"flow\.dispatch @kiln_exe_gemm_8x32x16::@gemm_kernel\((.*?)\) : "
                         r"\((.*?)\) -> (%\w+)", text)
    operands = dispatch.group(1).split(", ")
    assert operands[:3] == ["%in0", "%in1", "%out"] and dispatch.group(3) == "%out"
    assert len(set(operands[3:])) == 2, "scratch tensors must stay distinct"
    assert "return %r0 : tensor<8x32xf16>" in text
    assert "kiln.kernel" not in text


def test_chained_launches_thread_their_temporaries(plans):
    spec = encode_spec("attention", dict(sq=1))
    plans[spec] = split_decode_plan()
    declaration = (f'  func.func private @kiln_kernel_0(tensor<1x64xf16>, tensor<128x64xf16>) '
                   f'-> tensor<1x64xf16> attributes {{kiln.kernel = "{spec}"}}')
    text = render_kernel_calls(module_with(declaration, ""))
    assert "%r0:2 = flow.dispatch @kiln_exe_partial::@partial_kernel(%in0, %in1, %tmp0, %tmp1" \
        in text and "-> (%tmp0, %tmp1)" in text
    assert "flow.dispatch @kiln_exe_reduce::@reduce_kernel(%r0#0, %r0#1, %out" in text
    assert "%r1 = flow.dispatch" in text, "the reduce reads the temporaries, writes only out"


def test_rendered_kernels_compile_for_cuda_without_a_gpu(plans):
    """IREE accepts the rendered text next to torch ops it generates code for itself."""
    from kiln.bindings import iree_compiler

    spec = encode_spec("linear", dict(m=8, n=32, k=16))
    plans[spec] = gemm_plan()
    declaration = (f'  func.func private @kiln_kernel_0(tensor<8x16xf16>, tensor<32x16xf16>) -> '
                   f'tensor<8x32xf16> attributes {{kiln.kernel = "{spec}"}}')
    body = """  func.func @main(%x: !torch.vtensor<[8,16],f16>, %w: !torch.vtensor<[32,16],f16>) -> !torch.vtensor<[8,32],f16> {
    %xb = "torch_c.to_builtin_tensor"(%x) : (!torch.vtensor<[8,16],f16>) -> tensor<8x16xf16>
    %wb = "torch_c.to_builtin_tensor"(%w) : (!torch.vtensor<[32,16],f16>) -> tensor<32x16xf16>
    %y = func.call @kiln_kernel_0(%xb, %wb) : (tensor<8x16xf16>, tensor<32x16xf16>) -> tensor<8x32xf16>
    %yt = "torch_c.from_builtin_tensor"(%y) : (tensor<8x32xf16>) -> !torch.vtensor<[8,32],f16>
    %r = torch.aten.mul.Tensor %yt, %yt : !torch.vtensor<[8,32],f16>, !torch.vtensor<[8,32],f16> -> !torch.vtensor<[8,32],f16>
    return %r : !torch.vtensor<[8,32],f16>
  }"""
    text = render_kernel_calls(module_with(declaration, body))
    compiler = iree_compiler()
    vmfb = compiler.compile_str(text, extra_args=[
        "--iree-input-type=torch", "--iree-hal-target-device=cuda", "--iree-cuda-target=sm_80"])
    assert PTX in vmfb, "the artifact carries the kernel's PTX"


def test_plan_problems_are_named():
    too_big = Kernel("big", "big_kernel", PTX, 8, 300_000, (1, 1, 1),
                     (Param("y", (4,), "f16", "output"),) + SCRATCH)
    assert "shared memory" in plan_problem(Plan((Launch(too_big, ("out", "scratch", "scratch")),)))
    fits = Kernel("fits", "fits_kernel", PTX, 8, 1024, (1, 1, 1), too_big.params)
    assert "arguments" in plan_problem(Plan((Launch(fits, ("out",)),)))
    assert plan_problem(Plan((Launch(fits, ("out", "scratch", "scratch")),))) is None


def test_bad_plans_raise_render_errors(plans):
    spec = encode_spec("linear", dict(m=1))
    kernel = Kernel("k", "k", PTX, 1, 0, (1, 1, 1), (Param("x", (4,), "f16", "input"),) + SCRATCH)
    plans[spec] = Plan((Launch(kernel, ("in0", "scratch", "scratch")),))
    declaration = (f'  func.func private @kiln_kernel_7(tensor<4xf16>) -> tensor<4xf16> '
                   f'attributes {{kiln.kernel = "{spec}"}}')
    with pytest.raises(KernelRenderError, match="no 'out' buffer"):
        render_kernel_calls(module_with(declaration, ""))
