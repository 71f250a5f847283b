"""Host-aware CPU presets (kiln.targets.HOST_CPU_PRESETS): the compiling machine's kind is read
from /proc/cpuinfo, its measured flags apply to `cpu="host"` only, and IREE accepts them."""

from __future__ import annotations

import pytest
import torch

import kiln
from kiln import targets
from kiln.targets import CompileTarget, host_cpu_kind, iree_flags, read_cpuinfo


def cpuinfo(vendor: str, flags: str) -> str:
    core = f"processor\t: {{n}}\nvendor_id\t: {vendor}\nmodel name\t: X\nflags\t\t: {flags}\n"
    return core.format(n=0) + "\n" + core.format(n=1)


@pytest.mark.parametrize("text, kind", [
    (cpuinfo("GenuineIntel", "fpu sse2 avx2 fma avx512f avx512bw amx_tile"), "intel-avx512"),
    (cpuinfo("AuthenticAMD", "fpu sse2 avx2 fma avx512f avx512_bf16"), "amd-avx512"),
    (cpuinfo("GenuineIntel", "fpu sse2 avx avx2 fma"), "intel-avx2"),
    (cpuinfo("AuthenticAMD", "fpu sse2"), "amd-sse"),
    ("processor\t: 0\nCPU implementer\t: 0x41\nFeatures\t: fp asimd\n", "unknown"),  # Arm
    ("", "unknown"),
])
def test_host_kind_from_cpuinfo(text, kind):
    assert host_cpu_kind(text) == kind


def test_read_cpuinfo_record():
    """The one /proc/cpuinfo reader: the first processor's fields and the processor count (the
    machine lines of the benchmarks and the compile key's host fingerprint read it)."""
    info = read_cpuinfo(cpuinfo("GenuineIntel", "fpu avx2 avx512f"))
    assert (info.vendor, info.model_name, info.count) == ("GenuineIntel", "X", 2)
    assert info.flags == {"fpu", "avx2", "avx512f"}
    assert info.lines[1] == "vendor_id\t: GenuineIntel"  # as written: hashed verbatim
    assert info.field("cpu family") == ""
    empty = read_cpuinfo("")
    assert (empty.vendor, empty.flags, empty.count) == ("", frozenset(), 0)


@pytest.mark.parametrize("kind, cpu, expected", [
    ("intel-avx512", "host", True),
    ("intel-avx512", "x86-64-v4", False),  # a named ISA: the artifact is for other machines
    ("amd-avx512", "host", False),  # the defaults were swept there
    ("unknown", "host", False),
])
def test_preset_applies_to_the_host_only(monkeypatch, kind, cpu, expected):
    monkeypatch.setattr(targets, "host_cpu_kind", lambda: kind)
    flags = iree_flags(CompileTarget(devices=("cpu",), cpu=cpu))
    preset = targets.HOST_CPU_PRESETS["intel-avx512"]
    assert all(flag in flags for flag in preset) == expected, flags
    assert not set(preset) & set(iree_flags(CompileTarget(devices=("cuda",), cpu=cpu)))


@pytest.mark.parametrize("kind, expected", [("amd-avx2", True), ("amd-avx512", False),
                                            ("intel-avx512", False)])
def test_avx2_amd_hosts_lower_convolutions_through_im2col(monkeypatch, kind, expected):
    monkeypatch.setattr(targets, "host_cpu_kind", lambda: kind)
    flags = iree_flags(CompileTarget(devices=("cpu",)))
    assert ("--iree-global-opt-use-im2col-for-convs" in flags) == expected, flags
    # a cpu,cuda artifact takes no host preset: im2col also rewrote its CUDA side, which IREE
    # then failed to bufferize (tests/test_conv.py on an AVX2 host, before the fix)
    both = iree_flags(CompileTarget(devices=("cpu", "cuda")))
    assert not set(targets.HOST_CPU_PRESETS.get(kind, ())) & set(both), both


def test_im2col_preset_compiles_a_convolution_and_matches_eager(monkeypatch):
    monkeypatch.setattr(targets, "host_cpu_kind", lambda: "amd-avx2")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Conv2d(16, 8, 3, stride=2)).eval()
    x = torch.randn(2, 8, 12, 12)
    vmfb = kiln.compile_to_vmfb(model, (x,), cache=False)
    got = kiln.load(vmfb)(x)
    torch.testing.assert_close(torch.as_tensor(got), model(x).detach(), rtol=1e-4, atol=1e-4)


def test_intel_preset_compiles_and_matches_eager(monkeypatch):
    monkeypatch.setattr(targets, "host_cpu_kind", lambda: "intel-avx512")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(96, 256), torch.nn.GELU(),
                                torch.nn.Linear(256, 96)).eval()
    x = torch.randn(1, 64, 96)
    vmfb = kiln.compile_to_vmfb(model, (x,), cache=False)
    got = kiln.load(vmfb)(x)
    torch.testing.assert_close(torch.as_tensor(got), model(x).detach(), rtol=1e-4, atol=1e-4)
