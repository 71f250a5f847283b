"""Reference results (torch, f64 on the inputs as given) and random inputs for kernel checks."""

from __future__ import annotations

import math
from typing import Optional

import torch

from kiln.kernels.execute import TORCH_DTYPES
from kiln.kernels.plan import PlanSpec

# Accepted max |out - ref| / max |ref| per dtype (f32 accumulation, one rounding of the output
# and, in attention, of the probabilities before P·V).
TOLERANCE = {"f16": 6e-3, "bf16": 3e-2}


def activation(x: torch.Tensor, name: str) -> torch.Tensor:
    if name == "gelu":
        return torch.nn.functional.gelu(x)
    if name == "gelu_tanh":
        return torch.nn.functional.gelu(x, approximate="tanh")
    if name == "relu":
        return torch.relu(x)
    if name == "silu":
        return torch.nn.functional.silu(x)
    return x


def linear(inputs, weight_layout: str, has_bias: bool, activation_name: str,
           has_residual: bool) -> torch.Tensor:
    x, w = inputs[0].double(), inputs[1].double()
    y = x @ (w.t() if weight_layout == "out_in" else w)
    rest = list(inputs[2:])
    if has_bias:
        y = y + rest.pop(0).double()
    y = activation(y, activation_name)
    if has_residual:
        y = y + rest.pop(0).double()
    return y


def attention(inputs, scale: float, causal: bool, mask_kind: Optional[str]) -> torch.Tensor:
    q, k, v = (t.double() for t in inputs[:3])
    group = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(group, dim=1)
    v = v.repeat_interleave(group, dim=1)
    s = scale * (q @ k.transpose(-1, -2))
    if mask_kind == "additive":
        s = s + inputs[3].double()
    elif mask_kind == "bool":
        s = s.masked_fill(inputs[3] == 0, -math.inf)
    if causal:
        sq, sk = s.shape[-2:]
        keep = torch.ones(sq, sk, dtype=torch.bool, device=s.device).tril()
        s = s.masked_fill(~keep, -math.inf)
    top = s.amax(-1, keepdim=True)
    top = torch.where(torch.isinf(top), torch.zeros_like(top), top)
    p = torch.exp(s - top)
    total = p.sum(-1, keepdim=True)
    return (p / torch.where(total == 0, torch.ones_like(total), total)) @ v


def random_inputs(spec: PlanSpec, mask_kind: Optional[str], device="cpu", seed: int = 0,
                  masked_rows: bool = True) -> list[torch.Tensor]:
    """Inputs for a plan: normal values; a bool mask keeps ~70% (with one fully masked row when
    it has rows); an additive mask has values in [-2, 0] and some -inf."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    tensors = []
    for index, (name, shape, dtype) in enumerate(spec.inputs):
        if index == 3 and mask_kind is not None:
            if mask_kind == "bool":
                keep = (torch.rand(shape, generator=gen) < 0.7)
                if masked_rows and shape[-2] > 1:
                    keep[..., 1, :] = False
                t = keep.to(torch.int8)
            else:
                t = -2 * torch.rand(shape, generator=gen)
                t[torch.rand(shape, generator=gen) < 0.2] = -math.inf
                t = t.to(TORCH_DTYPES[dtype])
        else:
            t = torch.randn(shape, generator=gen).to(TORCH_DTYPES[dtype])
        tensors.append(t.to(device))
    return tensors


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    out = out.double()
    if torch.isnan(out).any() != torch.isnan(ref).any():
        return math.inf
    diff = (out - ref).abs().nan_to_num(0.0).max().item()
    return diff / max(ref.abs().nan_to_num(0.0).max().item(), 1e-6)
