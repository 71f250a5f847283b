"""IREE dispatches per decoder layer on CUDA with Kiln's kernels, counted without a GPU (issue 14).

GPT-2, Llama and Qwen2-style transformers models from tiny configs with realistic head dims
(hidden 512, 8 heads of 64; Llama/Qwen2 with 2 kv heads; f16), compiled for target cuda with
the kernels on (`compile_to="iree-input"`, then `iree-compile --compile-to=flow`): per layer =
dispatches of the 2-layer model minus the 1-layer model. Hidden 512 keeps every linear of a
layer at or above the kernel threshold (2^18 weight elements), as in the real models.
Prefill is 1×32 tokens; decode is the zoo's decode cell (one token, no KV cache); the
generator's decode is `kiln.compile_generator`'s decode function (one token over a KV cache
kept on the device), counted alone.

    python tests/test_cuda_dispatches.py     # the table and the dispatch names of one layer

The pinned counts are a regression guard: a change that moves them on purpose updates
DISPATCHES_PER_LAYER (and docs/kernels.md); the target is TARGET_PER_LAYER.
"""

from __future__ import annotations

import re

import pytest
import torch

HIDDEN, HEADS, KV_HEADS, INTERMEDIATE, VOCAB, POSITIONS = 512, 8, 2, 1024, 128, 64
SHAPES = {"prefill": (1, 32), "decode": (1, 1)}  # token ids (batch, length)

# Measured with iree-base-compiler 3.13.0, Triton 3.6.0, transformers 5.24 (this file's main).
# Before issue 14's fused kernels: GPT-2 14 / 12, Llama 19 / 15, Qwen2 19 / 15 (prefill / decode:
# IREE's norms, residual adds, RoPE, head transposes, q/k/v copies, SwiGLU multiply and split-K
# reduces between the kernels). Split GEMMs and split-KV attention reduce their splits in the
# launch that computed them (kiln.kernels.plan.SPLITS_REDUCED_IN_KERNEL, on since measured on
# an H100), so split-K adds no launch. Now each layer is: QKV GEMM (input norm in its prologue),
# attention (q/k/v read in place from the QKV output, RoPE while loading, output [B, S, H·D]),
# O GEMM + residual, MLP-in GEMM (norm in its prologue; GELU, or SwiGLU with two accumulators),
# MLP-out GEMM + residual.
DISPATCHES_PER_LAYER = {
    ("gpt2", "prefill"): 5, ("gpt2", "decode"): 5,
    ("llama", "prefill"): 5, ("llama", "decode"): 5,
    ("qwen2", "prefill"): 5, ("qwen2", "decode"): 5,
}
TARGET_PER_LAYER = 6  # issue 14
# The generator's decode (kiln.compile_generator for CUDA: the KV cache as device state, 32
# slots, written by a select): before, each layer added RoPE of q and k and the k and v cache
# selects over every slot (GPT-2 7, Llama 9, Qwen2 9, at commit b973bf2); now the decode
# attention kernel reads q and the new k/v in place, rotates them, writes the new rows into
# the caches and attends over them: the five launches of the layer without a cache.
GENERATOR_DECODE_PER_LAYER = {"gpt2": 5, "llama": 5, "qwen2": 5}
# With cuda_chain (kiln-chain-cuda-kernels): the layer's five kernel calls as launches of
# ticketed stages (kiln.kernels.sequence). One launch per layer until an H100 refused to load
# it (the fused kernel took 21-30 buffers; IREE's CUDA runtime binds at most 16 per dispatch,
# kiln.cuda_kernels.IREE_CUDA_MAX_BINDINGS): the chain pass keeps each launch within the
# limit, the stages' temps sharing one binding (kiln.kernels.sequence.ARENA) and the unused
# scratch pointers dropped (as from every kernel, kiln.kernels.plan). Forward passes: Llama one launch per
# layer, GPT-2 and Qwen2 (biases) two; the generator's decode, whose attention also binds the
# caches and the position: two for each family.
CHAINED_PER_LAYER = {"gpt2": 2, "llama": 1, "qwen2": 2}
GENERATOR_DECODE_CHAINED_PER_LAYER = {"gpt2": 2, "llama": 2, "qwen2": 2}
GENERATOR_SLOTS = 32


