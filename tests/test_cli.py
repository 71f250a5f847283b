"""The `kiln` and `kiln-opt` command lines: bad arguments end in one clear line (exit 2 for
usage errors), never a traceback; outputs are written only when a command succeeds."""

from __future__ import annotations

import numpy as np
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
