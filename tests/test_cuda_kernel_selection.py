"""Kernel selection for target cuda, end to end without a GPU: which ops get library kernels,
that the artifact carries their PTX, that the fallback path compiles, and the option's errors.

Numerics on the GPU: bench/gpu/kernel_artifacts.py (docs/kernels.md)."""

from __future__ import annotations

import pytest
import torch

import kiln
from kiln import kernels
from kiln.examples.tiny_gpt import build_tiny_gpt

pytest.importorskip("triton", reason="kernels need triton (pip install kiln[cuda])")


def _kernel_rewrites(report):
    return [r for r in report.rewrites if r.pass_name == "kiln-select-cuda-kernels"]


@pytest.fixture(scope="module")
def tiny_gpt_f16():
    model, args = build_tiny_gpt()
    return model.half(), args


class Block(torch.nn.Module):
    """A linear big enough for the measured kernel threshold, then attention."""

    def __init__(self, hidden=768, heads=12):
        super().__init__()
        self.qkv = torch.nn.Linear(hidden, 3 * hidden)
        self.heads = heads

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = (part.view(b, t, self.heads, d // self.heads).transpose(1, 2)
                   for part in self.qkv(x).split(d, dim=-1))
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return y.transpose(1, 2).reshape(b, t, d)


def test_f16_model_gets_kernels_and_the_artifact_carries_them():
    model, x = Block().half().eval(), torch.randn(2, 16, 768).half()
    ir = kiln.compile_model(model, (x,), target="cuda", compile_to="iree-input", cache=False)
    chosen = [r for r in _kernel_rewrites(ir.report) if r.detail.startswith("kernel ")]
    assert sorted(r.kind for r in chosen) == ["kiln.attention", "kiln.linear"]
    assert "linear(m=32, n=2304, k=768" in chosen[0].detail + chosen[1].detail
    text = ir.ir_text
    assert "kiln.kernel" not in text, "every declaration was rendered"
    assert ".target sm_90a".encode().hex() in text, "the embedded PTX targets Hopper"
    assert "flow.dispatch @kiln_exe_" in text and "tensor.empty" not in text

    vmfb = kiln.compile_to_vmfb(model, (x,), target="cuda", cache=False)
    assert b".target sm_90a" in vmfb


def test_small_linears_stay_with_iree(tiny_gpt_f16):
    """TinyGPT's linears (hidden 128) are below the measured threshold; attentions get kernels."""
    model, args = tiny_gpt_f16
    report = kiln.compile_model(model, args, target="cuda", compile_to="iree-input",
                                cache=False).report
    rewrites = _kernel_rewrites(report)
    chosen = [r for r in rewrites if r.detail.startswith("kernel ")]
    assert [r.kind for r in chosen] == ["kiln.attention"] * 2
    declined = [r for r in rewrites if r.kind == "kiln.linear"]
    assert len(declined) == 9 and all("below the measured kernel threshold" in r.detail
                                      for r in declined)


def test_off_and_f32_keep_iree_codegen(tiny_gpt_f16):
    model, args = tiny_gpt_f16
    off = kiln.compile_model(model, args, target="cuda", compile_to="iree-input",
                             cuda_kernels="off", cache=False)
    assert not _kernel_rewrites(off.report) and "hal.executable.source" not in off.ir_text
    assert kiln.compile_to_vmfb(model, args, target="cuda", cuda_kernels="off", cache=False)

    f32_model, _ = build_tiny_gpt()
    f32 = kiln.compile_model(f32_model, args, target="cuda", compile_to="iree-input",
                             cache=False)
    declined = _kernel_rewrites(f32.report)
    assert declined and all("IREE codegen: dtype f32" in r.detail or "threshold" in r.detail
                            for r in declined)
    assert any("dtype f32" in r.detail for r in declined)


def test_cpu_targets_never_get_kernels(tiny_gpt_f16):
    model, args = tiny_gpt_f16
    both = kiln.compile_model(model, args, target=("cpu", "cuda"), compile_to="iree-input",
                              cache=False)
    assert not _kernel_rewrites(both.report)
    with pytest.raises(ValueError, match="needs target 'cuda' alone"):
        kiln.compile_model(model, args, target=("cpu", "cuda"), cuda_kernels="on", cache=False)
    with pytest.raises(ValueError, match="needs target 'cuda'"):
        kiln.compile_model(model, args, target="cpu", cuda_kernels="on", cache=False)
    with pytest.raises(ValueError, match="cuda_kernels='sometimes'"):
        kiln.compile_model(model, args, target="cuda", cuda_kernels="sometimes", cache=False)


def test_dynamic_shapes_fall_back_with_a_reason():
    class Proj(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(512, 512)

        def forward(self, x):
            return self.linear(x)

    batch = torch.export.Dim("batch", min=2, max=8)
    compiled = kiln.compile_model(Proj().half(), (torch.randn(4, 512).half(),), target="cuda",
                                  compile_to="iree-input", dynamic_shapes=({0: batch},),
                                  cache=False)
    [rewrite] = _kernel_rewrites(compiled.report)
    assert "IREE codegen: input has a dynamic shape" in rewrite.detail


def test_kernels_with_external_weights(tiny_gpt_f16, tmp_path):
    """External weights mark the public functions' reflection; the kernel declarations must
    still be rendered (they were left as imports: "vm.import op must reference a function")."""
    model, x = Block().half().eval(), torch.randn(1, 8, 768).half()
    compiled = kiln.compile_model(model, (x,), target="cuda", weights="external", cache=False)
    path = compiled.save(tmp_path / "block.vmfb")
    assert b".target sm_90a" in path.read_bytes()
    assert path.with_suffix(".irpa").exists()


def test_residual_add_rides_in_the_linear_kernel():
    class Residual(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(768, 768)

        def forward(self, x):
            return x + self.proj(x)

    model, x = Residual().half().eval(), torch.randn(1, 8, 768).half()
    compiled = kiln.compile_model(model, (x,), target="cuda", cache=False)
    [chosen] = [r for r in _kernel_rewrites(compiled.report) if r.detail.startswith("kernel ")]
    assert "has_residual=True" in chosen.detail
    assert b".target sm_90a" in compiled.vmfb


def test_kernels_follow_cuda_arch():
    """cuda_arch="sm_80" (A100) gets sm_80 PTX, never sm_90a-only kernels; the default
    (sm_90a) keeps Hopper's; IREE's own code is sm_80 in both (IREE 3.13 has no sm_90)."""
    model, x = Block().half().eval(), torch.randn(1, 16, 768).half()
    ampere = kiln.compile_model(model, (x,), target="cuda", cuda_arch="sm_80", cache=False)
    assert b".target sm_80" in ampere.vmfb and b"sm_90a" not in ampere.vmfb
    assert sum(r.detail.startswith("kernel ") for r in _kernel_rewrites(ampere.report)) == 2
    text = kiln.compile_to_vmfb(model, (x,), target="cuda", cuda_arch="sm_89",
                                compile_to="iree-input", cache=False)
    assert ".target sm_89".encode().hex() in text and "sm_90a".encode().hex() not in text
    hopper = kiln.compile_model(model, (x,), target="cuda", cache=False)
    assert b".target sm_90a" in hopper.vmfb


def test_auto_says_why_kernels_are_left_out(monkeypatch):
    """cuda_kernels="auto" that cannot use the kernels says so in the log and the report
    (it used to produce a 4-16x slower artifact silently)."""
    model, x = Block().half().eval(), torch.randn(1, 8, 768).half()
    lines = []
    old = kiln.compile_model(model, (x,), target="cuda", cuda_arch="sm_75",
                             compile_to="iree-input", cache=False, log=lines.append)
    assert any("left Kiln's CUDA kernels out" in line and "sm_75" in line for line in lines)
    [off] = _kernel_rewrites(old.report)
    assert off.kind == "off" and "sm_75" in off.detail
    assert "hal.executable.source" not in old.ir_text
    with pytest.raises(ValueError, match="sm_75"):
        kiln.compile_model(model, (x,), target="cuda", cuda_arch="sm_75", cuda_kernels="on",
                           compile_to="iree-input", cache=False)

    monkeypatch.setattr(kernels, "triton_available",
                        lambda: "triton is not importable (test); install kiln[cuda]")
    lines.clear()
    report = kiln.compile_model(model, (x,), target="cuda", compile_to="iree-input",
                                cache=False, log=lines.append).report
    assert any("triton is not importable" in line for line in lines), lines
    assert "triton is not importable" in str(report)
    assert kiln.compile_model(model, (x,), target="cuda", cuda_kernels="off",
                              compile_to="iree-input", cache=False, log=lines.append)
    assert sum("left Kiln's CUDA kernels out" in line for line in lines) == 1
