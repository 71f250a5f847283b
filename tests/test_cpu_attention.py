"""Kiln's own f32 attention on the CPU (kiln.cpu_attention, kiln-select-cpu-kernels; compile
options cpu_kernels="on", attention="cpu_kernel"): the attentions it takes compute what eager
computes — causal, BERT-style padding mask, grouped kv heads, plain multi-head, and small GPT-2 /
Llama / BERT — and what it does not take is decomposed with the reason recorded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

import kiln
from kiln.cpu_attention import (CPU_ATTENTION_TAKEN, AttentionSpec, attention_problem,
                                render_cpu_attention_calls)

KERNEL = dict(cpu_kernels="on", attention="cpu_kernel", cache=False)


class Attention(torch.nn.Module):
    """SDPA on q [B, Hq, S, D], k/v [B, Hkv, S, D] (GQA when Hkv < Hq), optional mask."""

    def __init__(self, causal: bool, scale=None):
        super().__init__()
        self.causal, self.scale = causal, scale

    def forward(self, q, k, v, mask=None):
        return torch.nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=self.causal, scale=self.scale,
            enable_gqa=q.shape[1] != k.shape[1])


def _kernel_takes(compiled) -> int:
    return sum(1 for r in compiled.report.rewrites
               if r.pass_name == "kiln-select-cpu-kernels" and r.detail == CPU_ATTENTION_TAKEN)


def _padding_mask(batch: int, length: int, kept: list[int]) -> torch.Tensor:
    """Additive [B, 1, 1, S] mask: 0 for the first kept[b] keys, finfo.min after (HF's form)."""
    mask = torch.zeros(batch, 1, 1, length)
    for row, keep in enumerate(kept):
        mask[row, ..., keep:] = torch.finfo(torch.float32).min
    return mask


@pytest.mark.parametrize("name, heads, kv_heads, causal, masked, scale", [
    ("causal GQA", 4, 2, True, False, None),
    ("causal MHA", 2, 2, True, False, None),
    ("padding mask MHA", 2, 2, False, True, None),
    ("plain GQA, own scale", 4, 1, False, False, 0.3),
])
def test_kernel_attention_matches_eager(name, heads, kv_heads, causal, masked, scale):
    torch.manual_seed(0)
    batch, length = 2, 64
    q = torch.randn(batch, heads, length, 64)
    k, v = torch.randn(batch, kv_heads, length, 64), torch.randn(batch, kv_heads, length, 64)
    inputs = (q, k, v) + ((_padding_mask(batch, length, [40, 64]),) if masked else ())
    model = Attention(causal, scale)
    compiled = kiln.compile_model(model, inputs, **KERNEL)
    assert _kernel_takes(compiled) == 1, compiled.report.rewrites
    got = kiln.load(compiled.vmfb)(*inputs)
    with torch.no_grad():
        want = model(*inputs)
    torch.testing.assert_close(torch.as_tensor(got), want, rtol=1e-4, atol=1e-4)
