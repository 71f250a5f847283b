"""A small GPT-style decoder, the bundled example that `kiln demo` compiles.

Written the way model code usually is: attention as explicit matmul → scale → causal mask →
softmax → matmul (or torch's SDPA with `attention="sdpa"`), pre-norm blocks, a GELU MLP. The
weights are random with a fixed seed, so nothing is downloaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class TinyGPTConfig:
    vocab_size: int = 512
    max_seq_len: int = 128
    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 2
    attention: str = "eager"  # "eager" (explicit softmax) or "sdpa"
    seed: int = 0


class CausalSelfAttention(nn.Module):
    def __init__(self, config: TinyGPTConfig):
        super().__init__()
        self.n_heads = config.n_heads
        self.head_dim = config.d_model // config.n_heads
        self.attention = config.attention
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        causal = torch.tril(torch.ones(config.max_seq_len, config.max_seq_len, dtype=torch.bool))
        # Additive mask, as GPT-style code often precomputes it: 0 where allowed, -inf elsewhere.
        self.register_buffer("causal_bias", torch.zeros(causal.shape).masked_fill(
            ~causal, float("-inf")), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_cache(x)[0]

    def forward_with_cache(self, x: torch.Tensor, past_k=None, past_v=None):
        """(output, keys, values): keys/values of all positions so far, [B, H, P+T, D]."""
        batch, seq, width = x.shape
        q, k, v = self.qkv(x).split(width, dim=-1)
        q, k, v = (t.view(batch, seq, self.n_heads, self.head_dim).transpose(1, 2)
                   for t in (q, k, v))
        if past_k is not None:
            k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
        # Prefill is causal; one decoded token attends to every cached position.
        causal = past_k is None
        if self.attention == "sdpa":
            y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
        else:
            scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
            if causal:
                scores = scores + self.causal_bias[:seq, :seq]
            y = torch.softmax(scores, dim=-1) @ v
        return self.proj(y.transpose(1, 2).reshape(batch, seq, width)), k, v


class Block(nn.Module):
    def __init__(self, config: TinyGPTConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.d_model)
        self.attn = CausalSelfAttention(config)
        self.norm2 = nn.LayerNorm(config.d_model)
        self.mlp = nn.Sequential(nn.Linear(config.d_model, 4 * config.d_model), nn.GELU(),
                                 nn.Linear(4 * config.d_model, config.d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_cache(x)[0]

    def forward_with_cache(self, x: torch.Tensor, past_k=None, past_v=None):
        attended, k, v = self.attn.forward_with_cache(self.norm1(x), past_k, past_v)
        x = x + attended
        return x + self.mlp(self.norm2(x)), k, v


class TinyGPT(nn.Module):
    def __init__(self, config: TinyGPTConfig = TinyGPTConfig()):
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.d_model)
        self.position_embedding = nn.Embedding(config.max_seq_len, config.d_model)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(config.d_model)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._run(tokens, None, None)[0]

    def prefill(self, tokens: torch.Tensor):
        """(logits, keys, values) for a prompt; keys/values stacked per layer [L, B, H, T, D]."""
        return self._run(tokens, None, None)

    def decode(self, token: torch.Tensor, keys: torch.Tensor, values: torch.Tensor):
        """One new token [B, 1] after the cached [L, B, H, P, D] keys/values: (logits, keys and
        values grown to P + 1)."""
        return self._run(token, keys, values)

    def _run(self, tokens, keys, values):
        start = 0 if keys is None else keys.shape[3]
        positions = torch.arange(start, start + tokens.shape[1], device=tokens.device)
        x = self.token_embedding(tokens) + self.position_embedding(positions)
        new_keys, new_values = [], []
        for index, block in enumerate(self.blocks):
            past_k = None if keys is None else keys[index]
            past_v = None if values is None else values[index]
            x, k, v = block.forward_with_cache(x, past_k, past_v)
            new_keys.append(k)
            new_values.append(v)
        return self.lm_head(self.norm(x)), torch.stack(new_keys), torch.stack(new_values)


class TinyGPTPrefill(nn.Module):
    """Entry point `prefill` of a TinyGPT (shares its weights)."""

    def __init__(self, gpt: TinyGPT):
        super().__init__()
        self.gpt = gpt

    def forward(self, tokens):
        return self.gpt.prefill(tokens)


class TinyGPTDecode(nn.Module):
    """Entry point `decode` of a TinyGPT: one token with KV-cache inputs and outputs."""

    def __init__(self, gpt: TinyGPT):
        super().__init__()
        self.gpt = gpt

    def forward(self, token, keys, values):
        return self.gpt.decode(token, keys, values)


def build_tiny_gpt(config: TinyGPTConfig = TinyGPTConfig(), batch: int = 1, seq_len: int = 64):
    """The example model in eval mode and example token ids, both from `config.seed`."""
    generator = torch.Generator().manual_seed(config.seed)
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        model = TinyGPT(config).eval()
    tokens = torch.randint(0, config.vocab_size, (batch, seq_len), generator=generator)
    return model, (tokens,)
