"""f16 contractions reach IREE's CUDA codegen with f32 accumulators (CPU-only check).

ResNet-18 and BERT-base in f16 were wrong on an H200 (bench/gpu/f16_accuracy.py). This pins
what Kiln hands IREE for target cuda, so precision lost in Kiln's IR cannot be the cause again:
torch-mlir lowers f16 aten.convolution / linear / matmul to linalg ops with an f32 accumulator
plus a truncf, IREE keeps that through dispatch formation (dispatch names end in f16xf16xf32)
and picks an f32-accumulating tensor-core layout (NV_MMA_SYNC_F32_16x8x16_F16) on sm_80.
"""

from __future__ import annotations

import re
import subprocess

import pytest
import torch
from torch import nn

import kiln
from kiln.bindings import iree_compile_tool
from kiln.targets import CompileTarget, iree_flags

CONTRACTION = re.compile(r"^(conv|matmul|matmul_like|batch_matmul|matvec_like)_\w+$")


class ConvBNReLU(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(64, 64, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(64)
        self.down = nn.Conv2d(64, 128, 1, 2, bias=False)

    def forward(self, x):
        return self.down(torch.relu(self.bn(self.conv(x))))


class Block(nn.Module):
    """Linear + attention (decomposed on CUDA: scores and P·V are batch matmuls) + MLP."""

    def __init__(self, d=128, heads=2):
        super().__init__()
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.up, self.down = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.heads = heads

    def forward(self, x):
        b, s, d = x.shape
        q, k, v = (t.view(b, s, self.heads, d // self.heads).transpose(1, 2)
                   for t in self.qkv(x).split(d, dim=-1))
        a = nn.functional.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(a.transpose(1, 2).reshape(b, s, d))
        return x + self.down(nn.functional.gelu(self.up(x)))


def _cuda_configurations(model, args) -> str:
    text = kiln.compile_to_vmfb(model, args, target="cuda", compile_to="iree-input",
                                cuda_kernels="off", cache=False)
    result = subprocess.run([iree_compile_tool(), "-", "--compile-to=executable-configurations",
                             *iree_flags(CompileTarget(devices=("cuda",)))], input=text, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize("case", ["conv", "block"])
def test_cuda_contractions_accumulate_in_f32(case, dtype):
    torch.manual_seed(0)
    if case == "conv":
        model, args = ConvBNReLU().eval().to(dtype), (torch.randn(1, 64, 28, 28).to(dtype),)
    else:
        model, args = Block().eval().to(dtype), (torch.randn(2, 32, 128).to(dtype),)
    ir = _cuda_configurations(model, args)
    short = "f16" if dtype == torch.float16 else "bf16"
    names = [re.sub(r"^main\$async_dispatch_\d+_", "", n)
             for n in re.findall(r"func\.func @(main\$async_dispatch_\w+)\(", ir)]
    contractions = [n for n in names if CONTRACTION.match(n)]
    assert contractions, names
    # IREE names a contraction dispatch after its element types: lhs x rhs x accumulator.
    wrong = [n for n in contractions if not n.endswith(f"_{short}x{short}xf32")]
    assert not wrong, f"contractions without an f32 accumulator: {wrong}"
    kinds = set(re.findall(r"mma_kind = #iree_gpu\.mma_layout<(\w+)>", ir))
    assert kinds, "no tensor-core layout chosen"
    assert all(k.startswith("NV_MMA_SYNC_F32_") for k in kinds), kinds
