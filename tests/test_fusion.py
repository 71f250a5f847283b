"""Norm and activation raising on real model code, and IREE dispatches per transformer layer.

(a) GPT-2 (arithmetic gelu_new, LayerNorm), Llama (GQA, RMSNorm, SiLU) and BERT (erf GELU,
    LayerNorm) from tiny configs: exact counts of raised norms/activations, compiled == eager
    (Llama also in f16 and bf16 on the CPU).
(b) With kiln-raise-norms and kiln-raise-activations switched off the models still compile and
    match.
(c) Dispatches per layer (kiln.dispatches.dispatches_per_layer: 2 layers minus 1 layer) with
    Kiln's raising passes on and off, pinned to the numbers measured with IREE 3.13 as a
    regression guard; docs/fusion.md has the table and the dispatch names.

Each compile is 3-5 s on a 2-core CPU; dispatch counting stops at IREE's flow phase (~1 s).
"""

from __future__ import annotations

import functools

import pytest
import torch

import kiln
from kiln.dispatches import RAISING_CONFIGS, dispatches_per_layer
from kiln.examples import tiny
from kiln.examples.tiny import LAYERS, VOCAB, token_ids
from kiln.passes import PASS_REGISTRY, KilnPass, get_pass_class
from kiln.pipelines import RAISE_PASSES, build_raise_pipeline

from compare import assert_close, eager


# The tiny transformers models of the zoo, built with 1 or 2 layers (dispatches per layer).
FACTORIES = {name: functools.partial(tiny.hf_model, name) for name in tiny.HF_FAMILIES}

# kiln.layer_norm / kiln.rms_norm per model: GPT-2 and Llama 2 per layer + the final norm;
# BERT the embeddings LayerNorm + 2 per layer.
EXPECTED_NORMS = {name: 2 * LAYERS + 1 for name in FACTORIES}
NORM_KIND = {"gpt2": "norm/layer_norm", "llama": "norm/rms_norm", "bert": "norm/layer_norm"}
# The activation folded into one linear per layer (the MLP up-projection; Llama's gate).
LINEAR_ACTIVATION = {"gpt2": "gelu_tanh", "llama": "silu", "bert": "gelu"}


def example_args():
    return (token_ids(),)


@functools.lru_cache(maxsize=None)
def _compiled(name: str, dtype: torch.dtype = torch.float32, disabled: tuple = ()):
    """(model, args, CompiledModel), compiled once per test session (cache=False: the test
    measures this compile, not an artifact stored by an earlier one)."""
    model = FACTORIES[name]().to(dtype)
    args = example_args()
    compiled = kiln.compile_model(model, args, target="cpu", cache=False,
                                  disable_passes=list(disabled))
    return model, args, compiled


def _assert_matches_eager(model, args, compiled, dtype=torch.float32):
    got = kiln.load(compiled.vmfb)(*args)
    got = got[0] if isinstance(got, tuple) else got
    assert_close(got, eager(model, *args)[0], dtype)


def _linear_activations(report) -> list[str]:
    return [r.detail for r in report.rewrites if r.kind.startswith("linear/")]


# ---------------------------------------------------------------------------------------------
# (a) raised and equivalent


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_norms_and_activations_are_raised_and_match_eager(name):
    model, args, compiled = _compiled(name)
    report = compiled.report
    assert report.count("norm/") == EXPECTED_NORMS[name], report
    assert report.count(NORM_KIND[name]) == EXPECTED_NORMS[name], report
    # GPT-2's gelu_new is tanh arithmetic in the graph; Llama/BERT call F.silu / F.gelu already.
    assert report.count("activation/gelu_tanh") == (LAYERS if name == "gpt2" else 0), report
    assert report.count("activation/") == report.count("activation/gelu_tanh"), report
    if name != "gpt2":  # GPT-2: see test_gpt2_mlp_up_projection_carries_gelu_tanh
        details = _linear_activations(report)
        wanted = f"activation={LINEAR_ACTIVATION[name]}"
        assert details.count(wanted) == LAYERS, details
        assert details.count("activation=none") == len(details) - LAYERS, details
    _assert_matches_eager(model, args, compiled)


