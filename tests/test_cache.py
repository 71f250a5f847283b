"""The compile cache (kiln.cache): hits, key sensitivity, corruption, switches.

Every test points KILN_CACHE_DIR at its own tmp folder. Models are the tiny MLP (≈1.5 s per
compile) and, for the hit-time guarantee, TinyGPT with one layer.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
import time

import pytest
import torch

import kiln
import models
from kiln import cache as kcache
from kiln.examples.tiny_gpt import TinyGPTConfig, build_tiny_gpt


@pytest.fixture(autouse=True)
def _stable_kiln_sources(monkeypatch):
    """Kiln's source digest is part of every key; pin it so that edits to Kiln made while the
    suite runs (other work in the same tree) do not turn expected hits into misses."""
    monkeypatch.setattr(kcache, "kiln_source_digest", lambda: "kiln-sources-under-test")


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path / "kiln-cache"))
    monkeypatch.delenv("KILN_CACHE", raising=False)
    return tmp_path / "kiln-cache" / f"v{kcache.CACHE_FORMAT}"


def small_gpt():
    config = TinyGPTConfig(vocab_size=100, n_layers=1, d_model=64, max_seq_len=32)
    return build_tiny_gpt(config, batch=1, seq_len=16)


def mlp_case():
    return models.mlp(), (models.mlp_input(),)


def vmfbs(root):
    return sorted(root.glob("*.vmfb")) if root.is_dir() else []


def run(vmfb, *args):
    with torch.no_grad():
        return kiln.load(vmfb)(*args)


# ---------------------------------------------------------------------------------------------
# Hits


def test_second_compile_is_a_fast_identical_hit(cache_root):
    model, args = small_gpt()
    messages = []
    first = kiln.compile_model(model, args, target="cpu")
    assert first.report.cache == "miss"
    assert len(vmfbs(cache_root)) == 1
    start = time.perf_counter()
    second = kiln.compile_model(model, args, target="cpu", verbose=True, log=messages.append)
    seconds = time.perf_counter() - start
    assert second.report.cache == "hit"
    assert second.vmfb == first.vmfb
    # Functional guarantee of the issue (not a benchmark): a hit skips export, Kiln and IREE.
    assert seconds < 1.0, f"cache hit took {seconds:.2f} s"
    assert any("cache hit" in m for m in messages), messages
    assert "cache       hit" in str(second.report)
    # The report of the compile that built the artifact comes back with it.
    assert second.report.count("attention/") == first.report.count("attention/") == 1
    assert second.report.count("linear/") == first.report.count("linear/")
    assert {"export", "iree-compile", "cache-lookup"} <= set(second.report.phase_seconds)
    meta = json.loads(next(cache_root.glob("*.json")).read_text())
    assert meta["kiln_version"] == kiln.__version__ and meta["size"] == len(first.vmfb)
    torch.testing.assert_close(run(second.vmfb, *args), model(*args).detach())


def test_model_without_module_key_hits_by_graph_key(cache_root):
    model, args = mlp_case()
    first = kiln.compile_model(model, args)
    assert first.report.cache == "miss"
    twin = models.mlp()  # same class, same weights, plus a hook: no module key
    twin.register_forward_hook(lambda module, inputs, output: None)
    keys = kcache.keys(twin, args)
    assert keys["module"] is None and "hooks" in keys["module_note"]
    second = kiln.compile_model(twin, args)
    assert second.report.cache == "hit"
    assert second.vmfb == first.vmfb
    assert "export" in second.report.phase_seconds  # the graph key needed the export


# ---------------------------------------------------------------------------------------------
# What changes the key


def test_changed_weight_misses_and_compiles_the_new_weights(cache_root):
    model, args = mlp_case()
    first = kiln.compile_model(model, args)
    with torch.no_grad():
        model[0].weight[0, 0] += 1.0
    second = kiln.compile_model(model, args)
    assert second.report.cache == "miss"
    assert second.vmfb != first.vmfb
    assert len(vmfbs(cache_root)) == 2
    models.assert_close(run(second.vmfb, *args), models.eager(model, *args))


@pytest.mark.parametrize("change", ["option", "input_shape", "target"])
def test_option_shape_and_target_change_the_key(cache_root, change):
    model, args = mlp_case()
    kiln.compile_model(model, args)
    other = {"option": dict(args=args, options={"attention": "fused", "data_tiling": False}),
             "input_shape": dict(args=(torch.randn(2, 8, models.HIDDEN),), options={}),
             "target": dict(args=args, options={"target": "cuda"})}[change]
    compiled = kiln.compile_model(model, other["args"], **other["options"])
    assert compiled.report.cache == "miss"
    assert len(vmfbs(cache_root)) == 2


def test_keys_cover_target_options_shapes_weights_and_attributes():
    model, args = mlp_case()
    base = kcache.keys(model, args)
    assert base["module"] and base["graph"]
    assert kcache.keys(model, args) == base  # deterministic
    assert kcache.keys(model, args, verbose=True, cache=False) == base  # not part of the key
    variants = [kcache.keys(model, args, target="cuda"),
                kcache.keys(model, args, attention="fused"),
                kcache.keys(model, args, cpu="x86-64-v3"),
                kcache.keys(model, args, compile_to="kiln"),
                kcache.keys(model, (torch.randn(1, 8, models.HIDDEN),))]
    twin = models.mlp(seed=1)
    variants.append(kcache.keys(twin, args))
    with pytest.MonkeyPatch.context() as patch:  # a changed Kiln source invalidates entries
        patch.setattr(kcache, "kiln_source_digest", lambda: "edited-kiln-sources")
        variants.append(kcache.keys(model, args))
    for variant in variants:
        assert variant["module"] != base["module"] and variant["graph"] != base["graph"]
    # Same weights, different code path chosen by a plain attribute: only the module key can
    # tell before export, and it does.
    eager_model, tokens = build_tiny_gpt(TinyGPTConfig(n_layers=1, d_model=64), seq_len=8)
    sdpa_model, _ = build_tiny_gpt(TinyGPTConfig(n_layers=1, d_model=64, attention="sdpa"),
                                   seq_len=8)
    ctx = kcache._compile_context(("cpu",), "vmfb", kiln.CompileOptions())
    assert kcache.module_key(eager_model, tokens, ctx)[0] != \
        kcache.module_key(sdpa_model, tokens, ctx)[0]


MODEL_SOURCE = '''
import torch
from torch import nn


class Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        return self.fc(x) * {factor}
'''


def _import_model_file(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module.Scaled()


def test_module_key_follows_the_model_source(tmp_path):
    path = tmp_path / "scaled_model.py"
    ctx = kcache._compile_context(("cpu",), "vmfb", kiln.CompileOptions())
    args = (torch.randn(2, 8),)
    try:
        path.write_text(MODEL_SOURCE.format(factor="2.0"))
        key_a, why = kcache.module_key(_import_model_file(path, "kiln_test_scaled"), args, ctx)
        assert key_a, why
        path.write_text(MODEL_SOURCE.format(factor="3.0"))  # same size, same weights
        key_b, _ = kcache.module_key(_import_model_file(path, "kiln_test_scaled"), args, ctx)
        assert key_b and key_b != key_a
    finally:
        sys.modules.pop("kiln_test_scaled", None)


def test_models_without_source_have_no_module_key():
    namespace = {}
    exec(MODEL_SOURCE.format(factor="2.0"), namespace)  # noqa: S102 - no file behind it
    ctx = kcache._compile_context(("cpu",), "vmfb", kiln.CompileOptions())
    key, why = kcache.module_key(namespace["Scaled"](), (torch.randn(2, 8),), ctx)
    assert key is None and why
    gm = torch.fx.symbolic_trace(models.mlp())
    assert kcache.module_key(gm, (models.mlp_input(),), ctx)[0] is None
    assert kcache.module_key(models.mlp(), (models.mlp_input(),), ctx,
                             dynamic_shapes={"input": {0: torch.export.Dim("b")}})[0] is None


# ---------------------------------------------------------------------------------------------
# Corrupt and stale entries


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupt_entry_is_detected_deleted_and_rebuilt(cache_root, caplog, damage):
    model, args = mlp_case()
    first = kiln.compile_model(model, args)
    [path] = vmfbs(cache_root)
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
        data[100] ^= 0x01
    else:
        data = data[: len(data) // 3]
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="kiln.cache"):
        second = kiln.compile_model(model, args)
    assert second.report.cache == "miss"
    assert any("corrupt" in r.getMessage() for r in caplog.records), caplog.text
    assert second.vmfb == first.vmfb
    assert path.read_bytes() == first.vmfb  # rebuilt in place
    models.assert_close(run(second.vmfb, *args), models.eager(model, *args))
    assert kiln.compile_model(model, args).report.cache == "hit"


def test_unreadable_or_stale_metadata_is_discarded(tmp_path, caplog):
    store = kcache.CompileCache(tmp_path)
    key = "a" * 64
    store.put(key, b"artifact", {"rewrites": []})
    assert store.get(key)[0] == b"artifact"
    meta_path = tmp_path / f"{key}.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "format": kcache.CACHE_FORMAT + 1}))
    with caplog.at_level(logging.WARNING, logger="kiln.cache"):
        assert store.get(key) is None
    assert "stale" in caplog.text and not (tmp_path / f"{key}.vmfb").exists()
    store.put(key, b"artifact", {})
    meta_path.write_text("{not json")
    assert store.get(key) is None and not meta_path.exists()
    store.put(key, b"artifact", {})
    (tmp_path / f"{key}.vmfb").unlink()
    assert store.get(key) is None and not meta_path.exists()
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def test_prune_keeps_the_most_recent_entries(tmp_path):
    store = kcache.CompileCache(tmp_path)
    for index, key in enumerate(["1" * 64, "2" * 64, "3" * 64]):
        store.put(key, bytes(1000), {})
        store.put_alias(str(index) * 64, key)
        meta = tmp_path / f"{key}.json"
        os.utime(meta, (1000 + index, 1000 + index))
    store.prune(2500)
    assert sorted(p.stem for p in tmp_path.glob("*.vmfb")) == ["2" * 64, "3" * 64]
    assert store.get_alias("0" * 64) is None and store.get_alias("1" * 64) == "2" * 64


# ---------------------------------------------------------------------------------------------
# Switches


def test_cache_option_false_writes_nothing(cache_root):
    model, args = mlp_case()
    compiled = kiln.compile_model(model, args, cache=False)
    assert compiled.report.cache == "off"
    assert not cache_root.exists() or not any(cache_root.iterdir())


def test_env_switch_turns_the_cache_off(cache_root, monkeypatch):
    monkeypatch.setenv("KILN_CACHE", "0")
    model, args = mlp_case()
    compiled = kiln.compile_model(model, args)
    assert compiled.report.cache == "off"
    assert not cache_root.exists() or not any(cache_root.iterdir())
    assert kcache.cache_enabled(True) is False
    monkeypatch.setenv("KILN_CACHE", "1")
    assert kcache.cache_enabled(True) is True and kcache.cache_enabled(False) is False


def test_ir_phases_bypass_the_cache(cache_root):
    model, args = mlp_case()
    for phase in ("torch", "kiln", "iree-input"):
        compiled = kiln.compile_model(model, args, compile_to=phase)
        assert compiled.ir_text and compiled.report.cache == "off"
    assert not cache_root.exists() or not any(cache_root.iterdir())


def test_kiln_source_digest_covers_the_compiler_not_the_cli():
    files = kcache._source_files()
    names = {p.name for p in files}
    assert {"compiler.py", "frontend.py", "convert_kiln_to_torch.py"} <= names
    assert not names & {"cli.py", "check.py", "runtime.py", "tiny_gpt.py"}


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("KILN_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert kcache.cache_dir() == tmp_path / ".cache" / "kiln"
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert kcache.cache_dir() == tmp_path / "elsewhere"


def test_unwritable_cache_dir_does_not_break_compiles(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    monkeypatch.setenv("KILN_CACHE_DIR", str(blocker))
    monkeypatch.delenv("KILN_CACHE", raising=False)
    model, args = mlp_case()
    with caplog.at_level(logging.WARNING, logger="kiln.cache"):
        compiled = kiln.compile_model(model, args)
    assert compiled.vmfb and "cannot write" in caplog.text
