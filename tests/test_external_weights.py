"""weights="external": the weights go to an IREE parameter archive (.irpa) beside the .vmfb.

Checks: the archive is written and found by kiln.load; the .vmfb shrinks; the IR handed to IREE
carries no weight bytes and reads them from `#stream.parameter.named` globals; outputs match
eager; tied weights are stored once and equal-valued weights stay distinct; int buffers work;
a swapped archive changes the outputs without recompiling; missing archives and bad option
values are clear errors.
"""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import torch
from torch import nn

import kiln
import models
from kiln.runtime import write_parameter_archive
from models import assert_close, eager


@pytest.fixture(scope="module")
def tiny_gpt_external(tiny_gpt_eager, tmp_path_factory):
    model, args = tiny_gpt_eager
    path = tmp_path_factory.mktemp("tiny_gpt") / "tiny_gpt.vmfb"
    return kiln.compile_to_vmfb(model, args, target="cpu", output=path, weights="external")


def test_tiny_gpt_external_matches_eager(tiny_gpt_eager, tiny_gpt_external, tiny_gpt_vmfb):
    model, args = tiny_gpt_eager
    vmfb, irpa = tiny_gpt_external, tiny_gpt_external.with_suffix(".irpa")
    assert irpa.is_file()
    weight_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    assert irpa.stat().st_size >= 0.9 * weight_bytes
    # The weights left the .vmfb: it is smaller than the inline one by about their size.
    assert vmfb.stat().st_size < len(tiny_gpt_vmfb) - 0.8 * weight_bytes, \
        (vmfb.stat().st_size, len(tiny_gpt_vmfb), weight_bytes)
    for source in (vmfb, str(vmfb)):
        assert_close(kiln.load(source, device="cpu")(*args), eager(model, *args),
                     what="tiny_gpt logits (external weights)")


