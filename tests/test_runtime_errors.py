"""Errors a user can cause, each with a type and a message that says what to fix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import kiln
from kiln.examples import tiny

# ---------------------------------------------------------------------------------------------
# Calling a loaded module with the wrong inputs


def test_wrong_arity_names_expected_inputs(tiny_gpt_module):
    tokens = tiny.token_ids()
    for args in [(), (tokens, tokens)]:
        with pytest.raises(ValueError) as info:
            tiny_gpt_module(*args)
        message = str(info.value)
        assert "expected 1 input(s)" in message
        assert "tokens" in message and "(1, 16)" in message and "int64" in message
        assert f"got {len(args)}" in message


def test_wrong_shape_names_argument_and_shape(tiny_gpt_module):
    with pytest.raises(ValueError) as info:
        tiny_gpt_module(torch.zeros(1, 8, dtype=torch.int64))
    message = str(info.value)
    assert "'tokens'" in message
    assert "expected shape (1, 16)" in message and "got (1, 8)" in message


def test_wrong_rank_is_a_shape_error(tiny_gpt_module):
    with pytest.raises(ValueError) as info:
        tiny_gpt_module(np.zeros((1, 16, 1), dtype=np.int64))
    assert "'tokens'" in str(info.value) and "(1, 16, 1)" in str(info.value)


@pytest.mark.parametrize("dtype", [torch.int32, torch.float32])
def test_wrong_dtype_names_argument_and_dtype(tiny_gpt_module, dtype):
    with pytest.raises(ValueError) as info:
        tiny_gpt_module(torch.zeros(1, 16, dtype=dtype))
    message = str(info.value)
    assert "'tokens'" in message
    assert "expected dtype int64" in message
    assert str(torch.zeros(0, dtype=dtype).numpy().dtype) in message


def test_wrong_dtype_numpy(tiny_gpt_module):
    with pytest.raises(ValueError, match=r"'tokens'.*expected dtype int64, got int32"):
        tiny_gpt_module(np.zeros((1, 16), dtype=np.int32))


def test_non_array_input_is_a_type_error(tiny_gpt_module):
    with pytest.raises(TypeError, match="numpy array or torch tensor"):
        tiny_gpt_module([[0] * 16])


def test_input_names_follow_forward_signature():
    """A two-input model: the message names the argument that is wrong, not just an index."""

    class TwoInputs(torch.nn.Module):
        def forward(self, hidden, gate):
            return hidden * torch.sigmoid(gate)

    hidden, gate = torch.randn(2, 8), torch.randn(2, 8)
    module = kiln.load(kiln.compile_to_vmfb(TwoInputs(), (hidden, gate)))
    assert module.input_names == ["hidden", "gate"]
    np.testing.assert_allclose(module(hidden, gate).numpy(),
                               (hidden * torch.sigmoid(gate)).numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"input 'gate' \(#1\): expected shape \(2, 8\)"):
        module(hidden, torch.randn(2, 9))
    with pytest.raises(ValueError, match=r"hidden: \(2, 8\) float32, gate: \(2, 8\) float32"):
        module(hidden)


# ---------------------------------------------------------------------------------------------
# Loading


@pytest.mark.parametrize("cut", [0, 16, 100, "half"])
def test_truncated_vmfb_is_a_load_error(tiny_gpt_vmfb, cut):
    size = len(tiny_gpt_vmfb) // 2 if cut == "half" else cut
    with pytest.raises(kiln.KilnLoadError) as info:
        kiln.load(tiny_gpt_vmfb[:size])
    message = str(info.value)
    assert "not a loadable IREE .vmfb" in message
    assert f"({size} bytes" in message


def test_foreign_bytes_are_a_load_error():
    with pytest.raises(kiln.KilnLoadError, match="not a loadable IREE .vmfb"):
        kiln.load(b"hello" * 100)


def test_text_file_is_a_load_error(tmp_path):
    path = tmp_path / "model.vmfb"
    path.write_text("this is not a model\n" * 20)
    with pytest.raises(kiln.KilnLoadError, match="truncated, corrupt or another kind of file"):
        kiln.load(path)
    with pytest.raises(kiln.KilnLoadError):
        kiln.load(str(path))


def test_load_error_is_a_value_error():
    assert issubclass(kiln.KilnLoadError, ValueError)
    assert issubclass(kiln.KilnLoadError, kiln.KilnError)


def test_missing_path_is_file_not_found(tmp_path):
    missing = tmp_path / "nope.vmfb"
    with pytest.raises(FileNotFoundError, match="nope.vmfb"):
        kiln.load(missing)
    with pytest.raises(FileNotFoundError):
        kiln.load(str(missing))


def test_directory_is_not_an_artifact(tmp_path):
    with pytest.raises(FileNotFoundError):
        kiln.load(tmp_path)


@pytest.mark.parametrize("device", ["tpu", "gpu", ""])
def test_unknown_device(tiny_gpt_vmfb, device):
    with pytest.raises(ValueError) as info:
        kiln.load(tiny_gpt_vmfb, device=device)
    message = str(info.value)
    assert repr(device) in message and "cpu" in message and "cuda" in message


# ---------------------------------------------------------------------------------------------
# Compile arguments: rejected before any work is done


def test_unknown_compile_option_is_a_type_error(tiny_gpt_eager):
    model, args = tiny_gpt_eager
    with pytest.raises(TypeError) as info:
        kiln.compile_to_vmfb(model, args, attn="fused")
    message = str(info.value)
    assert "attn" in message
    assert "attention" in message, "the message lists the known options"


def test_several_unknown_options_are_all_named(tiny_gpt_eager):
    model, args = tiny_gpt_eager
    with pytest.raises(TypeError) as info:
        kiln.compile_model(model, args, fast=True, opt=3)
    assert "fast" in str(info.value) and "opt" in str(info.value)


@pytest.mark.parametrize("target", ["tpu", "", ("cpu", "rocm"), "cpu,metal", ()])
def test_unknown_target(tiny_gpt_eager, target):
    model, args = tiny_gpt_eager
    with pytest.raises(ValueError) as info:
        kiln.compile_to_vmfb(model, args, target=target)
    assert "unknown target" in str(info.value)
    assert "'cpu'" in str(info.value) and "'cuda'" in str(info.value)


@pytest.mark.parametrize("phase", ["linalg", "flow", "vmfb2"])
def test_unknown_compile_to(tiny_gpt_eager, phase):
    model, args = tiny_gpt_eager
    with pytest.raises(ValueError) as info:
        kiln.compile_to_vmfb(model, args, compile_to=phase)
    message = str(info.value)
    assert repr(phase) in message
    for known in ("torch", "kiln", "iree-input", "vmfb"):
        assert known in message


def test_non_module_is_a_type_error():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        kiln.compile_to_vmfb(lambda x: x * 2, (torch.randn(2),))
