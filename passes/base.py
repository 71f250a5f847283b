"""What every Kiln pass is: a small declarative object with a name, options and `apply`.

A pass subclass declares `name` (the `kiln-<verb>-<object>` flag), a one-line `summary`, and its
options as dataclass fields (parsed from `name{key=value ...}` in pipelines). `apply(module)`
rewrites the module operation in place and appends one `Rewrite` record per change to `self.rewrites`;
the compile report is built from those records.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import ClassVar, Optional

from kiln.bindings import ir


class PassError(RuntimeError):
    """A pass could not do its job; the message names the op and its source location."""


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


@dataclass
class KilnPass:
    name: ClassVar[str]
    summary: ClassVar[str]
    rewrites: list[Rewrite] = field(default_factory=list, init=False, repr=False)

    def apply(self, module: ir.Operation) -> None:
        """Rewrite the `builtin.module` operation in place."""
        raise NotImplementedError

    def record(self, kind: str, detail: str, op: ir.Operation) -> None:
        self.rewrites.append(Rewrite(self.name, kind, detail, source_location(op)))

    @classmethod
    def option_fields(cls) -> list[dataclasses.Field]:
        return [f for f in dataclasses.fields(cls) if f.init]

    @classmethod
    def from_options(cls, options: dict[str, str]) -> "KilnPass":
        """Build the pass from `key=value` strings, converting each to its field's type."""
        known = {f.name: f for f in cls.option_fields()}
        kwargs = {}
        for key, raw in options.items():
            if key not in known:
                raise PassError(f"pass '{cls.name}' has no option '{key}'; options: "
                                f"{', '.join(known) or 'none'}")
            default = known[key].default
            kwargs[key] = _convert_option(raw, default, cls.name, key)
        return cls(**kwargs)

    def pipeline_text(self) -> str:
        """This pass as it would be written in a `-p` pipeline (used in reproducers)."""
        options = " ".join(f"{f.name}={getattr(self, f.name)}" for f in self.option_fields())
        return f"{self.name}{{{options}}}" if options else self.name

    def run_in(self, pm) -> None:
        """Add this pass to a PassManager (module-anchored: func-anchored Python passes abort)."""

        def run(op, pass_handle):
            try:
                with op.context, op.location:
                    self.apply(op.operation)
            except PassError as error:
                op.location.emit_error(str(error))
                pass_handle.signal_pass_failure()

        pm.add(run, name=self.name, argument=self.name, description=self.summary)


def _convert_option(raw: str, default, pass_name: str, key: str):
    if isinstance(default, bool):
        if raw.lower() not in ("true", "false", "1", "0"):
            raise PassError(f"pass '{pass_name}' option '{key}' takes true/false, got '{raw}'")
        return raw.lower() in ("true", "1")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    return raw


def collect_ops(module: ir.Operation, names: tuple[str, ...] | str) -> list[ir.Operation]:
    """Ops named `names` in pre-order, gathered before any rewrite so erasing is safe."""
    wanted = (names,) if isinstance(names, str) else names
    found: list[ir.Operation] = []

    def visit(op):
        if op.name in wanted:
            found.append(op.operation)
        return ir.WalkResult.ADVANCE

    module.walk(visit)
    return found


def erase_if_dead(ops: list[Optional[ir.Operation]]) -> None:
    """Erase those of `ops` whose results are unused, repeating until none is left to erase
    (whatever order they come in; torch ops are not removed by canonicalize)."""
    alive = [op for op in ops if op is not None]
    erased = True
    while erased:
        erased = False
        for op in list(alive):
            if all(not list(r.uses) for r in op.results):
                alive.remove(op)
                op.erase()
                erased = True
