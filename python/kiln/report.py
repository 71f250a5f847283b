"""What compile reports are made of: `Rewrite` records and model source locations.

Passes record a `Rewrite` per change (kiln.passes.base.KilnPass.record); the compiler, its
cache (CompileReport.to_json / from_json), kiln.diagnose and kiln.dynamo read them. This module
imports neither MLIR nor the pass machinery, so code that only reports does not load it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kiln.bindings import ir


@dataclass(frozen=True)
class Rewrite:
    """One change a pass made: what it matched, how, and where in the model's Python source."""

    pass_name: str
    kind: str
    detail: str
    location: str

    def __str__(self) -> str:
        return f"{self.pass_name}: {self.kind} ({self.detail}) at {self.location}"


_FILE_LINE = re.compile(r'"([^"]+)":(\d+):\d+')


def source_location(op: ir.Operation) -> str:
    """The model-source `file:line` the FX importer recorded for `op`: the innermost frame of its
    call-site stack outside torch's own modules (the user's line, not `nn/modules/linear.py`),
    else the innermost frame, or "unknown location"."""
    frames = [(m.group(1), m.group(2)) for m in _FILE_LINE.finditer(str(op.location))]
    if not frames:
        return "unknown location"
    user = [f for f in frames if not re.search(r"/site-packages/torch/", f[0])]
    path, line = (user or frames)[0]
    return f"{path}:{line}"
