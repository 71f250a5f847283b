"""The model's own outputs through the artifact: its output structure (tuple, list, dict,
named tuple), Python numbers and None, and inputs it updates in place (kiln.outputs)."""

from __future__ import annotations

import numpy as np
import torch

import kiln


def _compile(model, args):
    return kiln.load(kiln.compile_to_vmfb(model, args, cache=False))


class _Structured(torch.nn.Module):
    def forward(self, x):
        return {"double": x * 2, "rest": [None, x.shape[0], 2.5, (x * 2).sum().item(),
                                          (x - 1, x.amax())]}


def test_output_structure_numbers_and_none_come_back():
    x = torch.randn(3, 4)
    got, want = _compile(_Structured(), (x,))(x), _Structured()(x)
    assert isinstance(got, dict) and list(got) == ["double", "rest"]
    assert isinstance(got["rest"], list) and isinstance(got["rest"][4], tuple)
    assert got["rest"][:3] == [None, 3, 2.5]
    assert isinstance(got["rest"][3], float)
    assert abs(got["rest"][3] - want["rest"][3]) < 1e-4
    torch.testing.assert_close(got["double"], want["double"])
    torch.testing.assert_close(got["rest"][4][1], want["rest"][4][1])


def test_named_tuple_result_keeps_its_type():
    class Max(torch.nn.Module):
        def forward(self, x):
            return torch.max(x, 1, keepdim=True)

    x = torch.randn(3, 4)
    got = _compile(Max(), (x,))(x)
    assert type(got) is torch.return_types.max
    torch.testing.assert_close(got.values, x.max(1, keepdim=True).values)
    assert torch.equal(got.indices, x.max(1, keepdim=True).indices)


def test_python_int_output_only():
    class Count(torch.nn.Module):
        def forward(self, x):
            return x.shape[1], x.sum() > 0

    x = torch.randn(2, 5)
    got = _compile(Count(), (x,))(x)
    assert got[0] == 5 and type(got[0]) is int
    assert bool(got[1]) == bool(x.sum() > 0)


class _UpdatesInPlace(torch.nn.Module):
    def forward(self, cache, x):
        cache[:, :2].copy_(x)
        x.mul_(3)
        return cache.sum(1)


def test_inputs_updated_in_place_reach_the_caller():
    cache, x = torch.zeros(2, 4), torch.randn(2, 2)
    run = _compile(_UpdatesInPlace(), (cache.clone(), x.clone()))
    assert [m["input"] for m in run.signature["mutated_inputs"]] == [0, 1]
    want_cache, want_x = cache.clone(), x.clone()
    want = _UpdatesInPlace()(want_cache, want_x)
    got = run(cache, x)  # the model's single output, not a tuple with the updates
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(cache, want_cache)
    torch.testing.assert_close(x, want_x)
    cache_np, x_np = np.zeros((2, 4), np.float32), x.numpy().copy()
    run(cache_np, x_np)
    np.testing.assert_allclose(cache_np[:, :2], x.numpy() * 1)
    np.testing.assert_allclose(x_np, x.numpy() * 3, rtol=1e-6)


class _SortsAndScatters(torch.nn.Module):
    def forward(self, x, index, source):
        return torch.sort(x, 1).values, x.scatter(1, index, source), x.topk(2).values


def test_inputs_the_artifact_computes_in_place_are_left_alone():
    """IREE sorted/scattered into the buffer of an input imported without a copy: the
    caller's tensor changed, which eager never does for these functional ops."""
    x, index, source = torch.randn(3, 5), torch.tensor([[0, 1], [2, 3], [4, 0]]), \
        torch.randn(3, 2)
    before = x.clone()
    run = _compile(_SortsAndScatters(), (x, index, source))
    assert run.signature["written_inputs"] == [0]
    got = run(x, index, source)
    assert torch.equal(x, before)
    for g, w in zip(got, _SortsAndScatters()(x, index, source)):
        torch.testing.assert_close(g, w)


def test_check_and_cli_read_structured_outputs(tmp_path, capsys):
    """kiln.check and `kiln run` flatten the model's own output structure."""
    from kiln.cli import main

    x = torch.randn(3, 4)
    result = kiln.check(_Structured(), (x,), samples=1)
    assert len(result.outputs) == 3  # the tensors of {"double": t, "rest": [..., (t, t)]}
    path = kiln.compile_to_vmfb(_Structured(), (x,), cache=False, output=tmp_path / "m.vmfb")
    assert main(["run", str(path)]) in (0, None)
    printed = capsys.readouterr().out
    assert "output 1: None" in printed and "output 0: shape (3, 4)" in printed
