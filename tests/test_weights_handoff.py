"""Inline weights reach iree-compile as raw bytes (MLIR bytecode resources), not as hex in the IR
text, and kiln.load maps an artifact file instead of reading it (docs/decisions.md, "Weights
reach iree-compile as bytecode")."""

import re

import numpy as np
import torch

import kiln
import kiln.compiler
import kiln.iree_compile


class TwoLayers(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.first = torch.nn.Linear(64, 128)
        self.second = torch.nn.Linear(128, 32)

    def forward(self, x):
        return self.second(torch.relu(self.first(x)))


def test_inline_weights_are_handed_over_as_arrays_not_text(monkeypatch):
    seen = {}
    real = kiln.iree_compile.run_iree_compile

    def spy(ir_text, flags, limits=None, weights=None):
        seen["text"], seen["weights"] = ir_text, weights
        return real(ir_text, flags, limits, weights)

    monkeypatch.setattr(kiln.compiler, "run_iree_compile", spy)
    torch.manual_seed(0)
    model, x = TwoLayers().eval(), torch.randn(4, 64)
    compiled = kiln.compile_model(model, (x,), cache=False)
    text = seen["text"]
    assert not re.search(r'dense<"0x|dense_resource<', text)  # no weight bytes in the text
    assert text.count("#stream.parameter.named") == 4
    assert sorted(seen["weights"]) == ["first.bias", "first.weight", "second.bias",
                                       "second.weight"]
    # ... and the artifact holds them: it loads alone (no archive) and computes the model.
    assert compiled.parameters is None and "kiln.parameters" not in text
    out = kiln.load(compiled.vmfb)(x.numpy())
    np.testing.assert_allclose(out, model(x).detach().numpy(), rtol=1e-5, atol=1e-5)


def test_a_loaded_file_keeps_its_model_when_the_path_is_replaced(tmp_path):
    """load() maps the file: saving another artifact at the path (an atomic rename) must not
    change what the loaded module computes."""
    torch.manual_seed(0)
    first, second, x = TwoLayers().eval(), TwoLayers().eval(), torch.randn(4, 64)
    path = tmp_path / "m.vmfb"
    kiln.compile_model(first, (x,), cache=False).save(path)
    loaded = kiln.load(path)
    kiln.compile_model(second, (x,), cache=False).save(path)
    np.testing.assert_allclose(loaded(x.numpy()), first(x).detach().numpy(), rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(kiln.load(path)(x.numpy()), second(x).detach().numpy(),
                               rtol=1e-5, atol=1e-5)


class ComplexDiagonal(torch.nn.Module):
    def forward(self, x):
        return torch.diag(x)  # a complex zero constant the Python bindings cannot read


def test_complex_constants_stay_in_the_text():
    """The hand-off skipped literals it cannot read: complex64 constants failed the compile
    ("Can't cast unknown element type") where the plain torch-mlir path passes (OpInfo diag)."""
    x = torch.tensor([1 + 2j, -0.5j, 3.0], dtype=torch.complex64)
    got = kiln.load(kiln.compile_to_vmfb(ComplexDiagonal(), (x,), cache=False))(x)
    torch.testing.assert_close(got, torch.diag(x))
