"""kiln.check / `kiln check`: compiled vs eager on several inputs, and locating the first
diverging op when numerics are broken on purpose."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import kiln
import kiln.compiler
from kiln.examples import tiny
from kiln.equivalence import DEFAULT_ATOL, DEFAULT_RTOL, CheckResult, compare, make_samples
from kiln.cli import main as cli_main
from kiln.examples.tiny_gpt import TinyGPTConfig, build_tiny_gpt


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path / "kiln-cache"))
    monkeypatch.delenv("KILN_CACHE", raising=False)


class TanhHead(nn.Module):
    """linear → tanh → scale → linear → softmax: one tanh, which the tests break on purpose."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.up = nn.Linear(32, 64)
        self.down = nn.Linear(64, 16)

    def forward(self, x):
        hidden = self.up(x)
        squashed = torch.tanh(hidden)  # the op the broken compiler gets wrong
        return torch.softmax(self.down(squashed * 2.0), dim=-1)


@pytest.fixture
def broken_tanh(monkeypatch):
    """Compile every `torch.aten.tanh` as sigmoid: wrong numerics at exactly one op, after
    export (so eager and the exported graph stay right)."""
    original = kiln.compiler._run_iree_compile

    def compile_with_sigmoid(ir_text, flags, *rest):
        return original(ir_text.replace("torch.aten.tanh ", "torch.aten.sigmoid "), flags, *rest)

    monkeypatch.setattr(kiln.compiler, "_run_iree_compile", compile_with_sigmoid)


# ---------------------------------------------------------------------------------------------
# Passing models


def test_tiny_gpt_passes():
    config = TinyGPTConfig(vocab_size=100, n_layers=1, d_model=64, max_seq_len=32)
    model, args = build_tiny_gpt(config, batch=1, seq_len=16)
    result = kiln.check(model, args, target="cpu", samples=3, seed=0)
    assert isinstance(result, CheckResult)
    assert result.passed, str(result)
    assert result.samples == 3 and result.reference == "float64"
    assert result.model_dtype == "float32"
    assert (result.rtol, result.atol) == (DEFAULT_RTOL[torch.float32], DEFAULT_ATOL[torch.float32])
    [logits] = result.outputs
    assert logits.shape == (1, 16, 100) and logits.dtype == "float32"
    assert 0 < logits.max_rel_error < 1e-4 and logits.max_abs_error > 0
    assert logits.eager_rel_error < 1e-5  # eager float32 vs the float64 reference
    # Per element, the worst uses a small part of atol + rtol·|ref| (docs/decisions.md: ~0.02).
    assert 0 < logits.tolerance_used < 0.2 and logits.eager_tolerance_used < 0.2
    assert result.first_diverging_op is None
    text = str(result)
    assert "PASS" in text and "max rel err" in text and "tol used" in text and "1x16x100" in text


def test_mlp_passes_with_several_outputs_and_dtypes():
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.mlp = tiny.mlp()

        def forward(self, x):
            y = self.mlp(x)
            return y, y.sum(-1)

    result = kiln.check(TwoHeads(), (tiny.mlp_input(),), samples=2)
    assert result.passed, str(result)
    assert [o.shape for o in result.outputs] == [(1, 16, 64), (1, 16)]

    half = kiln.check(tiny.mlp().half(), (tiny.mlp_input(torch.float16),), samples=2)
    assert half.passed, str(half)
    assert half.rtol == 1e-2 and half.atol == DEFAULT_ATOL[torch.float16]
    assert half.model_dtype == "float16"
    assert 0 < half.outputs[0].eager_rel_error < 1e-2
    assert half.outputs[0].tolerance_used < 0.5  # measured 0.17 (docs/decisions.md)


def test_rtol_and_atol_override_the_dtype_tolerance():
    result = kiln.check(tiny.mlp(), (tiny.mlp_input(),), samples=1, rtol=1e-12, atol=0,
                        locate=False)
    assert (result.rtol, result.atol) == (1e-12, 0.0)
    [output] = result.outputs
    assert output.max_abs_error > 0  # float32 rounding: nothing passes 1e-12
    assert not result.passed and output.tolerance_used > 1
    assert len(output.worst_index) == 3 and output.worst_got != output.worst_ref
    with pytest.raises(ValueError, match="atol must be a finite number"):
        kiln.check(tiny.mlp(), (tiny.mlp_input(),), atol=-1.0)


