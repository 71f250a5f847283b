"""Op definitions of the `kiln` dialect.

The dialect is defined in Python with `torch_mlir.dialects.ext` (IRDL underneath). IRDL checks
only the op's structure (operands, attributes); the shape, rank and dtype rules live in each
op's `verify_invariants`, which MLIR calls whenever it verifies the IR (parse, pass manager) and
which reports a message naming the op, the offending operand and what was expected.

Ops take and return torch value tensors (`!torch.vtensor`), so Kiln's rewrites sit inside
torch-dialect programs and lower back to torch ops that IREE's torch input pipeline accepts.

    kiln.attention(q, k, v[, mask]) {scale, causal}
        softmax(scale · q·kᵀ + mask, causal-masked) · v over the last axis.
        q: [..., Hq, Sq, D]; k: [..., Hkv, Sk, D]; v: [..., Hkv, Sk, Dv]; Hkv divides Hq
        (grouped-query attention keeps the kv heads). mask: bool (true = keep) or additive
        float, broadcastable to [..., Hq, Sq, Sk]. causal: key j is masked for query i when
        j > i (top-left aligned, as torch's SDPA).
    kiln.layer_norm(x[, w[, b]]) {epsilon}, kiln.rms_norm(x[, w]) {epsilon}
        normalization over the last axis (statistics in f32), then · w (+ b). The weight and
        bias may have another float dtype than x (Llama keeps the weight in the model dtype and
        computes in f32); the result has x's dtype.
    kiln.linear(x, w[, b]) {activation, weight_layout}
        activation(x · Wᵀ + b) for weight_layout "out_in" (torch.nn.Linear, w: [N, K]) or
        activation(x · W + b) for "in_out" (addmm / Conv1D, w: [K, N]). activation "swiglu" is
        gated: with y = x · Wᵀ + b of 2N features, silu(y[..., :N]) · y[..., N:] ([..., N]).
    kiln.add_layer_norm(x, r[, w[, b]]) {epsilon}, kiln.add_rms_norm(x, r[, w]) {epsilon}
        the pre-norm residual step: s = x + r, then the norm of s; returns (norm(s), s).
    kiln.rope(x, cos, sin) {interleaved}
        rotary position embedding x · cos + rotate(x) · sin over the last axis (D even):
        rotate-half (HF Llama: rotate(x) = cat(-x[..., D/2:], x[..., :D/2])) or, interleaved
        (GPT-J: rotate(x)[2i] = -x[2i+1], rotate(x)[2i+1] = x[2i]). cos and sin: one shape,
        broadcastable to x, last dim D, x's dtype.

Regenerate the IRDL file kept beside this module with `python -m kiln.dialects.kiln`.
"""


import sys
from pathlib import Path
from typing import Any, Optional

from kiln.bindings import dialect_ext as ext
from kiln.bindings import ir, passmanager, torch_d
from kiln.torch_ir import TensorInfo, tensor_info

ACTIVATIONS = ("none", "gelu", "gelu_tanh", "relu", "silu", "swiglu")
# Gated activations read two halves of x · Wᵀ + b and return one: the result has half the
# weight's out-features.
GATED_ACTIVATIONS = ("swiglu",)
WEIGHT_LAYOUTS = ("out_in", "in_out")
IRDL_FILE = Path(__file__).with_name("kiln.irdl.mlir")


class KilnDialect(ext.Dialect, name="kiln"):
    pass


class _VerifyError(Exception):
    pass


def _operand_info(op_name: str, role: str, value) -> TensorInfo:
    info = tensor_info(value)
    if info is None:
        raise _VerifyError(f"'{op_name}' {role} must be a !torch.vtensor with known rank, got "
                           f"{value.type}")
    return info


def _dims_match(a: Optional[int], b: Optional[int]) -> bool:
    return a is None or b is None or a == b


def _broadcastable(shape: tuple, target: tuple) -> bool:
    if len(shape) > len(target):
        return False
    for dim, want in zip(reversed(shape), reversed(target)):
        if dim not in (1, None) and not _dims_match(dim, want):
            return False
    return True


def _attribute(op, op_name: str, key: str, kind):
    """The attribute `key` as `kind` (FloatAttr, ...), or a _VerifyError naming it."""
    if key not in op.attributes:
        raise _VerifyError(f"'{op_name}' needs attribute '{key}'")
    try:
        return kind(op.attributes[key])
    except (ValueError, TypeError):
        raise _VerifyError(f"'{op_name}' attribute '{key}' must be a {kind.__name__}, got "
                           f"{op.attributes[key]}") from None


def _run_verifier(op, check) -> bool:
    with op.context:
        try:
            check(op)
        except _VerifyError as error:
            op.location.emit_error(str(error))
            return False
    return True


