"""Tiny models for the tests (and the bench scripts that check the tests' numbers).

Every model is built from a config with random weights under a fixed seed: nothing is
downloaded. Sizes are tiny (2 layers, hidden 64, seq 16, vocab 100) so the whole suite runs on
a 2-core CPU in a few minutes. The benchmark-size models are in `kiln.examples.zoo`.
"""

from __future__ import annotations

import torch
from torch import nn

from kiln.examples.tiny_gpt import TinyGPTConfig, build_tiny_gpt

VOCAB = 100
SEQ = 16
HIDDEN = 64
LAYERS = 2
HEADS = 4
KV_HEADS = 2  # Llama: grouped-query attention, 2 query heads per kv head
INTERMEDIATE = 128


def tiny_gpt_config(attention: str = "eager", n_layers: int = LAYERS) -> TinyGPTConfig:
    return TinyGPTConfig(vocab_size=VOCAB, max_seq_len=SEQ, d_model=HIDDEN, n_heads=HEADS,
                         n_layers=n_layers, attention=attention, seed=0)


def tiny_gpt(attention: str = "eager", n_layers: int = LAYERS):
    """(model in eval mode, (tokens,)) with tokens int64 of shape (1, SEQ)."""
    return build_tiny_gpt(tiny_gpt_config(attention, n_layers), batch=1, seq_len=SEQ)


ACTIVATIONS = {"gelu": nn.GELU, "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
               "relu": nn.ReLU, "silu": nn.SiLU}


def mlp(activation: str = "gelu", seed: int = 0) -> nn.Module:
    """Linear(64→128) → activation → Linear(128→64), eval mode."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(HIDDEN, 2 * HIDDEN), ACTIVATIONS[activation](),
                         nn.Linear(2 * HIDDEN, HIDDEN)).eval()


class ReluSiluMLP(nn.Module):
    """Two hidden layers, one ReLU and one SiLU: both activations folded into kiln.linear."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.up = nn.Linear(HIDDEN, 2 * HIDDEN)
        self.mid = nn.Linear(2 * HIDDEN, 2 * HIDDEN)
        self.down = nn.Linear(2 * HIDDEN, HIDDEN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.up(x))
        x = nn.functional.silu(self.mid(x))
        return self.down(x)


def mlp_input(dtype=torch.float32, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(1, SEQ, HIDDEN, generator=generator).to(dtype)


def token_ids(seed: int = 2) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (1, SEQ), generator=generator, dtype=torch.int64)


# The transformers families the tests compile most (tests/test_fusion.py, test_end_to_end_cpu).
HF_FAMILIES = ("gpt2", "llama", "bert")


def hf_model(family: str, layers: int = LAYERS, positions: int = SEQ,
             attn_implementation: str | None = None) -> nn.Module:
    """A tiny transformers model of `family` (random weights under seed 0, eval mode, no KV
    cache) with `positions` positions:
      gpt2     GPT2LMHeadModel: pre-LN, Conv1D (addmm) linears, activation gelu_new (tanh)
      llama    LlamaForCausalLM: RMSNorm, SiLU-gated MLP, 4 query heads on 2 kv heads
      qwen2, mistral   the same layout as llama (GQA)
      bert     BertModel: post-LN (embeddings LN + 2 per layer), erf GELU, pooler
      t5-encoder"""
    import transformers as hf

    torch.manual_seed(0)
    common = dict(vocab_size=VOCAB, use_cache=False)
    decoder = dict(common, hidden_size=HIDDEN, intermediate_size=INTERMEDIATE,
                   num_hidden_layers=layers, num_attention_heads=HEADS,
                   num_key_value_heads=KV_HEADS, max_position_embeddings=positions,
                   bos_token_id=0, eos_token_id=0)
    builders = {
        "gpt2": lambda: hf.GPT2LMHeadModel(hf.GPT2Config(
            n_positions=positions, n_embd=HIDDEN, n_layer=layers, n_head=HEADS,
            n_inner=INTERMEDIATE, bos_token_id=0, eos_token_id=0, **common)),
        "llama": lambda: hf.LlamaForCausalLM(hf.LlamaConfig(**decoder)),
        "qwen2": lambda: hf.Qwen2ForCausalLM(hf.Qwen2Config(**decoder)),
        "mistral": lambda: hf.MistralForCausalLM(hf.MistralConfig(**decoder)),
        "bert": lambda: hf.BertModel(hf.BertConfig(
            vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=layers,
            num_attention_heads=HEADS, intermediate_size=INTERMEDIATE,
            max_position_embeddings=positions)),
        "t5-encoder": lambda: hf.T5EncoderModel(hf.T5Config(
            d_model=HIDDEN, d_kv=HIDDEN // HEADS, d_ff=INTERMEDIATE, num_layers=layers,
            num_heads=HEADS, **common)),
    }
    if family not in builders:
        raise KeyError(f"unknown tiny transformers family {family!r}; "
                       f"known: {', '.join(builders)}")
    model = builders[family]()
    if attn_implementation is not None:
        model.set_attn_implementation(attn_implementation)
    model.config.use_cache = False
    return model.eval()


class FirstOutput(nn.Module):
    """model(input_ids=...)[0]: the logits or last hidden state of a transformers model."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        return self.model(input_ids=input_ids)[0]


# kiln.linear layers each model should produce: per layer + heads.
#   GPT-2: c_attn, attn c_proj, c_fc, mlp c_proj (Conv1D, in_out) + lm_head
#   Llama: q, k, v, o, gate, up, down + lm_head
#   BERT: q, k, v, attention output, intermediate, output + pooler
HF_LINEARS = {"gpt2": 4 * LAYERS + 1, "llama": 7 * LAYERS + 1, "bert": 6 * LAYERS + 1}


class GroupedQueryAttention(nn.Module):
    """SDPA with 4 query heads sharing 2 kv heads (enable_gqa): kiln.attention keeps k/v at 2
    heads and the lowering expands them."""

    def __init__(self, causal: bool = True, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.causal = causal
        self.head_dim = HIDDEN // HEADS
        self.q = nn.Linear(HIDDEN, HIDDEN)
        self.kv = nn.Linear(HIDDEN, 2 * KV_HEADS * self.head_dim)
        self.out = nn.Linear(HIDDEN, HIDDEN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, _ = x.shape
        q = self.q(x).view(batch, seq, HEADS, self.head_dim).transpose(1, 2)
        kv = self.kv(x).view(batch, seq, KV_HEADS, 2 * self.head_dim).transpose(1, 2)
        k, v = kv.split(self.head_dim, dim=-1)
        y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=self.causal,
                                                       enable_gqa=True)
        return self.out(y.transpose(1, 2).reshape(batch, seq, HIDDEN))
