"""Never a wrong answer quietly (issue 11): index bounds checks in the artifact, data-dependent
shapes refused before IREE, iree-compile under limits, and a private, weight-free reproducer."""

from __future__ import annotations

import inspect
import os
import re
import stat
import subprocess
import tempfile
import time

import numpy as np
import pytest
import torch
from torch import nn
from torch.export import Dim

import kiln
import kiln.compiler
from kiln.examples import tiny
from kiln.bindings import iree_compile_tool
from kiln.dispatches import count_dispatches
from kiln.errors import KilnCompileError

VOCAB = 100


def _line_of(code: str, obj) -> str:
    """`file:line` of the line of `obj`'s source that holds `code`."""
    lines, first = inspect.getsourcelines(obj)
    offset = next(i for i, line in enumerate(lines) if code in line)
    return f"{inspect.getsourcefile(obj)}:{first + offset}"


class Lookups(nn.Module):
    """One of each index-consuming op, each indexed by its own user input."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(VOCAB, 8)
        self.register_buffer("table", torch.randn(10, 8))

    def forward(self, ids, rows, columns, picks, x):
        tokens = self.embed(ids)  # aten.embedding
        selected = torch.index_select(self.table, 0, rows)  # aten.index_select
        gathered = torch.gather(x, 1, columns)  # aten.gather
        picked = x[picks]  # aten.index
        return tokens.sum(1) + selected.sum(0), gathered, picked


def _lookup_inputs():
    return (torch.tensor([[1, 2, 3, 4]]), torch.tensor([0, 9]), torch.tensor([[0, 5], [9, 1]]),
            torch.tensor([1, 9]), torch.randn(10, 10))


@pytest.fixture(scope="module")
def lookups():
    model = Lookups().eval()
    return model, kiln.load(kiln.compile_to_vmfb(model, _lookup_inputs(), cache=False))


def _with(argument: int, value) -> tuple:
    args = list(_lookup_inputs())
    args[argument] = args[argument].clone()
    args[argument].view(-1)[-1] = value
    return tuple(args)


def _eager(model, args):
    with torch.no_grad():
        return model(*args)


def test_valid_indices_match_eager(lookups):
    model, run = lookups
    for args in [_lookup_inputs(), _with(3, -1), _with(3, -10), _with(0, VOCAB - 1)]:
        got = run(*args)
        assert isinstance(got, tuple) and len(got) == 3  # the guard results are not returned
        for g, e in zip(got, _eager(model, args)):
            torch.testing.assert_close(g, e)


@pytest.mark.parametrize("bad", [VOCAB, 600, -1, 100000])
def test_out_of_range_token_ids_raise_index_error(lookups, bad):
    model, run = lookups
    args = _with(0, bad)
    with pytest.raises(IndexError, match="index out of range in self"):
        _eager(model, args)
    with pytest.raises(IndexError) as info:
        run(*args)
    message = str(info.value)
    assert "aten.embedding" in message
    assert _line_of("self.embed(ids)", Lookups.forward) in message
    assert f"index {bad} is out of bounds for dimension 0 with size {VOCAB}" in message
    assert "index out of range in self" in message  # what eager says


def test_int64_minimum_is_out_of_bounds_too(lookups):
    """The guard's "none out of bounds" value is int64's minimum: an index equal to it still
    raises (reported one higher)."""
    _, run = lookups
    with pytest.raises(IndexError, match=rf"index {-(1 << 63) + 1} is out of bounds"):
        run(*_with(0, -(1 << 63)))


@pytest.mark.parametrize("argument, bad, op, code, dim, size", [
    (1, 10, "aten.index_select", "torch.index_select(", 0, 10),
    (1, -1, "aten.index_select", "torch.index_select(", 0, 10),
    (2, 10, "aten.gather", "torch.gather(", 1, 10),
    (2, -1, "aten.gather", "torch.gather(", 1, 10),
    (3, 10, "aten.index", "x[picks]", 0, 10),
    (3, -11, "aten.index", "x[picks]", 0, 10),
])
def test_each_indexing_op_is_checked(lookups, argument, bad, op, code, dim, size):
    model, run = lookups
    args = _with(argument, bad)
    with pytest.raises((IndexError, RuntimeError)):
        _eager(model, args)
    with pytest.raises(IndexError) as info:
        run(*args)
    message = str(info.value)
    assert message.startswith(f"{op} at {_line_of(code, Lookups.forward)}")
    assert f"index {bad} is out of bounds for dimension {dim} with size {size}" in message


def test_signature_lists_guards_after_the_outputs(lookups):
    _, run = lookups
    signature = run.signature
    guards = signature["guards"]
    assert [g["op"] for g in guards] == ["aten.embedding", "aten.index_select", "aten.gather",
                                         "aten.index"]
    # one result holds every guard, a row each: one device-to-host copy per call
    assert [(g["output"], g["row"]) for g in guards] == [(3, 0), (3, 1), (3, 2), (3, 3)]
    assert signature["outputs"][3] == {"shape": [4, 2], "dtype": "int64"}
    assert len(signature["outputs"]) == 4
    assert all(":" in g["source"] and g["message"] for g in guards)


def test_guards_are_read_once_per_call(lookups, monkeypatch):
    """A GPT-2 decode step on an H100 read 27 guard results, a copy and a sync each."""
    from kiln.runtime.module import KilnModule

    _, run = lookups
    reads = []
    original = KilnModule._result

    def counting(self, entry, results, index, mode, *rest):
        reads.append((index, mode))
        return original(self, entry, results, index, mode, *rest)

    monkeypatch.setattr(KilnModule, "_result", counting)
    run(*_lookup_inputs())
    assert [r for r in reads if r[0] >= 3] == [(3, "numpy")]  # the user's results are 0-2
    with pytest.raises(IndexError, match="aten.gather"):
        run(*_with(2, 10))


class TwoTables(nn.Module):
    """Two embedding tables the same token ids index (the subclass's forward says how)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.first = nn.Embedding(VOCAB, 8)
        self.second = nn.Embedding(VOCAB, 8)


class SharedIndices(TwoTables):
    """The same token ids index two tables (through a view): one guard checks them."""

    def forward(self, ids):
        return self.first(ids) + self.second(ids.view(-1)).view(ids.shape + (8,))


class NarrowedIndices(TwoTables):
    """The same ids, first narrowed to int32 (2^32 + 1 wraps to 1), then as given."""

    def forward(self, ids):
        return self.first(ids.to(torch.int32)) + self.second(ids)


def test_a_guard_of_narrowed_indices_does_not_cover_the_originals():
    model = NarrowedIndices().eval()
    ids = torch.tensor([[1, 2, 3]])
    run = kiln.load(kiln.compile_to_vmfb(model, (ids,), cache=False))
    assert len(run.signature["guards"]) == 2
    with pytest.raises(IndexError, match=f"index {2 ** 32 + 1} is out of bounds"):
        run(torch.tensor([[1, 2 ** 32 + 1, 3]]))


def test_indices_checked_once_are_still_clamped_everywhere():
    model = SharedIndices().eval()
    ids = torch.tensor([[1, 2, 3]])
    run = kiln.load(kiln.compile_to_vmfb(model, (ids,), cache=False))
    guards = run.signature["guards"]
    assert len(guards) == 1 and guards[0]["op"] == "aten.embedding"
    torch.testing.assert_close(run(ids), _eager(model, (ids,)))
    with pytest.raises(IndexError, match=f"index {VOCAB} is out of bounds"):
        run(torch.tensor([[1, VOCAB, 3]]))


def test_index_checks_off_has_no_guards():
    model = Lookups().eval()
    compiled = kiln.compile_model(model, _lookup_inputs(), index_checks=False, cache=False)
    run = kiln.load(compiled.vmfb)
    assert "guards" not in run.signature and len(run.signature["outputs"]) == 3
    args = _lookup_inputs()
    for g, e in zip(run(*args), _eager(model, args)):
        torch.testing.assert_close(g, e)


def test_a_guard_costs_one_dispatch():
    model, args = tiny.tiny_gpt()
    counts = [count_dispatches(kiln.compile_to_vmfb(model, args, compile_to="iree-input",
                                                    index_checks=checks, cache=False)).count
              for checks in (False, True)]
    assert counts[1] == counts[0] + 1  # the token embedding's check: one small reduction


class LongPrompt(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(VOCAB, 8)

    def forward(self, ids):
        return self.embed(ids)


def test_many_indices_are_reduced_in_chunks_and_report_the_largest():
    """8 x 300 ids (more than 4 chunks, not a whole number of them): the guard's int64 max runs
    in two short stages (IREE's CUDA code ran one long int64 reduction on a single thread:
    245 us at 8 x 512 on an H100), and the error still names the largest bad index, wherever
    it is, including in the padded last chunk."""
    from kiln.guards import GUARD_CHUNK

    model = LongPrompt().eval()
    ids = torch.randint(0, VOCAB, (8, 300))
    compiled = kiln.compile_to_vmfb(model, (ids,), cache=False)
    run = kiln.load(compiled)
    torch.testing.assert_close(run(ids), _eager(model, (ids,)))
    for positions, values, largest in [((5, 2000), (VOCAB + 3, VOCAB + 7), VOCAB + 7),
                                       ((2399, 0), (VOCAB + 9, -4), VOCAB + 9),
                                       ((1234,), (-1,), -1)]:
        bad = ids.clone()
        for position, value in zip(positions, values):
            bad.view(-1)[position] = value
        with pytest.raises(IndexError, match=f"index {largest} is out of bounds"):
            run(bad)
    cuda = kiln.compile_to_vmfb(model, (ids,), target="cuda", cuda_kernels="off",
                                compile_to="iree-input", cache=False)
    reductions = [n for n in count_dispatches(cuda, target="cuda").names if "reduction" in n]
    assert reductions and all(str(8 * 300) not in n for n in reductions), reductions
    assert any(f"x{GUARD_CHUNK}_" in n for n in reductions), reductions


class Writes(nn.Module):
    def forward(self, x, rows, columns):
        x = x.clone()
        x[rows] = 1.0  # aten.index_put
        return x.scatter(1, columns, 2.0)  # aten.scatter


def test_scatters_are_checked():
    x = torch.zeros(6, 4)
    rows, columns = torch.tensor([0, -1]), torch.tensor([[0], [3]])
    run = kiln.load(kiln.compile_to_vmfb(Writes(), (x, rows, columns), cache=False))
    torch.testing.assert_close(run(x, rows, columns), Writes()(x, rows, columns))
    with pytest.raises(IndexError, match=r"^aten\.index_put at .*index 6 is out of bounds"):
        run(x, torch.tensor([0, 6]), columns)
    with pytest.raises(IndexError, match=r"^aten\.scatter at .*index -1 is out of bounds"):
        run(x, rows, torch.tensor([[0], [-1]]))


def test_embedding_bag_is_checked():
    bag = nn.EmbeddingBag(10, 4, mode="sum").eval()
    ids = torch.tensor([[1, 2]])
    run = kiln.load(kiln.compile_to_vmfb(bag, (ids,), cache=False))
    torch.testing.assert_close(run(torch.tensor([[9, 0]])), bag(torch.tensor([[9, 0]])))
    with pytest.raises(IndexError, match=r"^aten\._embedding_bag\S* at .*index 12 is "
                                         r"out of bounds for dimension 0 with size 10"):
        run(torch.tensor([[1, 12]]))


class RowByItem(nn.Module):
    def forward(self, x, row):
        return x[row.item()] * 2  # aten.select at an index read from a tensor


def test_select_at_an_index_read_from_a_tensor_is_checked():
    x = torch.randn(10, 4)
    run = kiln.load(kiln.compile_to_vmfb(RowByItem(), (x, torch.tensor(3)), cache=False))
    for row in (3, -1, -10):
        torch.testing.assert_close(run(x, torch.tensor(row)), RowByItem()(x, torch.tensor(row)))
    for row in (10, -11, 1000):
        with pytest.raises(IndexError):
            RowByItem()(x, torch.tensor(row))
        with pytest.raises(IndexError) as info:
            run(x, torch.tensor(row))
        assert str(info.value).startswith(
            f"aten.select at {_line_of('x[row.item()]', RowByItem.forward)}")
        assert f"index {row} is out of bounds for dimension 0 with size 10" in str(info.value)


class Window(nn.Module):
    """int32 ids into an input whose indexed dimension is dynamic."""

    def forward(self, cache, positions):
        return cache[:, positions]


def test_dynamic_table_size_and_int32_indices():
    cache, positions = torch.randn(2, 8, 3), torch.tensor([0, 7], dtype=torch.int32)
    vmfb = kiln.compile_to_vmfb(Window(), (cache, positions), cache=False,
                                dynamic_shapes=({1: Dim("seq", min=2, max=64)}, None))
    run = kiln.load(vmfb)
    longer = torch.randn(2, 20, 3)
    torch.testing.assert_close(run(longer, torch.tensor([19, -20], dtype=torch.int32)),
                               longer[:, torch.tensor([19, -20])])
    with pytest.raises(IndexError, match="index 20 is out of bounds for dimension 1 with "
                                         "size 20"):
        run(longer, torch.tensor([0, 20], dtype=torch.int32))
    with pytest.raises(IndexError, match="index 8 is out of bounds for dimension 1 with size 8"):
        run(cache, torch.tensor([0, 8], dtype=torch.int32))


def test_shape_derived_indices_stay_unguarded():
    class Upsample(nn.Module):
        def forward(self, x, ids):
            return nn.functional.interpolate(x, scale_factor=2.0) + ids.float().sum()

    x, ids = torch.randn(1, 2, 4, 4), torch.tensor([1])
    text = kiln.compile_to_vmfb(Upsample(), (x, ids), compile_to="torch", cache=False)
    assert "torch.aten.clamp" not in text  # constant or shape-built indices get no check


class ClampedOffsets(nn.Module):
    """A static cache's row gather (kiln.kv_cache): slots minus an input position, clamped to
    the rows of `new` by the model itself."""

    def __init__(self, low: int, high: int):
        super().__init__()
        self.low, self.high = low, high

    def forward(self, new, start):
        offsets = (torch.arange(8) - start).clamp(self.low, self.high)
        return new.index_select(0, offsets)


@pytest.mark.parametrize("low, high, guarded", [(0, 3, 0), (0, 4, 1), (-1, 3, 1)])
def test_indices_clamped_into_the_table_by_the_model_need_no_guard(low, high, guarded):
    # A decode step's 24 per-layer gathers of clamped offsets each had a guard (a reduction and
    # a copy into the stacked result per call) though they can never leave the table.
    model = ClampedOffsets(low, high)
    new, start = torch.randn(4, 2), torch.tensor([2])
    run = kiln.load(kiln.compile_to_vmfb(model, (new, start), cache=False))
    assert len(run.signature.get("guards", [])) == guarded
    for position in (0, 2, 9):
        if high < 4 and low >= 0:
            torch.testing.assert_close(run(new, torch.tensor([position])),
                                       model(new, torch.tensor([position])))


EMBED_FILE = '''
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Embedding(10, 4)
'''


def test_cli_run_reports_out_of_range_ids(tmp_path, capsys):
    from kiln.cli import main as cli_main

    (tmp_path / "embed.py").write_text(EMBED_FILE)
    model, artifact = f"{tmp_path / 'embed.py'}:build", str(tmp_path / "embed.vmfb")
    bad = tmp_path / "bad.npy"
    np.save(bad, np.array([[1, 2, 10]], dtype=np.int64))
    assert cli_main(["compile", model, "--input", "1x3xi64", "--int-high", "10", "-o",
                     artifact, "--quiet"]) == 0
    assert cli_main(["run", artifact, "--input", str(bad)]) == 1
    error = capsys.readouterr().err
    assert error.startswith("kiln: error: aten.embedding at ") and "index 10" in error
    assert cli_main(["compile", model, "--input", "1x3xi64", "-o", artifact, "--quiet",
                     "--no-index-checks"]) == 0
    assert "guards" not in kiln.load(artifact).signature


# ---------------------------------------------------------------------------------------------
# Data-dependent output shapes


class Positives(nn.Module):
    def forward(self, x):
        return x[x > 0] * 2


class NonZero(nn.Module):
    def forward(self, x):
        return torch.nonzero(x)


class RowsWithPositives(nn.Module):
    def forward(self, x):
        return x[torch.nonzero(x > 0)[:, 0]]


@pytest.mark.parametrize("model, op, code", [
    (Positives(), "aten.index with a boolean mask", "x[x > 0]"),
    (RowsWithPositives(), "aten.index reading through a data-dependent shape",
     "x[torch.nonzero(x > 0)[:, 0]]"),
])
def test_data_dependent_shapes_are_refused_before_iree(monkeypatch, model, op, code):
    def no_iree(*args, **kwargs):
        raise AssertionError("iree-compile must not run on a data-dependent shape")

    monkeypatch.setattr(kiln.compiler, "_run_iree_compile", no_iree)
    start = time.perf_counter()
    with pytest.raises(KilnCompileError) as info:
        kiln.compile_model(model, (torch.randn(4, 4),), cache=False)
    assert time.perf_counter() - start < 30  # export included; IREE ran 8 minutes before
    message = str(info.value)
    assert op in message and _line_of(code, type(model).forward) in message
    assert "depends on tensor values" in message and "mask" in message
    assert info.value.issues and info.value.issues[0].what.startswith(op)


# ---------------------------------------------------------------------------------------------
# iree-compile under limits


@pytest.fixture(autouse=True)
def _reproducers_in(tmp_path, monkeypatch):
    """Failed compiles write their reproducer to the test's own folder (mkstemp's $TMPDIR)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


class SmallMLP(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.up, self.down = nn.Linear(16, 32), nn.Linear(32, 8)

    def forward(self, x):
        return self.down(torch.relu(self.up(x)))


def _compile_small(**options):
    return kiln.compile_model(SmallMLP().eval(), (torch.randn(2, 16),), cache=False, **options)


def test_time_limit_stops_iree_compile(monkeypatch):
    monkeypatch.setenv("KILN_IREE_COMPILE_TIMEOUT_S", "0.2")
    start = time.perf_counter()
    with pytest.raises(KilnCompileError) as info:
        _compile_small()
    assert time.perf_counter() - start < 60
    message = str(info.value)
    assert re.search(r"iree-compile was stopped after \d+\.\d s \(peak resident memory "
                     r"\d+ MB\)", message)
    assert "time limit of 0.2 s" in message and "KILN_IREE_COMPILE_TIMEOUT_S=<seconds>" in message
    assert "IREE could not compile the model:\n\n" not in message


def test_memory_limit_stops_iree_compile(monkeypatch):
    monkeypatch.setenv("KILN_IREE_COMPILE_MAX_MEMORY_MB", "8")
    with pytest.raises(KilnCompileError) as info:
        _compile_small()
    message = str(info.value)
    assert "iree-compile was stopped" in message
    assert "memory limit of 8 MB" in message and "KILN_IREE_COMPILE_MAX_MEMORY_MB=<MB>" in message


def test_default_memory_limit_is_most_of_the_machine(monkeypatch):
    monkeypatch.delenv("KILN_IREE_COMPILE_MAX_MEMORY_MB", raising=False)
    monkeypatch.setattr("kiln.iree_compile.machine_memory_mb", lambda: 10)
    with pytest.raises(KilnCompileError) as info:
        _compile_small()
    assert "memory limit of 8 MB (80% of this machine's memory" in str(info.value)


def test_bad_limit_setting_is_named(monkeypatch):
    monkeypatch.setenv("KILN_IREE_COMPILE_TIMEOUT_S", "soon")
    with pytest.raises(ValueError, match="KILN_IREE_COMPILE_TIMEOUT_S"):
        _compile_small()


@pytest.mark.parametrize("script, says", [
    ("exit 3", "iree-compile exited with status 3"),
    ("kill -SEGV $$", "iree-compile was killed by signal SIGSEGV"),
])
def test_silent_failure_names_exit_status(monkeypatch, tmp_path, script, says):
    tool = tmp_path / "iree-compile"
    tool.write_text(f"#!/bin/sh\ncat > /dev/null\n{script}\n")
    tool.chmod(0o755)
    monkeypatch.setattr("kiln.iree_compile.iree_compile_tool", lambda: str(tool))
    with pytest.raises(KilnCompileError) as info:
        _compile_small()
    message = str(info.value)
    assert says in message and "no diagnostics" in message


# ---------------------------------------------------------------------------------------------
# The reproducer of a failed compile


def _reproducer(message: str) -> str:
    return re.search(r"iree-compile (\S+\.mlir(?:bc)?)", message).group(1)


def test_reproducer_is_private_and_has_no_weights():
    with pytest.raises(KilnCompileError) as info:
        _compile_small(extra_iree_flags=["--kiln-test-no-such-flag"])
    message = str(info.value)
    path = _reproducer(message)
    assert os.path.dirname(path) == tempfile.gettempdir()
    try:
        assert not re.search(rf"kiln-iree-input-{os.getpid()}\.mlir$", path)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        text = open(path).read()
        assert "dense_resource" not in text and "{-#" not in text
        assert not re.search(r'dense<("0x|\[)', text)  # neither hex nor listed values
        # the weights iree-compile would have read as raw bytes: zero-splat globals
        assert re.search(r"util\.global private @\w+ = dense<0\.000000e\+00> : "
                         r"tensor<32x16xf32>", text), text[:2000]
        assert "weights and other tensor constants replaced by zeros" in message
        assert "KILN_REPRODUCER_WEIGHTS=1" in message
        parsed = subprocess.run([iree_compile_tool(), path, "--compile-to=input",
                                 "--iree-input-type=torch", "-o", os.devnull],
                                capture_output=True, text=True)
        assert parsed.returncode == 0, parsed.stderr[-2000:]
    finally:
        os.unlink(path)


def test_reproducer_keeps_weights_when_asked(monkeypatch):
    monkeypatch.setenv("KILN_REPRODUCER_WEIGHTS", "1")
    with pytest.raises(KilnCompileError) as info:
        _compile_small(extra_iree_flags=["--kiln-test-no-such-flag"])
    path = _reproducer(str(info.value))
    try:
        assert "with the model's weights" in str(info.value)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        # MLIR bytecode with the weights as raw resource blobs, which iree-compile reads
        assert path.endswith(".mlirbc") and b"kiln_weight_" in open(path, "rb").read()
        parsed = subprocess.run([iree_compile_tool(), path, "--compile-to=input",
                                 "--iree-input-type=torch", "-o", os.devnull],
                                capture_output=True, text=True)
        assert parsed.returncode == 0, parsed.stderr[-2000:]
    finally:
        os.unlink(path)


def test_nonzero_alone_compiles_and_matches_eager():
    """IREE runs a data-dependent shape no gather reads through (the plain torch-mlir → IREE
    path passes OpInfo's nonzero/argwhere samples): Kiln must too, not refuse it."""
    x = torch.tensor([[0.0, 1.5, 0.0], [2.0, 0.0, -3.0]])
    run = kiln.load(kiln.compile_to_vmfb(NonZero(), (x,), cache=False))
    for value in (x, torch.zeros(2, 3), torch.ones(2, 3)):
        torch.testing.assert_close(run(value), torch.nonzero(value))
