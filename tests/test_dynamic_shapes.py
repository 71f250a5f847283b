"""One artifact for every batch / sequence length within torch.export Dim bounds."""

import pytest
import torch
from torch.export import Dim

import kiln
from kiln.examples.tiny_gpt import TinyGPTConfig, build_tiny_gpt

from compare import assert_close


CONFIG = dict(n_layers=1, d_model=64, n_heads=4, max_seq_len=64, vocab_size=128)


@pytest.fixture(scope="module", params=["eager", "sdpa"])
def dynamic_gpt(request):
    model, (tokens,) = build_tiny_gpt(TinyGPTConfig(attention=request.param, **CONFIG),
                                      batch=2, seq_len=8)
    dims = {"tokens": {0: Dim("batch", min=1, max=4), 1: Dim("seq", min=2, max=48)}}
    compiled = kiln.compile_model(model, (tokens,), dynamic_shapes=dims)
    return model, compiled


def test_causal_attention_stays_specialized_with_dynamic_lengths(dynamic_gpt):
    _, compiled = dynamic_gpt
    details = [r.detail for r in compiled.report.rewrites if r.kind.startswith("attention/")]
    assert len(details) == 1 and "causal" in details[0] and "mask" not in details[0]


@pytest.mark.parametrize("batch,seq", [(1, 2), (2, 8), (3, 17), (4, 48)])
def test_runs_at_every_size_within_bounds(dynamic_gpt, batch, seq):
    model, compiled = dynamic_gpt
    run = kiln.load(compiled.vmfb)
    tokens = torch.randint(0, CONFIG["vocab_size"], (batch, seq),
                           generator=torch.Generator().manual_seed(batch * 100 + seq))
    with torch.no_grad():
        expected = model(tokens)
    assert_close(run(tokens), expected, what=f"batch {batch} seq {seq}")


def test_signature_records_bounds_and_rejects_sizes_outside(dynamic_gpt):
    _, compiled = dynamic_gpt
    run = kiln.load(compiled.vmfb)
    spec = run.signature["inputs"][0]
    assert spec["shape"] == [None, None] and spec["bounds"] == [[1, 4], [2, 48]]
    with pytest.raises(ValueError, match=r"dim 1 is 49, outside the compiled range \[2, 48\]"):
        run(torch.zeros(1, 49, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"dim 0 is 5"):
        run(torch.zeros(5, 8, dtype=torch.int64))


def test_dynamic_batch_mlp():
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(),
                                torch.nn.Linear(32, 8)).eval()
    x = torch.randn(3, 16)
    vmfb = kiln.compile_to_vmfb(model, (x,), dynamic_shapes=({0: Dim("batch", max=64)},))
    run = kiln.load(vmfb)
    for batch in (1, 5, 64):
        x = torch.randn(batch, 16)
        assert_close(run(x), model(x).detach(), what=f"batch {batch}")


def test_dynamic_dim_without_upper_bound():
    """A Dim with no max (torch.export's int_oo, which claims is_finite) has no upper bound in
    the signature instead of failing the compile (found by the torch.compile backend, whose
    Dynamo dims are unbounded)."""
    model = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU()).eval()
    vmfb = kiln.compile_to_vmfb(model, (torch.randn(3, 16),),
                                dynamic_shapes=({0: Dim("batch")},))
    run = kiln.load(vmfb)
    assert run.signature["inputs"][0]["bounds"] == [[0, None], None]
    for batch in (1, 7, 300):
        x = torch.randn(batch, 16)
        assert_close(run(x), model(x).detach(), what=f"batch {batch}")
