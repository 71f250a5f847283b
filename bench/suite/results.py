"""The suite's files: a cell's saved inputs and reference output, the output check, and the
results JSON/CSV (merged across runs, written atomically)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from bench.suite.config import KILN_SYSTEMS, SYSTEMS, TOLERANCE, log, zoo_names


def check(actual, expected, dtype: str) -> dict:
    import numpy as np

    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        return {"check": "FAILED-CHECK", "check_detail": f"shape {actual.shape} != eager "
                                                          f"{expected.shape}"}
    finite = bool(np.all(np.isfinite(actual)))
    error = float(np.max(np.abs(actual - expected))) if finite else float("inf")
    scale = max(1.0, float(np.max(np.abs(expected))))
    result = {"max_abs_err": error, "rel_err": error / scale, "ref_max_abs": scale,
              "tolerance": TOLERANCE[dtype]}
    result["check"] = "ok" if finite and error <= TOLERANCE[dtype] * scale else "FAILED-CHECK"
    if not finite:
        result["check_detail"] = "non-finite output"
    return result


def to_numpy_f32(value):
    """A torch tensor or numpy array (incl. ml_dtypes bfloat16) → float32 numpy."""
    import numpy as np

    if type(value).__module__.startswith("torch"):
        return value.detach().float().cpu().numpy()
    array = np.asarray(value)
    if array.dtype.kind == "V" or str(array.dtype) == "bfloat16":
        array = (array.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    return array.astype(np.float32)


def cell_dir(work: Path, model: str, batch: int, dtype: str) -> Path:
    return Path(work) / f"{model}-b{batch}-{dtype}"


def save_inputs(directory: Path, inputs) -> list:
    import numpy as np
    import torch

    specs = []
    for i, tensor in enumerate(inputs):
        dtype = str(tensor.dtype).replace("torch.", "")
        array = tensor.view(torch.int16).numpy() if tensor.dtype == torch.bfloat16 else \
            tensor.numpy()
        np.save(directory / f"input{i}.npy", array)
        specs.append({"shape": list(tensor.shape), "dtype": dtype})
    return specs


def load_inputs(directory: Path, as_torch: bool = False):
    """Inputs saved by the reference stage (bf16 stored as int16 bits)."""
    import numpy as np

    specs = json.loads((directory / "reference.json").read_text())["inputs"]
    arrays = []
    for i, spec in enumerate(specs):
        array = np.load(directory / f"input{i}.npy")
        if as_torch:
            import torch

            tensor = torch.from_numpy(array)
            arrays.append(tensor.view(torch.bfloat16) if spec["dtype"] == "bfloat16" else tensor)
        elif spec["dtype"] == "bfloat16":
            import ml_dtypes

            arrays.append(array.view(ml_dtypes.bfloat16))
        else:
            arrays.append(array)
    return arrays


def cell_key(cell: dict) -> tuple:
    return (cell["model"], cell["batch"], cell["dtype"], cell["system"])


def merge_results(path: Path, new: dict) -> dict:
    if path.exists():
        old = json.loads(path.read_text())
        replaced = {cell_key(c) for c in new["cells"]}
        kept = [c for c in old["cells"] if cell_key(c) not in replaced]
        new["cells"] = kept + new["cells"]
        if kept:  # the old commands still own cells (a run that replaced them all: its own)
            new["commands"] = sorted(set(old.get("commands", [])) | set(new["commands"]))
    order = {m: i for i, m in enumerate(zoo_names())}
    systems = {s: i for i, s in enumerate(SYSTEMS["cpu"] + SYSTEMS["cuda"] + list(KILN_SYSTEMS))}
    new["cells"].sort(key=lambda c: (order.get(c["model"], 99), c["batch"], c["dtype"],
                                     systems.get(c["system"], 99)))
    return new


CSV_FIELDS = ["model", "batch", "dtype", "system", "status", "check", "ms", "p10_ms", "p90_ms",
              "min_ms", "runs", "vs_eager", "vs_kiln", "compile_s", "peak_rss_mb",
              "compile_peak_rss_mb", "gpu_peak_alloc_mb", "gpu_process_mb", "device_ms",
              "max_abs_err", "rel_err", "foreign_cores", "error"]


def write_csv(path: Path, result: dict) -> None:
    by_key = {cell_key(c): c for c in result["cells"]}
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for cell in result["cells"]:
            row = dict(cell)
            for peer, column in (("eager", "vs_eager"), ("kiln", "vs_kiln")):
                other = by_key.get((cell["model"], cell["batch"], cell["dtype"], peer))
                if other and other.get("ms") and cell.get("ms"):
                    row[column] = round(other["ms"] / cell["ms"], 4)
            writer.writerow(row)


def write_atomic(path: Path, text: str) -> None:
    """A results file is never half-written (a run may be killed at its time limit)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def merge_files(paths: list, into: Path) -> None:
    """Merge result files of one device and machine (e.g. several GPU-machine runs)."""
    merged = None
    for path in paths:
        part = json.loads(Path(path).read_text())
        if merged is None:
            merged = part
            continue
        if (part["device"], part["tag"]) != (merged["device"], merged["tag"]):
            raise SystemExit(f"{path}: {part['device']}/{part['tag']} is not "
                             f"{merged['device']}/{merged['tag']}")
        keys = {cell_key(c) for c in part["cells"]}
        merged["cells"] = [c for c in merged["cells"] if cell_key(c) not in keys] + \
            part["cells"]
        merged["commands"] = sorted(set(merged.get("commands", [])) |
                                    set(part.get("commands", [])))
    into.parent.mkdir(parents=True, exist_ok=True)
    if into.exists():
        into.unlink()
    merged = merge_results(into, merged)
    into.write_text(json.dumps(merged, indent=1) + "\n")
    write_csv(into.with_suffix(".csv"), merged)
    log(f"merged {len(paths)} files into {into} ({len(merged['cells'])} cells)")
