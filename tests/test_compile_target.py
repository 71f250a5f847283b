"""kiln.targets.CompileTarget: one object, resolved once from `target=` and the options that
depend on it, that the pipeline builders and iree_flags read (no compile here: pipelines are
only built, flags only listed)."""

from __future__ import annotations

import pytest

from kiln import targets
from kiln.compiler import CompileOptions
from kiln.passes import KilnPass
from kiln.pipelines import NAMED_PIPELINES, build_lower_pipeline, build_raise_pipeline
from kiln.targets import CompileTarget, iree_flags


def kiln_steps(pipeline) -> list[str]:
    return [s.name for s in pipeline.steps if isinstance(s, KilnPass)]


@pytest.mark.parametrize("target", ["cuda,cpu", ("cuda", "cpu"), " CPU , cuda", ["cpu", "cuda"]])
def test_target_spellings_resolve_to_one_object(target):
    resolved = CompileTarget.resolve(target)
    assert resolved == CompileTarget(devices=("cpu", "cuda"))
    assert resolved.pass_option == "cpu,cuda" and resolved.has_cuda and not resolved.cpu_only


@pytest.mark.parametrize("bad,match", [
    (dict(target="tpu"), "unknown target 'tpu'"),
    (dict(target="cpu", cuda_kernels="on"), "needs target 'cuda'"),
    (dict(target="cpu,cuda", cuda_kernels="on"), "needs target 'cuda' alone"),
    (dict(target="cuda", cuda_kernels="sometimes"), "cuda_kernels='sometimes'"),
    (dict(target="cpu", cpu_kernels="maybe"), "cpu_kernels='maybe'"),
    (dict(target="cuda", cuda_arch="sm_5"), "cuda_arch 'sm_5'"),
    (dict(target="cuda", cuda_arch="sm_99"), "cuda_arch 'sm_99' is not known"),
])
def test_bad_values_are_named(bad, match):
    with pytest.raises(ValueError, match=match):
        CompileTarget.resolve(**bad)


def test_cuda_arch_is_only_checked_for_cuda():
    assert CompileTarget.resolve("cpu", cuda_arch="sm_5").cuda_arch == "sm_5"


def test_cpu_kernels_apply_to_the_cpu_alone():
    assert CompileTarget.resolve("cpu", cpu_kernels="on").cpu_kernels
    assert not CompileTarget.resolve("cpu", cpu_kernels="off").cpu_kernels
    both = CompileTarget.resolve("cpu,cuda", cpu_kernels="on")
    assert not both.cpu_kernels
    # "on" without effect is said (it was silently dropped)
    assert "target 'cpu' alone" in both.kernels_off["kiln-select-cpu-kernels"]
    assert CompileTarget.resolve("cpu,cuda", cpu_kernels="auto").kernels_off == {}


def test_auto_says_why_cuda_kernels_are_left_out(monkeypatch):
    from kiln import kernels

    monkeypatch.setattr(kernels, "triton_available", lambda: "no triton (test)")
    resolved = CompileTarget.resolve("cuda", cuda_kernels="auto")
    assert not resolved.cuda_kernels and "no triton (test)" in resolved.cuda_kernels_off
    assert list(resolved.kernels_off) == ["kiln-select-cuda-kernels"]
    assert CompileTarget.resolve("cuda", cuda_kernels="off").cuda_kernels_off is None


def test_compile_options_reach_the_target():
    options = CompileOptions.from_kwargs(dict(cpu="x86-64-v3", cuda_arch="sm_80",
                                              opt_level="O2", data_tiling=False,
                                              cuda_split_k=False, cuda_fuse=False,
                                              cpu_kernels="on"))
    resolved = options.compile_target("cpu")
    assert (resolved.cpu, resolved.cuda_arch, resolved.opt_level, resolved.data_tiling,
            resolved.cuda_split_k, resolved.cuda_fuse, resolved.cpu_kernels) == \
        ("x86-64-v3", "sm_80", "O2", False, False, False, True)


