"""The measurements behind Kiln's horizontal-fusion choices (docs/decisions.md, docs/fusion.md).

    python -m bench.fusion_variants layouts    # IREE dispatches of Q/K/V and RoPE layouts
    python -m bench.fusion_variants swiglu     # CPU time of gate/up MLP forms (interleaved runs)
    python -m bench.fusion_variants models     # CPU time of medium GPT-2/Llama/BERT, fusion on/off

`layouts` writes each variant as PyTorch code and compiles it with Kiln's fusion passes off, so
IREE sees the layout as written: a fused QKV projection sliced on its last axis, or split into
heads first; HF's RoPE (slices + cat), a gather with constant indices, a flip; q and k rotated
apart or together. Prints the dispatch names per variant (iree-compile --compile-to=flow).

`swiglu` times a Llama-style MLP (hidden 512, intermediate 1408, f32) at sequence 16 and 128:
two linears (what IREE fuses SiLU·up into), one linear over the concatenated weights + slices,
and the two linears with IREE's `--iree-dispatch-creation-enable-fuse-horizontal-contractions`
(one dispatch). Runs are interleaved; medians and minima in ms.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
from torch import nn

import kiln
from kiln.dispatches import count_dispatches

FUSION_PASSES = ["kiln-raise-rope", "kiln-fuse-residual-norms", "kiln-raise-swiglu",
                 "kiln-merge-linears", "kiln-hoist-head-split", "kiln-merge-ropes"]
HORIZONTAL = "--iree-dispatch-creation-enable-fuse-horizontal-contractions"
SEQ, HIDDEN, HEADS, KV_HEADS, HEAD_DIM = 16, 64, 4, 2, 16


class AttentionBlock(nn.Module):
    """A Llama-like attention block with the projection and RoPE written in one of the layouts."""

    def __init__(self, split: str, rope: str, rope_together: bool):
        super().__init__()
        torch.manual_seed(0)
        self.split, self.rope_form, self.rope_together = split, rope, rope_together
        self.qkv = nn.Linear(HIDDEN, (HEADS + 2 * KV_HEADS) * HEAD_DIM, bias=False)
        self.out = nn.Linear(HEADS * HEAD_DIM, HIDDEN, bias=False)
        angles = torch.arange(SEQ).float()[:, None] * torch.rand(HEAD_DIM // 2)[None]
        table = torch.cat([angles, angles], -1)
        half = HEAD_DIM // 2
        self.register_buffer("cos", table.cos()[None, None], persistent=False)
        self.register_buffer("sin", table.sin()[None, None], persistent=False)
        self.register_buffer("index", torch.cat([torch.arange(half, HEAD_DIM),
                                                 torch.arange(half)]), persistent=False)
        self.register_buffer("sign", torch.cat([-torch.ones(half), torch.ones(half)]),
                             persistent=False)

    def rope(self, x):
        if self.rope_form == "hf":
            half = HEAD_DIM // 2
            rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        elif self.rope_form == "gather":
            rotated = x.index_select(-1, self.index) * self.sign
        else:  # flip
            rotated = x.unflatten(-1, (2, HEAD_DIM // 2)).flip(-2).flatten(-2) * self.sign
        return x * self.cos + rotated * self.sin

    def forward(self, x):
        batch = x.shape[0]
        y = self.qkv(x)
        if self.split == "last-axis":  # GPT-2 style: slice, then split heads
            q, k, v = y.split([HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM], -1)
            q = q.view(batch, SEQ, HEADS, HEAD_DIM).transpose(1, 2)
            k = k.view(batch, SEQ, KV_HEADS, HEAD_DIM).transpose(1, 2)
            v = v.view(batch, SEQ, KV_HEADS, HEAD_DIM).transpose(1, 2)
        else:  # heads first, then whole-head slices
            y = y.view(batch, SEQ, HEADS + 2 * KV_HEADS, HEAD_DIM).transpose(1, 2)
            q, k, v = y[:, :HEADS], y[:, HEADS:HEADS + KV_HEADS], y[:, HEADS + KV_HEADS:]
        if self.rope_together:
            qk = self.rope(torch.cat([q, k], 1))
            q, k = qk[:, :HEADS], qk[:, HEADS:]
        else:
            q, k = self.rope(q), self.rope(k)
        o = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True,
                                                       enable_gqa=True)
        return self.out(o.transpose(1, 2).reshape(batch, SEQ, HEADS * HEAD_DIM)) + x


def layouts() -> None:
    variants = [(split, rope, together) for split in ("last-axis", "heads-first")
                for rope in ("hf", "gather", "flip") for together in (False, True)]
    for batch in (1, 2):
        for split, rope, together in variants:
            model = AttentionBlock(split, rope, together).eval()
            text = kiln.compile_to_vmfb(model, (torch.randn(batch, SEQ, HIDDEN),), target="cpu",
                                        compile_to="iree-input", cache=False,
                                        disable_passes=FUSION_PASSES)
            result = count_dispatches(text)
            label = f"batch {batch}, {split} split, rope {rope} " + \
                ("(q and k together)" if together else "(q and k apart)")
            print(f"{label}: {result.count}\n  " + "\n  ".join(result.names))


class GatedMLP(nn.Module):
    def __init__(self, merged: bool, hidden: int = 512, intermediate: int = 1408):
        super().__init__()
        torch.manual_seed(0)
        self.merged = merged
        self.gate = nn.Linear(hidden, intermediate, bias=False)
        self.up = nn.Linear(hidden, intermediate, bias=False)
        self.down = nn.Linear(intermediate, hidden, bias=False)

    def forward(self, x):
        if self.merged:
            gate, up = nn.functional.linear(x, torch.cat([self.gate.weight, self.up.weight])) \
                .chunk(2, dim=-1)
        else:
            gate, up = self.gate(x), self.up(x)
        return self.down(nn.functional.silu(gate) * up) + x


def swiglu(repeats: int = 400) -> None:
    forms = {"two linears": (False, []), "two linears + IREE horizontal fusion": (False,
                                                                              [HORIZONTAL]),
             "one linear over concatenated weights": (True, [])}
    for seq in (16, 128):
        x = torch.randn(1, seq, 512)
        runs = {}
        for name, (merged, flags) in forms.items():
            model = GatedMLP(merged).eval()
            runs[name] = kiln.load(kiln.compile_to_vmfb(model, (x,), target="cpu", cache=False,
                                                        extra_iree_flags=flags))
            error = float((torch.as_tensor(np.asarray(runs[name](x))) - model(x)).abs().max())
            assert error < 1e-4, (name, error)
        times = {name: [] for name in runs}
        for _ in range(repeats):
            for name, run in runs.items():
                start = time.perf_counter()
                run(x)
                times[name].append(time.perf_counter() - start)
        for name, samples in times.items():
            print(f"seq {seq:4d}  {name:40s} median {np.median(samples) * 1e3:7.3f} ms  "
                  f"min {np.min(samples) * 1e3:7.3f} ms")


def _medium_models():
    """GPT-2, Llama (GQA 8/4) and BERT at hidden 512, 8 heads, 2 layers, random weights."""
    import transformers as tf

    torch.manual_seed(0)
    gpt2 = tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=1000, n_positions=128, n_embd=512,
                                            n_layer=2, n_head=8, n_inner=2048))
    llama = tf.LlamaForCausalLM(tf.LlamaConfig(
        vocab_size=1000, hidden_size=512, intermediate_size=1408, num_hidden_layers=2,
        num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=128))
    bert = tf.BertModel(tf.BertConfig(vocab_size=1000, hidden_size=512, num_hidden_layers=2,
                                      num_attention_heads=8, intermediate_size=2048,
                                      max_position_embeddings=128))
    for model in (gpt2, llama, bert):
        model.config.use_cache = False
    return {"gpt2": gpt2.eval(), "llama": llama.eval(), "bert": bert.eval()}


def models(repeats: int = 200, seq: int = 128) -> None:
    """CPU time per call of the medium models with Kiln's fusion passes on (default) and off."""
    tokens = torch.randint(0, 1000, (1, seq), generator=torch.Generator().manual_seed(0))
    for name, model in _medium_models().items():
        runs = {config: kiln.load(kiln.compile_to_vmfb(
            model, (tokens,), target="cpu", cache=False,
            disable_passes=FUSION_PASSES if config == "fusion off" else []))
            for config in ("fusion on", "fusion off")}
        times = {config: [] for config in runs}
        for _ in range(repeats):
            for config, run in runs.items():
                start = time.perf_counter()
                run(tokens)
                times[config].append(time.perf_counter() - start)
        for config, samples in times.items():
            print(f"{name:6s} seq {seq}  {config:10s} median {np.median(samples) * 1e3:7.3f} ms"
                  f"  min {np.min(samples) * 1e3:7.3f} ms")


if __name__ == "__main__":
    {"layouts": layouts, "swiglu": swiglu, "models": models}[
        sys.argv[1] if len(sys.argv) > 1 else "layouts"]()
