"""The compile cache: keys from the exported program (kiln.compile_key), storage (kiln.cache).

Every test points KILN_CACHE_DIR at its own tmp folder. Models are the tiny MLP (≈1.5 s per
compile) and small modules written for the case at hand.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import sys

import pytest
import torch

import kiln
from kiln.examples import tiny
from kiln import cache as kcache
from kiln import compile_key as kkey
from kiln import compiler as kcompiler
from kiln.examples.tiny_gpt import TinyGPTConfig, build_tiny_gpt

import compare


@pytest.fixture(autouse=True)
def _stable_kiln_sources(monkeypatch):
    """Kiln's source digest is part of every key; pin it so that edits to Kiln made while the
    suite runs (other work in the same tree) do not turn expected hits into misses."""
    monkeypatch.setattr(kkey, "kiln_source_digest", lambda: "kiln-sources-under-test")


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path / "kiln-cache"))
    monkeypatch.delenv("KILN_CACHE", raising=False)
    monkeypatch.delenv("KILN_CACHE_MAX_MB", raising=False)
    return tmp_path / "kiln-cache" / f"v{kcache.CACHE_FORMAT}"


@pytest.fixture
def no_compiles(monkeypatch):
    """Call to make any further compile (Kiln's pipeline or IREE) fail the test."""

    def forbid():
        def compile_programs(*args, **kwargs):
            raise AssertionError("the cache should have answered: a compile ran")

        monkeypatch.setattr(kcompiler, "_compile_programs", compile_programs)

    return forbid


def mlp_case():
    return tiny.mlp(), (tiny.mlp_input(),)


def vmfbs(root):
    return sorted(root.glob("*.vmfb")) if root.is_dir() else []


def run(vmfb, *args):
    with torch.no_grad():
        return kiln.load(vmfb)(*args)


def assert_runs_like_eager(compiled, model, args):
    compare.assert_close(run(compiled.vmfb, *args), compare.eager(model, *args))


# ---------------------------------------------------------------------------------------------
# Hits


def test_second_compile_is_an_identical_hit_without_compiling(cache_root, no_compiles):
    config = TinyGPTConfig(vocab_size=100, n_layers=1, d_model=64, max_seq_len=32)
    model, args = build_tiny_gpt(config, batch=1, seq_len=16)
    first = kiln.compile_model(model, args, target="cpu")
    assert first.report.cache == "miss"
    assert len(vmfbs(cache_root)) == 1
    no_compiles()
    messages = []
    second = kiln.compile_model(model, args, target="cpu", verbose=True, log=messages.append)
    assert second.report.cache == "hit"
    assert second.vmfb == first.vmfb
    assert any("cache hit" in m for m in messages), messages
    assert "cache       hit" in str(second.report)
    # The report of the compile that built the artifact comes back with it.
    assert second.report.count("attention/") == first.report.count("attention/") == 1
    assert second.report.count("linear/") == first.report.count("linear/")
    assert {"export", "iree-compile", "cache-lookup"} <= set(second.report.phase_seconds)
    record = next(kcache.iter_entries(cache_root))
    assert record["kiln_version"] == kiln.__version__ and record["size"] == len(first.vmfb)
    assert_runs_like_eager(second, model, args)


def test_equal_programs_share_an_entry_even_with_hooks(cache_root, no_compiles):
    model, args = mlp_case()
    first = kiln.compile_model(model, args)
    twin = tiny.mlp()  # same class, same weights, plus a hook that changes nothing
    twin.register_forward_hook(lambda module, inputs, output: None)
    no_compiles()
    second = kiln.compile_model(twin, args)
    assert second.report.cache == "hit" and second.vmfb == first.vmfb


def test_entry_points_are_cached(cache_root, no_compiles):
    model, args = mlp_case()
    entries = {"first": (model, args), "second": (tiny.mlp(seed=1), args)}
    vmfb = kiln.compile_entry_points(entries)
    assert len(vmfbs(cache_root)) == 1
    no_compiles()
    assert kiln.compile_entry_points(entries) == vmfb
    loaded = kiln.load(vmfb)
    with torch.no_grad():
        compare.assert_close(loaded.second(*args), compare.eager(entries["second"][0], *args))


# ---------------------------------------------------------------------------------------------
# Code that differs gets another artifact (issue 11, finding 1)


class _Lambda(torch.nn.Module):
    def __init__(self, factor: int):
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(8, 8)
        # Same __qualname__ for both factors: only the code that runs tells them apart.
        self.act = (lambda x: x * 2) if factor == 2 else (lambda x: x * 3)

    def forward(self, x):
        return self.act(self.fc(x))


def test_modules_differing_only_in_a_lambda_get_their_own_artifacts(cache_root):
    args = (torch.randn(2, 8),)
    double, triple = _Lambda(2), _Lambda(3)
    assert double.act.__qualname__ == triple.act.__qualname__
    first = kiln.compile_model(double, args)
    second = kiln.compile_model(triple, args)
    assert second.report.cache == "miss" and second.vmfb != first.vmfb
    assert_runs_like_eager(first, double, args)
    assert_runs_like_eager(second, triple, args)


MODEL_SOURCE = '''
import torch
from torch import nn
import {helper}


class Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        return {helper}.shift(self.fc(x) * {factor})
'''
HELPER_SOURCE = '''
import {deeper}


def shift(x):
    return {deeper}.offset(x)
'''
DEEPER_SOURCE = '''
def offset(x):
    return x + {offset}
'''


@pytest.fixture
def model_files(tmp_path, monkeypatch):
    """Write model.py → helper.py → deeper.py (two levels of imports) under unique names;
    `load()` imports the model as the files are now, like a fresh process would."""
    suffix = f"{os.getpid()}_{id(tmp_path)}"
    names = {"model": f"kiln_test_model_{suffix}", "helper": f"kiln_test_helper_{suffix}",
             "deeper": f"kiln_test_deeper_{suffix}"}
    monkeypatch.syspath_prepend(str(tmp_path))

    class Files:
        def write(self, factor="2.0", offset="1.0"):
            (tmp_path / f"{names['model']}.py").write_text(
                MODEL_SOURCE.format(helper=names["helper"], factor=factor))
            (tmp_path / f"{names['helper']}.py").write_text(
                HELPER_SOURCE.format(deeper=names["deeper"]))
            (tmp_path / f"{names['deeper']}.py").write_text(DEEPER_SOURCE.format(offset=offset))

        def load(self):
            for name in names.values():
                sys.modules.pop(name, None)
            importlib.invalidate_caches()
            return importlib.import_module(names["model"]).Scaled()

    yield Files()
    for name in names.values():
        sys.modules.pop(name, None)


def test_source_edited_after_import_never_serves_a_stale_artifact(cache_root, model_files):
    args = (torch.randn(2, 8),)
    model_files.write(factor="2.0")
    running = model_files.load()
    model_files.write(factor="3.0")  # edited on disk after the import: the code that runs is 2.0
    compiled = kiln.compile_model(running, args)
    assert_runs_like_eager(compiled, running, args)
    fresh = model_files.load()  # a fresh import runs the edited code
    recompiled = kiln.compile_model(fresh, args)
    assert recompiled.report.cache == "miss"
    assert_runs_like_eager(recompiled, fresh, args)


def test_edit_two_imports_deep_changes_the_artifact(cache_root, model_files):
    args = (torch.randn(2, 8),)
    model_files.write(offset="1.0")
    first_model = model_files.load()
    first = kiln.compile_model(first_model, args)
    model_files.write(offset="5.0")  # only deeper.py, imported by helper.py, changes
    second_model = model_files.load()
    second = kiln.compile_model(second_model, args)
    assert second.report.cache == "miss"
    assert_runs_like_eager(first, first_model, args)
    assert_runs_like_eager(second, second_model, args)


def test_monkeypatched_global_changes_the_artifact(cache_root, model_files, monkeypatch):
    args = (torch.randn(2, 8),)
    model_files.write()
    model = model_files.load()
    kiln.compile_model(model, args)
    helper = sys.modules[type(model).__module__.replace("model", "helper")]
    monkeypatch.setattr(helper, "shift", lambda x: x - 7.0)
    patched = kiln.compile_model(model, args)
    assert patched.report.cache == "miss"
    assert_runs_like_eager(patched, model, args)


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
    assert_runs_like_eager(second, model, args)


def test_key_covers_target_options_shapes_weights_code_and_kiln():
    model, args = mlp_case()
    base = kkey.key_for(model, args)
    assert kkey.key_for(model, args) == base  # deterministic
    assert kkey.key_for(model, args, verbose=True, cache=False) == base  # not in the key
    variants = [kkey.key_for(model, args, target="cuda"),
                kkey.key_for(model, args, attention="fused"),
                kkey.key_for(model, args, cpu="x86-64-v3"),
                kkey.key_for(model, args, compile_to="kiln"),
                kkey.key_for(model, (torch.randn(1, 8, tiny.HIDDEN),)),
                kkey.key_for(tiny.mlp(seed=1), args),
                kkey.key_for(tiny.mlp("relu"), args)]
    with pytest.MonkeyPatch.context() as patch:  # a changed Kiln source invalidates entries
        patch.setattr(kkey, "kiln_source_digest", lambda: "edited-kiln-sources")
        variants.append(kkey.key_for(model, args))
    assert len({base, *variants}) == len(variants) + 1
    # Same weights, a different code path chosen by a plain attribute.
    eager_model, tokens = build_tiny_gpt(TinyGPTConfig(n_layers=1, d_model=64), seq_len=8)
    sdpa_model, _ = build_tiny_gpt(TinyGPTConfig(n_layers=1, d_model=64, attention="sdpa"),
                                   seq_len=8)
    assert kkey.key_for(eager_model, tokens) != kkey.key_for(sdpa_model, tokens)


def test_key_covers_the_kernel_table_for_cuda(tmp_path, monkeypatch):
    model, args = mlp_case()
    base = kkey.key_for(model, args, target="cuda")
    table = tmp_path / "table.json"
    table.write_text(json.dumps({"format": 1, "entries": {}}))
    monkeypatch.setenv("KILN_KERNEL_TABLE", str(table))
    assert kkey.key_for(model, args, target="cuda") != base
    assert kkey.key_for(model, args, target="cpu") == kkey.key_for(model, args)


def test_unkeyable_graph_arguments_turn_the_cache_off():
    with pytest.raises(kkey.Unkeyable):
        kkey._argument_text(object(), {})
    with pytest.raises(kkey.Unkeyable):
        kkey._target_name(lambda x: x)
    assert kkey._argument_text([1, 2.5, None, torch.float16], {}) == \
        "list[int:1, float:2.5, NoneType:None, dtype:torch.float16]"


# ---------------------------------------------------------------------------------------------
# Corrupt and stale entries; cache I/O never fails a compile (issue 11, finding 5)


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
    assert_runs_like_eager(second, model, args)
    assert kiln.compile_model(model, args).report.cache == "hit"


@pytest.mark.parametrize("content", ["null", "[]", '"text"', "{not json", "{}"])
def test_unreadable_metadata_is_a_miss_never_an_error(cache_root, content):
    model, args = mlp_case()
    first = kiln.compile_model(model, args)
    [meta] = cache_root.glob("*.json")
    meta.write_text(content)
    second = kiln.compile_model(model, args)
    assert second.report.cache == "miss" and second.vmfb == first.vmfb
    assert kiln.compile_model(model, args).report.cache == "hit"  # rewritten


def test_unreadable_report_in_an_entry_recompiles(cache_root):
    model, args = mlp_case()
    kiln.compile_model(model, args)
    [meta] = cache_root.glob("*.json")
    record = json.loads(meta.read_text())
    record["meta"] = {"report": None}
    meta.write_text(json.dumps(record))
    assert kiln.compile_model(model, args).report.cache == "miss"


@pytest.mark.parametrize("setting", ["inf", "nan", "-5", "lots", "0"])
def test_any_cache_size_setting_keeps_compiles_working(cache_root, monkeypatch, setting):
    monkeypatch.setenv("KILN_CACHE_MAX_MB", setting)
    model, args = mlp_case()
    compiled = kiln.compile_model(model, args)
    assert compiled.vmfb and compiled.report.cache == "miss"
    assert_runs_like_eager(compiled, model, args)


def test_cache_size_setting():
    env = os.environ
    try:
        for text, expected in [("inf", 2**63 - 1), ("1", 2**20), ("0.5", 2**19),
                               ("nan", kcache.DEFAULT_MAX_MB * 2**20),
                               ("-1", kcache.DEFAULT_MAX_MB * 2**20)]:
            env["KILN_CACHE_MAX_MB"] = text
            assert kcache.max_bytes() == expected, text
    finally:
        env.pop("KILN_CACHE_MAX_MB", None)


def test_store_round_trip_and_stale_format(tmp_path, caplog):
    store = kcache.CompileCache(tmp_path)
    key = "a" * 64
    assert store.put(key, b"artifact", {"report": {}})
    entry = store.get(key)
    assert entry.vmfb == b"artifact" and entry.meta == {"report": {}}
    meta_path = tmp_path / f"{key}.json"
    record = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**record, "format": kcache.CACHE_FORMAT + 1}))
    with caplog.at_level(logging.WARNING, logger="kiln.cache"):
        assert store.get(key) is None
    assert "stale" in caplog.text and not (tmp_path / f"{key}.vmfb").exists()
    store.put(key, b"artifact", {})
    (tmp_path / f"{key}.vmfb").unlink()
    assert store.get(key) is None and not meta_path.exists()
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def test_prune_keeps_the_most_recent_entries(tmp_path):
    store = kcache.CompileCache(tmp_path)
    for index, key in enumerate(["1" * 64, "2" * 64, "3" * 64]):
        store.put(key, bytes(1000), {})
        meta = tmp_path / f"{key}.json"
        os.utime(meta, (1000 + index, 1000 + index))
    store.prune(2500)
    assert sorted(p.stem for p in tmp_path.glob("*.vmfb")) == ["2" * 64, "3" * 64]


def test_storage_does_not_import_the_compiler():
    import subprocess

    code = ("import sys, kiln.cache; bad = [m for m in ('torch', 'kiln.compiler', "
            "'kiln.compile_key') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


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
    names = {p.name for p in kkey.source_files()}
    assert {"compiler.py", "frontend.py", "convert_kiln_to_torch.py", "compile_key.py",
            "table.json"} <= names
    assert not names & {"cli.py", "equivalence.py", "runtime.py", "tiny_gpt.py", "cache.py"}
    assert not names & {"device.py", "module.py", "files.py"}, "the runtime package"


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
