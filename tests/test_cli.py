"""The `kiln` and `kiln-opt` command lines: bad arguments end in one clear line (exit 2 for
usage errors), never a traceback; outputs are written only when a command succeeds."""

from __future__ import annotations

import argparse
import pytest
import torch

from kiln.cli import main as kiln_main
from kiln.opt import main as kiln_opt_main

MODEL_FILE = '''
import torch
from torch import nn


class Scale(nn.Module):
    def __init__(self, dtype):
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(4, 8).to(dtype)

    def forward(self, x):
        return torch.relu(self.linear(x))


def build():
    return Scale(torch.float32)


def build_bf16():
    return Scale(torch.bfloat16)
'''


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_CACHE_DIR", str(tmp_path / "kiln-cache"))


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "scale.py"
    path.write_text(MODEL_FILE)
    return str(path)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_compile_takes_bf16_inputs(model_file, tmp_path, capsys):
    output = tmp_path / "bf16.vmfb"
    assert kiln_main(["compile", f"{model_file}:build_bf16", "--input", "1x4xbf16", "-o",
                      str(output), "--quiet"]) == 0
    assert output.is_file() and "wrote" in capsys.readouterr().out
    import kiln
    from kiln.cli import load_factory

    model = load_factory(f"{model_file}:build_bf16")()
    x = torch.randn(3, 1, 4).to(torch.bfloat16)  # three inputs, so that some relu is positive
    got = torch.stack([kiln.load(output)(row) for row in x])
    with torch.no_grad():
        want = torch.stack([model(row) for row in x])
    assert got.dtype == torch.bfloat16 and (want > 0).any()
    torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-2)
    # kiln run draws bf16 inputs itself, from the spec or from the signature.
    assert kiln_main(["run", str(output), "--input", "1x4xbf16"]) == 0
    assert kiln_main(["run", str(output)]) == 0
    assert capsys.readouterr().out.count("bfloat16") == 2


def test_a_bf16_input_to_a_float32_model_is_a_clear_error(model_file, capsys):
    code = kiln_main(["compile", f"{model_file}:build", "--input", "1x4xbf16", "--quiet"])
    assert code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("kiln: error:")
    assert "differs from input dtype bf16" in err and "scale.py" in err


def test_an_oversized_input_is_a_usage_error(model_file, capsys):
    code = kiln_main(["compile", f"{model_file}:build", "--input",
                      "100000x100000x100000xf32", "--quiet"])
    assert code == 2
    line = _one_line_error(capsys)
    assert "100000x100000x100000xf32" in line and "memory" in line


def test_output_into_an_existing_directory_is_a_usage_error(model_file, tmp_path, capsys):
    code = kiln_main(["compile", f"{model_file}:build", "--input", "1x4xf32", "-o",
                      str(tmp_path), "--quiet"])
    assert code == 2
    line = _one_line_error(capsys)
    assert str(tmp_path) in line and "directory" in line
    (tmp_path / "plain").write_text("")
    assert kiln_main(["compile", f"{model_file}:build", "--input", "1x4xf32", "-o",
                      str(tmp_path / "plain" / "out.vmfb"), "--quiet"]) == 2
    assert "plain is a file, not a directory" in _one_line_error(capsys)


def test_a_bad_input_spec_is_a_usage_error(model_file, capsys):
    assert kiln_main(["compile", f"{model_file}:build", "--input", "1x4xq7", "--quiet"]) == 2
    assert "cannot read input spec '1x4xq7'" in _one_line_error(capsys)


# ---------------------------------------------------------------------------------------------
# The compile-option flags: one set shared by compile, check and generate (issue 17)

TINY_GPT = "python/kiln/examples/tiny_gpt.py:build_tiny_gpt"


def _compile_option_flags(command: str) -> set[str]:
    from kiln.cli import build_parser

    subparsers = next(a for a in build_parser()._actions
                      if isinstance(a, argparse._SubParsersAction))
    group = next(g for g in subparsers.choices[command]._action_groups
                 if g.title.startswith("compile options"))
    return {flag for action in group._group_actions for flag in action.option_strings}


def test_compile_check_and_generate_take_the_same_compile_option_flags():
    flags = {command: _compile_option_flags(command) for command in ("compile", "check",
                                                                        "generate")}
    assert flags["compile"] == flags["check"] == flags["generate"]
    # Every flag one of them had before they shared a set, and the new ones.
    assert {"--target", "--attention", "--cpu", "--cuda-arch", "--cuda-kernels", "--weights",
            "--no-index-checks", "--verbose", "--quiet", "--opt-level", "--disable-passes",
            "--data-tiling", "--no-data-tiling", "--cpu-kernels", "--cuda-split-k",
            "--no-cuda-split-k"} <= flags["compile"]


def test_compile_options_reach_the_compile(monkeypatch, capsys):
    import kiln

    captured = {}
    compile_model = kiln.compile_model

    def recording_compile_model(*args, **options):
        captured.update(options)
        return compile_model(*args, **options)

    monkeypatch.setattr(kiln, "compile_model", recording_compile_model)
    assert kiln_main(["compile", TINY_GPT, "--compile-to", "kiln", "--quiet"]) == 0
    assert "kiln.attention" in capsys.readouterr().out
    assert captured["opt_level"] == "O3" and captured["data_tiling"] is True
    assert captured["cpu_kernels"] == "auto" and captured["cuda_split_k"] is True
    assert kiln_main(["compile", TINY_GPT, "--compile-to", "kiln", "--quiet", "--opt-level",
                      "O1", "--no-data-tiling", "--disable-passes", "kiln-raise-attention",
                      "--cpu-kernels", "off", "--no-cuda-split-k"]) == 0
    # The pass really was left out: the attention stays as torch ops.
    assert "kiln.attention" not in capsys.readouterr().out
    assert captured["opt_level"] == "O1" and captured["data_tiling"] is False
    assert tuple(captured["disable_passes"]) == ("kiln-raise-attention",)
    assert captured["cpu_kernels"] == "off" and captured["cuda_split_k"] is False
    assert captured["verbose"] is False


