"""IREE CPU codegen limits: the fused norm dispatches of BERT-base, GPT-2 and Llama (d=768).

IREE 3.13 at O3 fuses a multi-use elementwise producer (an embedding sum, a residual add) into
a norm's row-reduction dispatch, with data-tiling packs of its results. llvm-cpu keeps whole
rows of each intermediate per tile: at hidden 768 that is over the 64 KiB stack limit (BERT:
3 x 8 x 768 f32 = 73,920 B with the rest) or over the 32 KiB vector limit (GPT-2 batch 8: a
16 x 768 pack transpose).
Kiln recompiles such a module without multi-use fusion (kiln.targets.codegen_fallback_flags).
The models here are one block of the failing pattern at the real hidden size, tiny otherwise
(vocabulary 64, no attention): a few seconds each on the 2-core CPU.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import kiln
from kiln.bindings import iree_compiler
from kiln.targets import (CPU_CODEGEN_FALLBACK_FLAGS, CPU_CODEGEN_LIMIT_ERRORS, CompileTarget,
                          iree_flags)

from compare import assert_close


HIDDEN = 768  # the failure needs rows of ~700+ floats; smaller models compile without it
SEQ = 128
VOCAB = 64


class EmbeddingNorm(nn.Module):
    """BERT's embeddings (token gather + position table, a norm) and, with `linear`, GPT-2's
    first block entry (a linear of the normalized rows added to the embedding sum)."""

    def __init__(self, norm: str = "layer", linear: bool = True):
        super().__init__()
        self.tokens = nn.Embedding(VOCAB, HIDDEN)
        self.positions = nn.Parameter(torch.randn(SEQ, HIDDEN) * 0.02)
        self.norm = nn.LayerNorm(HIDDEN) if norm == "layer" else nn.RMSNorm(HIDDEN)
        self.proj = nn.Linear(HIDDEN, HIDDEN) if linear else None

    def forward(self, ids):
        h = self.tokens(ids) + self.positions
        return self.norm(h) if self.proj is None else h + self.proj(self.norm(h))


class ResidualNorm(nn.Module):
    """A Llama block's tail: residual add, RMSNorm, a linear added to the residual."""

    def __init__(self):
        super().__init__()
        self.up = nn.Linear(HIDDEN, HIDDEN, bias=False)
        self.norm = nn.RMSNorm(HIDDEN, eps=1e-5)
        self.down = nn.Linear(HIDDEN, HIDDEN, bias=False)

    def forward(self, x):
        h = x + self.up(x)
        return h + self.down(self.norm(h))


def _case(name: str, batch: int):
    torch.manual_seed(0)
    if name == "residual-rmsnorm-linear":
        return ResidualNorm().eval(), (torch.randn(batch, SEQ, HIDDEN),)
    model = EmbeddingNorm("rms" if "rmsnorm" in name else "layer", name.endswith("linear"))
    return model.eval(), (torch.randint(0, VOCAB, (batch, SEQ)),)


# BERT b1/b8: stack 73,920 B; GPT-2 b8: a 48 KiB vector; Llama b8: residual + RMSNorm
CASES = [("embeddings-layernorm", 1), ("embeddings-layernorm", 8),
         ("embeddings-layernorm-linear", 8), ("embeddings-rmsnorm-linear", 1),
         ("residual-rmsnorm-linear", 8)]


@pytest.mark.parametrize("name,batch", CASES)
def test_norm_dispatches_compile_and_match(name, batch):
    model, args = _case(name, batch)
    # IREE's own matmuls: the fused patterns below form around them (Kiln's CPU GEMM, on by
    # default on Intel AVX-512 hosts, is its own dispatch and avoids them)
    compiled = kiln.compile_model(model, args, target="cpu", cache=False, cpu_kernels="off")
    with torch.no_grad():
        assert_close(kiln.load(compiled.vmfb)(*args), model(*args))
    fallbacks = [r for r in compiled.report.rewrites if r.pass_name == "iree-compile"]
    assert [r.kind for r in fallbacks] == ["fallback/" + " ".join(CPU_CODEGEN_FALLBACK_FLAGS)]
    assert any(e in fallbacks[0].detail for e in CPU_CODEGEN_LIMIT_ERRORS), fallbacks[0]


@pytest.mark.parametrize("name,batch,limit", [
    ("embeddings-layernorm", 1, "exceeded stack allocation limit"),
    ("embeddings-layernorm-linear", 8, "large vector sizes"),
    ("residual-rmsnorm-linear", 8, "exceeded stack allocation limit|large vector sizes")])
def test_patterns_hit_the_codegen_limit_without_the_fallback(name, batch, limit):
    """The cases above do reproduce the failure (else they guard nothing): Kiln's default flags
    alone fail in llvm-cpu codegen; with the fallback flags they compile."""
    model, args = _case(name, batch)
    text = kiln.compile_to_vmfb(model, args, target="cpu", compile_to="iree-input", cache=False,
                               cpu_kernels="off")
    compiler = iree_compiler()
    with pytest.raises(compiler.CompilerToolError, match=limit):
        compiler.compile_str(text, extra_args=iree_flags(CompileTarget()))
    assert compiler.compile_str(text, extra_args=iree_flags(CompileTarget()) +
                                list(CPU_CODEGEN_FALLBACK_FLAGS))

