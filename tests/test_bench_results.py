"""The suite's results file (bench/suite/results.py): a run merged into an earlier file keeps the
earlier cells it did not re-run and the commands that made them; a run that re-ran every cell
owns the file alone (its table says one command, one commit)."""

from __future__ import annotations

import json

from bench.suite.results import merge_results


def _cell(model: str, system: str, ms: float) -> dict:
    return {"model": model, "batch": 1, "dtype": "f32", "system": system, "median_ms": ms}


def test_merge_keeps_unreplaced_cells_and_their_commands(tmp_path):
    path = tmp_path / "suite.json"
    path.write_text(json.dumps({"commands": ["old"], "cells": [_cell("mlp", "kiln", 9.0),
                                                                _cell("bert", "kiln", 140.0)]}))
    merged = merge_results(path, {"commands": ["new"], "cells": [_cell("mlp", "kiln", 8.0)]})
    assert merged["commands"] == ["new", "old"]
    assert {(c["model"], c["median_ms"]) for c in merged["cells"]} == {("mlp", 8.0),
                                                                       ("bert", 140.0)}


def test_a_run_that_replaces_every_cell_keeps_only_its_command(tmp_path):
    path = tmp_path / "suite.json"
    path.write_text(json.dumps({"commands": ["old"], "cells": [_cell("mlp", "kiln", 9.0)]}))
    merged = merge_results(path, {"commands": ["new"], "cells": [_cell("mlp", "kiln", 8.0),
                                                                 _cell("mlp", "eager", 11.0)]})
    assert merged["commands"] == ["new"]
    assert len(merged["cells"]) == 2
