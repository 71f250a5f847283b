"""The benchmark model zoo: factories that build (model, example_inputs) from configs.

Nothing is downloaded. Weights are not torch's random init but a counter-based hash of
(parameter name, element index) (MurmurHash3's finalizer in numpy uint32 arithmetic), so the same model has
bit-identical weights on any machine and any torch/numpy version: the GPU half of the suite
rebuilds weights there that match artifacts compiled here. Inputs come from the same hash.

    model, inputs = build("gpt2-prefill", batch=1, dtype=torch.float32)

| name | what | input | output |
|---|---|---|---|
| mlp | Linear 768→3072, GELU, Linear 3072→768 | (B, 128, 768) | (B, 128, 768) |
| gpt2-prefill | GPT-2 small (GPT2Config(): 12 layers, d=768, 124M) | ids (B, 128) | next-token logits (B, 1, 50257) |
| gpt2-prefill-512 | the same model, prompt of 512 tokens (GPU suite; batch 8 = the prefill goal) | ids (B, 512) | (B, 1, 50257) |
| gpt2-decode | the same model, one token, no KV cache | ids (B, 1) | (B, 1, 50257) |
| bert | BERT-base (BertConfig(): 12 layers, d=768, 110M), no pooler | ids (B, 128) | last hidden state (B, 128, 768) |
| llama | Llama-style 109M: d=768, 12 layers, 12 heads, 4 kv heads (GQA), RoPE, RMSNorm, SwiGLU 2048, vocab 32000 | ids (B, 128) | next-token logits (B, 1, 32000) |
| qwen2 | Qwen2ForCausalLM at the llama sizes (q/k/v biases; GPU suite only) | ids (B, 128) | (B, 1, 32000) |
| phi3 | Phi3ForCausalLM at the llama sizes (fused qkv_proj / gate_up_proj; GPU suite only) | ids (B, 128) | (B, 1, 32000) |
| resnet | ResNet-18 (plain torch, BatchNorm in eval mode), 1000 classes | (B, 3, 224, 224) | (B, 1000) |

Language models return the logits of the last position only (`logits_to_keep=1`), which is what
generation consumes; every system computes the same thing.
"""

from __future__ import annotations

import zlib
from typing import Callable

import numpy as np
import torch
from torch import nn

SEQ = 128
HIDDEN = 768

# ---------------------------------------------------------------------------------------------
# Deterministic values


def _fmix32(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer: a bijective mix of a uint32 counter."""
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x85EBCA6B)
    x = x ^ (x >> np.uint32(13))
    x = x * np.uint32(0xC2B2AE35)
    return x ^ (x >> np.uint32(16))


def uniform(key: str, shape, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    """float32 values uniform in [low, high), a pure function of (key, shape): integer
    arithmetic only, so identical on every machine and numpy version."""
    count = int(np.prod(shape, dtype=np.int64))
    seed = np.uint32(zlib.crc32(key.encode()))
    out = np.empty(count, dtype=np.float32)
    chunk = 1 << 22
    with np.errstate(over="ignore"):
        for start in range(0, count, chunk):
            counter = np.arange(start, min(start + chunk, count), dtype=np.uint32)
            bits = _fmix32(_fmix32(counter * np.uint32(0x9E3779B9) + seed) ^ seed)
            out[start:start + len(counter)] = (bits >> np.uint32(8)).astype(np.float32)  # exact
    out *= np.float32(1.0 / (1 << 24))
    return (out * np.float32(high - low) + np.float32(low)).reshape(shape)


def _fan_in(shape) -> int:
    return int(np.prod(shape[1:]))


@torch.no_grad()
def deterministic_init(model: nn.Module) -> nn.Module:
    """Overwrite every parameter (and BatchNorm statistics) with hashed values.

    Matrices and kernels: uniform with std 1/sqrt(fan_in) (√2 of that for convolutions feeding
    ReLUs); embeddings std 0.02; vectors named *weight (norm scales) 1 ± 0.1; other vectors
    (biases) std 0.02. Nothing depends on the library's own init."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    for name, param in model.named_parameters():
        if param.ndim >= 2:
            if id(param) in embeddings:
                std = 0.02
            else:
                std = (np.sqrt(2.0) if param.ndim == 4 else 1.0) / np.sqrt(_fan_in(param.shape))
            low, high = -std * np.sqrt(3.0), std * np.sqrt(3.0)
        elif name.endswith("weight"):
            low, high = 0.9, 1.1
        else:
            low, high = -0.02 * np.sqrt(3.0), 0.02 * np.sqrt(3.0)
        param.copy_(torch.from_numpy(uniform(name, tuple(param.shape), float(low), float(high))))
    for name, module in model.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            shape = tuple(module.running_mean.shape)
            module.running_mean.copy_(torch.from_numpy(uniform(name + ".mean", shape, -0.1, 0.1)))
            module.running_var.copy_(torch.from_numpy(uniform(name + ".var", shape, 0.5, 1.5)))
    return model


def token_ids(key: str, batch: int, seq: int, vocab: int) -> torch.Tensor:
    values = uniform(key, (batch, seq), 0.0, float(vocab))
    return torch.from_numpy(np.minimum(values.astype(np.int64), vocab - 1))


# ---------------------------------------------------------------------------------------------
# Models


class MLP(nn.Module):
    def __init__(self, hidden: int = HIDDEN, inner: int = 4 * HIDDEN):
        super().__init__()
        self.up = nn.Linear(hidden, inner)
        self.act = nn.GELU()
        self.down = nn.Linear(inner, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.up(x)))


