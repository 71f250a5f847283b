"""CUDA: compile-only checks that need no GPU, and a run that needs one (skipped without)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

import kiln
from kiln.examples import tiny

from compare import assert_close, eager


@functools.lru_cache(maxsize=None)
def vmfb_for(target, cuda_arch: str = "sm_80") -> bytes:
    model, args = tiny.tiny_gpt("eager")
    return kiln.compile_to_vmfb(model, args, target=target, cuda_arch=cuda_arch)


def cuda_runtime_available() -> bool:
    """A GPU torch can see and IREE's runtime built with its CUDA driver."""
    if not torch.cuda.is_available():
        return False
    try:
        import iree.runtime as rt

        return "cuda" in rt.query_available_drivers()
    except Exception:
        return False


needs_gpu = pytest.mark.skipif(not cuda_runtime_available(),
                               reason="no CUDA GPU (torch.cuda) or no IREE CUDA driver")


@pytest.mark.parametrize("target", ["cuda", ("cpu", "cuda")], ids=["cuda", "cpu+cuda"])
def test_cuda_vmfb_is_produced(target):
    vmfb = vmfb_for(target)
    assert isinstance(vmfb, bytes) and len(vmfb) > 1000
    assert b"cuda-nvptx-fb" in vmfb, "no CUDA executable format in the artifact"


def test_cpu_only_vmfb_has_no_cuda_code(tiny_gpt_vmfb):
    assert b"cuda-nvptx-fb" not in tiny_gpt_vmfb


def test_cuda_arch_option_reaches_the_artifact():
    default = vmfb_for("cuda")
    sm86 = vmfb_for("cuda", cuda_arch="sm_86")
    assert b"sm_80" in default and b"sm_86" not in default
    assert b"sm_86" in sm86 and b"sm_80" not in sm86


def test_unknown_cuda_arch_fails_clearly(tiny_gpt_eager):
    model, args = tiny_gpt_eager
    with pytest.raises((kiln.KilnCompileError, ValueError)) as info:
        kiln.compile_to_vmfb(model, args, target="cuda", cuda_arch="bogus")
    assert "bogus" in str(info.value)


@pytest.mark.parametrize("target", ["cuda", ("cpu", "cuda"), "cpu,cuda"])
def test_cuda_iree_input_has_no_kiln_ops(tiny_gpt_eager, target):
    model, args = tiny_gpt_eager
    compiled = kiln.compile_model(model, args, target=target, compile_to="iree-input")
    text = compiled.ir_text
    assert "torch.aten" in text
    assert "kiln." not in text.replace("kiln.signature", "")
    assert compiled.report.count("attention/") == tiny.LAYERS
    expected = ("cuda",) if target == "cuda" else ("cpu", "cuda")
    assert compiled.report.target == expected


def test_cuda_only_artifact_refuses_cpu_device():
    with pytest.raises(kiln.KilnLoadError) as info:
        kiln.load(vmfb_for("cuda"), device="cpu")
    message = str(info.value)
    assert "device 'cpu'" in message and "compiled for this target" in message


def test_cpu_cuda_artifact_runs_on_cpu():
    model, (tokens,) = tiny.tiny_gpt("eager")
    out = kiln.load(vmfb_for(("cpu", "cuda")), device="cpu")(tokens)
    assert_close(out, eager(model, tokens))


@needs_gpu
@pytest.mark.parametrize("target", ["cuda", ("cpu", "cuda")], ids=["cuda", "cpu+cuda"])
def test_runs_on_gpu(target):
    model, (tokens,) = tiny.tiny_gpt("eager")
    module = kiln.load(vmfb_for(target), device="cuda")
    out = module(tokens)
    assert isinstance(out, torch.Tensor)
    assert_close(out, eager(model, tokens), what=f"tiny_gpt on cuda ({target})")
    out_np = module(tokens.numpy())
    assert type(out_np) is np.ndarray
    assert_close(out_np, out)


@needs_gpu
def test_gpu_f16():
    model, (tokens,) = tiny.tiny_gpt("sdpa")
    model = model.half()
    vmfb = kiln.compile_to_vmfb(model, (tokens,), target="cuda")
    out = kiln.load(vmfb, device="cuda")(tokens)
    assert out.dtype == torch.float16
    assert_close(out, eager(model, tokens), dtype=torch.float16)
