"""The kiln dialect: IRDL file in sync, valid IR parses and round-trips, invalid IR is rejected
with a message that names the problem."""

from __future__ import annotations

import pytest

from kiln.bindings import ir
from kiln.dialects import (ACTIVATIONS, GATED_ACTIVATIONS, WEIGHT_LAYOUTS, generate_irdl,
                           make_context)
from kiln.dialects.kiln import IRDL_FILE


def vt(shape: str, dtype: str = "f32") -> str:
    return f"!torch.vtensor<[{shape}],{dtype}>"


Q = vt("1,4,8,16")


def attention_func(q=Q, k=Q, v=Q, result=Q, mask=None, attrs="causal = false, "
                   "scale = 5.000000e-01 : f64") -> str:
    operand_types = [q, k, v] + ([mask] if mask else [])
    names = ["%q", "%k", "%v"] + (["%mask"] if mask else [])
    args = ", ".join(f"{n}: {t}" for n, t in zip(names, operand_types))
    segments = f"array<i32: 1, 1, 1, {1 if mask else 0}>"
    return f"""
func.func @attention({args}) -> {result} {{
  %0 = "kiln.attention"({", ".join(names)}) {{{attrs}, operandSegmentSizes = {segments}}} : ({", ".join(operand_types)}) -> {result}
  return %0 : {result}
}}"""


def linear_func(x=vt("2,8,32"), w=vt("64,32"), b=vt("64"), result=vt("2,8,64"),
                activation="gelu", layout="out_in") -> str:
    operand_types = [x, w] + ([b] if b else [])
    names = ["%x", "%w"] + (["%b"] if b else [])
    args = ", ".join(f"{n}: {t}" for n, t in zip(names, operand_types))
    segments = f"array<i32: 1, 1, {1 if b else 0}>"
    return f"""
func.func @linear({args}) -> {result} {{
  %0 = "kiln.linear"({", ".join(names)}) {{activation = "{activation}", weight_layout = "{layout}", operandSegmentSizes = {segments}}} : ({", ".join(operand_types)}) -> {result}
  return %0 : {result}
}}"""


def parse(text: str) -> ir.Module:
    return ir.Module.parse(text, make_context())


def parse_error(text: str) -> str:
    with pytest.raises(Exception) as info:
        parse(text)
    return str(info.value)


# ---------------------------------------------------------------------------------------------
# IRDL file


def test_irdl_file_is_in_sync():
    assert IRDL_FILE.is_file(), f"{IRDL_FILE} is missing; run `python -m kiln.dialects.kiln`"
    assert IRDL_FILE.read_text() == generate_irdl(), (
        f"{IRDL_FILE.name} is out of date with the op definitions in dialects/kiln.py; "
        f"regenerate it with `python -m kiln.dialects.kiln`")


def test_irdl_declares_both_ops():
    text = generate_irdl()
    assert "irdl.dialect @kiln" in text
    assert "irdl.operation @attention" in text and "irdl.operation @linear" in text
    assert "mask: optional" in text and "bias: optional" in text


def test_context_has_kiln_and_torch():
    context = make_context()
    assert context.is_dialect_loaded("kiln")
    assert context.is_dialect_loaded("torch")


# ---------------------------------------------------------------------------------------------
# Valid IR


