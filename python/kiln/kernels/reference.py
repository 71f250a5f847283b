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
           has_residual: bool, norm: Optional[str] = None, norm_eps: float = 1e-5,
           has_norm_weight: bool = False, has_norm_bias: bool = False,
           weight_parts=None, bias_parts=None) -> torch.Tensor:
    """The plan's result in f64; inputs in the plan's order (kiln.kernels.linear)."""
    parts = len(weight_parts) if weight_parts else 1
    x = inputs[0].double()
    w = torch.cat([t.double() for t in inputs[1:1 + parts]], dim=0)
    rest = list(inputs[1 + parts:])
    bias = None
    if has_bias:
        count = len(bias_parts) if bias_parts else 1
        bias = torch.cat([rest.pop(0).double() for _ in range(count)])
    residual = rest.pop(0).double() if has_residual else None
    if norm is not None:
        if norm == "layer":
            x = x - x.mean(-1, keepdim=True)
        x = x / torch.sqrt((x * x).mean(-1, keepdim=True) + norm_eps)
        if has_norm_weight:
            x = x * rest.pop(0).double()
        if has_norm_bias:
            x = x + rest.pop(0).double()
    y = x @ (w.t() if weight_layout == "out_in" else w)
    if bias is not None:
        y = y + bias
    if activation_name == "swiglu":
        half = y.shape[-1] // 2
        y = torch.nn.functional.silu(y[..., :half]) * y[..., half:]
    else:
        y = activation(y, activation_name)
    if residual is not None:
        y = y + residual
    return y


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half rotary embedding (HF Llama) of x [b, h, s, d] with tables [1 or b, s', d]
    (the first s positions)."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    s = x.shape[-2]
    cos, sin = cos[:, None, :s, :].double(), sin[:, None, :s, :].double()
    return x * cos + rotated * sin


def attention_operands(inputs, args: dict) -> list[torch.Tensor]:
    """q, k, v [b, h, s, d] as the plan reads them (through its views, rotated), then the mask
    (or nothing), from the plan's inputs (kiln.kernels.attention)."""
    b, hq, hkv, sq, sk, d = (args[name] for name in ("b", "hq", "hkv", "sq", "sk", "d"))
    buffers = args.get("buffers")
    if buffers is None:
        q, k, v = (t.double() for t in inputs[:3])
        rest = list(inputs[3:])
    else:
        flat = [t.double().reshape(-1) for t in inputs[:len(buffers)]]
        rest = list(inputs[len(buffers):])
        views = []
        for view, h, s in ((args["q_view"], hq, sq), (args["k_view"], hkv, sk),
                           (args["v_view"], hkv, sk)):
            index, offset, sb, sh, ss = view
            views.append(flat[index].as_strided((b, h, s, d), (sb, sh, ss, 1), offset))
        q, k, v = views
    mask = [rest.pop(0)] if args.get("mask_kind") else []
    cos = sin = None
    if args.get("rope"):
        rope_q, rope_k, _, _ = args["rope"]
        cos, sin = rest[:2]
        rest = rest[2:]
        q = rope(q, cos, sin) if rope_q else q
        k = rope(k, cos, sin) if rope_k and not args.get("new_kv") else k
    if args.get("new_kv"):
        k, v = written_caches(inputs, args)
    return [q, k, v] + mask


def written_caches(inputs, args: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The k and v caches (f64) after a decode with `new_kv` (kiln.kernels.attention): the new
    rows (the key rotated when rope_k) at the slot given as the last input, when the slot is
    in [0, sk); every other slot as given."""
    b, hkv, sk, d = (args[name] for name in ("b", "hkv", "sk", "d"))
    buffers = args["buffers"]
    flat = [t.double().reshape(-1) for t in inputs[:len(buffers)]]
    position = int(inputs[-1].reshape(-1)[0])
    caches = []
    for cache_view, new_view, rotate in ((args["k_view"], args["new_kv"][0], True),
                                         (args["v_view"], args["new_kv"][1], False)):
        cache = flat[cache_view[0]].reshape(b, hkv, sk, d).clone()
        index, offset, sb, sh, _ = new_view
        row = flat[index].as_strided((b, hkv, 1, d), (sb, sh, 0, 1), offset)
        if rotate and args.get("rope") and args["rope"][1]:
            cos, sin = inputs[-3], inputs[-2]
            row = rope(row, cos, sin)
        if 0 <= position < sk:
            cache[:, :, position:position + 1] = row
        caches.append(cache)
    return caches[0], caches[1]


def attention(inputs, scale: float, causal: bool, mask_kind: Optional[str],
              args: Optional[dict] = None) -> torch.Tensor:
    """The plan's result in f64 ([b, hq, sq, d], or [b, sq, hq, d] for out_layout "bshd");
    with `args` (the plan's arguments) the inputs are read through its views and rope."""
    if args is not None:
        inputs = attention_operands(inputs, args)
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
    out = (p / torch.where(total == 0, torch.ones_like(total), total)) @ v
    if args is not None and args.get("out_layout") == "bshd":
        out = out.transpose(1, 2)
    return out


def random_inputs(spec: PlanSpec, mask_kind: Optional[str], device="cpu", seed: int = 0,
                  masked_rows: bool = True) -> list[torch.Tensor]:
    """Inputs for a plan: normal values; a bool mask keeps ~70% (with one fully masked row when
    it has rows); an additive mask has values in [-2, 0] and some -inf."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    tensors = []
    # The mask follows the q/k/v buffers (three unless the plan reads views of fewer).
    buffers = len({launch_arg for launch in spec.launches
                   for param, launch_arg in zip(launch.pointers, launch.args)
                   if param.name in ("q_ptr", "k_ptr", "v_ptr")})
    mask_input = f"in{buffers or 3}"
    for name, shape, dtype in spec.inputs:
        if name == mask_input and mask_kind is not None:
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
