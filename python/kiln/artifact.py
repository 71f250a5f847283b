"""The artifact contract: what the compiler writes into a `.vmfb` and the runtime reads back.

One module both sides import (it imports neither torch, MLIR, IREE nor the compiler or the
runtime), so a fact of the format lives in one place:

  - the reflection keys on each public function: `SIGNATURE_KEY` (`kiln.signature`, the JSON
    of a `Signature`) and `PARAMETERS_KEY` (`kiln.parameters`, the record of an artifact
    compiled with weights="external", kiln.archive.record);
  - `PARAMETER_SCOPE`, the scope of `#stream.parameter.named` globals and of the provider the
    runtime builds from the `.irpa`;
  - `parameters_path`, where an artifact's `.irpa` lives beside its `.vmfb`;
  - `NONE_OUT_OF_BOUNDS`, the value of an index guard result that found no bad index.

The signature's JSON is written as `Signature.to_json()` and read with `Signature.from_json`; a
signature read and written again is the same text (optional entries absent stay absent), so
kiln.device_state can rewrite it inside the IR text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

SIGNATURE_KEY = "kiln.signature"
# Reflection entry of artifacts compiled with weights="external" (kiln.parameters): JSON
# {"scope", "count", "bytes", "digest", "parameters"} (kiln.archive.record); their weights live
# in an IREE parameter archive (.irpa), checked against that record at load.
PARAMETERS_KEY = "kiln.parameters"
PARAMETER_SCOPE = "model"
VMFB_SUFFIX = ".vmfb"
ARCHIVE_SUFFIX = ".irpa"
# A guard result is int64 [the largest out-of-bounds index or NONE_OUT_OF_BOUNDS, the size]
# (kiln.guards computes it, the runtime reads it).
NONE_OUT_OF_BOUNDS = -(1 << 63)


def parameters_path(vmfb_path: Union[str, Path]) -> Path:
    """Where the archive of the artifact at `vmfb_path` lives: `.vmfb` replaced by `.irpa`
    (`model.vmfb` → `model.irpa`), else `.irpa` appended (`m.b1` → `m.b1.irpa`), so distinct
    outputs never share an archive."""
    path = Path(vmfb_path)
    if path.suffix == VMFB_SUFFIX:
        return path.with_suffix(ARCHIVE_SUFFIX)
    return path.with_name(path.name + ARCHIVE_SUFFIX)


@dataclass(frozen=True)
class TensorSpec:
    """An input or output of an entry point: shape (None for a dynamic dim), dtype as numpy
    names it ("float32", "bfloat16"), and for inputs the name and, per dim, the compiled range
    of a dynamic one ([low, high], high None when unbounded; None for a static dim)."""

    shape: tuple
    dtype: str
    name: Optional[str] = None
    bounds: Optional[tuple] = None

    def to_dict(self) -> dict:
        entry = {} if self.name is None else {"name": self.name}
        entry.update(shape=list(self.shape), dtype=self.dtype)
        if self.bounds is not None:
            entry["bounds"] = [None if b is None else list(b) for b in self.bounds]
        return entry

    @classmethod
    def from_dict(cls, entry: dict) -> "TensorSpec":
        bounds = entry.get("bounds")
        return cls(tuple(entry["shape"]), entry["dtype"], entry.get("name"),
                   None if bounds is None else
                   tuple(None if b is None else tuple(b) for b in bounds))


@dataclass(frozen=True)
class GuardSpec:
    """An index bounds check the artifact computes (kiln.guards.IndexGuard): the result that
    holds it (row `row` of the guards' stacked [guards, 2] result; None: the result is this
    guard's own [2], as artifacts compiled before 2026-12-06 have), the op, the model's source
    line, the indexed dim and eager PyTorch's rule."""

    output: int
    op: str
    source: str
    message: str
    dim: int
    row: Optional[int] = None

    def to_dict(self) -> dict:
        entry = {"output": self.output, "op": self.op, "source": self.source,
                 "message": self.message, "dim": self.dim}
        if self.row is not None:
            entry["row"] = self.row
        return entry

    @classmethod
    def from_dict(cls, entry: dict) -> "GuardSpec":
        return cls(entry["output"], entry["op"], entry["source"], entry["message"], entry["dim"],
                   entry.get("row"))


@dataclass(frozen=True)
class Signature:
    """The `kiln.signature` of one entry point. Optional parts are None where the artifact has
    none (they are then absent from the JSON):

      - `mutated_inputs`: [{"output": result index or None, "input": input index or None,
        ...}] in-place input updates the runtime copies back (kiln.outputs.mutated_inputs);
      - `guards`: index bounds checks, the last results (kiln.guards);
      - `written_inputs`: inputs the artifact computes in place: the runtime passes copies;
      - `output_tree`: the model's output structure over the results (kiln.outputs);
      - `state`: inputs kept on the device as globals (kiln.device_state), no longer taken."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    kiln_version: Optional[str] = None
    mutated_inputs: Optional[list] = None
    guards: Optional[tuple[GuardSpec, ...]] = None
    written_inputs: Optional[list] = None
    output_tree: Optional[dict] = None
    state: Optional[list] = None

    @property
    def guard_results(self) -> int:
        """How many of the last results hold the guards: one stacked [guards, 2] result, or
        one per guard in artifacts compiled before guards had rows."""
        return len({g.output for g in self.guards or ()})

    def to_dict(self) -> dict:
        """The JSON object, keys in the order the compiler has always written them."""
        data: dict[str, Any] = {"inputs": [i.to_dict() for i in self.inputs],
                                "outputs": [o.to_dict() for o in self.outputs]}
        if self.kiln_version is not None:
            data["kiln_version"] = self.kiln_version
        if self.mutated_inputs is not None:
            data["mutated_inputs"] = self.mutated_inputs
        if self.guards is not None:
            data["guards"] = [g.to_dict() for g in self.guards]
        if self.written_inputs is not None:
            data["written_inputs"] = self.written_inputs
        if self.output_tree is not None:
            data["output_tree"] = self.output_tree
        if self.state is not None:
            data["state"] = self.state
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict) -> "Signature":
        guards = data.get("guards")
        return cls(tuple(TensorSpec.from_dict(i) for i in data["inputs"]),
                   tuple(TensorSpec.from_dict(o) for o in data["outputs"]),
                   data.get("kiln_version"), data.get("mutated_inputs"),
                   None if guards is None else tuple(GuardSpec.from_dict(g) for g in guards),
                   data.get("written_inputs"), data.get("output_tree"), data.get("state"))

    @classmethod
    def from_json(cls, text: str) -> "Signature":
        return cls.from_dict(json.loads(text))
