"""Kernel selection for target cuda, end to end without a GPU: which ops get library kernels,
that the artifact carries their PTX, that the fallback path compiles, and the option's errors.

Numerics on the GPU: bench/gpu/kernel_artifacts.py (docs/kernels.md)."""

from __future__ import annotations

import pytest
import torch

import kiln
from kiln.examples.tiny_gpt import build_tiny_gpt

pytest.importorskip("triton", reason="kernels need triton (pip install kiln[cuda])")


def _kernel_rewrites(report):
    return [r for r in report.rewrites if r.pass_name == "kiln-select-cuda-kernels"]


@pytest.fixture(scope="module")
def tiny_gpt_f16():
    model, args = build_tiny_gpt()
    return model.half(), args


def test_f16_model_gets_kernels_and_the_artifact_carries_them(tiny_gpt_f16):
    model, args = tiny_gpt_f16
    ir = kiln.compile_model(model, args, target="cuda", compile_to="iree-input", cache=False)
    chosen = [r for r in _kernel_rewrites(ir.report) if r.detail.startswith("kernel ")]
    # TinyGPT: 2 layers × (qkv, out, fc, proj linears + attention) + the LM head.
    assert sum("kiln.attention" == r.kind for r in chosen) == 2
    assert sum("kiln.linear" == r.kind for r in chosen) == 9
    text = ir.ir_text
    assert "kiln.kernel" not in text, "every declaration was rendered"
    assert text.count("hal.executable.source private @kiln_exe_") == \
        len({line.split("@kiln_exe_")[1].split()[0] for line in text.splitlines()
             if "hal.executable.source private @kiln_exe_" in line})
    sm90a = ".target sm_90a".encode().hex()
    assert sm90a in text, "the embedded PTX targets Hopper"
    assert "flow.dispatch @kiln_exe_" in text

    vmfb = kiln.compile_to_vmfb(model, args, target="cuda", cache=False)
    assert b".target sm_90a" in vmfb


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
    assert declined and all("IREE codegen: dtype f32" in r.detail for r in declined)


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
            self.linear = torch.nn.Linear(32, 48)

        def forward(self, x):
            return self.linear(x)

    batch = torch.export.Dim("batch", min=2, max=8)
    compiled = kiln.compile_model(Proj().half(), (torch.randn(4, 32).half(),), target="cuda",
                                  compile_to="iree-input", dynamic_shapes=({0: batch},),
                                  cache=False)
    [rewrite] = _kernel_rewrites(compiled.report)
    assert "IREE codegen: input has a dynamic shape" in rewrite.detail


def test_kernels_with_external_weights(tiny_gpt_f16, tmp_path):
    """External weights mark the public functions' reflection; the kernel declarations must
    still be rendered (they were left as imports: "vm.import op must reference a function")."""
    model, args = tiny_gpt_f16
    compiled = kiln.compile_model(model, args, target="cuda", weights="external", cache=False)
    path = compiled.save(tmp_path / "tiny.vmfb")
    assert b".target sm_90a" in path.read_bytes()
    assert path.with_suffix(".irpa").exists()
