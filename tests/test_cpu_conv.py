"""Kiln's CPU convolution (kiln.cpu_conv: implicit GEMM over the padded NHWC input;
kiln-select-cpu-kernels option `convolutions`): the kernel computes torch's convolution for
strides, paddings, channel counts that need padding and pixel counts that do not fill the last
register tile; the models it goes into match eager; what it does not take stays with IREE."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import kiln
from bench.cpu_conv_kernel import kernel_operands
from cpu_dispatch import run_dispatch
from kiln import targets
from kiln.cpu_conv import (CPU_CONV_TAKEN, ConvSpec, executable_text, padded_channels,
                           render_cpu_conv_calls)


def _run_conv(spec: ConvSpec, padding: int, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The kernel alone (through iree-compile and the runtime) on torch's NCHW input and
    [F, C, KH, KW] weight, its result as torch's NCHW output."""
    n, f = x.shape[0], w.shape[0]
    flat, packed = kernel_operands(spec, padding, x, w)
    out = run_dispatch(executable_text(spec, name="exe"), spec.entry(), (flat, packed),
                       (spec.padded_pixels, spec.features))
    return out[:spec.pixels, :f].reshape(n, spec.out_h, spec.out_w, f).transpose(0, 3, 1, 2)


@pytest.mark.parametrize("batch, c, size, f, k, stride, padding, lanes, kh_outer", [
    (1, 3, 15, 20, 7, 2, 3, 8, False),  # a stem: 3 channels padded to 4, 20 features to 32
    (1, 3, 15, 20, 7, 2, 3, 8, True),  # the same, kernel rows outermost (C holds partials)
    (2, 16, 9, 16, 3, 1, 1, 8, False),  # batch 2: tiles cross images; 162 pixels, 6-pixel tiles
    (2, 16, 9, 16, 3, 1, 1, 8, True),
    (1, 8, 10, 24, 3, 2, 1, 8, False),  # stride 2, 25 pixels: the last tile repeats the last one
    (1, 8, 7, 16, 1, 2, 0, 8, False),  # a strided 1x1 (downsample)
    (1, 4, 9, 40, 3, 1, 0, 16, False),  # AVX-512's 8 x 2 tile (LLVM splits it on AVX2 hosts)
])
def test_kernel_text_computes_a_convolution(batch, c, size, f, k, stride, padding, lanes,
                                            kh_outer):
    spec = ConvSpec.of((batch, c, size, size), (f, c, k, k), (stride, stride),
                       (padding, padding), lanes, kh_outer=kh_outer)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, c, size, size)).astype(np.float32)
    w = rng.standard_normal((f, c, k, k)).astype(np.float32)
    want = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), stride=stride,
                                      padding=padding).numpy()
    np.testing.assert_allclose(_run_conv(spec, padding, x, w), want, rtol=1e-4, atol=1e-4)


def test_spec_key_round_trips_and_bad_specs_are_refused():
    spec = ConvSpec(1, 4, 11, 11, 3, 3, 2, 2, 5, 5, 32, lanes=8)
    # from torch's statement: 3 channels padded to 4, 9x9 by 1 to 11x11, 20 features to 32
    assert ConvSpec.of((1, 3, 9, 9), (20, 3, 3, 3), (2, 2), (1, 1), lanes=8) == spec
    assert (spec.rows, spec.vectors, spec.panel, spec.pixels, spec.padded_pixels) == \
        (6, 2, 16, 25, 30)
    assert spec.key() == "1x4x11x11_k3x3_s2x2_o5x5_f32_t6x2x4_l8"
    assert ConvSpec.parse(spec.key()) == spec
    with pytest.raises(ValueError, match="not a convolution key"):
        ConvSpec.parse("1x4x11")
    with pytest.raises(ValueError, match="does not follow from the padded input"):
        ConvSpec(1, 4, 11, 11, 3, 3, 2, 2, 6, 6, 32, lanes=8)
    with pytest.raises(ValueError, match="not whole panels of 16"):
        ConvSpec(1, 4, 11, 11, 3, 3, 2, 2, 5, 5, 20, lanes=8)
    with pytest.raises(ValueError, match="no register tile for 4-float"):
        ConvSpec(1, 4, 11, 11, 3, 3, 2, 2, 5, 5, 32, lanes=4)
    outer = ConvSpec(1, 4, 11, 11, 3, 3, 2, 2, 5, 5, 32, lanes=8, kh_outer=True)
    assert outer.key() == "1x4x11x11_k3x3_s2x2_o5x5_f32_t6x2x4h_l8"
    assert ConvSpec.parse(outer.key()) == outer
    # Kiln's choice: kernel rows outermost for panels over KH_OUTER_PANEL_BYTES (ResNet's
    # 512-channel 3x3: 4608 x 16 floats, 288 KiB), not for smaller ones
    assert ConvSpec(1, 512, 9, 9, 3, 3, 1, 1, 7, 7, 512, lanes=8).kh_outer
    assert not ConvSpec(1, 256, 16, 16, 3, 3, 1, 1, 14, 14, 256, lanes=8).kh_outer
    assert padded_channels(3, 7, 4) == 4 and padded_channels(64, 3, 4) == 64
    assert padded_channels(3, 3, 4) == 4 and padded_channels(5, 2, 4) == 6