class AttentionOp(KilnDialect.Operation, name="attention", traits=[ext.Pure]):
    query: ext.Operand[Any]
    key: ext.Operand[Any]
    value: ext.Operand[Any]
    scale: ir.FloatAttr
    causal: ir.IntegerAttr
    result: ext.Result[Any]
    mask: Optional[ext.Operand[Any]] = None

    @staticmethod
    def verify_invariants(op) -> bool:
        return _run_verifier(op, _verify_attention)


def _verify_attention(op) -> None:
    name = "kiln.attention"
    scale = _attribute(op, name, "scale", ir.FloatAttr).value
    if not (scale == scale and abs(scale) != float("inf")):
        raise _VerifyError(f"'{name}' scale must be finite, got {scale}")
    if str(_attribute(op, name, "causal", ir.IntegerAttr).type) != "i1":
        raise _VerifyError(f"'{name}' causal must be a bool attribute (true/false)")
    infos = [_operand_info(name, role, value) for role, value in
             (("query", op.query), ("key", op.key), ("value", op.value), ("result", op.result))]
    mask = _operand_info(name, "mask", op.mask) if op.mask is not None else None
    check_attention_types(*infos, mask)


def attention_type_problem(query, key, value, result, mask=None) -> Optional[str]:
    """Why kiln.attention would reject these operand types (TensorInfos), or None. Matchers
    ask before they rewrite, so that a pattern torch broadcasts is left alone, not broken."""
    try:
        check_attention_types(query, key, value, result, mask)
    except _VerifyError as error:
        return str(error)
    return None


def check_attention_types(q: TensorInfo, k: TensorInfo, v: TensorInfo, out: TensorInfo,
                          mask: Optional[TensorInfo] = None) -> None:
    name = "kiln.attention"
    for role, info in (("key", k), ("value", v), ("result", out)):
        if info.dtype != q.dtype:
            raise _VerifyError(f"'{name}' {role} dtype {info.dtype} differs from query dtype "
                               f"{q.dtype}")
    if not q.is_float:
        raise _VerifyError(f"'{name}' query must be a float tensor, got {q.dtype}")
    if q.rank < 2 or not (q.rank == k.rank == v.rank == out.rank):
        raise _VerifyError(f"'{name}' query, key, value and result must share one rank >= 2, got "
                           f"query {q}, key {k}, value {v}, result {out}")
    if not _dims_match(k.shape[-1], q.shape[-1]):
        raise _VerifyError(f"'{name}' key head dim {k.shape[-1]} does not match query head dim "
                           f"{q.shape[-1]} (query {q}, key {k})")
    if not _dims_match(v.shape[-2], k.shape[-2]):
        raise _VerifyError(f"'{name}' value length {v.shape[-2]} does not match key length "
                           f"{k.shape[-2]} (key {k}, value {v})")
    for axis, (dq, dk, dv) in enumerate(zip(q.shape[:-2], k.shape[:-2], v.shape[:-2])):
        if not _dims_match(dk, dv):
            raise _VerifyError(f"'{name}' key and value differ in batch dim {axis}: {k} vs {v}")
        grouped = axis == q.rank - 3 and None not in (dq, dk) and dk and dq % dk == 0
        if not (_dims_match(dq, dk) or grouped):
            raise _VerifyError(f"'{name}' key batch dim {axis} is {dk}; it must equal query's "
                               f"{dq} (or divide it, for the heads dim)")
    expected = q.shape[:-1] + (v.shape[-1],)
    if not all(_dims_match(a, b) for a, b in zip(out.shape, expected)):
        raise _VerifyError(f"'{name}' result {out} should be "
                           f"{TensorInfo(expected, q.dtype)}")
    if mask is not None:
        if mask.dtype not in ("i1", q.dtype, "f32"):
            allowed = q.dtype if q.dtype == "f32" else f"{q.dtype} or f32"
            raise _VerifyError(f"'{name}' mask dtype {mask.dtype} must be i1 (keep = true) or "
                               f"additive {allowed}")
        scores = q.shape[:-1] + (k.shape[-2],)
        if not _broadcastable(mask.shape, scores):
            raise _VerifyError(f"'{name}' mask {mask} does not broadcast to the scores shape "
                               f"{TensorInfo(scores, q.dtype)}")


class LinearOp(KilnDialect.Operation, name="linear", traits=[ext.Pure]):
    input: ext.Operand[Any]
    weight: ext.Operand[Any]
    activation: ir.StringAttr
    weight_layout: ir.StringAttr
    result: ext.Result[Any]
    bias: Optional[ext.Operand[Any]] = None

    @staticmethod
    def verify_invariants(op) -> bool:
        return _run_verifier(op, _verify_linear)


