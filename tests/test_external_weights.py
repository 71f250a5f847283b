"""weights="external": the weights go to an IREE parameter archive (.irpa) beside the .vmfb.

Checks: the archive is written and found by kiln.load; the .vmfb shrinks; the IR handed to IREE
carries no weight bytes and reads them from `#stream.parameter.named` globals; outputs match
eager; tied weights are stored once and equal-valued weights stay distinct; int buffers work;
missing archives and bad option values are clear errors.
The archive is bound to its artifact (kiln.archive): the artifact records each parameter's key,
shape, dtype, byte length and sha256; kiln.load refuses another model's archive (same keys,
other shapes, missing or extra keys, truncated or altered bytes) naming the parameter, unless
`verify_parameters=False` (contents unchecked: a swapped archive then runs other weights);
outputs `m.b1` and `m.b2` get archives of their own; the pair is renamed into place together.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import kiln
from kiln.artifact import parameters_path
from kiln.examples import tiny
from kiln.runtime import write_parameter_archive

from compare import assert_close, eager


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


@pytest.fixture(scope="module")
def mlps():
    """(input, [(model, compile_model(..., weights="external"))] for two MLPs of the same
    architecture (same archive keys and shapes) and other weights)."""
    x = tiny.mlp_input()
    pairs = []
    for seed in (0, 7):
        model = tiny.mlp("gelu", seed=seed)
        pairs.append((model, kiln.compile_model(model, (x,), target="cpu", weights="external")))
    return x, pairs


def _weights(model, keys) -> dict:
    return {k: v.detach().numpy() for k, v in model.state_dict().items() if k in keys}


def test_mlp_external_and_swapped_archive(mlps, tmp_path):
    x, [(model, compiled), _] = mlps
    assert list(compiled.parameters) == ["0.weight", "2.weight"]  # 64- and 128-float biases
    inline = kiln.compile_model(model, (x,), target="cpu")  # stay inline (< 1 KiB)
    path = compiled.save(tmp_path / "mlp.vmfb")
    assert path.with_suffix(".irpa").is_file()
    assert path.stat().st_size < len(inline.vmfb) - 50_000
    assert_close(kiln.load(path)(x), eager(model, x))
    # Another model's archive with the same keys and shapes: refused, naming the parameter.
    other = tiny.mlp("gelu", seed=7)  # a copy: the fixture's is compared with its compile
    other.load_state_dict({**other.state_dict(), "0.bias": model[0].bias,
                           "2.bias": model[2].bias})
    swapped = tmp_path / "other.irpa"
    write_parameter_archive(swapped, _weights(other, compiled.parameters))
    with pytest.raises(kiln.KilnLoadError, match=r"other.irpa.*'0.weight' \(128x64 float32, "
                                                 r"32768 bytes\) has other contents"):
        kiln.load(path, parameters=swapped)
    # verify_parameters=False (unsafe, documented) skips the contents check: the .vmfb holds
    # no weights, so another archive with the same keys and shapes gives another model.
    assert_close(kiln.load(path, parameters=swapped, verify_parameters=False)(x), eager(other, x))


def _record(vmfb: bytes) -> dict:
    import iree.runtime as rt

    module = rt.VmModule.copy_buffer(rt.VmInstance(), vmfb)
    return json.loads(dict(module.lookup_function("main").reflection)["kiln.parameters"])


def test_artifact_records_its_parameters(mlps):
    _, [(model, compiled), _] = mlps
    record = _record(compiled.vmfb)
    state = model.state_dict()
    assert [(p["key"], p["shape"], p["dtype"], p["bytes"]) for p in record["parameters"]] == [
        (k, list(state[k].shape), "float32", state[k].numel() * 4)
        for k in ("0.weight", "2.weight")]
    for entry in record["parameters"]:
        assert entry["sha256"] == hashlib.sha256(state[entry["key"]].numpy().tobytes()).hexdigest()
    assert (record["count"], record["bytes"]) == (2, 2 * 128 * 64 * 4)
    # The digest covers every parameter: another model's weights give another one.
    assert re.fullmatch("[0-9a-f]{64}", record["digest"])
    assert record["digest"] != _record(mlps[1][1][1].vmfb)["digest"]


def test_archive_of_other_shapes_is_refused(mlps, tmp_path):
    x, [(_, compiled), _] = mlps
    path = compiled.save(tmp_path / "mlp.vmfb")
    cases = {  # archive contents → what the error names
        # larger tensors under the same keys: IREE would read their first bytes silently
        "larger": ({"0.weight": np.ones((256, 64), np.float32),
                    "2.weight": np.ones((64, 256), np.float32)},
                   r"'0.weight' \(128x64 float32, 32768 bytes\) has 65536 bytes there"),
        "smaller": ({"0.weight": compiled.parameters["0.weight"],
                     "2.weight": np.ones((64, 32), np.float32)},
                    r"'2.weight' \(64x128 float32, 32768 bytes\) has 8192 bytes there"),
        # same byte length, transposed: only the contents tell
        "transposed": ({"0.weight": np.ascontiguousarray(compiled.parameters["0.weight"].T),
                        "2.weight": compiled.parameters["2.weight"]},
                       r"'0.weight' .* has other contents"),
        "missing key": ({"0.weight": compiled.parameters["0.weight"]},
                        r"has no parameter '2.weight' \(64x128 float32, 32768 bytes\)"),
        "extra key": ({**compiled.parameters, "3.weight": np.ones(512, np.float32)},
                      r"parameter\(s\) the artifact does not use: '3.weight'"),
    }
    for name, (arrays, message) in cases.items():
        archive = tmp_path / f"{name.replace(' ', '_')}.irpa"
        write_parameter_archive(archive, arrays)
        with pytest.raises(kiln.KilnLoadError, match=message):
            kiln.load(path, parameters=archive)(x)
    # Keys and byte lengths are checked even with verify_parameters=False.
    with pytest.raises(kiln.KilnLoadError, match="65536 bytes there"):
        kiln.load(path, parameters=tmp_path / "larger.irpa", verify_parameters=False)


def test_truncated_or_altered_archive_is_refused(mlps, tmp_path):
    x, [(model, compiled), _] = mlps
    path = compiled.save(tmp_path / "mlp.vmfb")
    archive = parameters_path(path)
    data = archive.read_bytes()
    # One flipped byte inside 2.weight (the last 32 KiB of data; the file ends with padding).
    end = data.rindex(compiled.parameters["2.weight"].tobytes()) + 32768
    altered = bytearray(data)
    altered[end - 100] ^= 0xFF
    archive.write_bytes(bytes(altered))
    with pytest.raises(kiln.KilnLoadError, match=r"mlp.irpa.*'2.weight' .* other contents"):
        kiln.load(path)
    archive.write_bytes(data[:end - 4096])  # cut inside the data
    with pytest.raises(kiln.KilnLoadError, match="mlp.irpa"):
        kiln.load(path)
    archive.write_bytes(data)
    assert_close(kiln.load(path)(x), eager(model, x))


def test_distinct_outputs_get_distinct_archives(mlps, tmp_path):
    x, pairs = mlps
    assert parameters_path("out/model.vmfb") == Path("out/model.irpa")
    assert parameters_path("out/m.b1") == Path("out/m.b1.irpa")
    paths = [compiled.save(tmp_path / f"m.b{i}") for i, (_, compiled) in enumerate(pairs, 1)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.b1", "m.b1.irpa", "m.b2",
                                                          "m.b2.irpa"]
    for path, (model, _) in zip(paths, pairs):
        assert_close(kiln.load(path)(x), eager(model, x), what=path.name)


def test_artifact_and_archive_are_written_as_a_pair(mlps, tmp_path, monkeypatch):
    x, [(model, compiled), (other, other_compiled)] = mlps
    path = compiled.save(tmp_path / "m.vmfb")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    # A failure while writing: the old pair stays, no temporary file is left.
    import kiln.runtime

    def failing_archive(*args):
        raise OSError("disk full")

    monkeypatch.setattr(kiln.runtime.files, "write_parameter_archive", failing_archive)
    with pytest.raises(OSError, match="disk full"):
        other_compiled.save(path)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    # A crash between the renames (archive renamed, artifact not): the old artifact beside the
    # new archive is refused at load, not run with the other weights.
    renamed = []

    def crash_on_artifact(source, target):
        if Path(target) == path:
            raise OSError("crash")
        renamed.append(Path(target))
        shutil.move(source, target)

    monkeypatch.setattr(kiln.runtime.files.os, "replace", crash_on_artifact)
    with pytest.raises(OSError, match="crash"):
        other_compiled.save(path)
    monkeypatch.undo()
    assert renamed == [parameters_path(path)]  # the archive first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.irpa", "m.vmfb"]
    with pytest.raises(kiln.KilnLoadError, match="'0.weight' .* other contents"):
        kiln.load(path)
    other_compiled.save(path)
    assert_close(kiln.load(path)(x), eager(other, x))


def test_verify_splats_old_records_and_damaged_records(tmp_path):
    """kiln.archive.verify alone (no compile): a splat entry is hashed as its expanded bytes;
    a record without digests (older Kiln) is refused unless verify_parameters=False; a record
    whose own digest disagrees with its entries is refused naming the archive."""
    from kiln.archive import ArchiveEntry, record, verify

    zeros, ramp = np.zeros((64, 64), np.float32), np.arange(512, dtype=np.int64)
    info = record("model", [("zeros", zeros, "float32"), ("ramp", ramp, "int64")])
    archive = tmp_path / "x.irpa"
    entries = [ArchiveEntry("zeros", zeros.nbytes, splat_pattern=b"\0\0\0\0"),
               ArchiveEntry("ramp", ramp.nbytes, view=memoryview(ramp.tobytes()))]
    verify(info, entries, archive)
    ones = [ArchiveEntry("zeros", zeros.nbytes, splat_pattern=b"\1"), entries[1]]
    with pytest.raises(kiln.KilnLoadError, match=r"x.irpa .*'zeros' \(64x64 float32, 16384 "
                                                 r"bytes\) has other contents"):
        verify(info, ones, archive)
    old = {k: info[k] for k in ("scope", "count", "bytes")}
    with pytest.raises(kiln.KilnLoadError, match="older Kiln.*x.irpa.*compile it again"):
        verify(old, entries, archive)
    verify(old, ones, archive, contents=False)
    with pytest.raises(kiln.KilnLoadError, match="x.irpa.*digest of its parameters differs"):
        verify({**info, "digest": "0" * 64}, entries, archive)


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
    assert {p["key"]: (p["shape"], p["dtype"]) for p in _record(path.read_bytes())[
        "parameters"]}["remap"] == ([256], "int64")
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
    model, x = tiny.mlp("gelu"), tiny.mlp_input()
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
