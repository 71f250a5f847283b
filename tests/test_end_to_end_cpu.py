"""Compile for the CPU, run with kiln.load, compare with eager PyTorch; check the rewrites.

Models: small MLPs, the bundled tiny GPT (eager and SDPA attention), and tiny transformers
GPT-2 / Llama (GQA) / BERT built from configs. Also f16 and bf16 on CPU, each phase's IR text,
`output=` and numpy-in/numpy-out vs torch-in/torch-out.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch

import kiln
from kiln.examples import tiny
from kiln.examples.tiny import LAYERS

from compare import assert_close, as_tuple, eager


def compile_and_run(model, args, **options):
    compiled = kiln.compile_model(model, args, target="cpu", **options)
    assert isinstance(compiled.vmfb, bytes) and len(compiled.vmfb) > 0
    outputs = kiln.load(compiled.vmfb, device="cpu")(*args)
    return compiled.report, outputs


def activations(report) -> list[str]:
    return [r.detail for r in report.rewrites if r.kind.startswith("linear/")]


# ---------------------------------------------------------------------------------------------
# (a) MLPs


@pytest.mark.parametrize("activation", ["gelu", "gelu_tanh"])
def test_mlp_linear_gelu_linear(activation):
    model, x = tiny.mlp(activation), tiny.mlp_input()
    report, out = compile_and_run(model, (x,))
    assert_close(out, eager(model, x))
    # Two dense layers, the GELU folded into the first one.
    assert report.count("linear/") == 2
    assert activations(report) == [f"activation={activation}", "activation=none"]
    assert report.count("attention/") == 0


def test_mlp_relu_and_silu():
    model, x = tiny.ReluSiluMLP(), tiny.mlp_input()
    report, out = compile_and_run(model, (x,))
    assert_close(out, eager(model, x))
    assert activations(report) == ["activation=relu", "activation=silu", "activation=none"]


def test_mlp_without_raising_matches_too():
    """The plain torch path (no kiln ops) is a baseline for the raised one."""
    model, x = tiny.mlp("gelu"), tiny.mlp_input()
    report, out = compile_and_run(model, (x,), raise_linear=False, raise_attention=False)
    assert_close(out, eager(model, x))
    assert report.count("linear/") == 0


# ---------------------------------------------------------------------------------------------
# (b) the bundled GPT-style model


@pytest.mark.parametrize("attention,form", [("eager", "attention/softmax"),
                                            ("sdpa", "attention/sdpa")])
def test_tiny_gpt(attention, form):
    model, args = tiny.tiny_gpt(attention)
    report, out = compile_and_run(model, args)
    assert_close(out, eager(model, *args), what=f"tiny_gpt[{attention}] logits")
    assert report.count("attention/") == LAYERS
    assert report.count(form) == LAYERS
    # qkv, proj, fc1, fc2 per block + lm_head; the block MLP's GELU folded in.
    assert report.count("linear/") == 4 * LAYERS + 1
    assert activations(report).count("activation=gelu") == LAYERS
    assert report.unmatched_softmax == []
    # Every kiln op was lowered again (kiln-select-cpu-kernels' refusals, "decomposed: <reason>",
    # are records, not lowerings).
    lowered = [r for r in report.rewrites if r.kind == "kiln.attention"
               and not r.detail.startswith("decomposed: ")]
    assert len(lowered) == LAYERS


def test_tiny_gpt_report_points_at_model_source(tiny_gpt_compiled):
    report = tiny_gpt_compiled.report
    locations = [r.location for r in report.rewrites if r.kind.startswith("attention/")]
    assert locations and all("tiny_gpt.py" in loc for loc in locations), locations
    text = str(report)
    assert "kiln compile report (target cpu)" in text
    assert "attention/softmax" in text
    assert set(report.phase_seconds) >= {"export", "import", "raise", "lower", "iree-compile"}


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("strategy", ["decomposed", "fused"])
def test_tiny_gpt_attention_lowerings(attention, strategy):
    model, args = tiny.tiny_gpt(attention)
    report, out = compile_and_run(model, args, attention=strategy)
    assert_close(out, eager(model, *args), what=f"tiny_gpt[{attention}] {strategy}")
    lowered = [r.detail for r in report.rewrites if r.kind == "kiln.attention"]
    assert lowered == [strategy] * LAYERS


def test_unknown_attention_lowering_is_rejected(tiny_gpt_eager):
    model, args = tiny_gpt_eager
    with pytest.raises((ValueError, kiln.KilnCompileError)) as info:
        kiln.compile_to_vmfb(model, args, attention="bogus", compile_to="iree-input")
    assert "bogus" in str(info.value)
    assert "decomposed" in str(info.value) and "fused" in str(info.value)


# ---------------------------------------------------------------------------------------------
# (c) transformers models from tiny configs


@functools.lru_cache(maxsize=None)
def compiled_hf(name: str):
    """(model, input_ids, CompiledModel) for a default (SDPA) transformers model, once."""
    model = tiny.hf_model(name)
    ids = tiny.token_ids()
    return model, ids, kiln.compile_model(model, (ids,), target="cpu")


@pytest.mark.parametrize("name", ["gpt2", "llama", "bert"])
def test_transformers_model(name):
    model, ids, compiled = compiled_hf(name)
    report = compiled.report
    out = kiln.load(compiled.vmfb, device="cpu")(ids)
    reference = eager(model, ids)
    outputs = as_tuple(out)
    if name == "bert":
        assert len(outputs) == 2, "BERT returns last_hidden_state and pooler_output"
        assert_close(outputs[0], reference.last_hidden_state, what="bert last_hidden_state")
        assert_close(outputs[1], reference.pooler_output, what="bert pooler_output")
    else:
        assert_close(outputs[0], reference.logits, what=f"{name} logits")
    assert report.count("attention/sdpa") == LAYERS, str(report)
    assert report.count("linear/") == tiny.HF_LINEARS[name], str(report)
    assert report.unmatched_softmax == []


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
@pytest.mark.parametrize("strategy", ["decomposed", "fused"])
def test_grouped_query_attention(causal, strategy):
    """kiln.attention takes k/v with fewer heads than q; both lowerings expand them right."""
    model, x = tiny.GroupedQueryAttention(causal), tiny.mlp_input()
    text = kiln.compile_to_vmfb(model, (x,), compile_to="kiln")
    lines = [line for line in text.splitlines() if '"kiln.attention"' in line]
    assert len(lines) == 1
    head_dim = tiny.HIDDEN // tiny.HEADS
    q_type = f"!torch.vtensor<[1,{tiny.HEADS},{tiny.SEQ},{head_dim}],f32>"
    kv_type = f"!torch.vtensor<[1,{tiny.KV_HEADS},{tiny.SEQ},{head_dim}],f32>"
    assert lines[0].rsplit("} : ", 1)[1].startswith(f"({q_type}, {kv_type}, {kv_type})"), lines
    assert f"causal = {str(causal).lower()}" in lines[0]
    _, out = compile_and_run(model, (x,), attention=strategy)
    assert_close(out, eager(model, x), what=f"GQA {strategy}")


@pytest.mark.parametrize("name", ["gpt2", "llama", "bert"])
def test_transformers_eager_attention_is_raised(name):
    model = tiny.hf_model(name, attn_implementation="eager")
    text = kiln.compile_to_vmfb(model, (tiny.token_ids(),), compile_to="kiln")
    assert text.count('"kiln.attention"') == LAYERS


# ---------------------------------------------------------------------------------------------
# (d) half precision on CPU


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_mlp_half_precision(dtype):
    model, x = tiny.mlp("gelu").to(dtype), tiny.mlp_input(dtype)
    report, out = compile_and_run(model, (x,))
    assert isinstance(out, torch.Tensor) and out.dtype == dtype
    assert_close(out, eager(model, x), dtype=dtype)
    assert report.count("linear/") == 2


def test_tiny_gpt_f16():
    model, args = tiny.tiny_gpt("eager")
    model = model.half()
    report, out = compile_and_run(model, args)
    assert out.dtype == torch.float16
    assert_close(out, eager(model, *args), dtype=torch.float16)
    assert report.count("attention/") == LAYERS


def test_tiny_gpt_bf16():
    # Was an IREE failure on small bf16 dense_resource constants; see kiln.fx_constants.
    model, args = tiny.tiny_gpt("eager")
    model = model.to(torch.bfloat16)
    _, out = compile_and_run(model, args)
    assert out.dtype == torch.bfloat16
    assert_close(out, eager(model, *args), dtype=torch.bfloat16)


class DivideByFloat64(torch.nn.Module):
    def forward(self, x, scale):
        return x / scale, (x.double() * scale).sum()


def test_float64_inputs_and_ops_are_not_demoted():
    """IREE's default f64→f32 demotion read an f64 input's bytes as f32 (x / 4.0 gave inf)."""
    x, scale = torch.randn(2, 3), torch.tensor(4.0, dtype=torch.float64)
    run = kiln.load(kiln.compile_to_vmfb(DivideByFloat64(), (x, scale)))
    ratio, total = run(x, scale)
    assert total.dtype == torch.float64
    torch.testing.assert_close(ratio, x / scale)
    torch.testing.assert_close(total, (x.double() * scale).sum())


# ---------------------------------------------------------------------------------------------
# Phases, output=, numpy vs torch


def test_compile_to_torch(tiny_gpt_eager):
    model, args = tiny_gpt_eager
    text = kiln.compile_to_vmfb(model, args, compile_to="torch")
    assert isinstance(text, str)
    assert "func.func @main" in text
    assert "torch.aten" in text
    assert "torch.aten.linear" in text and "torch.aten._softmax" in text
    assert "kiln." not in text


def test_compile_to_kiln(tiny_gpt_eager):
    model, args = tiny_gpt_eager
    text = kiln.compile_to_vmfb(model, args, compile_to="kiln")
    assert text.count('"kiln.attention"') == LAYERS
    assert text.count('"kiln.linear"') == 4 * LAYERS + 1
    # Raised ops are gone: no softmax or aten.linear left.
    assert "torch.aten._softmax" not in text
    assert "torch.aten.linear" not in text


def test_compile_to_iree_input(tiny_gpt_eager):
    model, args = tiny_gpt_eager
    text = kiln.compile_to_vmfb(model, args, compile_to="iree-input")
    assert "torch.aten" in text
    assert "kiln." not in text.replace("kiln.signature", "")
    assert "kiln.signature" in text, "the runtime signature is embedded for input checks"


def test_output_writes_file(tmp_path, tiny_gpt_eager, tiny_gpt_vmfb):
    model, args = tiny_gpt_eager
    target = tmp_path / "nested" / "tiny_gpt.vmfb"
    returned = kiln.compile_to_vmfb(model, args, output=target)
    assert Path(returned) == target
    assert target.is_file() and target.stat().st_size > 0
    # Loadable by path (str and Path) and gives the same logits.
    for source in (target, str(target)):
        out = kiln.load(source, device="cpu")(*args)
        assert_close(out, eager(model, *args))


def test_numpy_in_numpy_out(tiny_gpt_eager, tiny_gpt_module):
    model, (tokens,) = tiny_gpt_eager
    out = tiny_gpt_module(tokens.numpy())
    assert type(out) is np.ndarray
    assert out.dtype == np.float32
    assert_close(out, eager(model, tokens))


def test_torch_in_torch_out(tiny_gpt_eager, tiny_gpt_module):
    model, (tokens,) = tiny_gpt_eager
    out = tiny_gpt_module(tokens)
    assert isinstance(out, torch.Tensor)
    assert out.dtype == torch.float32
    assert tuple(out.shape) == (1, tiny.SEQ, tiny.VOCAB)
    assert_close(out, eager(model, tokens))


def test_multiple_outputs_are_a_tuple():
    _, ids, compiled = compiled_hf("bert")
    out = kiln.load(compiled.vmfb)(ids.numpy())
    assert isinstance(out, tuple) and len(out) == 2
    assert all(type(o) is np.ndarray for o in out)


def test_signature_names_inputs(tiny_gpt_module):
    assert tiny_gpt_module.input_names == ["tokens"]
    signature = tiny_gpt_module.signature
    assert signature["inputs"] == [{"name": "tokens", "shape": [1, tiny.SEQ],
                                    "dtype": "int64"}]
    # the logits, then the bounds checks (kiln.guards; not returned): one row, the token
    # embedding's
    assert signature["outputs"] == [{"shape": [1, tiny.SEQ, tiny.VOCAB],
                                     "dtype": "float32"}, {"shape": [1, 2], "dtype": "int64"}]
    assert [(g["output"], g["row"], g["op"]) for g in signature["guards"]] == \
        [(1, 0, "aten.embedding")]
    assert signature["kiln_version"] == kiln.__version__


def test_repeated_calls_are_stable(tiny_gpt_eager, tiny_gpt_module):
    model, (tokens,) = tiny_gpt_eager
    first = tiny_gpt_module(tokens)
    other = torch.flip(tokens, dims=[1])
    assert_close(tiny_gpt_module(other), eager(model, other))
    assert torch.equal(tiny_gpt_module(tokens), first)
