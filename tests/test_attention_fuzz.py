"""Fuzzing kiln-raise-attention: attention written every common way (tests/attention_variants.py)
becomes exactly one kiln.attention (causal forms with causal = true and no mask operand,
unmasked forms without a mask) and the artifact computes what eager computes.

CI runs a seeded sample that uses every value of every dimension; the whole product (51,840
variants) or a larger sample runs with
    KILN_ATTENTION_FUZZ=all   python -m pytest tests/test_attention_fuzz.py   (raising only)
    KILN_ATTENTION_FUZZ=200   python -m pytest tests/test_attention_fuzz.py
"""

from __future__ import annotations

import os

import pytest
import torch

import kiln

import compare
from attention_variants import AttentionVariant, all_variants, example_inputs, sample_variants


_SETTING = os.environ.get("KILN_ATTENTION_FUZZ", "")
if _SETTING == "all":
    RAISED = all_variants()
    COMPILED = sample_variants(200, seed=1)
else:
    RAISED = sample_variants(int(_SETTING) if _SETTING.isdigit() else 40, seed=0)
    COMPILED = sample_variants(int(_SETTING) if _SETTING.isdigit() else 0, seed=1)


def raise_report(variant):
    model = AttentionVariant(variant).eval()
    return kiln.compile_model(model, example_inputs(variant), compile_to="kiln", cache=False)


@pytest.mark.parametrize("variant", RAISED, ids=str)
def test_variant_becomes_one_kiln_attention(variant):
    compiled = raise_report(variant)
    attentions = [r for r in compiled.report.rewrites if r.kind.startswith("attention/")]
    assert len(attentions) == 1, (compiled.report.unmatched_softmax, compiled.ir_text[-3000:])
    detail = attentions[0].detail
    assert ("causal" in detail) == variant.causal, detail
    assert ("mask×" in detail) == variant.masked, detail
    assert compiled.ir_text.count("kiln.attention") == 1
    assert "torch.aten._softmax" not in compiled.ir_text
    assert "torch.aten.softmax" not in compiled.ir_text


@pytest.mark.parametrize("variant", COMPILED, ids=str)
def test_variant_compiles_to_eager_values(variant):
    model = AttentionVariant(variant).eval()
    args = example_inputs(variant, seed=1)
    compiled = kiln.compile_model(model, args)
    assert compiled.report.count("attention/") == 1
    got = kiln.load(compiled.vmfb)(*args)
    with torch.no_grad():
        want = model(*args)
    compare.assert_close(got, want, dtype=variant.torch_dtype)
