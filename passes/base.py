"""What every Kiln pass is: a small declarative object with a name, options and `apply`.

A pass subclass declares `name` (the `kiln-<verb>-<object>` flag), a one-line `summary`, and its
options as dataclass fields (parsed from `name{key=value ...}` in pipelines). `apply(module)`
rewrites the module operation in place and appends one `Rewrite` record (kiln.report) per change
to `self.rewrites`; the compile report is built from those records.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar, Optional

from kiln.bindings import ir
from kiln.report import Rewrite, source_location  # noqa: F401 (passes import them from here)


class PassError(RuntimeError):
    """A pass could not do its job; the message names the op and its source location."""


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