def build(family: str, layers: int) -> torch.nn.Module:
    """The transformers model (random weights, seed 0, f16, eval, no KV cache) returning logits."""
    import transformers as hf

    torch.manual_seed(0)
    decoder = dict(vocab_size=VOCAB, use_cache=False, hidden_size=HIDDEN,
                   intermediate_size=INTERMEDIATE, num_hidden_layers=layers,
                   num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
                   max_position_embeddings=POSITIONS, bos_token_id=0, eos_token_id=0)
    if family == "gpt2":
        model = hf.GPT2LMHeadModel(hf.GPT2Config(
            vocab_size=VOCAB, n_positions=POSITIONS, n_embd=HIDDEN, n_layer=layers,
            n_head=HEADS, n_inner=4 * HIDDEN, bos_token_id=0, eos_token_id=0, use_cache=False))
    elif family == "llama":
        model = hf.LlamaForCausalLM(hf.LlamaConfig(**decoder))
    elif family == "qwen2":
        model = hf.Qwen2ForCausalLM(hf.Qwen2Config(**decoder))
    else:
        raise ValueError(f"unknown family {family!r}")
    model.config.use_cache = False
    return Logits(model.eval().half())


class Logits(torch.nn.Module):
    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        return self.model(input_ids=input_ids)[0]


def tokens(phase: str) -> torch.Tensor:
    return torch.randint(0, VOCAB, SHAPES[phase], generator=torch.Generator().manual_seed(0))


def layer_dispatches(family: str, phase: str, **options) -> tuple[int, tuple, list, str]:
    """(dispatches per layer, the names one layer adds, the 2-layer compile report and IREE
    input text)."""
    import kiln
    from kiln.dispatches import count_dispatches

    counts, report = [], None
    for layers in (1, 2):
        compiled = kiln.compile_model(build(family, layers), (tokens(phase),), target="cuda",
                                      compile_to="iree-input", cache=False, **options)
        counts.append(count_dispatches(compiled.ir_text, "cuda"))
        report, text = compiled.report, compiled.ir_text
    return counts[1].count - counts[0].count, layer_names(counts[0].names, counts[1].names), \
        report, text


def layer_names(one: tuple, two: tuple) -> tuple:
    """The names one more layer adds: the window w with two == one[:p] + w + one[p:]."""
    n = len(two) - len(one)
    for p in range(len(one) + 1):
        if two[:p] == one[:p] and two[p + n:] == one[p:]:
            return two[p:p + n]
    return two


@pytest.mark.parametrize("phase", sorted(SHAPES))
@pytest.mark.parametrize("family", ["gpt2", "llama", "qwen2"])
def test_dispatches_per_decoder_layer(family, phase):
    pytest.importorskip("triton", reason="kernels need triton (pip install kiln[cuda])")
    measured, names, report, _ = layer_dispatches(family, phase)
    # Only the LM head (vocab 128: below the kernel threshold) may stay with IREE.
    declined = [r for r in report.rewrites if r.pass_name == "kiln-select-cuda-kernels"
                and "IREE codegen" in r.detail and f"weight {VOCAB}x{HIDDEN} " not in r.detail]
    pinned = DISPATCHES_PER_LAYER[(family, phase)]
    assert not declined, [str(r) for r in declined]
    assert all(name.endswith("_kernel") for name in names), names  # only Kiln's kernels
    assert measured == pinned, (
        f"{family} {phase}: {measured} dispatches per layer on CUDA, pinned {pinned}: "
        f"{', '.join(names)}; declined: {[str(r) for r in declined]} (update "
        f"DISPATCHES_PER_LAYER and docs/kernels.md if this is on purpose)")


