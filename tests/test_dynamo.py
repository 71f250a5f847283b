"""torch.compile(model, backend="kiln"): regions Kiln compiles, graph breaks Dynamo reports,
fallbacks that stay correct (kiln.dynamo)."""

from __future__ import annotations

import importlib.metadata
import warnings

import pytest
import torch
from torch import nn

import kiln
from kiln.examples import tiny
from kiln.dynamo import KilnFallbackWarning

from compare import assert_close


def _line_of(marker: str) -> int:
    with open(__file__) as source:
        return next(i for i, line in enumerate(source, 1) if f"# line: {marker}" in line)


def _compiled(model, **options):
    return torch.compile(model, backend="kiln", options=options or None)


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


# ---------------------------------------------------------------------------------------------
# Models that torch.export rejects


class ItemAndBranch(nn.Module):
    """A Python branch on a tensor value and an `.item()`: three regions, two graph breaks."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.up, self.norm, self.down = nn.Linear(16, 32), nn.LayerNorm(32), nn.Linear(32, 16)

    def forward(self, x):
        h = self.norm(self.up(x))
        if x.sum() > 0:  # line: branch
            h = h * 2.0
        else:
            h = h - 1.0
        scale = h.abs().max().item()  # line: item
        return self.down(torch.relu(h)) / scale


class Printing(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.up, self.down = nn.Linear(16, 32), nn.Linear(32, 16)

    def forward(self, x):
        h = torch.relu(self.up(x))
        print("hidden", tuple(h.shape))  # line: print
        return self.down(h)


def test_backend_is_registered_through_the_entry_point():
    points = importlib.metadata.entry_points(group="torch_dynamo_backends")
    assert [p.value for p in points if p.name == "kiln"] == ["kiln.dynamo:backend"]
    assert "kiln" in torch._dynamo.list_backends()


def test_branch_and_item_model_matches_eager_with_regions_and_breaks():
    model = ItemAndBranch().eval()
    compiled = _compiled(model)
    x = torch.rand(2, 16) + 0.1
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error", KilnFallbackWarning)  # nothing may fall back
        for inputs in (x, -x, 3 * x):  # both sides of the branch, another .item() value
            assert_close(compiled(inputs), model(inputs), what=f"input sum {inputs.sum():.2f}")
    report = kiln.compile_report(compiled)
    assert report is kiln.compile_report(model)
    # forward up to the branch; each side of the branch up to .item(); the tail twice: Dynamo
    # first specializes on the number .item() gave, then, once it changed, passes it as a 0-d
    # tensor, which Kiln takes as an input: one artifact for every later value.
    assert [r.status for r in report.regions] == ["kiln"] * 5, str(report)
    assert [len(r.variants) for r in report.regions] == [1] * 5, str(report)
    assert report.regions[-1].variants[0].shapes == [(2, 32), ()], str(report)
    assert report.regions[-1].calls == 2, str(report)
    assert report.regions[0].specialized == {"linear": 1, "norm": 1}, str(report)
    breaks = {b.location: b for b in report.breaks}
    assert set(breaks) == {f"{__file__}:{_line_of('branch')}", f"{__file__}:{_line_of('item')}"}
    assert "item()" in breaks[f"{__file__}:{_line_of('item')}"].reason
    assert breaks[f"{__file__}:{_line_of('branch')}"].code == "if x.sum() > 0:  # line: branch"
    text = str(report)
    assert "5 region(s) (5 compiled by Kiln" in text and "2 graph break(s)" in text


def test_print_model_keeps_printing_and_reports_the_break(capsys):
    model = Printing().eval()
    compiled = _compiled(model)
    x = torch.randn(3, 16)
    with torch.inference_mode():
        assert_close(compiled(x), model(x))
        assert_close(compiled(x), model(x))
    assert capsys.readouterr().out.count("hidden (3, 32)") == 4  # two eager, two compiled
    report = kiln.compile_report(compiled)
    assert [(r.status, r.specialized) for r in report.regions] == \
        [("kiln", {"linear": 1}), ("kiln", {"linear": 1})], str(report)
    (graph_break,) = report.breaks
    assert graph_break.location == f"{__file__}:{_line_of('print')}"
    assert "print" in graph_break.reason


def test_fullgraph_compile_that_breaks_raises_dynamo_error_unchanged():
    errors = []
    for backend in ("eager", "kiln"):
        torch._dynamo.reset()
        with pytest.raises(Exception) as info, torch.no_grad():
            torch.compile(Printing().eval(), backend=backend, fullgraph=True)(torch.randn(2, 16))
        errors.append(info.value)
    assert type(errors[1]) is type(errors[0])
    assert isinstance(errors[1], torch._dynamo.exc.Unsupported)
    assert str(errors[1]).splitlines()[0] == str(errors[0]).splitlines()[0]


# ---------------------------------------------------------------------------------------------
# Transformers models: one region each, equal to eager


@pytest.mark.parametrize("name", ["bert", "gpt2", "llama"])
def test_transformers_model_is_one_kiln_region(name):
    model = tiny.hf_model(name)
    compiled = _compiled(model)
    ids = tiny.token_ids()
    with torch.inference_mode():
        out, expected = compiled(input_ids=ids), model(input_ids=ids)
    key = "last_hidden_state" if name == "bert" else "logits"
    assert_close(out[key], expected[key], what=f"{name} {key}")
    report = kiln.compile_report(compiled)
    assert len(report.regions) == 1 and not report.breaks, str(report)
    (region,) = report.regions
    assert region.status == "kiln", str(report)
    assert region.specialized["attention"] == tiny.LAYERS, str(report)
    assert region.specialized["linear"] >= tiny.LAYERS, str(report)
    assert region.specialized["norm"] >= 1, str(report)


# ---------------------------------------------------------------------------------------------
# Shapes, weights, cache


class TinyBlock(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.attention = nn.MultiheadAttention(32, 4, batch_first=True)
        self.norm = nn.LayerNorm(32)

    def forward(self, x):
        return self.norm(x + self.attention(x, x, x, need_weights=False)[0])


def test_dynamic_sequence_length_compiles_once():
    model = TinyBlock().eval()
    compiled = _compiled(model)
    with torch.inference_mode():
        for seq in (5, 9, 16):
            x = torch.randn(2, seq, 32)
            torch._dynamo.mark_dynamic(x, 1)
            assert_close(compiled(x), model(x), what=f"seq {seq}")
    (region,) = kiln.compile_report(compiled).regions
    assert region.status == "kiln" and region.calls == 3, region.line()
    (variant,) = region.variants  # one artifact for every length
    assert variant.shapes == [(2, None, 32)], region.line()
    assert region.dynamic_dims == ["l_x_[1]"]


def test_second_length_is_dynamo_recompile_third_is_served_by_the_dynamic_artifact():
    """Without mark_dynamic Dynamo specializes first, then recompiles once with the sequence
    dim symbolic (its automatic dynamic shapes): two regions, and a third length compiles
    nothing."""
    model = TinyBlock().eval()
    compiled = _compiled(model)
    with torch.inference_mode():
        for seq in (5, 9, 16):
            x = torch.randn(2, seq, 32)
            assert_close(compiled(x), model(x), what=f"seq {seq}")
    static, dynamic = kiln.compile_report(compiled).regions
    assert [v.shapes for v in static.variants] == [[(2, 5, 32)]]
    assert [v.shapes for v in dynamic.variants] == [[(2, None, 32)]] and dynamic.calls == 2


def test_artifact_that_disagrees_with_eager_is_dropped(monkeypatch):
    """The first call of each artifact is checked against the eager graph (a miscompile, here
    simulated by shifting the loaded module's results, returns eager's result instead)."""
    from kiln.runtime import KilnModule

    original = KilnModule.__call__
    def shifted(self, *args, **kwargs):
        results = original(self, *args, **kwargs)
        return tuple(r + 1.0 for r in results) if isinstance(results, tuple) else results + 1.0

    monkeypatch.setattr(KilnModule, "__call__", shifted)
    model = tiny.mlp("relu").eval()
    x = tiny.mlp_input()
    compiled = _compiled(model)
    with torch.no_grad(), pytest.warns(KilnFallbackWarning, match="differed from eager"):
        assert torch.equal(compiled(x), model(x))
        assert torch.equal(compiled(x), model(x))
    (region,) = kiln.compile_report(compiled).regions
    assert region.status == "eager" and "max abs error 1 > 0.0001" in region.reason


def test_changed_weights_recompile_and_a_changing_buffer_becomes_an_input():
    model = tiny.mlp().eval()
    model.register_buffer("shift", torch.zeros(tiny.HIDDEN))
    model.forward = lambda x: nn.Sequential.forward(model, x) + model.shift
    compiled = _compiled(model)
    x = tiny.mlp_input()
    with torch.no_grad():
        assert_close(compiled(x), model(x))
        model[0].weight.mul_(0.5)  # e.g. load_state_dict: recompiled with the new weights
        assert_close(compiled(x), model(x), what="after a weight update")
        for step in range(2):  # state that changes between calls: an input from now on
            model.shift.add_(1.0)
            assert_close(compiled(x), model(x), what=f"after shift update {step}")
    (region,) = kiln.compile_report(compiled).regions
    assert region.notes == [
        "1 frozen tensor(s) (l_model_modules_0_parameters_weight_) changed in place after "
        "compiling: recompiled",
        "1 frozen tensor(s) (l_model_buffers_shift_) change between calls: passed as inputs"]
    assert len(region.variants) == 3


class PrintingBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear, self.norm = nn.Linear(16, 16), nn.LayerNorm(16)

    def forward(self, x):
        h = self.norm(self.linear(x))
        print("block output", tuple(h.shape))
        return torch.relu(h) + x


class Blocks(nn.Module):
    def __init__(self, layers: int = 3):
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.ModuleList(PrintingBlock() for _ in range(layers))

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x


def test_region_repeated_for_every_layer_gets_an_artifact_per_weight_set():
    """A graph break inside a block: Dynamo compiles the block's forward once and calls it for
    every layer with that layer's weights; each set of weights gets its own artifact."""
    model = Blocks().eval()
    compiled = _compiled(model)
    x = torch.randn(2, 16)
    with torch.no_grad():
        for _ in range(2):
            assert_close(compiled(x), model(x))
    block_region = kiln.compile_report(compiled).regions[0]
    assert block_region.function == "forward" and block_region.calls == 6
    assert [v.weight_set for v in block_region.variants] == [1, 2, 3]
    assert block_region.specialized == {"linear": 1, "norm": 1}


