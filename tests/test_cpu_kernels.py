"""Kiln's own f32 GEMM on the CPU (kiln.cpu_kernels, kiln-select-cpu-kernels; compile option
cpu_kernels="on"): the linears it takes compute what eager computes, through the dispatch Kiln
wrote, and what it does not take is left to IREE with the reason recorded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

import kiln
from cpu_dispatch import run_dispatch
from kiln.cpu_kernels import (executable_text, gemm_problem, gemv_executable_text,
                              gemv_problem, packed_weight_shape, render_cpu_gemm_calls)


class GeluMLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.up, self.down = torch.nn.Linear(256, 512), torch.nn.Linear(512, 256, bias=False)

    def forward(self, x):
        return self.down(torch.nn.functional.gelu(self.up(x), approximate="tanh"))


class OddHead(torch.nn.Module):
    """1000 output columns: the weight is padded to 32 whole panels (1024) for the kernel."""

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(256, 1000)

    def forward(self, x):
        return self.head(x)


class LastHidden(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids):
        return self.model(ids).last_hidden_state


def tiny_gpt2():
    return LastHidden(transformers.GPT2Model(transformers.GPT2Config(
        n_embd=256, n_layer=1, n_head=4, vocab_size=64, n_positions=64, use_cache=False))).eval()


def tiny_llama():
    return LastHidden(transformers.LlamaModel(transformers.LlamaConfig(
        hidden_size=256, intermediate_size=512, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=64, max_position_embeddings=64,
        use_cache=False))).eval()


@pytest.mark.parametrize("build, args, taken", [
    (GeluMLP, lambda: (torch.randn(2, 32, 256),), 2),
    (OddHead, lambda: (torch.randn(2, 32, 256),), 1),
    (tiny_gpt2, lambda: (torch.randint(0, 64, (1, 64)),), 4),  # Conv1D weights: in_out
    (tiny_llama, lambda: (torch.randint(0, 64, (1, 64)),), 4),  # merged QKV, SwiGLU, o_proj
])
def test_kernel_linears_match_eager(build, args, taken):
    torch.manual_seed(0)
    model, inputs = build(), args()
    compiled = kiln.compile_model(model, inputs, cpu_kernels="on", cache=False)
    counts = compiled.report.counts_by_pass()
    assert counts["kiln-select-cpu-kernels"]["kiln.linear"] == taken, counts
    got = kiln.load(compiled.vmfb)(*inputs)
    with torch.no_grad():
        want = model(*inputs)
    torch.testing.assert_close(torch.as_tensor(got), want, rtol=1e-4, atol=1e-4)


def test_iree_input_holds_the_kernel_dispatch(monkeypatch):
    from kiln import cpu_kernels

    monkeypatch.setattr(cpu_kernels, "FOLD_EPILOGUES", False)  # the same names on every host
    text = kiln.compile_to_vmfb(GeluMLP().eval(), (torch.randn(2, 32, 256),), cache=False,
                                cpu_kernels="on", compile_to="iree-input")
    assert text.count("hal.executable.source private @kiln_cpu_gemm_exe_") == 2
    assert "flow.dispatch @kiln_cpu_gemm_exe_64x256x512::@kiln_cpu_gemm_64x256x512_dispatch" \
        in text
    assert "kiln.cpu_gemm = " not in text  # every declaration got its body


@pytest.mark.parametrize("build", [GeluMLP, OddHead, tiny_gpt2, tiny_llama])
def test_folded_epilogues_match_eager(monkeypatch, build):
    """With bias and activation in the kernels' stores (FOLD_EPILOGUES forced on): GELU
    (tanh), a padded bias (OddHead: 1000 columns), GPT-2's Conv1D, Llama's SwiGLU gate."""
    from kiln import cpu_kernels

    monkeypatch.setattr(cpu_kernels, "FOLD_EPILOGUES", True)
    torch.manual_seed(0)
    model = build()
    inputs = (torch.randint(0, 64, (1, 64)),) if build in (tiny_gpt2, tiny_llama) else \
        (torch.randn(2, 32, 256),)
    text = kiln.compile_to_vmfb(model, inputs, cpu_kernels="on", cache=False,
                                compile_to="iree-input")
    # Llama's linears have no bias: its SwiGLU gate's SiLU is what folds
    assert ("_silu_dispatch" if build is tiny_llama else "_bias") in text
    if build is GeluMLP:  # up: bias and GELU (tanh) in the store; down: nothing to fold
        assert "@kiln_cpu_gemm_64x256x512_bias_gelu_tanh_dispatch" in text
    compiled = kiln.compile_model(model, inputs, cpu_kernels="on", cache=False)
    got = kiln.load(compiled.vmfb)(*inputs)
    with torch.no_grad():
        want = model(*inputs)
    torch.testing.assert_close(torch.as_tensor(got), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind, cpu, folded", [
    ("intel-avx512", "host", True),  # measured faster there (the mlp's erf GELU)
    ("amd-avx2", "host", False),  # measured slower there (BERT)
    ("intel-avx512", "x86-64-v4", False),  # an artifact for other machines
])
def test_epilogues_fold_by_the_host_kind(monkeypatch, kind, cpu, folded):
    """FOLD_EPILOGUES left at None: the bias and GELU go into the kernel's store on the kinds
    of HOST_CPU_EPILOGUES only; elsewhere they stay an elementwise op after the call."""
    from kiln import cpu_kernels, targets

    monkeypatch.setattr(cpu_kernels, "FOLD_EPILOGUES", None)
    monkeypatch.setattr(targets, "host_cpu_kind", lambda: kind)
    text = kiln.compile_to_vmfb(GeluMLP().eval(), (torch.randn(2, 32, 256),), cpu=cpu,
                                cpu_kernels="on", compile_to="iree-input", cache=False)
    assert ("@kiln_cpu_gemm_64x256x512_bias_gelu_tanh_dispatch" in text) == folded
    assert "@kiln_cpu_gemm_64x256x512_dispatch" in text or folded


@pytest.mark.parametrize("kind, cpu, mode, expected", [
    ("intel-avx512", "host", "auto", True),  # measured faster there
    ("amd-avx2", "host", "auto", True),  # measured faster there, with 8-float vectors
    ("amd-avx512", "host", "auto", False),  # not measured there: IREE's matmul
    ("intel-avx512", "x86-64-v4", "auto", False),  # an artifact for other machines
    ("amd-avx512", "host", "on", True),
    ("intel-avx512", "host", "off", False),
])
def test_auto_follows_the_host_kind(monkeypatch, kind, cpu, mode, expected):
    from kiln import targets

    monkeypatch.setattr(targets, "host_cpu_kind", lambda: kind)
    compiled = kiln.compile_model(GeluMLP().eval(), (torch.randn(2, 32, 256),), cpu=cpu,
                                  cpu_kernels=mode, compile_to="iree-input", cache=False)
    assert ("kiln_cpu_gemm" in compiled.ir_text) == expected
    if expected:  # the kernels are written for the host's vector width
        lanes = 8 if kind.endswith("avx2") else 16
        assert f"vector<{lanes}xf32>" in compiled.ir_text
        assert f"vector<{24 - lanes}xf32>" not in compiled.ir_text  # 16 or 8: the other


def test_other_targets_and_bad_values():
    x = torch.randn(2, 32, 256)
    cuda = kiln.compile_model(GeluMLP().eval(), (x,), compile_to="iree-input", cache=False,
                              target="cuda", cpu_kernels="on", cuda_kernels="off")
    assert "kiln_cpu_gemm" not in cuda.ir_text  # the kernel is llvm-cpu code
    with pytest.raises(ValueError, match="cpu_kernels='maybe'"):
        kiln.compile_to_vmfb(GeluMLP().eval(), (x,), cpu_kernels="maybe")


@pytest.mark.parametrize("shape, reason", [
    ((12, 256, 512), "12 rows are not a multiple of 8"),
    ((64, 256, 100), "below"),  # any column count (padded), but small
    ((64, 258, 512), "reduction of 258 is not a multiple of 4"),
    ((8, 64, 32), "below"),
    ((64, 256, 512), None),
])
def test_gemm_problem(shape, reason):
    problem = gemm_problem(*shape)
    assert (problem is None) if reason is None else (reason in problem), problem


def _run_dispatch(executable: str, entry: str, a: np.ndarray, b: np.ndarray,
                  n: int, *more: np.ndarray) -> np.ndarray:
    """`executable`'s `entry` on (a, b, *more): C [rows of a, n]."""
    return run_dispatch(executable, entry, (a, b) + more, (a.shape[0], n))