# ---------------------------------------------------------------------------------------------
# Broken numerics


def test_mismatch_is_reported_and_the_diverging_op_named(broken_tanh):
    result = kiln.check(TanhHead(), (torch.randn(4, 32),), samples=2, cache=False)
    assert not result.passed
    [output] = result.outputs
    assert output.max_rel_error > 1e-2 and output.max_abs_error > 0
    op = result.first_diverging_op
    assert op is not None, result.locate_note
    assert op.target.startswith("aten.tanh"), str(op)
    assert op.node == "tanh"
    assert "test_check.py" in op.source and "torch.tanh(hidden)" in op.source
    assert op.previous and "linear" in op.previous  # the op before it matched
    assert op.rel_error > 1e-2 and op.tolerance_used > 1 and op.compiles >= 2
    text = str(result)
    assert "FAIL" in text and "first diverging op: aten.tanh" in text


def test_locate_false_skips_the_bisection(broken_tanh, monkeypatch):
    compiles = []
    original = kiln.compile_model
    monkeypatch.setattr(kiln.compiler, "compile_model",
                        lambda *a, **k: compiles.append(1) or original(*a, **k))
    result = kiln.check(TanhHead(), (torch.randn(4, 32),), samples=1, locate=False,
                        cache=False)
    assert not result.passed and result.first_diverging_op is None
    assert len(compiles) == 1 and "locate" not in result.seconds


# ---------------------------------------------------------------------------------------------
# Pieces


def test_samples_keep_shapes_dtypes_and_integer_ranges():
    tokens = torch.tensor([[3, 7, 1, 9]])
    mask = torch.ones(1, 4, dtype=torch.int64)
    x = torch.randn(2, 3, dtype=torch.float16)
    samples = make_samples((tokens, mask, x, 5), samples=4, seed=0)
    assert len(samples) == 4 and samples[0][0] is tokens
    for sample in samples[1:]:
        t, m, f, scalar = sample
        assert t.shape == tokens.shape and t.dtype == torch.int64
        assert int(t.min()) >= 1 and int(t.max()) <= 9
        assert torch.equal(m, mask)  # all-ones masks stay all ones
        assert f.dtype == torch.float16 and f.shape == x.shape
        assert scalar == 5
    assert not torch.equal(samples[1][2], samples[2][2])
    again = make_samples((tokens, mask, x, 5), samples=4, seed=0)
    assert all(torch.equal(a[2], b[2]) for a, b in zip(samples, again))


def test_compare_handles_non_finite_values():
    ref = torch.tensor([1.0, -math.inf, 4.0])
    matched = compare(torch.tensor([1.0, -math.inf, 3.0]), ref, rtol=0.0, atol=2.0)
    assert (matched.abs_error, matched.rel_error) == (1.0, 0.25) and matched.passed
    assert matched.worst_index == (2,) and (matched.got, matched.ref) == (3.0, 4.0)
    wrong_inf = compare(torch.tensor([1.0, math.inf, 4.0]), ref, rtol=1.0, atol=1.0)
    assert wrong_inf.tolerance_used == math.inf and wrong_inf.worst_index == (1,)
    nan_for_finite = compare(torch.tensor([math.nan, -math.inf, 4.0]), ref, rtol=1.0, atol=1.0)
    assert not nan_for_finite.passed and nan_for_finite.worst_index == (0,)
    both_nan = compare(torch.tensor([math.nan]), torch.tensor([math.nan]), rtol=0.0, atol=0.0)
    assert both_nan.passed
    shape = compare(torch.zeros(2), torch.zeros(3), rtol=1.0, atol=1.0)
    assert not shape.passed and shape.worst_index is None
    assert compare(torch.zeros(3), torch.zeros(3), rtol=0.0, atol=0.0).tolerance_used == 0.0