VALID = {
    "attention": attention_func(),
    "attention_bool_mask": attention_func(mask=vt("1,1,8,8", "i1")),
    "attention_additive_mask": attention_func(mask=vt("8,8")),
    "attention_causal": attention_func(attrs="causal = true, scale = 2.500000e-01 : f64"),
    "attention_gqa": attention_func(k=vt("1,2,8,16"), v=vt("1,2,8,16")),
    "attention_value_dim": attention_func(v=vt("1,4,8,32"), result=vt("1,4,8,32")),
    "attention_cross_lengths": attention_func(k=vt("1,4,12,16"), v=vt("1,4,12,16"),
                                              mask=vt("1,1,8,12", "i1")),
    "attention_dynamic": attention_func(q=vt("?,4,?,16"), k=vt("?,4,?,16"), v=vt("?,4,?,16"),
                                        result=vt("?,4,?,16")),
    "attention_f16": attention_func(q=vt("1,4,8,16", "f16"), k=vt("1,4,8,16", "f16"),
                                    v=vt("1,4,8,16", "f16"), result=vt("1,4,8,16", "f16"),
                                    mask=vt("1,1,8,8", "f16")),
    "linear": linear_func(),
    "linear_no_bias": linear_func(b=None, activation="none"),
    "linear_in_out": linear_func(w=vt("32,64"), layout="in_out", activation="relu"),
    "linear_2d": linear_func(x=vt("8,32"), result=vt("8,64"), activation="silu"),
    "linear_dynamic": linear_func(x=vt("?,32"), result=vt("?,64"), activation="gelu_tanh"),
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_ir_parses_and_round_trips(name):
    module = parse(VALID[name])
    assert module.operation.verify()
    printed = str(module)
    op_name = '"kiln.attention"' if name.startswith("attention") else '"kiln.linear"'
    assert printed.count(op_name) == 1
    reparsed = parse(printed)
    assert str(reparsed) == printed


def test_round_trip_keeps_attributes():
    printed = str(parse(attention_func(attrs="causal = true, scale = 1.250000e-01 : f64")))
    assert "causal = true" in printed
    assert "scale = 1.250000e-01 : f64" in printed
    printed = str(parse(linear_func(activation="silu", layout="out_in")))
    assert 'activation = "silu"' in printed and 'weight_layout = "out_in"' in printed


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation_is_accepted(activation):
    # A gated activation (swiglu) returns half of the weight's 64 out-features.
    result = vt("2,8,32") if activation in GATED_ACTIVATIONS else vt("2,8,64")
    assert parse(linear_func(activation=activation, result=result)).operation.verify()


def test_layouts_and_activations_are_documented_sets():
    assert set(ACTIVATIONS) == {"none", "gelu", "gelu_tanh", "relu", "silu", "swiglu"}
    assert set(GATED_ACTIVATIONS) == {"swiglu"}
    assert set(WEIGHT_LAYOUTS) == {"out_in", "in_out"}


# ---------------------------------------------------------------------------------------------
# Invalid IR: the verifier's message names the operand and what was expected


INVALID = {
    "key_head_dim": (attention_func(k=vt("1,4,8,32")),
                     ["'kiln.attention'", "key head dim 32", "query head dim 16"]),
    "mask_dtype": (attention_func(mask=vt("1,1,8,8", "si64")),
                   ["'kiln.attention'", "mask dtype si64", "i1"]),
    "mask_broadcast": (attention_func(mask=vt("1,1,8,9", "i1")),
                       ["mask", "does not broadcast", "1x4x8x8"]),
    "result_shape": (attention_func(result=vt("1,4,8,32")),
                     ["'kiln.attention'", "result 1x4x8x32xf32", "should be 1x4x8x16xf32"]),
    "result_rank": (attention_func(result=vt("4,8,16")), ["share one rank"]),
    "value_length": (attention_func(v=vt("1,4,9,16")),
                     ["value length 9", "key length 8"]),
    "kv_heads": (attention_func(k=vt("1,3,8,16"), v=vt("1,3,8,16")),
                 ["key batch dim 1 is 3", "divide"]),
    "key_dtype": (attention_func(k=vt("1,4,8,16", "f16")),
                  ["key dtype f16", "query dtype f32"]),
    "int_query": (attention_func(q=vt("1,4,8,16", "si64"), k=vt("1,4,8,16", "si64"),
                                 v=vt("1,4,8,16", "si64"), result=vt("1,4,8,16", "si64")),
                  ["query must be a float tensor"]),
    "scale_inf": (attention_func(attrs="causal = false, scale = 0x7FF0000000000000 : f64"),
                  ["scale must be finite"]),
    "causal_not_bool": (attention_func(attrs="causal = 1 : i32, scale = 5.000000e-01 : f64"),
                        ["causal must be a bool"]),
    "builtin_tensor": (attention_func(q="tensor<1x4x8x16xf32>", k="tensor<1x4x8x16xf32>",
                                      v="tensor<1x4x8x16xf32>", result="tensor<1x4x8x16xf32>"),
                       ["!torch.vtensor"]),
    "linear_weight_shape": (linear_func(w=vt("64,16")),
                            ["'kiln.linear'", "input features 32", "in_features 16"]),
    "linear_weight_rank": (linear_func(w=vt("64,32,1")), ["2-D weight"]),
    "linear_activation": (linear_func(activation="tanh"),
                          ["'kiln.linear'", "activation 'tanh'", "gelu"]),
    "linear_layout": (linear_func(layout="in"), ["weight_layout 'in'", "out_in"]),
    "linear_bias": (linear_func(b=vt("32")), ["bias 32xf32", "should be 64xf32"]),
    "linear_result": (linear_func(result=vt("2,8,32")),
                      ["result 2x8x32xf32", "should be 2x8x64xf32"]),
    "linear_dtype": (linear_func(w=vt("64,32", "f16")), ["weight dtype f16", "input dtype f32"]),
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_ir_is_rejected_with_reason(name):
    text, expected = INVALID[name]
    message = parse_error(text)
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in error:\n{message}"


@pytest.mark.parametrize("text,attribute", [
    (attention_func(attrs="causal = false"), "scale"),
    (attention_func(attrs="scale = 5.000000e-01 : f64"), "causal"),
    (attention_func(attrs='causal = false, scale = "half"'), "scale"),
    (linear_func().replace('activation = "gelu", ', ""), "activation"),
], ids=["no_scale", "no_causal", "string_scale", "no_activation"])
def test_missing_or_mistyped_attribute_is_a_diagnostic(text, attribute):
    with pytest.raises(Exception) as info:
        parse(text)
    assert not isinstance(info.value, (KeyError, TypeError)), repr(info.value)
    assert attribute in str(info.value), str(info.value)


def test_verifier_runs_on_modified_ir():
    """Verification is not only at parse time: a module edited into an invalid state fails
    verify() (the pass manager relies on this)."""
    module = parse(linear_func())
    with module.context:
        op = next(o for o in module.body.operations[0].regions[0].blocks[0].operations
                  if o.operation.name == "kiln.linear")
        op.attributes["activation"] = ir.StringAttr.get("swish")
        with pytest.raises(Exception) as info:
            module.operation.verify()
    assert "activation 'swish'" in str(info.value)