def test_iree_input_has_parameters_and_no_weight_bytes(tiny_gpt_eager):
    model, args = tiny_gpt_eager
    text = kiln.compile_to_vmfb(model, args, compile_to="iree-input", weights="external")
    assert '#stream.parameter.named<"model"::"lm_head.weight">' in text
    assert "util.global.load @kiln_param_" in text and "torch_c.from_builtin_tensor" in text
    assert "dense_resource<kiln_param" not in text
    resources = text.split("dialect_resources", 1)[1] if "dialect_resources" in text else ""
    assert "kiln_param" not in resources
    # The blobs that remain (LayerNorm vectors of 64 floats) are under the 1 KiB threshold.
    blobs = re.findall(r'^\s+[\w.]+: "0x([0-9A-F]*)"', resources, re.M)
    assert blobs and all(len(blob) // 2 - 4 < 1024 for blob in blobs), [len(b) for b in blobs]
    # No large readable literal holds a weight either: the text is far smaller than the weights.
    weight_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    assert len(text) < weight_bytes


def test_mlp_external_and_swapped_archive(tmp_path):
    model, x = models.mlp("gelu"), models.mlp_input()
    compiled = kiln.compile_model(model, (x,), target="cpu", weights="external")
    assert set(compiled.parameters) == {"0.weight", "2.weight"}  # 64- and 128-float biases
    inline = kiln.compile_model(model, (x,), target="cpu")  # stay inline (< 1 KiB)
    path = compiled.save(tmp_path / "mlp.vmfb")
    assert path.with_suffix(".irpa").is_file()
    assert path.stat().st_size < len(inline.vmfb) - 50_000
    assert_close(kiln.load(path)(x), eager(model, x))
    # The .vmfb holds no weights: another archive with the same keys gives another model.
    other = models.mlp("gelu", seed=7)
    other.load_state_dict({**other.state_dict(), "0.bias": model[0].bias,
                           "2.bias": model[2].bias})
    swapped = tmp_path / "other.irpa"
    write_parameter_archive(swapped, {k: v.detach().numpy() for k, v in
                                      other.state_dict().items() if k in compiled.parameters})
    assert_close(kiln.load(path, parameters=swapped)(x), eager(other, x))


class TiedWithIndexBuffer(nn.Module):
    """Tied embedding / output weights, two equal-valued weights, an int64 index buffer."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(64, 32)
        self.head = nn.Linear(32, 64, bias=False)
        self.head.weight = self.embed.weight
        self.a = nn.Linear(32, 32, bias=False)
        self.b = nn.Linear(32, 32, bias=False)
        with torch.no_grad():
            self.b.weight.copy_(self.a.weight)
        self.register_buffer("remap", (torch.arange(256) * 7) % 64)

    def forward(self, ids):
        x = self.embed(self.remap[ids])
        return self.head(self.a(x) * 2 + self.b(x).flip(-1))


def test_tied_equal_and_int_weights(tmp_path):
    model = TiedWithIndexBuffer().eval()
    ids = torch.randint(0, 256, (2, 8))
    path = kiln.compile_to_vmfb(model, (ids,), target="cpu", output=tmp_path / "m.vmfb",
                                weights="external")
    compiled = kiln.compile_model(model, (ids,), target="cpu", weights="external",
                                  compile_to="iree-input")
    # Tied: one entry; equal values: two entries; the int64 buffer: an i64 global.
    assert sorted(compiled.parameters) == ["a.weight", "b.weight", "embed.weight", "remap"]
    assert re.search(r'"model"::"remap"> : tensor<256xi64>', compiled.ir_text)
    assert_close(kiln.load(path)(ids), eager(model, ids))


def test_missing_archive_is_a_load_error(tiny_gpt_external, tmp_path):
    moved = tmp_path / "elsewhere.vmfb"
    shutil.copy(tiny_gpt_external, moved)
    with pytest.raises(kiln.KilnLoadError) as info:
        kiln.load(moved)
    assert str(moved.with_suffix(".irpa")) in str(info.value)
    assert "parameter archive" in str(info.value)
    with pytest.raises(kiln.KilnLoadError, match="parameters="):
        kiln.load(moved.read_bytes())  # bytes: nowhere to look
    with pytest.raises(kiln.KilnLoadError, match="nothing.irpa"):
        kiln.load(moved, parameters=tmp_path / "nothing.irpa")
    # An explicit archive makes it loadable.
    module = kiln.load(moved.read_bytes(), parameters=tiny_gpt_external.with_suffix(".irpa"))
    assert module.parameters_file == tiny_gpt_external.with_suffix(".irpa")


def test_wrong_archive_is_a_load_error(tiny_gpt_external, tmp_path):
    bogus = tmp_path / "bogus.irpa"
    write_parameter_archive(bogus, {"unrelated": np.zeros(1024, np.float32)})
    with pytest.raises(kiln.KilnLoadError, match="bogus.irpa"):
        kiln.load(tiny_gpt_external, parameters=bogus)


def test_option_values_are_checked_before_compiling():
    model, x = models.mlp("gelu"), models.mlp_input()
    with pytest.raises(ValueError, match="weights='bogus'"):
        kiln.compile_to_vmfb(model, (x,), weights="bogus")
    with pytest.raises(ValueError, match="needs an output path"):
        kiln.compile_to_vmfb(model, (x,), weights="external")


def test_external_weights_keep_linears_unmerged():
    """Merging Q/K/V concatenates weights; with external weights that concat would run in the
    module initializer (copies exceeding CUDA graph limits at load), so it is left out."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(num_hidden_layers=1, hidden_size=64, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=128, vocab_size=100,
                         use_cache=False)
    model = LlamaForCausalLM(config).eval()
    ids = torch.randint(0, 100, (1, 8))
    inline = kiln.compile_model(model, (ids,), compile_to="kiln", cache=False)
    external = kiln.compile_model(model, (ids,), compile_to="kiln", weights="external",
                                  cache=False)
    assert any(r.pass_name == "kiln-merge-linears" for r in inline.report.rewrites)
    assert not any(r.pass_name in ("kiln-merge-linears", "kiln-raise-swiglu")
                   for r in external.report.rewrites)
    # no concatenated weights (the int64 cat of the embedding's bounds check is no weight)
    assert not re.search(r"torch\.aten\.cat .*-> !torch\.vtensor<\[[^\]]*\],f32>",
                         external.ir_text)