def test_compare_judges_every_element():
    ref = torch.tensor([[100.0, -50.0, 0.002], [80.0, 3e-6, -0.001]], dtype=torch.float64)
    got = ref.clone()
    got[1, 2] = 0.001  # wrong sign on an element 1e-5 of the largest
    result = compare(got.float(), ref, rtol=1e-4, atol=1e-5)
    assert result.rel_error < 1e-4  # the whole-output summary does not see it
    assert not result.passed and result.worst_index == (1, 2)
    assert result.got == pytest.approx(0.001) and result.ref == -0.001
    assert result.tolerance_used == pytest.approx(0.002 / (1e-5 + 1e-4 * 0.001), rel=1e-3)
    # An element at the noise floor (below atol / 2) may have either sign.
    noise = ref.clone()
    noise[1, 1] = -3e-6
    assert compare(noise, ref, rtol=1e-4, atol=1e-5).passed
    # Integers are exact (rtol = atol = 0).
    assert compare(torch.tensor([1, 2]), torch.tensor([1, 2]), 0.0, 0.0).passed
    assert not compare(torch.tensor([1, 3]), torch.tensor([1, 2]), 0.0, 0.0).passed


# ---------------------------------------------------------------------------------------------
# Command line

MODEL_FILE = '''
import torch
from torch import nn


class TanhHead(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.up = nn.Linear(32, 64)
        self.down = nn.Linear(64, 16)

    def forward(self, x):
        return torch.softmax(self.down(torch.tanh(self.up(x)) * 2.0), dim=-1)


def build():
    return TanhHead()
'''


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "tanh_head.py"
    path.write_text(MODEL_FILE)
    return f"{path}:build"


def test_cli_check_exit_codes(model_file, capsys, monkeypatch):
    assert cli_main(["check", model_file, "--input", "4x32xf32", "--samples", "2"]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "max rel err" in out

    # --rtol/--atol reach the check: nothing in float32 passes a zero tolerance.
    assert cli_main(["check", model_file, "--input", "4x32xf32", "--samples", "1", "--rtol",
                     "0", "--atol", "0", "--no-locate"]) == 1
    out = capsys.readouterr().out
    assert "atol 0e+00 + rtol 0e+00" in out and "FAIL: output 0 element [" in out
    assert "must match exactly" in out

    monkeypatch.setenv("KILN_CACHE", "0")
    original = kiln.compiler._run_iree_compile
    monkeypatch.setattr(kiln.compiler, "_run_iree_compile", lambda text, flags, *rest: original(
        text.replace("torch.aten.tanh ", "torch.aten.sigmoid "), flags, *rest))
    assert cli_main(["check", model_file, "--input", "4x32xf32", "--samples", "1"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "first diverging op: aten.tanh" in out and "tanh_head.py" in out


# ---------------------------------------------------------------------------------------------
# Per-element tolerance


class TwoScales(nn.Module):
    """One linear, returned twice in one output: ×100 and ×1e-3. The old whole-output error
    (max|err| / max|ref|) could not see a wrong sign in the small half: 2e-3 / 1e2 < 1e-4."""

    def __init__(self, small_sign: float = 1.0):
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(16, 32)
        self.small_sign = small_sign

    def forward(self, x):
        y = self.linear(x)
        return torch.cat([y * 100.0, y * (1e-3 * self.small_sign)], dim=-1)


def test_a_wrong_sign_in_the_small_half_of_an_output_fails(monkeypatch):
    """The artifact check compiles is that of a model whose small half has the wrong sign."""
    original = kiln.compiler.compile_model

    def compile_the_wrong_model(model, *args, **kwargs):
        wrong = TwoScales(small_sign=-1.0)
        return original(wrong if isinstance(model, TwoScales) else model, *args, **kwargs)

    monkeypatch.setattr(kiln.compiler, "compile_model", compile_the_wrong_model)
    x = torch.randn(4, 16, generator=torch.Generator().manual_seed(0))
    result = kiln.check(TwoScales(), (x,), samples=2, locate=False)
    [output] = result.outputs
    assert output.max_rel_error < 1e-4  # the whole-output summary alone would pass it
    assert not result.passed, str(result)
    row, column = output.worst_index
    assert column >= 32  # an element of the small half, reported with its three values
    assert output.worst_got == pytest.approx(-output.worst_ref, rel=1e-3)
    assert output.worst_eager == pytest.approx(output.worst_ref, rel=1e-3)
    text = str(result)
    assert f"FAIL: output 0 element [{row}, {column}] (sample {output.worst_sample})" in text
    assert f"compiled {output.worst_got:.6g}, reference {output.worst_ref:.6g}" in text

    # A user atol above the small half's magnitude lets it pass (same artifact, from the cache).
    loose = kiln.check(TwoScales(), (x,), samples=2, locate=False, atol=0.1)
    assert loose.passed and loose.atol == 0.1, str(loose)