def test_gpt2_mlp_up_projection_carries_gelu_tanh():
    _, _, compiled = _compiled("gpt2")
    details = _linear_activations(compiled.report)
    # Rewrites are recorded in program order: c_attn, attn c_proj, c_fc, mlp c_proj per layer,
    # then lm_head. Every c_fc (the MLP up-projection) must carry the GELU.
    assert len(details) == 4 * LAYERS + 1, details
    up_projections = [details[4 * layer + 2] for layer in range(LAYERS)]
    assert up_projections == ["activation=gelu_tanh"] * LAYERS, details


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_llama_low_precision_on_cpu(dtype):
    model, args, compiled = _compiled("llama", dtype)
    report = compiled.report
    # The RMSNorm's f32 up-cast and down-cast are part of the matched pattern.
    assert report.count("norm/rms_norm") == EXPECTED_NORMS["llama"], report
    assert report.count("attention/") == LAYERS, report
    assert _linear_activations(report).count("activation=silu") == LAYERS, report
    _assert_matches_eager(model, args, compiled, dtype)


# ---------------------------------------------------------------------------------------------
# (b) the new passes switched off


def test_off_configuration_leaves_every_raising_pass_out():
    """"off" comes from the pipeline's own list: no Kiln pass is left in the raise pipeline it
    builds, and every raising pass of the registry is in that list (a pass added under
    passes/raising/ but not to kiln.pipelines.RAISE_PASSES would never run)."""
    off = RAISING_CONFIGS["off"]
    pipeline = build_raise_pipeline(raise_attention=off["raise_attention"],
                                    raise_linear=off["raise_linear"],
                                    disabled=tuple(off["disable_passes"]))
    left = [step.pipeline_text() for step in pipeline.steps if isinstance(step, KilnPass)]
    assert left == [], f"raising passes the 'off' configuration leaves on: {left}"
    raising = {name for name in PASS_REGISTRY
               if get_pass_class(name).__module__.startswith("kiln.passes.raising.")}
    assert raising == set(RAISE_PASSES), (sorted(raising - set(RAISE_PASSES)),
                                          sorted(set(RAISE_PASSES) - raising))


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_without_norm_and_activation_raising_still_matches(name):
    model, args, compiled = _compiled(name, torch.float32,
                                      ("kiln-raise-norms", "kiln-raise-activations"))
    report = compiled.report
    assert report.count("norm/") == 0 and report.count("activation/") == 0, report
    assert report.count("attention/") == LAYERS, report
    _assert_matches_eager(model, args, compiled)


# ---------------------------------------------------------------------------------------------
# (b') horizontal fusion: merged projections, whole-head slices, merged rotations

# Rewrites per layer. Llama and BERT merge q/k/v (GPT-2's c_attn is one Conv1D already); all
# three then split heads before slicing; Llama's q and k rotations are raised and merged, and
# its gate/up projections become one swiglu linear.
FUSION_PER_LAYER = {
    "gpt2": {"merge/linears": 0, "head-split/hoisted": 1, "rope/rotate_half": 0,
             "rope/merged": 0, "swiglu/gate+up": 0},
    "llama": {"merge/linears": 1, "head-split/hoisted": 1, "rope/rotate_half": 2,
              "rope/merged": 1, "swiglu/gate+up": 1},
    "bert": {"merge/linears": 1, "head-split/hoisted": 1, "rope/rotate_half": 0,
             "rope/merged": 0, "swiglu/gate+up": 0},
}
FUSION_PASSES = ("kiln-raise-rope", "kiln-fuse-residual-norms", "kiln-raise-swiglu",
                 "kiln-merge-linears", "kiln-hoist-head-split", "kiln-merge-ropes")
