"""Tables and a chart from the suite's results.

    python -m bench.report bench/results/suite-cpu-<tag>.json [more.json ...]
    python -m bench.report --sweep bench/results/sweep-cpu.json

For each results file: a section of docs/benchmarks.md between the markers
`<!-- BEGIN <stem> -->` / `<!-- END <stem> -->` (replaced on every run; the prose around them is
left alone; a missing section is appended) and a chart bench/results/<stem>.png (one per machine)
(speedup over eager per model and batch, log scale, one panel per dtype).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOC = HERE.parent / "docs" / "benchmarks.md"
SYSTEM_LABELS = {
    "eager": "eager",
    "torch.compile": "torch.compile",
    "torch.compile:reduce-overhead": "compile reduce-overhead",
    "torch.compile:max-autotune-no-cudagraphs": "compile max-autotune-no-cg",
    "onnxruntime": "ONNX Runtime",
    "kiln": "Kiln",
    "kiln+kernels": "Kiln + kernels",
    "kiln+chain": "Kiln + chained layers",
    "kiln+chain-prefetch": "Kiln + chained layers, prefetch",
}
COLORS = {"eager": "#9e9e9e", "torch.compile": "#1f77b4",
          "torch.compile:reduce-overhead": "#6baed6",
          "torch.compile:max-autotune-no-cudagraphs": "#08519c",
          "onnxruntime": "#2ca02c", "kiln": "#d62728", "kiln+kernels": "#ff7f0e",
          "kiln+chain": "#8c564b", "kiln+chain-prefetch": "#e377c2"}
LOADED = 0.3  # cores used by other processes during a timed loop above which a cell is marked


def _ok(cell) -> bool:
    return cell.get("status") == "ok" and cell.get("ms") is not None


def _fmt_ms(ms: float) -> str:
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    return f"{ms:.3f}"


def _fmt(value, spec=".1f", empty="—"):
    return empty if value is None else format(value, spec)


def _groups(result: dict) -> dict:
    groups: dict = {}
    for cell in result["cells"]:
        groups.setdefault((cell["model"], cell["batch"], cell["dtype"]), {})[cell["system"]] = cell
    return groups


def _systems(result: dict) -> list:
    order = list(SYSTEM_LABELS)
    present = {c["system"] for c in result["cells"]}
    return [s for s in order if s in present] + sorted(present - set(order))


def _geomean(values):
    values = [v for v in values if v and v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def machine_line(result: dict) -> str:
    m = result["machine"]
    if result["device"] == "cuda":
        return (f"**{m.get('gpu', 'GPU')}** (driver {m.get('driver', '?')}, "
                f"{m.get('gpu_memory', '?')}), host {m.get('cores')} cores; torch "
                f"{m.get('torch', '?')}, iree-base-runtime {m.get('iree-base-runtime', '?')}; "
                f"Kiln at {m.get('kiln_commit', '?')}")
    isa = ", ".join(m.get("isa", []))
    return (f"**{m.get('cpu', 'CPU')}** (family/model {m.get('cpu_family_model', '?')}), "
            f"{m.get('cores')} cores, {m.get('ram_gb', '?')} GB RAM, {isa}; torch "
            f"{m.get('torch', '?')}, onnxruntime {m.get('onnxruntime', '?')}, IREE "
            f"{m.get('iree-base-compiler', '?')}; Kiln at {m.get('kiln_commit', '?')}")


def section(result: dict, stem: str) -> str:
    groups = _groups(result)
    systems = _systems(result)
    gpu = result["device"] == "cuda"
    timing = result.get("timing", {})
    lines = [f"### {result['device'].upper()}: {machine_line(result)}", ""]
    by_commit: dict = {}  # commit → the Kiln cells measured at it
    for c in result["cells"]:
        if c.get("kiln_commit"):
            by_commit.setdefault(c["kiln_commit"], []).append(f"{c['model']} b{c['batch']}")
    if len(by_commit) == 1:
        lines += [f"Kiln cells ran at commit `{next(iter(by_commit))}`", ""]
    elif by_commit:
        lines += ["Kiln cells ran at commits: " + "; ".join(
            f"`{commit}` ({', '.join(cells)})" for commit, cells in sorted(by_commit.items())),
            ""]
    lines += ["Commands: " + "; ".join(f"`{c}`" for c in result.get("commands", [])), "",
              f"Median of up to {timing.get('max_runs')} calls after {timing.get('warmup')} "
              f"warm-ups within {timing.get('budget_s')} s per cell (slow cells: fewer calls, "
              f"at least {timing.get('min_runs')}). Raw: `bench/results/{stem}.json` / `.csv`; "
              f"chart: `bench/results/{stem}.png`. "
              f"† = other processes used more than {LOADED} cores during the timed loop.", ""]

    # Summary: one row per model/batch/dtype, median ms per system.
    header = ["model", "batch", "dtype"] + [SYSTEM_LABELS.get(s, s) for s in systems] + \
        ["Kiln vs best other"]
    lines += ["#### Median latency (ms; **bold** = fastest)", "",
              "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (model, batch, dtype), cells in groups.items():
        ok = {s: c["ms"] for s, c in cells.items() if _ok(c)}
        best = min(ok, key=ok.get) if ok else None
        row = [model, str(batch), dtype]
        for s in systems:
            cell = cells.get(s)
            if cell is None:
                row.append("")
            elif _ok(cell):
                text = _fmt_ms(cell["ms"]) + ("†" if cell.get("foreign_cores", 0) > LOADED
                                              else "")
                row.append(f"**{text}**" if s == best else text)
            else:
                row.append(cell.get("status", "FAILED"))
        others = {s: v for s, v in ok.items() if not s.startswith("kiln")}
        if "kiln" in ok and others:
            peer = min(others, key=others.get)
            ratio = others[peer] / ok["kiln"]
            row.append(f"{ratio:.2f}× ({SYSTEM_LABELS.get(peer, peer)})")
        else:
            row.append("—")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Kiln vs best other: the fastest other system's time ÷ Kiln's (above 1: Kiln "
                  "is faster).", ""]

    # Ratio matrix: geometric mean over the cells both systems ran.
    lines += ["#### Speedup of the row system over the column system (geometric mean over "
              "cells both passed)", "",
              "| | " + " | ".join(SYSTEM_LABELS.get(s, s) for s in systems) + " |",
              "|---|" + "---|" * len(systems)]
    for row_system in systems:
        row = [f"**{SYSTEM_LABELS.get(row_system, row_system)}**"]
        for col_system in systems:
            ratios = [c[col_system]["ms"] / c[row_system]["ms"] for c in groups.values()
                      if row_system in c and col_system in c and _ok(c[row_system])
                      and _ok(c[col_system])]
            value = _geomean(ratios)
            row.append("—" if value is None or row_system == col_system else
                       f"{value:.2f}× ({len(ratios)})")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "(n) = number of cells in the mean.", ""]

    # Details per model/batch.
    lines += ["#### Details per cell", ""]
    detail_header = ["system", "median ms", "p10–p90 ms", "min ms", "× eager", "Kiln ×",
                     "compile s",
                     "peak RSS MB"]
    if gpu:
        detail_header += ["GPU MB", "device ms"]
    detail_header += ["max abs err (rel)", "runs", "status"]
    for (model, batch, dtype), cells in groups.items():
        any_cell = next(iter(cells.values()))
        params = any_cell.get("parameters")
        size = f", {params / 1e6:.1f}M parameters" if params else ""
        lines += [f"**{model}**, batch {batch}, {dtype}{size}", "",
                  "| " + " | ".join(detail_header) + " |", "|" + "---|" * len(detail_header)]
        eager = cells.get("eager")
        kiln = cells.get("kiln")
        for s in systems:
            cell = cells.get(s)
            if cell is None:
                continue
            if _ok(cell):
                vs_eager = f"{eager['ms'] / cell['ms']:.2f}" if eager and _ok(eager) else "—"
                vs_kiln = f"{cell['ms'] / kiln['ms']:.2f}" if kiln and _ok(kiln) else "—"
                median = _fmt_ms(cell["ms"]) + ("†" if cell.get("foreign_cores", 0) > LOADED
                                                else "")
                spread = f"{_fmt_ms(cell['p10_ms'])}–{_fmt_ms(cell['p90_ms'])}"
                fastest = _fmt_ms(cell["min_ms"])
            else:
                median = spread = fastest = vs_eager = vs_kiln = "—"
            row = [SYSTEM_LABELS.get(s, s), median, spread, fastest, vs_eager, vs_kiln,
                   _fmt(cell.get("compile_s")), _fmt(cell.get("peak_rss_mb"), ".0f")]
            if gpu:
                gpu_mb = cell.get("gpu_peak_alloc_mb") or cell.get("gpu_process_mb")
                row += [_fmt(gpu_mb, ".0f"), _fmt(cell.get("device_ms"), ".3f")]
            err = cell.get("max_abs_err")
            row.append("—" if err is None else f"{err:.1e} ({cell.get('rel_err', 0):.1e})")
            row.append(str(cell.get("runs", "—")))
            status = cell.get("status", "?")
            if status != "ok":
                status += ": " + re.sub(r"\s+", " ", cell.get("error", ""))[:160].replace(
                    "|", "/")
            row.append(status)
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    lines += ["min ms: the fastest call (least disturbed by other processes). "
              "× eager: eager's median ÷ this system's (above 1: faster than eager). Kiln ×: "
              "this system's median ÷ Kiln's (above 1: Kiln is faster). compile s: Kiln's "
              "compile to .vmfb, ONNX export + session creation, torch.compile's first call. "
              "peak RSS: the timing process (Kiln and ONNX Runtime run without torch loaded).",
              ""]
    return "\n".join(lines)


def chart(result: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = _groups(result)
    systems = _systems(result)
    dtypes = sorted({k[2] for k in groups}, key=["f32", "f16", "bf16"].index)
    fig, axes = plt.subplots(len(dtypes), 1, figsize=(max(8, 1.1 * len(groups) /
                                                          len(dtypes) + 3), 4.2 * len(dtypes)),
                             squeeze=False)
    width = 0.8 / len(systems)
    for ax, dtype in zip(axes[:, 0], dtypes):
        keys = [k for k in groups if k[2] == dtype]
        for j, system in enumerate(systems):
            xs, ys, loaded = [], [], []
            for i, key in enumerate(keys):
                cells = groups[key]
                eager, cell = cells.get("eager"), cells.get(system)
                x = i + (j - (len(systems) - 1) / 2) * width
                if cell and _ok(cell) and eager and _ok(eager):
                    xs.append(x)
                    ys.append(eager["ms"] / cell["ms"])
                    loaded.append(max(cell.get("foreign_cores", 0),
                                      eager.get("foreign_cores", 0)) > LOADED)
                elif cell is not None:
                    ax.text(x, 1.0, "✗", ha="center", va="bottom", color=COLORS.get(system),
                            fontsize=9)
            bars = ax.bar(xs, ys, width, label=SYSTEM_LABELS.get(system, system),
                          color=COLORS.get(system, None), bottom=0)
            for bar, y, busy in zip(bars, ys, loaded):
                if busy:
                    bar.set_hatch("///")
                    bar.set_edgecolor("white")
                if system != "eager":
                    ax.text(bar.get_x() + bar.get_width() / 2, y, f"{y:.1f}", ha="center",
                            va="bottom", fontsize=6.5, rotation=90)
        ax.axhline(1.0, color="black", linewidth=0.6)
        ax.set_yscale("log")
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels([f"{m}\nb{b}" for m, b, _ in keys], fontsize=8)
        ax.set_ylabel("speedup over eager (×, log)")
        title = machine_line(result).replace("**", "")
        ax.set_title(f"{dtype}: {title.split('; ')[0]}", fontsize=9)
        ax.text(0.995, 0.98, "✗ = failed (compile, run or output check); hatched = this "
                "system or eager timed while other processes used > 0.3 cores",
                transform=ax.transAxes, ha="right", va="top", fontsize=7.5)
        ax.legend(fontsize=8, ncol=len(systems), loc="upper left")
        ax.grid(axis="y", which="both", alpha=0.3)
        top = max([1.0] + [eager_ms / c["ms"] for k in keys for c in groups[k].values()
                           if _ok(c) for eager_ms in [groups[k].get("eager", {}).get("ms")]
                           if eager_ms])
        low = min([1.0] + [eager_ms / c["ms"] for k in keys for c in groups[k].values()
                           if _ok(c) for eager_ms in [groups[k].get("eager", {}).get("ms")]
                           if eager_ms])
        ax.set_ylim(low / 1.6, top * 2.5)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def sweep_section(sweep: dict) -> str:
    """Tables of the IREE flag sweeps (bench/sweep_flags.py): one per sweep command, each
    config compared with that command's default (rows without a command: the file's)."""
    groups: dict = {}
    for row in sweep["rows"]:
        groups.setdefault(row.get("command") or sweep.get("command", ""), []).append(row)
    machine = re.sub(r"; Kiln at .*$", "", sweep.get("machine_line", ""))  # per table below
    lines = [f"Machine: {machine}", ""]
    for command, rows in groups.items():
        lines += _sweep_table(sweep, command, rows)
    lines += ["Cells: Kiln's latency, the median over interleaved passes of each pass's "
              "median [range of the passes] (compile time in parentheses; runtime-flag "
              "configs reuse the default's artifact). geomean vs default: the default's "
              "time ÷ this config's in the same sweep command (above 1: faster than the "
              f"default). † = other processes used more than {LOADED} cores during a pass.", ""]
    return "\n".join(lines)


def _sweep_table(sweep: dict, command: str, rows: list) -> list:
    models, configs = [], []
    for row in rows:
        if (row["model"], row["batch"]) not in models:
            models.append((row["model"], row["batch"]))
    for row in rows:  # in the order the command measured them
        if row["config"] not in configs:
            configs.append(row["config"])
    commits = sorted({r.get("kiln_commit") or "?" for r in rows})
    by = {(r["model"], r["batch"], r["config"]): r for r in rows}
    lines = ["Command: `" + (command or "python -m bench.sweep_flags") + "` (Kiln at " +
             ", ".join(commits) + ")", "",
             "| config | flags | " + " | ".join(f"{m} b{b}" for m, b in models) +
             " | geomean vs default |", "|---|---|" + "---|" * (len(models) + 1)]
    default = sweep.get("default", "default")
    for name in configs:
        cells, ratios = [], []
        for model, batch in models:
            row = by.get((model, batch, name))
            base = by.get((model, batch, default))
            if row is None:
                cells.append("")
            elif row.get("status") != "ok":
                cells.append(row.get("status", "FAILED"))
            else:
                text = f"{_fmt_ms(row['ms'])} ms"
                if row.get("foreign_cores", 0) > LOADED:
                    text += "†"
                passes = row.get("pass_ms") or []
                if len(passes) > 1:
                    text += f" [{_fmt_ms(min(passes))}–{_fmt_ms(max(passes))}]"
                cells.append(text + (f" ({row['compile_s']:.0f} s)" if row.get("compile_s")
                                     is not None else ""))
                if base and base.get("status") == "ok":
                    ratios.append(base["ms"] / row["ms"])
        g = _geomean(ratios)
        described = [r["description"] for r in rows if r["config"] == name and
                     r.get("description")]  # as when measured (the default changes)
        desc = (described[0] if described else
                sweep["configs"][name]["description"]).replace("|", "/")
        lines.append(f"| {'**' + name + '**' if name == default else name} | {desc} | " +
                     " | ".join(cells) + f" | {'—' if g is None else f'{g:.2f}×'} |")
    return lines + [""]


def write_section(stem: str, body: str, title: str) -> None:
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n\n"
    begin, end = f"<!-- BEGIN {stem} -->", f"<!-- END {stem} -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        text = re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda _: block, text,
                      flags=re.S)
    else:
        text = text.rstrip() + f"\n\n## {title}\n\n{block}\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="*", type=Path)
    parser.add_argument("--sweep", type=Path, help="a sweep-<device>.json to tabulate")
    parser.add_argument("--print", action="store_true", help="print instead of writing")
    args = parser.parse_args(argv)
    for path in args.results:
        result = json.loads(path.read_text())
        stem = path.stem
        body = section(result, stem)
        if args.print:
            print(body)
            continue
        write_section(stem, body, f"Suite: {result['device'].upper()} — {result['tag']}")
        png = chart(result, HERE / "results" / f"{stem}.png")  # one per machine, as the JSON
        print(f"wrote section {stem} of {DOC} and {png}")
    if args.sweep:
        sweep = json.loads(args.sweep.read_text())
        body = sweep_section(sweep)
        if args.print:
            print(body)
        else:
            write_section(args.sweep.stem, body, "IREE flag sweep")
            print(f"wrote section {args.sweep.stem} of {DOC}")


if __name__ == "__main__":
    sys.exit(main())
