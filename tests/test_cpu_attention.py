"""Kiln's own f32 attention on the CPU (kiln.cpu_attention, kiln-select-cpu-kernels; compile
options cpu_kernels="on", attention="cpu_kernel"): the attentions it takes compute what eager
computes — causal, BERT-style padding mask, grouped kv heads, plain multi-head, and small GPT-2 /
Llama / BERT — and what it does not take is decomposed with the reason recorded."""

from __future__ import annotations

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


@pytest.mark.parametrize("name, heads, kv_heads, causal, mask, scale", [
    ("causal GQA", 4, 2, True, None, None),
    ("causal MHA", 2, 2, True, None, None),
    ("padding mask MHA", 2, 2, False, "additive", None),
    ("boolean padding mask, GQA", 4, 2, False, "boolean", None),
    ("plain GQA, own scale", 4, 1, False, None, 0.3),
])
def test_kernel_attention_matches_eager(name, heads, kv_heads, causal, mask, scale):
    torch.manual_seed(0)
    batch, length = 2, 64
    q = torch.randn(batch, heads, length, 64)
    k, v = torch.randn(batch, kv_heads, length, 64), torch.randn(batch, kv_heads, length, 64)
    inputs = (q, k, v)
    if mask == "additive":
        inputs += (_padding_mask(batch, length, [40, 64]),)
    elif mask == "boolean":  # true = attend: keys 40 and on of the first row are masked
        inputs += (_padding_mask(batch, length, [40, 64]) == 0,)
    model = Attention(causal, scale)
    compiled = kiln.compile_model(model, inputs, **KERNEL)
    assert _kernel_takes(compiled) == 1, compiled.report.rewrites
    got = kiln.load(compiled.vmfb)(*inputs)
    with torch.no_grad():
        want = model(*inputs)
    torch.testing.assert_close(torch.as_tensor(got), want, rtol=1e-4, atol=1e-4)


class LastHidden(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids, mask=None):
        if mask is None:
            return self.model(ids).last_hidden_state
        return self.model(input_ids=ids, attention_mask=mask).last_hidden_state


def tiny_gpt2():
    return LastHidden(transformers.GPT2Model(transformers.GPT2Config(
        n_embd=128, n_layer=2, n_head=2, vocab_size=64, n_positions=64, use_cache=False)))


def tiny_llama():
    return LastHidden(transformers.LlamaModel(transformers.LlamaConfig(
        hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=64, max_position_embeddings=64, use_cache=False)))


def tiny_bert():
    return LastHidden(transformers.BertModel(transformers.BertConfig(
        hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256,
        vocab_size=64, max_position_embeddings=64), add_pooling_layer=False))


def _ids():
    return torch.randint(0, 64, (2, 32))


@pytest.mark.parametrize("build, args", [
    (tiny_gpt2, lambda: (_ids(),)),  # causal, 2 heads of 64
    (tiny_llama, lambda: (_ids(),)),  # causal, 4 query heads over 2 kv heads, RoPE
    (tiny_bert, lambda: (_ids(), torch.tensor([[1] * 32, [1] * 20 + [0] * 12]))),  # padding
])
def test_kernel_in_small_transformers_matches_eager(build, args):
    torch.manual_seed(0)
    model, inputs = build().eval(), args()
    compiled = kiln.compile_model(model, inputs, **KERNEL)
    assert _kernel_takes(compiled) == 2, compiled.report.rewrites  # one per layer
    got = kiln.load(compiled.vmfb)(*inputs)
    with torch.no_grad():
        want = model(*inputs)
    torch.testing.assert_close(torch.as_tensor(got), want, rtol=1e-4, atol=1e-4)


def test_refused_attention_is_decomposed_with_the_reason():
    """Head dim 32: the kernel refuses, the report says why, the decomposed form computes it."""
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 2, 32, 32), torch.randn(1, 2, 32, 32), torch.randn(1, 2, 32, 32)
    model = Attention(causal=True)
    compiled = kiln.compile_model(model, (q, k, v), **KERNEL)
    details = [r.detail for r in compiled.report.rewrites
               if r.pass_name == "kiln-select-cpu-kernels"]
    assert details == ["decomposed: head dim 32 (the kernel is written for 64)"], details
    got = kiln.load(compiled.vmfb)(q, k, v)
    torch.testing.assert_close(torch.as_tensor(got), model(q, k, v), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("spec, reason", [
    (AttentionSpec(1, 4, 2, 32, 32, 64, 0.125, True), None),
    (AttentionSpec(1, 4, 3, 32, 32, 64, 0.125, True), "3 kv heads do not divide 4"),
    (AttentionSpec(1, 4, 4, 30, 32, 64, 0.125, False), "30 query rows are not a multiple"),
    (AttentionSpec(1, 4, 4, 32, 48, 64, 0.125, False), "48 keys are not a multiple of 32"),
    (AttentionSpec(1, 4, 4, 32, 64, 64, 0.125, True), "causal attention of 32 queries over 64"),
    (AttentionSpec(2, 4, 4, 32, 32, 64, 0.125, False, (2, 2, 1, 32)), "mask of shape"),
])
def test_attention_problem(spec, reason):
    problem = attention_problem(spec)
    assert problem is None if reason is None else reason in problem, problem


def test_spec_key_round_trips_and_renders():
    spec = AttentionSpec(2, 12, 4, 128, 128, 64, 0.125, True, (2, 1, 1, 128))
    assert AttentionSpec.parse(spec.key()) == spec
    declaration = (f"module {{\n  func.func private @{spec.name()}(tensor<2x12x128x64xf32>) -> "
                   f"tensor<2x128x12x64xf32> attributes {{kiln.cpu_attention = "
                   f"\"{spec.key()}\"}}\n}}\n")
    text = render_cpu_attention_calls(declaration)
    assert f"hal.executable.source private @{spec.name()}_exe" in text
    assert f"flow.dispatch @{spec.name()}_exe::@{spec.name()}_dispatch(%a0, %a1, %a2, %a3)" \
        in text
    assert "kiln.cpu_attention = " not in text