@pytest.mark.parametrize("command", ["check", "generate"])
def test_check_and_generate_pass_the_same_options(model_file, monkeypatch, capsys, command):
    import kiln

    captured = {}

    def stop_before_compiling(*args, **options):
        captured.update(options)
        raise ValueError("stopped before compiling")

    monkeypatch.setattr(kiln, "check" if command == "check" else "compile_generator",
                        stop_before_compiling)
    extra = ["--prompt-ids", "1,2"] if command == "generate" else ["--input", "1x4xf32"]
    code = kiln_main([command, f"{model_file}:build", *extra, "--opt-level", "O1",
                      "--no-data-tiling", "--disable-passes",
                      "kiln-raise-attention,kiln-raise-linear", "--cpu", "x86-64-v3",
                      "--no-index-checks", "--no-cuda-split-k"])
    assert code == 1 and "stopped before compiling" in _one_line_error(capsys)
    assert captured["opt_level"] == "O1" and captured["data_tiling"] is False
    assert tuple(captured["disable_passes"]) == ("kiln-raise-attention", "kiln-raise-linear")
    assert captured["cpu"] == "x86-64-v3" and captured["index_checks"] is False
    assert captured["cuda_split_k"] is False
    assert captured["verbose"] is False  # check and generate are quiet unless --verbose


@pytest.mark.parametrize("command", ["compile", "check", "generate"])
def test_an_unknown_pass_to_disable_is_a_usage_error(model_file, capsys, command):
    extra = ["--prompt-ids", "1,2"] if command == "generate" else ["--input", "1x4xf32"]
    code = kiln_main([command, f"{model_file}:build", *extra,
                      "--disable-passes", "kiln-raise-attention,kiln-no-such-pass"])
    assert code == 2
    line = _one_line_error(capsys)
    assert line.startswith("kiln: error: --disable-passes") and "kiln-no-such-pass" in line
    assert "kiln-raise-attention" in line.split("known:")[1]  # the known passes are listed


@pytest.mark.parametrize("command", ["check", "generate"])
def test_external_weights_without_an_output_file_is_a_usage_error(model_file, capsys, command):
    extra = ["--prompt-ids", "1,2"] if command == "generate" else ["--input", "1x4xf32"]
    assert kiln_main([command, f"{model_file}:build", *extra, "--weights", "external"]) == 2
    line = _one_line_error(capsys)
    assert "--weights external" in line and f"kiln {command}" in line


# ---------------------------------------------------------------------------------------------
# kiln-opt

GOOD_IR = """func.func @main(%arg0: !torch.vtensor<[2],f32>) -> !torch.vtensor<[2],f32> {
  %0 = torch.aten.tanh %arg0 : !torch.vtensor<[2],f32> -> !torch.vtensor<[2],f32>
  return %0 : !torch.vtensor<[2],f32>
}
"""


@pytest.mark.parametrize("source, pipeline", [
    ("func.func @broken(", "canonicalize"),  # the input does not parse
    (GOOD_IR, "kiln-no-such-pass"),  # the pipeline fails
])
def test_kiln_opt_keeps_the_output_file_when_it_fails(tmp_path, capsys, source, pipeline):
    source_path, output = tmp_path / "in.mlir", tmp_path / "out.mlir"
    source_path.write_text(source)
    output.write_text("// the previous result\n")
    assert kiln_opt_main([str(source_path), "-p", pipeline, "-o", str(output)]) == 1
    assert output.read_text() == "// the previous result\n"
    assert "error:" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mlir", "out.mlir"]


def test_kiln_opt_writes_the_output_file_on_success(tmp_path):
    source_path, output = tmp_path / "in.mlir", tmp_path / "out.mlir"
    source_path.write_text(GOOD_IR)
    output.write_text("// the previous result\n")
    assert kiln_opt_main([str(source_path), "-p", "canonicalize", "-o", str(output)]) == 0
    assert "torch.aten.tanh" in output.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mlir", "out.mlir"]


def test_kiln_opt_reports_an_unreadable_input_in_one_line(tmp_path, capsys):
    assert kiln_opt_main([str(tmp_path / "missing.mlir"), "-p", "canonicalize"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot read {tmp_path / 'missing.mlir'}") and "Trace" not in err


def test_demo_defaults_to_gpt2_small_and_runs_the_toy(monkeypatch, capsys):
    """The demo's figure is GPT-2 small's shape by default (the README quotes it); the toy size
    runs end to end here."""
    from kiln.cli import DEMO_SIZES, build_parser

    assert build_parser().parse_args(["demo"]).size == "gpt2-small"
    assert DEMO_SIZES["gpt2-small"]["d_model"] == 768 and DEMO_SIZES["gpt2-small"]["n_layers"] == 12
    assert kiln_main(["demo", "--size", "tiny", "--repeat", "3"]) == 0
    out = capsys.readouterr().out
    assert "d=128" in out and "OK" in out
