"""Unsupported models get one report naming every offending op, its source line and a fix."""

import pytest
import torch

import kiln


class ThreeUnsupportedOps(torch.nn.Module):
    def forward(self, x):
        determinant = torch.linalg.det(x @ x.transpose(-1, -2))  # line: det
        bessel = torch.special.i0(x).sum()  # line: i0
        buckets = torch.searchsorted(torch.arange(10.0), x.flatten())  # line: searchsorted
        return determinant + bessel, buckets


class DataDependent(torch.nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # line: branch
            x = x * 2
        return x + 1


def _line_of(marker: str) -> int:
    with open(__file__) as source:
        return next(i for i, line in enumerate(source, 1) if f"# line: {marker}" in line)


def test_iree_failure_lists_every_unsupported_op_with_its_line():
    with pytest.raises(kiln.KilnCompileError) as info:
        kiln.compile_to_vmfb(ThreeUnsupportedOps(), (torch.randn(2, 4, 4),))
    error = info.value
    names = {issue.what for issue in error.issues}
    assert names == {"aten._linalg_det", "aten.i0", "aten.searchsorted.Tensor"}, str(error)
    for issue in error.issues:
        marker = {"aten._linalg_det": "det", "aten.i0": "i0",
                  "aten.searchsorted.Tensor": "searchsorted"}[issue.what]
        assert issue.locations == [f"{__file__}:{_line_of(marker)}"], issue
        assert issue.fix
    message = str(error)
    assert "3 problem(s)" in message and "reproduce with" in message


def test_export_failure_names_the_data_dependent_branch():
    with pytest.raises(kiln.KilnImportError) as info:
        kiln.compile_to_vmfb(DataDependent(), (torch.randn(2, 8),))
    error = info.value
    assert error.issues, str(error)
    first = error.issues[0]
    assert first.locations == [f"{__file__}:{_line_of('branch')}"]
    assert "torch.cond" in first.fix
    assert "if x.sum() > 0" in str(error)