def test_render_leaves_text_without_declarations_alone():
    text = "module {\n  func.func @f() {\n    return\n  }\n}\n"
    assert render_cpu_conv_calls(text) == text


class ConvBlock(torch.nn.Module):
    """A ResNet basic block with a strided downsample, BatchNorm in eval mode, a bias here and
    there, and 3 input channels (padded for the kernel); the 1x1 downsample is below MIN_MACS
    and the grouped convolution is not the kernel's: both stay with IREE."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 32, 5, stride=2, padding=2)
        self.conv1 = torch.nn.Conv2d(32, 64, 3, stride=2, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(64)
        self.conv2 = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(64)
        self.down = torch.nn.Conv2d(32, 64, 1, stride=2, bias=False)
        self.grouped = torch.nn.Conv2d(64, 64, 3, padding=1, groups=4)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.grouped(torch.relu(y + self.down(x)))


def test_convolutions_match_eager_through_the_kernel():
    torch.manual_seed(0)
    model = ConvBlock().eval()
    for bn in (model.bn1, model.bn2):  # non-trivial statistics
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 3, 96, 96)
    compiled = kiln.compile_model(model, (x,), cpu_kernels="on", cache=False)
    details = [r.detail for r in compiled.report.rewrites
               if r.pass_name == "kiln-select-cpu-kernels" and r.kind == "torch.aten.convolution"]
    assert details.count(CPU_CONV_TAKEN) == 3, details
    assert sum("multiply-adds are below" in d for d in details) == 1, details
    assert sum("IREE codegen: transposed, grouped" in d for d in details) == 1, details
    got = kiln.load(compiled.vmfb)(x)
    with torch.no_grad():
        want = model(x)
    torch.testing.assert_close(torch.as_tensor(got), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind, cpu, mode, expected", [
    ("amd-avx2", "host", "auto", True),  # measured faster there
    ("intel-avx512", "host", "auto", True),  # measured faster there too
    ("amd-avx512", "host", "auto", False),  # not measured there: IREE's convolution
    ("amd-avx2", "x86-64-v3", "auto", False),  # an artifact for other machines
    ("intel-avx512", "host", "on", True),
    ("amd-avx2", "host", "off", False),
])
def test_convolution_kernel_follows_the_host_kind(monkeypatch, kind, cpu, mode, expected):
    monkeypatch.setattr(targets, "host_cpu_kind", lambda: kind)
    compiled = kiln.compile_model(torch.nn.Conv2d(16, 32, 3, padding=1).eval(),
                                  (torch.randn(1, 16, 32, 32),), cpu=cpu, cpu_kernels=mode,
                                  compile_to="iree-input", cache=False)
    assert ("kiln_cpu_conv" in compiled.ir_text) == expected
    cuda = kiln.compile_model(torch.nn.Conv2d(16, 32, 3, padding=1).eval(),
                              (torch.randn(1, 16, 32, 32),), target="cuda", cpu_kernels=mode,
                              cuda_kernels="off", compile_to="iree-input", cache=False)
    assert "kiln_cpu_conv" not in cuda.ir_text  # llvm-cpu code