def test_lower_pipeline_follows_the_target():
    cpu = build_lower_pipeline(CompileTarget(cpu_kernels=True))
    assert kiln_steps(cpu) == ["kiln-select-cpu-kernels", "convert-kiln-to-torch"]
    both = build_lower_pipeline(CompileTarget(devices=("cpu", "cuda"), cpu_kernels=True))
    assert kiln_steps(both) == ["convert-kiln-to-torch", "kiln-pointwise-conv-to-matmul"]
    assert "convert-kiln-to-torch{target=cpu,cuda attention=auto}" in both.text()
    cuda = build_lower_pipeline(CompileTarget(devices=("cuda",), cuda_kernels=True,
                                              cuda_split_k=False, cuda_arch="sm_80"))
    select = cuda.steps[0]
    assert (select.name, select.arch, select.split_k) == \
        ("kiln-select-cuda-kernels", "sm_80", False)


def test_external_weights_keep_linears_unmerged_without_kernels():
    """The policy compiler._compile_programs held: merged weights of external parameters would
    be concatenated at load (copies) unless Kiln's kernels read them part by part."""
    merging = {"kiln-merge-linears", "kiln-raise-swiglu"}
    assert merging <= set(kiln_steps(build_raise_pipeline()))
    assert not merging & set(kiln_steps(build_raise_pipeline(external_weights=True)))
    kernels = CompileTarget(devices=("cuda",), cuda_kernels=True)
    assert merging <= set(kiln_steps(build_raise_pipeline(kernels, external_weights=True)))


def test_named_pipelines_keep_textual_options():
    """kiln-opt's `kiln-lower-pipeline{target=cpu,cuda ...}` still takes strings."""
    lower = NAMED_PIPELINES["kiln-lower-pipeline"](target="cpu,cuda")
    assert lower.text() == build_lower_pipeline(CompileTarget(devices=("cpu", "cuda"))).text()
    with pytest.raises(Exception, match="kiln-lower-pipeline: unknown target 'tpu'"):
        NAMED_PIPELINES["kiln-lower-pipeline"](target="tpu")


def test_iree_flags_read_the_target(monkeypatch):
    monkeypatch.setattr(targets, "host_cpu_kind", lambda: "unknown")
    cpu = iree_flags(CompileTarget())
    assert "--iree-opt-data-tiling" in cpu and targets.CHANNELS_LAST_PIPELINE in cpu
    both = iree_flags(CompileTarget(devices=("cpu", "cuda"), cuda_arch="sm_90a"))
    assert both[0] == "--iree-hal-target-device=cuda,local"
    assert "--iree-cuda-target=sm_80" in both and "--iree-opt-data-tiling" not in both
    assert "--iree-opt-data-tiling" not in iree_flags(CompileTarget(data_tiling=False))


@pytest.mark.parametrize("switch", ["cuda_split_k", "cuda_fuse"])
def test_kernel_switches_must_be_booleans(switch):
    """"off" is truthy: it used to switch split-K (or fusion) on."""
    with pytest.raises(ValueError, match=f"{switch}='off': choose True or False"):
        CompileOptions.from_kwargs({switch: "off"})


def test_kernels_left_out_are_logged_and_reported():
    """The compile says what CompileTarget.kernels_off holds (one small export + raise)."""
    import kiln
    from kiln.examples import tiny

    lines = []
    compiled = kiln.compile_model(tiny.mlp(), (tiny.mlp_input(),), target=("cpu", "cuda"),
                                  cpu_kernels="on", compile_to="kiln", cache=False,
                                  log=lines.append)
    assert any("cpu_kernels='on' has no effect for target cpu,cuda" in line for line in lines)
    [off] = [r for r in compiled.report.rewrites if r.kind == "off"]
    assert off.pass_name == "kiln-select-cpu-kernels"