def generator_decode_dispatches(family: str, **options) -> tuple[int, tuple[str, ...]]:
    """(dispatches per layer of the generator's decode function, the names one layer adds)."""
    import kiln
    from kiln.dispatches import count_dispatches

    counts = []
    for layers in (1, 2):
        text = kiln.compile_generator(build(family, layers).model, max_seq_len=GENERATOR_SLOTS,
                                      target="cuda", dtype=torch.float16, prefill_chunks=(2,),
                                      compile_to="iree-input", cache=False, **options)
        counts.append(count_dispatches(text, "cuda", function="decode"))
    return counts[1].count - counts[0].count, layer_names(counts[0].names, counts[1].names)


@pytest.mark.parametrize("family", ["gpt2", "llama", "qwen2"])
def test_generator_decode_dispatches_per_layer(family):
    pytest.importorskip("triton", reason="kernels need triton (pip install kiln[cuda])")
    measured, names = generator_decode_dispatches(family)
    pinned = GENERATOR_DECODE_PER_LAYER[family]
    assert all(name.endswith("_kernel") for name in names), names  # only Kiln's kernels
    assert names.count("attention_decode_kernel") == 1, names
    assert measured == pinned <= TARGET_PER_LAYER, (
        f"{family} generator decode: {measured} dispatches per layer on CUDA, pinned "
        f"{pinned}: {', '.join(names)} (update GENERATOR_DECODE_PER_LAYER and docs/kernels.md "
        f"if this is on purpose)")


@pytest.mark.parametrize("phase", sorted(SHAPES))
@pytest.mark.parametrize("family", ["gpt2", "llama", "qwen2"])
def test_chained_decoder_layers(family, phase):
    """cuda_chain on a forward pass: each decoder layer in CHAINED_PER_LAYER launches (a decode
    without a cache reads k and v from the QKV output, past L1, like q), none binding more
    buffers than IREE's CUDA runtime loads."""
    pytest.importorskip("triton", reason="kernels need triton (pip install kiln[cuda])")
    from kiln.cuda_kernels import IREE_CUDA_MAX_BINDINGS

    measured, names, _, text = layer_dispatches(family, phase, cuda_chain=True)
    assert measured == CHAINED_PER_LAYER[family] and "kiln_sequence" in names, \
        (family, phase, measured, names)
    bindings = [layout.count("#hal.pipeline.binding<") for layout in
                re.findall(r"#hal\.pipeline\.layout<.*?>\]>", text)]
    assert bindings and max(bindings) <= IREE_CUDA_MAX_BINDINGS, bindings


@pytest.mark.parametrize("family", ["gpt2", "llama", "qwen2"])
def test_generator_decode_chained_layers(family):
    """cuda_chain: each decoder layer of the decode step is one launch (the RoPE tables and
    casts between the calls read nothing the layer computes and move above it)."""
    pytest.importorskip("triton", reason="kernels need triton (pip install kiln[cuda])")
    measured, names = generator_decode_dispatches(family, cuda_chain=True)
    pinned = GENERATOR_DECODE_CHAINED_PER_LAYER[family]
    assert measured == pinned and "kiln_sequence" in names, (
        f"{family} chained generator decode: {measured} dispatches per layer, pinned "
        f"{pinned}: {', '.join(names)}")


def main() -> None:
    print(f"| model | " + " | ".join(SHAPES) + " |")
    print("|---" * (len(SHAPES) + 1) + "|")
    lists = {}
    for family in ("gpt2", "llama", "qwen2"):
        row = []
        for phase in SHAPES:
            count, names, _, _ = layer_dispatches(family, phase)
            lists[(family, phase)] = names
            row.append(str(count))
        print(f"| {family} | " + " | ".join(row) + " |")
    for family in ("gpt2", "llama", "qwen2"):
        count, names = generator_decode_dispatches(family)
        print(f"| {family} generator decode ({GENERATOR_SLOTS} cache slots) | {count} |")
        lists[(family, "generator decode")] = names
    for (family, phase), names in lists.items():
        print(f"\n{family} {phase}:")
        print("\n".join(f"{i}. `{n}`" for i, n in enumerate(names, 1)))


if __name__ == "__main__":
    main()
