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
    semaphores: tuple = ()


SCRATCH = (Param("g", (16,), "i8", "scratch"), Param("p", (16,), "i8", "scratch"))
def fake_ptx(entry: str, params: int) -> bytes:
    """PTX text with the entry's parameter list (IREE embeds PTX without reading it)."""
    lines = ",\n".join(f"\t.param .u64 .ptr .global .align 1 {entry}_param_{i}"
                       for i in range(params))
    return (f"// stand-in PTX\n.version 8.7\n.target sm_90a\n.visible .entry {entry}(\n"
            f"{lines}\n)\n{{\n\tret;\n}}\n").encode()


PTX = fake_ptx("gemm_kernel", 5)


def gemm_plan(m=8, n=32, k=16):
    kernel = Kernel(f"gemm_{m}x{n}x{k}", "gemm_kernel", PTX, 4, 1024, (1, 2, 1),
                    (Param("x", (m, k), "f16", "input"), Param("w", (n, k), "f16", "input"),
                     Param("y", (m, n), "f16", "output")) + SCRATCH)
    return Plan((Launch(kernel, ("in0", "in1", "out", "scratch", "scratch")),))


def split_decode_plan():
    """Two launches chained through temporaries, like a split-KV decode."""
    partial = Kernel("partial", "partial_kernel", fake_ptx("partial_kernel", 6), 4, 0, (4, 1, 1),
                     (Param("q", (1, 64), "f16", "input"), Param("k", (128, 64), "f16", "input"),
                      Param("o", (4, 64), "f32", "temp"), Param("l", (4,), "f32", "temp"))
                     + SCRATCH)
    reduce = Kernel("reduce", "reduce_kernel", fake_ptx("reduce_kernel", 5), 2, 0, (1, 1, 1),
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
    assert "workgroup_size = [128 : index, 1 : index, 1 : index]" in text
    assert "workgroup_local_memory = 1024" in text
    # The output is a dispatch result (no tied tensor.empty, which IREE would hoist into a
    # constant and copy before each launch): its binding and its PTX param move to the end.
    layout = re.findall(r"#hal\.pipeline\.binding<([^>]*)>", text)
    assert ["ReadOnly" in b for b in layout] == [True] * 4 + [False]
    dispatch = re.search(r"(%r0) = flow\.dispatch @(\w+)::@gemm_kernel\((.*?)\) : "
                         r"\((.*?)\) -> (tensor<8x32xf16>)$", text, re.M)
    assert dispatch, text
    operands = dispatch.group(3).split(", ")
    assert operands[:2] == ["%in0", "%in1"] and len(set(operands[2:])) == 2, \
        "two distinct scratch tensors after the inputs"
    assert "tensor.empty" not in text
    permuted = bytes.fromhex(re.search(r'dense<"0x([0-9a-f]+)">', text).group(1)).decode()
    params = re.findall(r"gemm_kernel_param_(\d)", permuted.split(")")[0])
    assert params == ["0", "1", "3", "4", "2"], "output param moved behind the scratch params"
    assert "return %r0 : tensor<8x32xf16>" in text
    assert "kiln.kernel" not in text


def test_declarations_with_other_attributes_are_rendered(plans):
    """Another pass may add attributes beside the spec (external weights' reflection did)."""
    spec = encode_spec("linear", dict(m=8, n=32, k=16))
    plans[spec] = gemm_plan()
    declaration = (f'  func.func private @kiln_kernel_0(tensor<8x16xf16>, tensor<32x16xf16>) -> '
                   f'tensor<8x32xf16> attributes {{iree.reflection = {{kiln.parameters = '
                   f'"{{\\22scope\\22: 1}}"}}, {spec_attr(spec)}, zz.other = 1 : i64}}')
    text = render_kernel_calls(module_with(declaration, ""))
    assert "func.func private @kiln_kernel_0(%in0: tensor<8x16xf16>" in text
    assert "kiln.kernel" not in text


def spec_attr(spec: str) -> str:
    return f'kiln.kernel = "{spec}"'


def test_chained_launches_thread_their_temporaries(plans):
    spec = encode_spec("attention", dict(sq=1))
    plans[spec] = split_decode_plan()
    declaration = (f'  func.func private @kiln_kernel_0(tensor<1x64xf16>, tensor<128x64xf16>) '
                   f'-> tensor<1x64xf16> attributes {{kiln.kernel = "{spec}"}}')
    text = render_kernel_calls(module_with(declaration, ""))
    assert re.search(r"%r0:2 = flow\.dispatch @\w+::@partial_kernel\(%in0, %in1, %scratch0_0, "
                     r"%scratch0_1\) : .* -> \(tensor<4x64xf32>, tensor<4xf32>\)", text)
    assert re.search(r"%r1 = flow\.dispatch @\w+::@reduce_kernel\(%r0#0, %r0#1, %scratch1_0, "
                     r"%scratch1_1\) : .* -> tensor<1x64xf16>", text), \
        "the reduce reads the temporaries and writes only out"


def split_k_plan():
    """One launch that reduces its splits itself: partials in a temporary, arrival counters in
    a semaphore buffer (kiln.kernels.linear with reduce_in_kernel=True)."""
    # (no scratch params: Triton's unused ones are dropped from real kernels' entries)
    kernel = Kernel("gemm_split", "gemm_split_kernel", fake_ptx("gemm_split_kernel", 5), 4, 0,
                    (2, 4, 1),
                    (Param("x", (1, 256), "f16", "input"), Param("w", (64, 256), "f16", "input"),
                     Param("y", (1, 64), "f16", "output"), Param("p", (4, 1, 64), "f32", "temp"),
                     Param("s", (2,), "i32", "semaphore")))
    return Plan((Launch(kernel, ("in0", "in1", "out", "tmp0", "sem0")),),
                (("tmp0", (4, 1, 64), "f32"),), (("sem0", (2,), "i32"),))


def test_semaphores_are_module_globals_updated_in_place(plans):
    """A plan's semaphores start at zero once (a module global), are updated by the dispatch in
    place (a tied result) and stored back: no fill and no copy per call, in IREE's stream IR."""
    from kiln.bindings import iree_compiler

    spec = encode_spec("linear", dict(m=1, n=64, k=256))
    plans[spec] = split_k_plan()
    declaration = (f'  func.func private @kiln_kernel_0(tensor<1x256xf16>, tensor<64x256xf16>) '
                   f'-> tensor<1x64xf16> attributes {{kiln.kernel = "{spec}"}}')
    body = """  func.func @main(%x: tensor<1x256xf16>, %w: tensor<64x256xf16>) -> tensor<1x64xf16> {
    %a = func.call @kiln_kernel_0(%x, %w) : (tensor<1x256xf16>, tensor<64x256xf16>) -> tensor<1x64xf16>
    %b = func.call @kiln_kernel_0(%x, %w) : (tensor<1x256xf16>, tensor<64x256xf16>) -> tensor<1x64xf16>
    %c = arith.addf %a, %b : tensor<1x64xf16>
    return %c : tensor<1x64xf16>
  }"""
    text = render_kernel_calls(module_with(declaration, body))
    assert text.count("util.global private mutable @kiln_kernel_0_sem0 = dense<0> : "
                      "tensor<2xi32>") == 1
    assert "%sem0 = util.global.load @kiln_kernel_0_sem0 : tensor<2xi32>" in text
    assert re.search(r"%r0:3 = flow\.dispatch @\w+::@gemm_split_kernel\(%in0, %in1, %sem0\) "
                     r": .* -> \(tensor<1x64xf16>, "
                     r"tensor<4x1x64xf32>, %sem0\)", text), "the semaphore is a tied result"
    assert "util.global.store %r0#2, @kiln_kernel_0_sem0 : tensor<2xi32>" in text
    stream = iree_compiler().compile_str(text, extra_args=[
        "--iree-hal-target-device=cuda", "--iree-cuda-target=sm_80", "--compile-to=stream"])
    stream = stream.decode() if isinstance(stream, bytes) else stream
    assert "@kiln_kernel_0_sem0 : !stream.resource<variable>" in stream
    initializer, main = stream.split("util.func public @main", 1)
    # zeroed once when the module loads; in the call no fill at all (no scratch operands:
    # Triton's unused scratch pointers are dropped from the entry) and no copy of anything
    assert re.search(r"stream\.cmd\.fill .* -> !stream\.resource<variable>", initializer)
    assert "fill" not in main, main
    assert "stream.async.copy" not in stream and "stream.async.clone" not in stream
    assert "stream.cmd.copy" not in main


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
    assert b".visible .entry gemm_kernel(" in vmfb, "the artifact carries the kernel's PTX"


def test_plan_problems_are_named():
    too_big = Kernel("big", "big_kernel", fake_ptx("big_kernel", 3), 8, 300_000, (1, 1, 1),
                     (Param("y", (4,), "f16", "output"),) + SCRATCH)
    assert "shared memory" in plan_problem(Plan((Launch(too_big, ("out", "scratch", "scratch")),)))
    fits = Kernel("fits", "fits_kernel", fake_ptx("fits_kernel", 3), 8, 1024, (1, 1, 1),
                  too_big.params)
    assert "arguments" in plan_problem(Plan((Launch(fits, ("out",)),)))
    assert plan_problem(Plan((Launch(fits, ("out", "scratch", "scratch")),))) is None


def test_bad_plans_raise_render_errors(plans):
    spec = encode_spec("linear", dict(m=1))
    kernel = Kernel("k", "k", fake_ptx("k", 3), 1, 0, (1, 1, 1),
                    (Param("x", (4,), "f16", "input"),) + SCRATCH)
    plans[spec] = Plan((Launch(kernel, ("in0", "scratch", "scratch")),))
    declaration = (f'  func.func private @kiln_kernel_7(tensor<4xf16>) -> tensor<4xf16> '
                   f'attributes {{kiln.kernel = "{spec}"}}')
    with pytest.raises(KernelRenderError, match="no 'out' buffer|writes no buffer"):
        render_kernel_calls(module_with(declaration, ""))
