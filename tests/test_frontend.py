"""Capture and import: torch.export → torch-mlir FX import, and its error reporting."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import kiln
from kiln.examples import tiny
from kiln.bindings import ir
from kiln.frontend import PRESERVED_OPS, decomposition_table

from compare import assert_close, eager


class NonPersistentBuffer(nn.Module):
    """A non-persistent buffer (as rotary inv_freq / causal masks are) used in forward."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(8, 8)
        self.register_buffer("scale", torch.arange(1.0, 9.0), persistent=False)

    def forward(self, x):
        return self.linear(x) * self.scale


class DataDependentBranch(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return x - 1


class ItemInForward(nn.Module):
    def forward(self, x):
        return x[:, : int(x.argmax().item()) + 1]


def test_non_persistent_buffer_imports():
    model = NonPersistentBuffer().eval()
    assert "scale" not in model.state_dict()
    module = kiln.import_model(model, (torch.randn(2, 8),))
    assert isinstance(module, ir.Module)
    text = str(module)
    assert "func.func @main" in text
    assert "torch.aten.linear" in text and "torch.aten.mul.Tensor" in text
    # The buffer is frozen into the module as a readable constant (non-persistent buffers are
    # not weights): its values 1.0 … 8.0 are printed in the literal.
    assert "torch.vtensor.literal(dense<[1.000000e+00, 2.000000e+00" in text
    assert module.operation.verify()


def test_non_persistent_buffer_value_is_used():
    model, x = NonPersistentBuffer().eval(), torch.randn(2, 8)
    out = kiln.load(kiln.compile_to_vmfb(model, (x,)))(x)
    assert_close(out, eager(model, x))
    # The buffer matters: without it the outputs would differ a lot.
    assert not torch.allclose(out, model.linear(x).detach(), atol=1e-2)


def test_tiny_gpt_causal_bias_buffer_imports(tiny_gpt_eager):
    """tiny_gpt keeps its -inf causal bias in a non-persistent buffer."""
    model, args = tiny_gpt_eager
    assert not any("causal_bias" in k for k in model.state_dict())
    text = str(kiln.import_model(model, args))
    assert "torch.aten" in text
    # Frozen as a [max_seq_len, max_seq_len] f32 literal holding -inf (0xFF800000, stored
    # little-endian in the resource blob).
    assert "torch.vtensor.literal(dense_resource" in text
    assert f"tensor<{tiny.SEQ}x{tiny.SEQ}xf32>" in text
    assert "000080FF" in text.upper()


def test_import_keeps_the_ops_kiln_matches():
    text = str(kiln.import_model(tiny.mlp("silu"), (tiny.mlp_input(),)))
    assert "torch.aten.linear" in text
    assert "torch.aten.silu" in text
    model, args = tiny.tiny_gpt("sdpa")
    assert "torch.aten.scaled_dot_product_attention" in str(kiln.import_model(model, args))


def test_decomposition_table_preserves_matched_ops():
    table = decomposition_table()
    for op in PRESERVED_OPS:
        assert op not in table
    assert len(table) > 0


def test_import_into_given_context():
    from kiln.dialects import make_context

    context = make_context()
    module = kiln.import_model(tiny.mlp("relu"), (tiny.mlp_input(),), context=context)
    assert module.context is context


def test_data_dependent_control_flow_is_an_import_error():
    with pytest.raises(kiln.KilnImportError) as info:
        kiln.import_model(DataDependentBranch(), (torch.randn(2, 8),))
    message = str(info.value)
    assert message.startswith("torch.export could not capture the model")
    # one problem with its line and its fix, said once (not again as a hint)
    assert "fix:" in message and message.count("torch.cond") == 1
    assert "hint:" not in message


def test_item_in_forward_is_an_import_error_with_hint():
    with pytest.raises(kiln.KilnImportError) as info:
        kiln.compile_to_vmfb(ItemInForward(), (torch.randn(2, 8),))
    assert "fix:" in str(info.value)
    assert ".item()" in str(info.value)


def test_import_error_is_a_kiln_error():
    assert issubclass(kiln.KilnImportError, kiln.KilnError)
    with pytest.raises(kiln.KilnError):
        kiln.import_model(DataDependentBranch(), (torch.randn(2, 8),))


def test_single_tensor_example_args_are_accepted():
    model, x = tiny.mlp("relu"), tiny.mlp_input()
    assert "torch.aten.linear" in str(kiln.import_model(model, x))


def test_training_model_exports_eval_behaviour():
    """Dropout must not appear: the compiler captures inference behaviour."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5)).train()
    x = torch.randn(2, 8)
    text = str(kiln.import_model(model, (x,)))
    assert "dropout" not in text and "bernoulli" not in text
    out = kiln.load(kiln.compile_to_vmfb(model, (x,)))(x)
    assert_close(out, model.eval()(x).detach())


def test_compile_leaves_training_flag_alone():
    model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5)).train()
    kiln.compile_to_vmfb(model, (torch.randn(2, 8),), compile_to="torch")
    assert model.training


def test_aliased_example_inputs_stay_independent_inputs():
    """f(x, x) as example: torch.export would specialize on the aliasing and the artifact would
    ignore its first input; Kiln exports from copies instead."""

    class TwoInputs(nn.Module):
        def forward(self, x, y):
            return x * 2 + y

    x = torch.randn(4)
    run = kiln.load(kiln.compile_to_vmfb(TwoInputs(), (x, x), cache=False))
    a, b = torch.randn(4), torch.randn(4)
    assert_close(run(a, b), a * 2 + b)
    # A view of the same storage is aliasing too.
    base = torch.randn(8)
    run = kiln.load(kiln.compile_to_vmfb(TwoInputs(), (base[:4], base[:4]), cache=False))
    assert_close(run(a, b), a * 2 + b)


def test_unbind_after_permute_compiles():
    """`q, k, v = qkv.permute(...)` unpacking exports aten.squeeze.dims, which torch-mlir has
    no op for; Kiln decomposes it (found on a ViT-style block, 2026-11-27)."""

    class Unbind(nn.Module):
        def forward(self, x):
            q, k, v = x.view(2, 5, 3, 4).permute(2, 0, 1, 3)
            return q * k + v

    x = torch.randn(2, 5, 12)
    run = kiln.load(kiln.compile_to_vmfb(Unbind(), (x,), cache=False))
    assert_close(run(x), Unbind()(x))


# Ops the plain torch-mlir → IREE path runs and Kiln's own decompositions once left unrunnable
# (found by tests/conformance; each fails without the fix named in its comment).
class _PlainPathOps(nn.Module):
    def forward(self, bias, a, b, image, grid, x):
        return (torch.addmm(bias, a, b, beta=3, alpha=2),  # integer addmm: mm, scale, add
                nn.functional.grid_sample(image, grid, align_corners=False),  # grid_sampler_2d
                nn.functional.pad(x, (2, 1), mode="reflect"),  # index with [None, folded idx]
                torch.zeros_like(x) + torch.empty_like(x).fill_(2),
                x[[1, 0]])  # index with a list of one folded tensor


def test_ops_the_plain_path_runs_compile():
    args = (torch.randint(-5, 5, (2, 3)), torch.randint(-5, 5, (2, 4)),
            torch.randint(-5, 5, (4, 3)), torch.randn(1, 2, 5, 5), torch.rand(1, 3, 3, 2) * 2 - 1,
            torch.randn(2, 3, 6))
    got = kiln.load(kiln.compile_to_vmfb(_PlainPathOps(), args, cache=False))(*args)
    for g, w in zip(got, _PlainPathOps()(*args)):
        assert g.dtype == w.dtype
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


class _FloatAddmm(nn.Module):
    def forward(self, bias, x, w):
        return torch.addmm(bias, x, w)


def test_decomposition_table_keeps_what_raising_matches():
    """torch-mlir's table would decompose these; kiln-raise-linear / -norms match them."""
    args = (torch.randn(3), torch.randn(2, 4), torch.randn(4, 3))
    assert "torch.aten.addmm" in str(kiln.import_model(_FloatAddmm(), args))
    text = str(kiln.import_model(nn.LayerNorm(8), (torch.randn(2, 8),)))
    assert "torch.aten.native_layer_norm" in text


class _IntegerLinearAndComplexCast(nn.Module):
    def forward(self, x, w, y):
        return nn.functional.linear(x, w), y.to(torch.complex64)


def test_integer_linear_and_cast_to_complex_compile():
    """An integer linear was raised to kiln.linear (float only: verifier error); a cast to
    complex kept whole crashed IREE's torch input (torch-mlir's table decomposes it)."""
    args = (torch.randint(-4, 4, (2, 5)), torch.randint(-4, 4, (3, 5)), torch.randn(4))
    got = kiln.load(kiln.compile_to_vmfb(_IntegerLinearAndComplexCast(), args,
                                         cache=False))(*args)
    for g, w in zip(got, _IntegerLinearAndComplexCast()(*args)):
        assert g.dtype == w.dtype
        torch.testing.assert_close(g, w)


def test_indexing_with_constant_index_tensors_compiles():
    """`x[rows, cols]` with constant index buffers exports aten.index.Tensor(x, [c0, c1]), a
    list of literals the importer refused ("Heterogeneous lists are not supported"); found on
    a Dynamo region of transformers' causal-mask code (torch.compile backend, 2026-12-05)."""

    class Gather(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("rows", torch.tensor([[0], [2]]), persistent=False)
            self.register_buffer("cols", torch.tensor([[1, 3]]), persistent=False)

        def forward(self, x):
            return x[self.rows, self.cols] * 2

    x = torch.randn(4, 5)
    run = kiln.load(kiln.compile_to_vmfb(Gather(), (x,), cache=False))
    assert_close(run(x), Gather()(x))