class NextTokenLogits(nn.Module):
    """A causal LM → logits of the last position only (one tensor)."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.lm(input_ids=input_ids, logits_to_keep=1).logits


class LastHiddenState(nn.Module):
    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids=input_ids).last_hidden_state


class BasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """torchvision's resnet18 layout (BasicBlock ×[2, 2, 2, 2]), written in plain torch."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        layers, inplanes = [], 64
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers.append(nn.Sequential(BasicBlock(inplanes, planes, stride),
                                        BasicBlock(planes, planes, 1)))
            inplanes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _hf_ready(model: nn.Module) -> nn.Module:
    model.config.use_cache = False
    return model


def _gpt2() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    return NextTokenLogits(_hf_ready(GPT2LMHeadModel(GPT2Config(use_cache=False))))


def _bert() -> nn.Module:
    from transformers import BertConfig, BertModel

    return LastHiddenState(_hf_ready(BertModel(BertConfig(), add_pooling_layer=False)))


LLAMA_CONFIG = dict(vocab_size=32000, hidden_size=768, intermediate_size=2048,
                    num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=4,
                    max_position_embeddings=2048, rms_norm_eps=1e-5, bos_token_id=1,
                    eos_token_id=2, tie_word_embeddings=False, use_cache=False)


def _llama() -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    return NextTokenLogits(_hf_ready(LlamaForCausalLM(LlamaConfig(**LLAMA_CONFIG))))


def _qwen2() -> nn.Module:
    """The Qwen2-style model of issue 14 (q/k/v biases), at the Llama cell's sizes."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    return NextTokenLogits(_hf_ready(Qwen2ForCausalLM(Qwen2Config(**LLAMA_CONFIG))))


def _phi3() -> nn.Module:
    """Phi-3-style (one fused qkv_proj and gate_up_proj Linear each), the Llama cell's sizes."""
    from transformers import Phi3Config, Phi3ForCausalLM

    return NextTokenLogits(_hf_ready(Phi3ForCausalLM(Phi3Config(**LLAMA_CONFIG,
                                                                  pad_token_id=0))))


# name → (module factory, input factory(batch, dtype) → tuple of tensors, description)
def _float_input(key: str, shape) -> Callable:
    return lambda batch, dtype: (torch.from_numpy(uniform(key, (batch, *shape))).to(dtype),)


def _ids(key: str, seq: int, vocab: int) -> Callable:
    return lambda batch, dtype: (token_ids(key, batch, seq, vocab),)


MODELS: dict[str, tuple[Callable[[], nn.Module], Callable, str]] = {
    "mlp": (MLP, _float_input("mlp.x", (SEQ, HIDDEN)), "MLP 768→3072→768, 128 tokens"),
    "gpt2-prefill": (_gpt2, _ids("gpt2.ids", SEQ, 50257), "GPT-2 small, prefill T=128"),
    "gpt2-prefill-512": (_gpt2, _ids("gpt2.ids512", 512, 50257),
                         "GPT-2 small, prefill T=512"),
    "gpt2-decode": (_gpt2, _ids("gpt2.ids1", 1, 50257), "GPT-2 small, one token T=1"),
    "bert": (_bert, _ids("bert.ids", SEQ, 30522), "BERT-base, sequence 128"),
    "llama": (_llama, _ids("llama.ids", SEQ, 32000),
              "Llama-style 109M (GQA 12/4, RoPE, RMSNorm, SwiGLU), T=128"),
    "resnet": (ResNet18, _float_input("resnet.x", (3, 224, 224)), "ResNet-18, 3×224×224"),
    # transformers families outside the CPU suite (issue 14's GPU cells)
    "qwen2": (_qwen2, _ids("qwen2.ids", SEQ, 32000),
              "Qwen2-style 109M (q/k/v biases, GQA 12/4, SwiGLU 2048), T=128"),
    "phi3": (_phi3, _ids("phi3.ids", SEQ, 32000),
             "Phi-3-style 109M (fused qkv_proj and gate_up_proj, GQA 12/4), T=128"),
}
MODEL_NAMES = tuple(MODELS)
# Not in the CPU suite's default model list (run_suite --device cpu); --models takes them.
GPU_ONLY = ("gpt2-prefill-512", "qwen2", "phi3")


def build(name: str, batch: int = 1, dtype: torch.dtype = torch.float32):
    """(model in eval mode with deterministic weights, cast to `dtype`; example inputs)."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; zoo: {', '.join(MODELS)}")
    make_model, make_inputs, _ = MODELS[name]
    torch.manual_seed(0)  # only for anything deterministic_init leaves alone
    model = deterministic_init(make_model().eval()).to(dtype)
    return model, make_inputs(batch, dtype)


def describe(name: str) -> str:
    return MODELS[name][2]


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