def _verify_linear(op) -> None:
    name = "kiln.linear"
    x = _operand_info(name, "input", op.input)
    w = _operand_info(name, "weight", op.weight)
    out = _operand_info(name, "result", op.result)
    activation = _attribute(op, name, "activation", ir.StringAttr).value
    layout = _attribute(op, name, "weight_layout", ir.StringAttr).value
    if activation not in ACTIVATIONS:
        raise _VerifyError(f"'{name}' activation '{activation}' is not one of {ACTIVATIONS}")
    if layout not in WEIGHT_LAYOUTS:
        raise _VerifyError(f"'{name}' weight_layout '{layout}' is not one of {WEIGHT_LAYOUTS}")
    for role, info in (("weight", w), ("result", out)):
        if info.dtype != x.dtype:
            raise _VerifyError(f"'{name}' {role} dtype {info.dtype} differs from input dtype "
                               f"{x.dtype}")
    if not x.is_float:
        raise _VerifyError(f"'{name}' input must be a float tensor, got {x.dtype}")
    if x.rank < 1 or w.rank != 2:
        raise _VerifyError(f"'{name}' needs input rank >= 1 and a 2-D weight, got input {x}, "
                           f"weight {w}")
    out_features, in_features = w.shape if layout == "out_in" else reversed(w.shape)
    if not _dims_match(x.shape[-1], in_features):
        raise _VerifyError(f"'{name}' input features {x.shape[-1]} do not match weight {w} "
                           f"({layout}: in_features {in_features})")
    result_features = out_features
    if activation in GATED_ACTIVATIONS:
        if out_features is None or out_features % 2:
            raise _VerifyError(f"'{name}' activation '{activation}' needs an even, static number "
                               f"of out-features (gate and up halves), got weight {w}")
        result_features = out_features // 2
    expected = x.shape[:-1] + (result_features,)
    if out.rank != len(expected) or not all(_dims_match(a, b) for a, b in zip(out.shape,
                                                                               expected)):
        raise _VerifyError(f"'{name}' result {out} should be "
                           f"{TensorInfo(expected, x.dtype)}")
    if op.bias is not None:
        b = _operand_info(name, "bias", op.bias)
        if b.rank != 1 or not _dims_match(b.shape[0], out_features) or b.dtype != x.dtype:
            raise _VerifyError(f"'{name}' bias {b} should be "
                               f"{TensorInfo((out_features,), x.dtype)}")


class RopeOp(KilnDialect.Operation, name="rope", traits=[ext.Pure]):
    input: ext.Operand[Any]
    cos: ext.Operand[Any]
    sin: ext.Operand[Any]
    interleaved: ir.IntegerAttr
    result: ext.Result[Any]

    @staticmethod
    def verify_invariants(op) -> bool:
        return _run_verifier(op, _verify_rope)


def _verify_rope(op) -> None:
    name = "kiln.rope"
    if str(_attribute(op, name, "interleaved", ir.IntegerAttr).type) != "i1":
        raise _VerifyError(f"'{name}' interleaved must be a bool attribute (true/false)")
    x = _operand_info(name, "input", op.input)
    out = _operand_info(name, "result", op.result)
    if not x.is_float or x.rank < 1:
        raise _VerifyError(f"'{name}' input must be a float tensor of rank >= 1, got {x}")
    if x.shape[-1] is None or x.shape[-1] % 2:
        raise _VerifyError(f"'{name}' input's last dim must be static and even, got {x}")
    for role, value in (("cos", op.cos), ("sin", op.sin)):
        table = _operand_info(name, role, value)
        if table.dtype != x.dtype or table.shape[-1:] != x.shape[-1:] or \
                not _broadcastable(table.shape, x.shape):
            raise _VerifyError(f"'{name}' {role} {table} must have the input's dtype and last "
                               f"dim and broadcast to the input {x}")
    if tensor_info(op.cos).shape != tensor_info(op.sin).shape:
        raise _VerifyError(f"'{name}' cos {tensor_info(op.cos)} and sin {tensor_info(op.sin)} "
                           f"differ in shape")
    if out.dtype != x.dtype or not (out.rank == x.rank and all(
            _dims_match(a, b) for a, b in zip(out.shape, x.shape))):
        raise _VerifyError(f"'{name}' result {out} should have the input's type {x}")


class LayerNormOp(KilnDialect.Operation, name="layer_norm", traits=[ext.Pure]):
    input: ext.Operand[Any]
    epsilon: ir.FloatAttr
    result: ext.Result[Any]
    weight: Optional[ext.Operand[Any]] = None
    bias: Optional[ext.Operand[Any]] = None

    @staticmethod
    def verify_invariants(op) -> bool:
        return _run_verifier(op, lambda o: _verify_norm(o, "kiln.layer_norm", ("weight", "bias")))