# Norms of a residual sum (x + r): GPT-2 ln_1 (after the embeddings' add, then the previous
# layer's output), ln_2 and ln_f; Llama all but the first input norm (it reads the embedding);
# BERT the embeddings LayerNorm and both post-LN norms of each layer.
RESIDUAL_NORMS = {"gpt2": 2 * LAYERS + 1, "llama": 2 * LAYERS, "bert": 2 * LAYERS + 1}


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_projections_merged_heads_hoisted_ropes_merged(name):
    _, _, compiled = _compiled(name)  # equivalence: test_norms_and_activations_..._match_eager
    for kind, per_layer in FUSION_PER_LAYER[name].items():
        assert compiled.report.count(kind) == per_layer * LAYERS, (kind, str(compiled.report))
    assert compiled.report.count("residual-norm/") == RESIDUAL_NORMS[name], str(compiled.report)


def test_report_counts_rewrites_per_pass():
    _, _, compiled = _compiled("llama")
    report = compiled.report
    counts = report.counts_by_pass()
    assert counts["kiln-merge-linears"] == {"merge/linears": LAYERS}
    assert counts["kiln-raise-rope"] == {"rope/rotate_half": 2 * LAYERS}
    assert counts["kiln-raise-swiglu"] == {"swiglu/gate+up": LAYERS}
    assert list(counts)[:2] == ["kiln-raise-attention", "kiln-raise-linear"]  # pipeline order
    assert sum(sum(kinds.values()) for kinds in counts.values()) == len(report.rewrites)
    line = next(line for line in str(report).splitlines() if "kiln-merge-linears " in line)
    assert line.split()[1:] == [str(LAYERS), "(merge/linears", f"{LAYERS})"], line


@pytest.mark.parametrize("name", ["llama", "bert"])
def test_merged_weights_are_concatenated_at_compile_time(name):
    """The merged projection's weight is an aten.cat of constants that IREE's const-eval
    computes when compiling: the artifact holds the concatenated weights alone (the q/k/v parts
    are 64 KiB (Llama) and 96 KiB (BERT) of f32 per model; measured: merged artifacts are 4-6
    KiB smaller than unmerged ones, having fewer executables)."""
    _, _, merged = _compiled(name)
    _, _, separate = _compiled(name, torch.float32, ("kiln-merge-linears",))
    assert merged.report.count("merge/linears") == LAYERS
    assert separate.report.count("merge/linears") == 0
    assert len(merged.vmfb) <= len(separate.vmfb) + 1024, (len(merged.vmfb),
                                                          len(separate.vmfb))


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_batch_two_matches_eager(name):
    """Batch 2: slices of whole heads are strided there (IREE copies some), kiln-merge-ropes
    keeps q and k apart, and grouped-query rows regroup a strided q."""
    model = FACTORIES[name]()
    args = (torch.cat([token_ids(), token_ids(3)]),)
    compiled = kiln.compile_model(model, args, target="cpu", cache=False)
    assert compiled.report.count("head-split/hoisted") == LAYERS, str(compiled.report)
    assert compiled.report.count("rope/merged") == 0, str(compiled.report)
    _assert_matches_eager(model, args, compiled)


