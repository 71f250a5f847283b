"""Attention written the ways model code writes it: a generator of small modules for fuzzing
kiln-raise-attention (tests/test_attention_fuzz.py).

A `Variant` picks one value per dimension below; `AttentionVariant(variant)` is an nn.Module
computing softmax(q·kᵀ·scale + mask)·v in that style from q, k, v (and an attention mask for
the padding variants). Every variant is attention, so every one must become exactly one
`kiln.attention` and compute what eager computes.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

BATCH, HEADS, KV_HEADS, SEQ, HEAD_DIM = 2, 4, 2, 8, 16
VALID_LENGTHS = (SEQ, 5)  # padding variants: batch row 1 masks its last SEQ - 5 keys

DIMENSIONS = {
    # where the 1/sqrt(d) scale is applied
    "scale": ("scores_div", "scores_mul", "q", "q_and_k", "none"),
    # which mask, and how it is built
    "mask": ("none", "causal_masked_fill", "causal_where_keep", "causal_buffer_additive",
             "causal_buffer_bool", "padding_additive", "padding_masked_fill",
             "causal_and_padding"),
    # the masked score
    "fill": ("-inf", "finfo_min", "-1e9", "-1e4"),
    # q, k, v given as [B, H, S, D], or as [B, S, H, D] transposed before, output after
    "layout": ("bhsd", "bshd"),
    # how kᵀ is written
    "key_transpose": ("transpose_m1_m2", "transpose_m2_m1", "permute"),
    # softmax dtype handling
    "softmax": ("plain", "upcast_float", "dtype_arg"),
    # grouped-query attention: kv heads repeated to the query heads
    "gqa": ("none", "repeat_kv", "repeat_interleave"),
    # dropout in eval mode
    "dropout": ("none", "module", "functional"),
    "dtype": ("float32", "float16"),
}


@dataclass(frozen=True)
class Variant:
    scale: str
    mask: str
    fill: str
    layout: str
    key_transpose: str
    softmax: str
    gqa: str
    dropout: str
    dtype: str

    @property
    def causal(self) -> bool:
        return self.mask.startswith("causal") and "padding" not in self.mask

    @property
    def masked(self) -> bool:
        """Whether kiln.attention keeps a mask operand (a mask that depends on an input)."""
        return "padding" in self.mask

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    def __str__(self) -> str:
        return "-".join(getattr(self, f.name) for f in fields(self))


def sample_variants(count: int, seed: int = 0) -> list[Variant]:
    """`count` random variants (seeded) that together use every value of every dimension at
    least once (more variants are added when `count` is too small for that)."""
    rng = random.Random(seed)
    names = list(DIMENSIONS)
    variants = [Variant(**{n: rng.choice(DIMENSIONS[n]) for n in names}) for _ in range(count)]
    for name in names:
        for value in DIMENSIONS[name]:
            if not any(getattr(v, name) == value for v in variants):
                base = {n: rng.choice(DIMENSIONS[n]) for n in names}
                variants.append(Variant(**{**base, name: value}))
    return variants


def all_variants() -> list[Variant]:
    return [Variant(*values) for values in itertools.product(*DIMENSIONS.values())]


def fill_value(variant: Variant) -> float:
    lowest = torch.finfo(variant.torch_dtype).min
    value = {"-inf": float("-inf"), "finfo_min": lowest, "-1e9": -1e9, "-1e4": -1e4}[variant.fill]
    # -1e9 does not fit float16 (eager raises): f16 code that writes it gets finfo.min instead.
    return value if value == float("-inf") else max(value, lowest)


class AttentionVariant(nn.Module):
    def __init__(self, variant: Variant):
        super().__init__()
        self.variant = variant
        self.fill = fill_value(variant)
        self.dropout = nn.Dropout(0.1)
        future = torch.triu(torch.ones(SEQ, SEQ, dtype=torch.bool), 1)
        if variant.mask == "causal_buffer_additive":
            additive = torch.zeros(SEQ, SEQ).masked_fill(future, self.fill)
            self.register_buffer("causal_mask", additive.to(variant.torch_dtype))
        elif variant.mask == "causal_buffer_bool":
            self.register_buffer("causal_mask", ~future)  # True = keep

    def forward(self, q, k, v, attention_mask=None):
        variant, fill = self.variant, self.fill
        if variant.layout == "bshd":  # projections come as [B, S, H, D]
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if variant.gqa == "repeat_kv":
            k, v = repeat_kv(k, HEADS // KV_HEADS), repeat_kv(v, HEADS // KV_HEADS)
        elif variant.gqa == "repeat_interleave":
            k = k.repeat_interleave(HEADS // KV_HEADS, dim=1)
            v = v.repeat_interleave(HEADS // KV_HEADS, dim=1)
        d = q.shape[-1]
        if variant.scale == "q":
            q = q * (1.0 / math.sqrt(d))
        elif variant.scale == "q_and_k":
            q, k = q * d ** -0.25, k * d ** -0.25
        key_t = {"transpose_m1_m2": lambda t: t.transpose(-1, -2),
                 "transpose_m2_m1": lambda t: t.transpose(-2, -1),
                 "permute": lambda t: t.permute(0, 1, 3, 2)}[variant.key_transpose](k)
        scores = torch.matmul(q, key_t)
        if variant.scale == "scores_div":
            scores = scores / math.sqrt(d)
        elif variant.scale == "scores_mul":
            scores = scores * (1.0 / math.sqrt(d))
        scores = self._mask(scores, attention_mask, fill)
        if variant.softmax == "plain":
            probs = torch.softmax(scores, dim=-1)
        elif variant.softmax == "upcast_float":
            probs = F.softmax(scores.float(), dim=-1).to(q.dtype)
        else:
            probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        if variant.dropout == "module":
            probs = self.dropout(probs)
        elif variant.dropout == "functional":
            probs = F.dropout(probs, p=0.1, training=self.training)
        out = torch.matmul(probs, v)
        if variant.layout == "bshd":
            out = out.transpose(1, 2).reshape(out.shape[0], out.shape[2], -1)
        return out

    def _mask(self, scores, attention_mask, fill):
        mask, length = self.variant.mask, scores.shape[-1]
        if mask == "causal_masked_fill":
            future = torch.triu(torch.ones(length, length, dtype=torch.bool,
                                           device=scores.device), 1)
            return scores.masked_fill(future, fill)
        if mask == "causal_where_keep":
            keep = torch.tril(torch.ones(length, length, dtype=torch.bool))
            return torch.where(keep, scores, torch.tensor(fill, dtype=scores.dtype))
        if mask == "causal_buffer_additive":
            return scores + self.causal_mask[:length, :length]
        if mask == "causal_buffer_bool":
            return scores.masked_fill(~self.causal_mask[:length, :length], fill)
        if mask == "padding_additive":
            drop = attention_mask[:, None, None, :] == 0
            additive = torch.zeros(drop.shape, dtype=scores.dtype).masked_fill(drop, fill)
            return scores + additive
        if mask == "padding_masked_fill":
            return scores.masked_fill(attention_mask[:, None, None, :] == 0, fill)
        if mask == "causal_and_padding":
            causal = torch.tril(torch.ones(length, length, dtype=torch.bool))
            keep = causal[None, None] & (attention_mask[:, None, None, :] != 0)
            return scores.masked_fill(~keep, fill)
        return scores


def repeat_kv(hidden: torch.Tensor, n_rep: int) -> torch.Tensor:
    """Hugging Face's repeat_kv: [B, Hkv, S, D] → [B, Hkv·n_rep, S, D] by expand + reshape."""
    batch, kv_heads, seq, dim = hidden.shape
    hidden = hidden[:, :, None, :, :].expand(batch, kv_heads, n_rep, seq, dim)
    return hidden.reshape(batch, kv_heads * n_rep, seq, dim)


def example_inputs(variant: Variant, seed: int = 0) -> tuple:
    generator = torch.Generator().manual_seed(seed)
    kv_heads = HEADS if variant.gqa == "none" else KV_HEADS

    def tensor(heads):
        shape = (BATCH, heads, SEQ, HEAD_DIM) if variant.layout == "bhsd" else \
            (BATCH, SEQ, heads, HEAD_DIM)
        return torch.randn(shape, generator=generator).to(variant.torch_dtype)

    args = (tensor(HEADS), tensor(kv_heads), tensor(kv_heads))
    if "padding" in variant.mask:
        mask = torch.zeros(BATCH, SEQ, dtype=torch.int64)
        for row, length in enumerate(VALID_LENGTHS):
            mask[row, :length] = 1
        args += (mask,)
    return args