def _activation(x: np.ndarray, activation: str) -> np.ndarray:
    """torch's activation of `x` (the kernels' epilogue reference)."""
    functions = {"none": lambda t: t, "relu": torch.relu, "silu": torch.nn.functional.silu,
                 "gelu": torch.nn.functional.gelu,
                 "gelu_tanh": lambda t: torch.nn.functional.gelu(t, approximate="tanh")}
    return functions[activation](torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("activation", ["none", "relu", "silu", "gelu", "gelu_tanh"])
@pytest.mark.parametrize("lanes", [16, 8])
def test_gemm_epilogue_adds_bias_and_applies_the_activation(activation, lanes):
    """The GEMM's store: + bias[column], then the activation, as torch computes them."""
    from kiln.cpu_kernels import Epilogue

    m, k, n, vectors = 16, 64, 96, 3
    width = lanes * vectors
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((m, k), np.float32), rng.standard_normal((k, n), np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    packed = np.ascontiguousarray(b.reshape(k, n // width, width).transpose(1, 0, 2))
    epilogue = Epilogue(True, activation)
    text = executable_text(m, k, n, vectors=vectors, lanes=lanes, name="exe", epilogue=epilogue)
    got = _run_dispatch(text, f"kiln_cpu_gemm_{m}x{k}x{n}{epilogue.suffix}_dispatch", a, packed,
                        n, bias)
    np.testing.assert_allclose(got, _activation(a @ b + bias, activation), rtol=1e-5,
                               atol=1e-4)


@pytest.mark.parametrize("bias, activation", [(True, "gelu_tanh"), (False, "silu"),
                                              (True, "none")])
def test_gemv_epilogue(bias, activation):
    from kiln.cpu_kernels import Epilogue

    m, k, n = 2, 128, 70
    rng = np.random.default_rng(5)
    a, w = rng.standard_normal((m, k), np.float32), rng.standard_normal((n, k), np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    epilogue = Epilogue(bias, activation)
    got = _run_dispatch(gemv_executable_text(m, k, n, name="exe", epilogue=epilogue),
                        f"kiln_cpu_gemv_{m}x{k}x{n}{epilogue.suffix}_dispatch", a, w, n,
                        *([b] if bias else []))
    want = a @ w.T + (b if bias else 0)
    np.testing.assert_allclose(got, _activation(want.astype(np.float32), activation),
                               rtol=1e-5, atol=1e-4)


def test_epilogue_names_and_refusals():
    from kiln.cpu_kernels import Epilogue

    assert Epilogue.parse("bias,gelu_tanh") == Epilogue(True, "gelu_tanh")
    assert Epilogue.parse("") == Epilogue() and Epilogue().suffix == ""
    assert Epilogue(True, "silu").suffix == "_bias_silu"
    with pytest.raises(ValueError, match="activation 'swiglu'"):
        Epilogue(False, "swiglu")
    with pytest.raises(ValueError, match="k_block do not combine"):
        executable_text(16, 64, 96, k_block=32, epilogue=Epilogue(True))


@pytest.mark.parametrize("m, vectors", [
    (16, 2), (16, 3),  # full register tiles of 8 rows × 2 and × 3 zmm (32- and 48-column panels)
    (3, None), (1, None),  # decode rows (tile of m rows, Kiln's choice of width)
])
def test_kernel_text_computes_a_product(m, vectors):
    """The GEMM executable alone, against numpy."""
    from kiln.cpu_kernels import gemm_vectors

    k, n = 64, 96
    vectors = vectors or gemm_vectors(m, n)
    panels, _, width = packed_weight_shape(k, n, 16 * vectors)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((m, k), np.float32), rng.standard_normal((k, n), np.float32)
    packed = np.ascontiguousarray(b.reshape(k, panels, width).transpose(1, 0, 2))
    got = _run_dispatch(executable_text(m, k, n, vectors=vectors, name="exe"),
                        f"kiln_cpu_gemm_{m}x{k}x{n}_dispatch", a, packed, n)
    np.testing.assert_allclose(got, a @ b, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("m, vectors", [(16, 3), (12, 2), (2, 2)])
def test_avx2_kernel_text_computes_a_product(m, vectors):
    """The GEMM written for 8-float vectors (AVX2 hosts): 24- and 16-column panels."""
    k, n, width = 64, 96, 8 * vectors
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((m, k), np.float32), rng.standard_normal((k, n), np.float32)
    packed = np.ascontiguousarray(b.reshape(k, n // width, width).transpose(1, 0, 2))
    text = executable_text(m, k, n, rows=min(m, 4), vectors=vectors, row_groups=1, lanes=8,
                           name="exe")
    assert "vector<8xf32>" in text and "vector<16xf32>" not in text
    got = _run_dispatch(text, f"kiln_cpu_gemm_{m}x{k}x{n}_dispatch", a, packed, n)
    np.testing.assert_allclose(got, a @ b, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("vectors, prefetch", [(3, None), (2, 2), (3, 5)])
def test_kernel_with_prefetch_computes_a_product(vectors, prefetch):
    """Four row tiles per workgroup: the next panel(s) prefetched while computing (Kiln's
    default distance, 2, and one past the last panel: clamped), the values unchanged."""
    m, k, n = 32, 64, 96
    width = 16 * vectors
    text = executable_text(m, k, n, vectors=vectors, row_groups=1, prefetch_panels=prefetch,
                           name="exe")
    assert "memref.prefetch" in text
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((m, k), np.float32), rng.standard_normal((k, n), np.float32)
    packed = np.ascontiguousarray(b.reshape(k, n // width, width).transpose(1, 0, 2))
    got = _run_dispatch(text, f"kiln_cpu_gemm_{m}x{k}x{n}_dispatch", a, packed, n)
    np.testing.assert_allclose(got, a @ b, rtol=1e-5, atol=1e-4)


def test_prefetch_only_with_several_row_tiles():
    """A workgroup of one row tile (decode rows) has no compute to hide a prefetch behind."""
    assert "memref.prefetch" not in executable_text(1, 64, 96)
    assert "memref.prefetch" in executable_text(128, 64, 96, row_groups=4)  # 4 tiles
    assert "memref.prefetch" not in executable_text(128, 64, 96, row_groups=16)  # 1 tile
    assert "memref.prefetch" not in executable_text(128, 64, 96, row_groups=4,
                                                    prefetch_panels=0)


@pytest.mark.parametrize("m, n", [(1, 200), (4, 64), (2, 131)])  # partial last workgroup
def test_gemv_text_computes_a_product(m, n):
    """The matrix-vector executable alone (weight [n, k] as torch stores it), against numpy."""
    k = 128
    rng = np.random.default_rng(1)
    a, w = rng.standard_normal((m, k), np.float32), rng.standard_normal((n, k), np.float32)
    got = _run_dispatch(gemv_executable_text(m, k, n, name="exe"),
                        f"kiln_cpu_gemv_{m}x{k}x{n}_dispatch", a, w, n)
    np.testing.assert_allclose(got, a @ w.T, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("m, n, vectors, groups", [
    (128, 768, 3, 2),  # 16 panels of 48 columns: two row blocks make 32 workgroups
    (128, 2304, 3, 1),  # 48 panels are enough
    (128, 2048, 2, 1),  # not a multiple of 48: 64 panels of 32 columns
    (128, 256, 2, 4),  # 8 panels: 4 row blocks of 32 rows
    (8, 768, 3, 1),  # one register tile of rows: nothing to split
    (1, 768, 2, 1),  # decode row: the 2-vector tile, as measured for decode
])
def test_gemm_tile_width_and_row_groups(m, n, vectors, groups):
    from kiln.cpu_kernels import gemm_panel, gemm_row_groups, gemm_vectors

    assert gemm_vectors(m, n) == vectors and gemm_panel(m, n) == 16 * vectors
    assert gemm_row_groups(m, n, vectors=vectors) == groups


@pytest.mark.parametrize("m, n, vectors, groups", [
    (128, 768, 3, 1),  # 32 panels of 24 columns: enough workgroups
    (128, 2048, 2, 1),  # not a multiple of 24: 128 panels of 16 columns
    (128, 96, 3, 8),  # 4 panels: 8 row blocks of 16 rows
    (4, 768, 3, 1),  # one register tile of 4 rows
    (1, 768, 2, 1),  # decode row: the narrow tile
])
def test_avx2_tile_width_and_row_groups(m, n, vectors, groups):
    """8-float vectors (AVX2): 4 × 3 where the columns fill 24-column panels, else 4 × 2."""
    from kiln.cpu_kernels import gemm_panel, gemm_row_groups, gemm_rows, gemm_vectors

    assert gemm_rows(m, lanes=8) == min(m, 4)
    assert gemm_vectors(m, n, lanes=8) == vectors and gemm_panel(m, n, lanes=8) == 8 * vectors
    assert gemm_row_groups(m, n, vectors=vectors, lanes=8) == groups


def test_register_tiles_refuse_an_unknown_width():
    from kiln.cpu_kernels import gemm_problem

    with pytest.raises(ValueError, match="no register tiles for 4-float vectors"):
        gemm_problem(128, 768, 768, lanes=4)


@pytest.mark.parametrize("cpu, lanes", [("x86-64-v4", 16), ("sapphirerapids", 16),
                                        ("znver4", 16), ("x86-64-v3", 8), ("znver3", 8),
                                        ("haswell", 8)])
def test_cpu_vector_lanes_of_named_cpus(cpu, lanes):
    from kiln.targets import CompileTarget, cpu_vector_lanes

    assert cpu_vector_lanes(cpu) == lanes
    assert CompileTarget(cpu=cpu).cpu_lanes == lanes


def test_render_writes_the_declared_vector_width():
    """A declaration for 8-float vectors (kiln.cpu_lanes = 8) gets a kernel of 8-float
    vectors, its panel width from the packed weight (24 columns: 4 × 3 tiles); without the
    attribute, 16-float vectors."""
    from kiln.cpu_kernels import GEMM_ATTR, LANES_ATTR

    text = ("module {{\n  func.func private @kiln_cpu_gemm_16x64x96(tensor<16x64xf32>, "
            "tensor<{packed}xf32>) -> tensor<16x96xf32> attributes {{{attr} = "
            "\"16x64x96\"{lanes}}}\n}}\n")
    rendered = render_cpu_gemm_calls(text.format(packed="4x64x24", attr=GEMM_ATTR,
                                                 lanes=f", {LANES_ATTR} = 8 : i64"))
    assert "memref<4x64x24xf32>" in rendered and "vector<8xf32>" in rendered
    assert "vector<16xf32>" not in rendered
    rendered = render_cpu_gemm_calls(text.format(packed="2x64x48", attr=GEMM_ATTR, lanes=""))
    assert "vector<16xf32>" in rendered and "vector<8xf32>" not in rendered


def test_selection_pass_refuses_a_width_without_tiles():
    from kiln.bindings import ir
    from kiln.dialects import make_context
    from kiln.passes import PassError, create_pass

    selection = create_pass("kiln-select-cpu-kernels", {"lanes": "12"})
    with make_context():
        module = ir.Module.parse("module {}")
        with pytest.raises(PassError, match="no register tiles for 12-float vectors"):
            selection.apply(module.operation)


def test_render_takes_the_panel_width_from_the_declaration():
    """The declaration's packed weight type says the panel width the kernel must read."""
    from kiln.cpu_kernels import GEMM_ATTR

    text = ("module {{\n  func.func private @kiln_cpu_gemm_16x64x96(tensor<16x64xf32>, "
            "tensor<{packed}xf32>) -> tensor<16x96xf32> attributes {{{attr} = "
            "\"16x64x96\"}}\n}}\n")
    for packed, width in (("3x64x32", 32), ("2x64x48", 48)):
        rendered = render_cpu_gemm_calls(text.format(packed=packed, attr=GEMM_ATTR))
        assert f"memref<{96 // width}x64x{width}xf32>" in rendered
    with pytest.raises(ValueError, match="no packed weight"):
        render_cpu_gemm_calls(text.format(packed="6144", attr=GEMM_ATTR))


@pytest.mark.parametrize("shape, reason", [
    ((1, 768, 50257), None),
    ((5, 768, 768), "5 rows are more than 4"),
    ((1, 100, 768), "reduction of 100 is not a multiple of 64"),
])
def test_gemv_problem(shape, reason):
    assert gemv_problem(*shape) == reason


def test_render_leaves_text_without_declarations_alone():
    text = "module {\n  func.func @f() {\n    return\n  }\n}\n"
    assert render_cpu_gemm_calls(text) == text


@pytest.mark.parametrize("mode, expected", [("on", True), ("off", False)])
def test_kernels_compile_without_multi_use_fusion_from_the_start(monkeypatch, mode, expected):
    """With Kiln's CPU kernels IREE gets the codegen fallback's flags up front (GPT-2 and BERT
    failed the first iree-compile every time on a fused LayerNorm: a compile lost)."""
    import kiln.compiler
    from kiln.targets import CPU_KERNEL_IREE_FLAGS

    seen = []
    real = kiln.compiler.run_iree_compile

    def spy(ir_text, flags, limits=None, weights=None):
        seen.append(list(flags))
        return real(ir_text, flags, limits, weights)

    monkeypatch.setattr(kiln.compiler, "run_iree_compile", spy)
    kiln.compile_model(GeluMLP().eval(), (torch.randn(2, 32, 256),), cpu_kernels=mode,
                       cache=False)
    assert len(seen) == 1
    assert (set(CPU_KERNEL_IREE_FLAGS) <= set(seen[0])) is expected