def test_dynamic_sequence_keeps_projection_layout_and_matches_eager():
    """TinyGPT's fused qkv (Linear + split) with a dynamic sequence length at batch 1: whole-head
    slices made IREE 3.13's CPU backend fail ("exceeded stack allocation limit" in q·kᵀ), so
    the head split is not hoisted there. One artifact, several lengths."""
    from torch.export import Dim

    from kiln.examples.tiny_gpt import TinyGPTConfig, build_tiny_gpt

    model, (tokens,) = build_tiny_gpt(TinyGPTConfig(n_layers=2, d_model=64, n_heads=4,
                                                    max_seq_len=64, vocab_size=VOCAB),
                                      batch=1, seq_len=8)
    compiled = kiln.compile_model(model, (tokens,), target="cpu", cache=False,
                                  dynamic_shapes={"tokens": {1: Dim("seq", min=2, max=48)}})
    assert compiled.report.count("head-split/hoisted") == 0, str(compiled.report)
    run = kiln.load(compiled.vmfb)
    generator = torch.Generator().manual_seed(5)
    for length in (2, 17, 48):
        tokens = torch.randint(0, VOCAB, (1, length), generator=generator)
        got = run(tokens)
        assert_close(got[0] if isinstance(got, tuple) else got, eager(model, tokens))


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_without_fusion_passes_still_matches(name):
    model, args, compiled = _compiled(name, torch.float32, FUSION_PASSES)
    report = compiled.report
    assert all(report.count(kind) == 0 for kind in FUSION_PER_LAYER[name]), report
    assert report.count("residual-norm/") == 0, report
    _assert_matches_eager(model, args, compiled)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_fused_models_compile_for_cuda(name):
    """Compile-only (no GPU needed): f16 for target cuda, library kernels as the default picks
    them. Q/K/V merge, head splits and the SwiGLU merge happen there too (the library's GEMM
    has a SwiGLU epilogue); every linear gets a kernel when Triton is installed."""
    from kiln.compiler import use_cuda_kernels

    compiled = kiln.compile_model(FACTORIES[name]().to(torch.float16), example_args(),
                                  target="cuda", cache=False)
    assert compiled.vmfb, name
    report = compiled.report
    expected = dict(FUSION_PER_LAYER[name])
    if use_cuda_kernels("auto", ("cuda",)):
        # These test configs are small: their linears stay below the measured kernel
        # threshold (kiln_select_cuda_kernels.MIN_LINEAR_WEIGHT_ELEMENTS); nothing else may
        # decline a kernel.
        declined = [r for r in report.rewrites if r.pass_name == "kiln-select-cuda-kernels"
                    and r.kind == "kiln.linear" and "IREE codegen" in r.detail
                    and "below the measured kernel threshold" not in r.detail]
        assert not declined, declined
    for kind, per_layer in expected.items():
        assert report.count(kind) == per_layer * LAYERS, (kind, str(report))


def test_swiglu_compiles_for_cuda_without_kernels():
    compiled = kiln.compile_model(FACTORIES["llama"]().to(torch.float16), example_args(),
                                  target="cuda", cache=False, cuda_kernels="off")
    assert compiled.vmfb
    assert compiled.report.count("swiglu/gate+up") == LAYERS, str(compiled.report)


# ---------------------------------------------------------------------------------------------
# (c) dispatches per layer

# Regression guard, measured with iree-base-compiler 3.13.0 for the CPU (host) on the 2-core
# AMD EPYC dev machine. If a change moves these on purpose, re-measure with
# `python -m bench.dispatches` and update docs/fusion.md and this table.
# "on" saves what the merged Q/K/V projection (one matmul written head-major, q/k/v read in place
# as whole heads), the merged q/k rotation and grouped-query rows save (GPT-2 −3: the slice
# copies of c_attn; BERT −2; Llama −3) and pays 2 per layer for Kiln's decomposed attention
# (q·kᵀ, softmax, p·v, where IREE's fused attention is 1; faster on the CPU, see
# docs/decisions.md): "on-fused" shows the count with the fused attention.
DISPATCHES_PER_LAYER = {
    ("gpt2", "off"): 10, ("gpt2", "on"): 10, ("gpt2", "on-fused"): 8,
    ("llama", "off"): 12, ("llama", "on"): 13, ("llama", "on-fused"): 10,
    ("bert", "off"): 9, ("bert", "on"): 10, ("bert", "on-fused"): 8,
}


@pytest.mark.parametrize("config", list(RAISING_CONFIGS))
@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_dispatches_per_layer(name, config):
    measured = dispatches_per_layer(FACTORIES[name], example_args(), target="cpu",
                                    **RAISING_CONFIGS[config])
    assert measured == DISPATCHES_PER_LAYER[(name, config)], (
        f"{name} with Kiln's passes {config}: {measured} dispatches per layer, pinned "
        f"{DISPATCHES_PER_LAYER[(name, config)]} (re-measure with python -m bench.dispatches "
        f"and update docs/fusion.md)")
