"""Dtypes IREE handles differently from PyTorch unless told: float64 runs as float64 (IREE's
torch input pipeline demotes it to float32 by default but keeps float64 at the boundary:
"buffer view byte length 96 exceeds backing buffer byte length 48", or wrong values)."""

from __future__ import annotations

import pytest
import torch

import kiln


class _Float64Math(torch.nn.Module):
    def forward(self, x, y):
        return (x * 2).to(torch.float32), (x + y).sum(dtype=torch.float64), x.mean(1)


def _float64_inputs():
    # values float32 cannot hold: 1e10 + 1e-3 keeps its fraction only in float64
    x = torch.randn(3, 4, dtype=torch.float64) * 1e10 + 1e-3
    return x, torch.randn(3, 4, dtype=torch.float64)


def test_float64_inputs_and_outputs_run_as_float64():
    model, args = _Float64Math(), _float64_inputs()
    run = kiln.load(kiln.compile_to_vmfb(model, args, cache=False))
    got, want = run(*args), model(*args)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-9)
    assert run.signature["inputs"][0]["dtype"] == "float64"


def test_sum_in_float64_of_float32_input():
    class SumF64(torch.nn.Module):
        def forward(self, x):
            return x.sum(dtype=torch.float64), torch.mean(x, dtype=torch.float64)

    x = torch.randn(5, 7)
    got = kiln.load(kiln.compile_to_vmfb(SumF64(), (x,), cache=False))(x)
    for g, w in zip(got, SumF64()(x)):
        assert g.dtype == torch.float64
        torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-6)


def test_complex_inputs_and_outputs():
    class ComplexMath(torch.nn.Module):
        def forward(self, a, b):
            return torch.bmm(a, b), a * a

    a, b = torch.randn(2, 3, 4, dtype=torch.complex64), torch.randn(2, 4, 5,
                                                                     dtype=torch.complex64)
    run = kiln.load(kiln.compile_to_vmfb(ComplexMath(), (a, b), cache=False))
    assert run.signature["inputs"][0]["dtype"] == "complex64"
    for g, w in zip(run(a, b), ComplexMath()(a, b)):
        assert g.dtype == torch.complex64
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


def test_sort_of_booleans():
    """IREE 3.13 put a few i1 values out of place (8000 elements); Kiln sorts int64 keys."""
    class SortBool(torch.nn.Module):
        def forward(self, x):
            return torch.sort(x, stable=True), torch.sort(x, dim=0, descending=True, stable=True)

    x = torch.rand(8000) > 0.5
    got, want = kiln.load(kiln.compile_to_vmfb(SortBool(), (x,), cache=False))(x), SortBool()(x)
    for g, w in zip(got, want):
        assert torch.equal(g.values, w.values) and torch.equal(g.indices, w.indices)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_logcumsumexp_of_large_values(dtype):
    """log(cumsum(exp(x))) gave inf from 10000 on (Kiln and the plain path alike)."""
    class LogCumSumExp(torch.nn.Module):
        def forward(self, x):
            return torch.logcumsumexp(x, 1), torch.logcumsumexp(x, 0)

    x = torch.randn(4, 6, dtype=dtype) * 3
    x[1, 2], x[1, 4], x[2, 0], x[3] = 10000.0, 500.0, -float("inf"), -float("inf")
    got = kiln.load(kiln.compile_to_vmfb(LogCumSumExp(), (x,), cache=False))(x)
    for g, w in zip(got, LogCumSumExp()(x)):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize("include_last_offset, padding_idx", [(False, None), (True, 4)])
def test_embedding_bag_with_per_sample_weights(include_last_offset, padding_idx):
    """torch-mlir's lowering dropped per_sample_weights: every value was wrong."""
    class Bags(torch.nn.Module):
        def forward(self, weight, indices, offsets, scale):
            return torch.nn.functional.embedding_bag(
                indices, weight, offsets, mode="sum", per_sample_weights=scale,
                include_last_offset=include_last_offset, padding_idx=padding_idx)

    offsets = torch.tensor([0, 3, 3, 5] if include_last_offset else [0, 3, 3])  # an empty bag
    args = (torch.randn(10, 5), torch.tensor([1, 2, 4, 5, 4, 9, 0]), offsets, torch.randn(7))
    got = kiln.load(kiln.compile_to_vmfb(Bags(), args, cache=False))(*args)
    torch.testing.assert_close(got, Bags()(*args))


def test_scatter_add_of_booleans_is_a_logical_or():
    class ScatterAddBool(torch.nn.Module):
        def forward(self, x, index, src):
            return x.scatter_add(1, index, src)

    args = (torch.rand(5, 10) > 0.5, torch.randint(0, 10, (5, 10)), torch.rand(5, 10) > 0.5)
    got = kiln.load(kiln.compile_to_vmfb(ScatterAddBool(), args, cache=False))(*args)
    assert torch.equal(got, ScatterAddBool()(*args))


def test_float64_attention_and_norms_keep_float64_statistics():
    """Kiln's attention and norm lowerings computed softmax / mean statistics in float32 for
    float64 inputs (errors of 1e-6 in an f64 model)."""
    class AttentionNorm(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = torch.nn.LayerNorm(16, dtype=torch.float64)

        def forward(self, q, k, v):
            attended = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.norm(attended * 1e3 + 1e6)

    args = tuple(torch.randn(2, 4, 8, 16, dtype=torch.float64) for _ in range(3))
    model = AttentionNorm()
    got = kiln.load(kiln.compile_to_vmfb(model, args, cache=False))(*args)
    torch.testing.assert_close(got, model(*args), rtol=1e-10, atol=1e-10)


def test_a_dtype_no_artifact_carries_is_refused_by_name():
    class Halves(torch.nn.Module):
        def forward(self, x):
            return x * 2

    x = torch.randn(3, dtype=torch.complex32)
    with pytest.raises(kiln.KilnUnsupportedError, match=r"input 'x' has dtype complex<f16>"):
        kiln.compile_to_vmfb(Halves(), (x,), cache=False)