def test_compile_cache_serves_a_region_compiled_before(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path))
    model = tiny.mlp("relu").eval()
    x = tiny.mlp_input()
    caches = []
    for _ in range(2):
        torch._dynamo.reset()
        compiled = _compiled(model)
        with torch.no_grad():
            assert_close(compiled(x), model(x))
        caches.append(kiln.compile_report(compiled).regions[-1].variants[0].cache)
    assert caches == ["miss", "hit"]


# ---------------------------------------------------------------------------------------------
# Fallbacks


class UnsupportedOp(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(8, 8)

    def forward(self, x):
        return torch.special.i0(self.linear(x))  # line: i0


def test_region_kiln_cannot_compile_runs_eagerly_with_one_warning():
    model = UnsupportedOp().eval()
    compiled = _compiled(model)
    x = torch.randn(2, 8)
    with torch.no_grad(), pytest.warns(KilnFallbackWarning) as caught:
        assert_close(compiled(x), model(x))
        assert_close(compiled(x + 1), model(x + 1))
    fallbacks = [w for w in caught if issubclass(w.category, KilnFallbackWarning)]
    assert len(fallbacks) == 1, [str(w.message) for w in fallbacks]
    message = str(fallbacks[0].message)
    assert "aten.i0" in message and f"{__file__}:{_line_of('i0')}" in message
    assert fallbacks[0].filename == __file__ and fallbacks[0].lineno == _line_of("i0")
    (region,) = kiln.compile_report(compiled).regions
    assert region.status == "eager" and "aten.i0" in region.reason and region.calls == 2


def test_fallback_error_option_raises_instead():
    compiled = _compiled(UnsupportedOp().eval(), fallback="error")
    with pytest.raises(kiln.KilnError, match="aten.i0"), torch.no_grad():
        compiled(torch.randn(2, 8))


class UpdatesInput(nn.Module):
    def forward(self, x):
        x.mul_(2.0)  # line: mul_
        return torch.tanh(x)


def test_in_place_update_of_an_input_runs_eagerly():
    x = torch.randn(4, 8)
    expected_x = x.clone()
    expected = UpdatesInput()(expected_x)
    with torch.no_grad(), pytest.warns(KilnFallbackWarning, match="updates input"):
        out = _compiled(UpdatesInput())(x)
    assert torch.equal(out, expected) and torch.equal(x, expected_x)
    (region,) = kiln.compile_report().regions[-1:]
    assert region.status == "eager" and f"{__file__}:{_line_of('mul_')}" in region.reason


def test_grad_enabled_runs_eagerly_and_keeps_autograd():
    model = tiny.mlp().eval()
    x = tiny.mlp_input()
    with pytest.warns(KilnFallbackWarning, match="inference only"):
        out = _compiled(model)(x)
    assert out.requires_grad
    out.sum().backward()
    assert model[0].weight.grad is not None
    (region,) = kiln.compile_report(model).regions
    assert region.status == "eager"


def test_bad_options_are_named():
    with pytest.raises(Exception, match="unknown kiln backend option.*atention"), torch.no_grad():
        torch.compile(tiny.mlp(), backend="kiln", options={"atention": "fused"})(
            tiny.mlp_input())
    with pytest.raises(Exception, match=r"mode='max-autotune'\) is an inductor setting"), \
            torch.no_grad():
        torch.compile(tiny.mlp(), backend="kiln", mode="max-autotune")(tiny.mlp_input())


# ---------------------------------------------------------------------------------------------
# CUDA without a GPU: the graph Dynamo hands over compiles for CUDA


def _captured_graph(model, *args):
    captured = []

    def capture(gm, example_inputs):
        captured.append((gm, example_inputs))
        return gm.forward

    with torch.no_grad():
        torch.compile(model, backend=capture)(*args)
    (graph,) = captured
    return graph


def test_cuda_compile_of_a_dynamo_graph_without_a_gpu():
    gm, example_inputs = _captured_graph(tiny.mlp().eval(), tiny.mlp_input())
    compiled = kiln.dynamo.compile_graph(gm, example_inputs,
                                         options={"target": "cuda", "cuda_kernels": "off"})
    assert compiled.report.target == ("cuda",)
    assert b"cuda-nvptx-fb" in compiled.vmfb
    assert compiled.report.count("linear/") == 2


def test_specialized_counts_every_cpu_kernel_taken_and_no_decline():
    """The backend's summary counts Kiln's CPU kernels (GEMM, attention, convolution) as
    cpu-kernel, and not the ops they declined."""
    from kiln.compiler import CompileReport
    from kiln.cpu_attention import CPU_ATTENTION_TAKEN
    from kiln.cpu_conv import CPU_CONV_TAKEN
    from kiln.cpu_kernels import CPU_KERNEL_TAKEN
    from kiln.dynamo import _specialized
    from kiln.report import Rewrite

    select = "kiln-select-cpu-kernels"
    report = CompileReport(("cpu",), rewrites=[
        Rewrite(select, "kiln.linear", CPU_KERNEL_TAKEN, "m.py:1"),
        Rewrite(select, "kiln.attention", CPU_ATTENTION_TAKEN, "m.py:2"),
        Rewrite(select, "torch.aten.convolution", CPU_CONV_TAKEN, "m.py:3"),
        Rewrite(select, "torch.aten.convolution", "IREE codegen: dilation [2, 2]", "m.py:4")])
    assert _specialized(report) == {"cpu-kernel": 3}