class RmsNormOp(KilnDialect.Operation, name="rms_norm", traits=[ext.Pure]):
    input: ext.Operand[Any]
    epsilon: ir.FloatAttr
    result: ext.Result[Any]
    weight: Optional[ext.Operand[Any]] = None

    @staticmethod
    def verify_invariants(op) -> bool:
        return _run_verifier(op, lambda o: _verify_norm(o, "kiln.rms_norm", ("weight",)))


class AddLayerNormOp(KilnDialect.Operation, name="add_layer_norm", traits=[ext.Pure]):
    input: ext.Operand[Any]
    residual: ext.Operand[Any]
    epsilon: ir.FloatAttr
    result: ext.Result[Any]
    sum: ext.Result[Any]
    weight: Optional[ext.Operand[Any]] = None
    bias: Optional[ext.Operand[Any]] = None

    @staticmethod
    def verify_invariants(op) -> bool:
        return _run_verifier(op, lambda o: _verify_add_norm(o, "kiln.add_layer_norm",
                                                            ("weight", "bias")))


class AddRmsNormOp(KilnDialect.Operation, name="add_rms_norm", traits=[ext.Pure]):
    input: ext.Operand[Any]
    residual: ext.Operand[Any]
    epsilon: ir.FloatAttr
    result: ext.Result[Any]
    sum: ext.Result[Any]
    weight: Optional[ext.Operand[Any]] = None

    @staticmethod
    def verify_invariants(op) -> bool:
        return _run_verifier(op, lambda o: _verify_add_norm(o, "kiln.add_rms_norm", ("weight",)))


def _verify_add_norm(op, name: str, params: tuple[str, ...]) -> None:
    """The norm's rules, plus: residual and sum have the input's exact type."""
    _verify_norm(op, name, params)
    x = _operand_info(name, "input", op.input)
    for role, value in (("residual", op.residual), ("sum", op.sum)):
        info = _operand_info(name, role, value)
        if info != x:
            raise _VerifyError(f"'{name}' {role} {info} must have the input's type {x}")


def _verify_norm(op, name: str, params: tuple[str, ...]) -> None:
    eps = _attribute(op, name, "epsilon", ir.FloatAttr).value
    if not 0.0 < eps < 1.0:
        raise _VerifyError(f"'{name}' epsilon must be in (0, 1), got {eps}")
    x = _operand_info(name, "input", op.input)
    out = _operand_info(name, "result", op.result)
    if not x.is_float or x.rank < 1:
        raise _VerifyError(f"'{name}' input must be a float tensor of rank >= 1, got {x}")
    if out.shape != x.shape and not all(_dims_match(a, b) for a, b in zip(out.shape, x.shape)):
        raise _VerifyError(f"'{name}' result {out} should have the input's shape {x}")
    for param in params:
        value = getattr(op, param)
        if value is None:
            continue
        info = _operand_info(name, param, value)
        if info.rank != 1 or not _dims_match(info.shape[0], x.shape[-1]):
            raise _VerifyError(f"'{name}' {param} {info} should be 1-D of the normalized size "
                               f"{x.shape[-1]}")


def bool_attr(value: bool) -> ir.Attribute:
    """An i1 attribute for op builders: `ir.BoolAttr(false)` is falsy, and the ext builder would
    mistake it for a missing attribute."""
    return ir.IntegerAttr.get(ir.IntegerType.get_signless(1), int(bool(value)))


def load_kiln_dialect(context: ir.Context) -> None:
    """Load the kiln dialect into `context` (a Python-defined dialect loads once per context)."""
    if context.is_dialect_loaded(KilnDialect.DIALECT_NAMESPACE):
        return
    with context, ir.Location.unknown():
        KilnDialect.load()


def make_context() -> ir.Context:
    """A context with the torch and kiln dialects: the world Kiln's passes run in."""
    context = ir.Context()
    torch_d.register_dialect(context)
    load_kiln_dialect(context)
    return context


def generate_irdl() -> str:
    """The IRDL text of the dialect as `KilnDialect.load` registers it."""
    with ir.Context() as context, ir.Location.unknown():
        torch_d.register_dialect(context)
        module = KilnDialect._emit_module()
        pm = passmanager.PassManager()
        pm.add("canonicalize, cse")
        pm.run(module.operation)
        return ("// Generated by `python -m kiln.dialects.kiln`; tests/test_dialect.py keeps it "
                "in sync.\n" + str(module))


if __name__ == "__main__":
    text = generate_irdl()
    IRDL_FILE.write_text(text)
    sys.stdout.write(f"wrote {IRDL_FILE}\n")
