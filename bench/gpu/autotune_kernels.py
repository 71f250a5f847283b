"""Autotune Kiln's kernels on the GPU: time candidate configs per shape class, write table.json.

    export PYTHONPATH=$PWD/python PYTHONUNBUFFERED=1 && python3 -m bench.gpu.autotune_kernels
    cp $OUT/table.json python/kiln/kernels/table.json      # (here, after the run)

Shape classes are the keys of kiln.kernels.configs (docs/kernels.md). Every candidate (plus the
default config) is compiled ahead of time in parallel, then timed with CUDA graphs (median of
7 replays of 20 calls, f16). The class takes the candidate with the smallest geometric mean of
time / best time over its shapes. Also writes $OUT/autotune.json with every timing.

Decode GEMMs (M <= 16) read weights that a real decode step has not got in L2 (GPT-2's 250 MB
pass through a 50 MB L2 once per token); `--cold` times them over distinct copies of the
operands, 3x the L2 in all, in turn (and each split-K candidate also reducing its splits in
the same launch, kiln.kernels.plan.SPLITS_REDUCED_IN_KERNEL):

    python3 -m bench.gpu.autotune_kernels --only linear --max-m 8 --cold \
        --merge python/kiln/kernels/table.json
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

from bench.gpu import kernel_common as common
import torch  # noqa: E402

from kiln.kernels import configs, execute, reference  # noqa: E402
from kiln.kernels.attention import attention_spec  # noqa: E402
from kiln.kernels.configs import DecodeConfig, GemmConfig, PrefillConfig  # noqa: E402
from kiln.kernels.linear import linear_spec  # noqa: E402

# (weight_layout, has_bias, n, k): GPT-2 small (Conv1D: in_out, bias) and a Llama-style layer
# (hidden 1024, 16 query / 4 kv heads of 64, SwiGLU 2816; nn.Linear: out_in, no bias).
GEMM_WEIGHTS = [("in_out", True, 2304, 768), ("in_out", True, 768, 768),
                ("in_out", True, 3072, 768), ("in_out", True, 768, 3072),
                ("out_in", False, 1536, 1024), ("out_in", False, 1024, 1024),
                ("out_in", False, 2816, 1024), ("out_in", False, 1024, 2816)]
GEMM_M = [1, 8, 128, 1024, 4096]
# (b, hq, hkv, t, causal)
PREFILL = [(1, 12, 12, 128, True), (8, 12, 12, 128, True), (1, 12, 12, 512, True),
           (8, 12, 12, 512, True), (1, 16, 4, 512, True), (8, 16, 4, 128, True),
           (1, 12, 12, 128, False), (8, 12, 12, 512, False)]
# (b, hq, hkv, kv)
DECODE = [(b, hq, hkv, kv) for b in (1, 8) for hq, hkv in ((12, 12), (16, 4))
          for kv in (128, 1024, 4096)]
HEAD_DIM = 64


def gemm_candidates(m: int) -> list[GemmConfig]:
    if m <= 16:
        out = []
        for bn, bk, splits in ((16, 256, (1, 2)), (16, 128, (4, 8)), (32, 128, (1, 2, 4, 8)),
                               (32, 256, (1, 2)), (32, 64, (4, 8, 12)),
                               (64, 128, (1, 2, 4, 8, 16)), (64, 256, (1, 2, 4)),
                               (64, 64, (8, 12, 16)), (128, 128, (1, 2, 4)),
                               (128, 64, (4, 8))):
            for s in splits:
                out.append(GemmConfig(16, bn, bk, 1, s, 4, 4 if bk == 128 else 3))
        return out
    if m <= 256:
        return [GemmConfig(64, 64, 64, 8, 1, 4, 4), GemmConfig(64, 64, 64, 8, 2, 4, 4),
                GemmConfig(64, 32, 64, 8, 1, 4, 4), GemmConfig(64, 32, 128, 8, 1, 4, 3),
                GemmConfig(64, 128, 64, 8, 1, 4, 4), GemmConfig(64, 128, 64, 8, 2, 4, 4),
                GemmConfig(128, 64, 64, 8, 1, 4, 4), GemmConfig(128, 64, 64, 8, 2, 4, 4),
                GemmConfig(128, 128, 64, 8, 1, 8, 3), GemmConfig(64, 64, 128, 8, 1, 4, 3),
                GemmConfig(32, 64, 64, 8, 1, 4, 4), GemmConfig(64, 64, 64, 8, 4, 4, 4)]
    return [GemmConfig(128, 128, 64, 8, 1, 8, 3), GemmConfig(128, 128, 64, 8, 1, 4, 4),
            GemmConfig(128, 256, 64, 8, 1, 8, 3), GemmConfig(64, 128, 64, 8, 1, 4, 4),
            GemmConfig(128, 64, 64, 8, 1, 4, 4), GemmConfig(64, 64, 64, 8, 1, 4, 4),
            GemmConfig(256, 128, 64, 8, 1, 8, 3), GemmConfig(128, 128, 128, 8, 1, 8, 2),
            GemmConfig(64, 256, 64, 8, 1, 4, 4), GemmConfig(128, 128, 64, 4, 1, 8, 4)]


PREFILL_CANDIDATES = [PrefillConfig(64, 64, 4, 2), PrefillConfig(64, 64, 4, 3),
                      PrefillConfig(128, 64, 8, 2), PrefillConfig(128, 64, 4, 2),
                      PrefillConfig(128, 64, 8, 3), PrefillConfig(128, 128, 8, 2),
                      PrefillConfig(64, 32, 4, 2), PrefillConfig(128, 32, 4, 2),
                      PrefillConfig(64, 128, 4, 2), PrefillConfig(32, 32, 4, 2),
                      PrefillConfig(64, 64, 8, 2)]
DECODE_CANDIDATES = [DecodeConfig(bn, t, 4, 2) for bn in (32, 64, 128)
                     for t in (1, 132, 264, 528)] + \
                    [DecodeConfig(64, 264, 4, 3), DecodeConfig(128, 264, 8, 2)]


def jobs():
    """(key, shape label, builder, args, candidates) per measured shape."""
    out = []
    for layout, bias, n, k in GEMM_WEIGHTS:
        for m in GEMM_M:
            args = dict(m=m, n=n, k=k, dtype="f16", weight_layout=layout, has_bias=bias,
                        activation="none", has_residual=False)
            cands = gemm_candidates(m) + [configs.default_gemm(m, n, k)]
            out.append((configs.linear_key(m, n, k, layout), f"m{m} n{n} k{k} {layout}",
                        "linear", args, cands))
    for b, hq, hkv, t, causal in PREFILL:
        args = dict(b=b, hq=hq, hkv=hkv, sq=t, sk=t, d=HEAD_DIM, dtype="f16",
                    scale=HEAD_DIM ** -0.5, causal=causal)
        cands = PREFILL_CANDIDATES + [configs.default_prefill(t, HEAD_DIM, causal)]
        out.append((configs.prefill_key(t, HEAD_DIM, causal),
                    f"b{b} h{hq}/{hkv} t{t} {'causal' if causal else 'full'}", "attention",
                    args, cands))
    for b, hq, hkv, kv in DECODE:
        args = dict(b=b, hq=hq, hkv=hkv, sq=1, sk=kv, d=HEAD_DIM, dtype="f16",
                    scale=HEAD_DIM ** -0.5, causal=False)
        cands = DECODE_CANDIDATES + [configs.default_decode(kv, HEAD_DIM)]
        out.append((configs.decode_key(kv, HEAD_DIM), f"b{b} h{hq}/{hkv} kv{kv}", "attention",
                    args, cands))
    return out


def time_cold(spec, inputs) -> float:
    """µs of one run of the plan with its operands out of L2 (kernel_common.time_us_cold)."""
    per_set = sum(t.numel() * t.element_size() for t in inputs)
    copies = max(2, min(400, math.ceil(3 * common.l2_bytes() / per_set)))
    sets = [execute.allocate(spec, [t.clone() for t in inputs]) for _ in range(copies)]
    return common.time_us_cold([execute.launcher(spec, b, "aot") for b in sets])


def in_kernel_spec(builder: str, args: dict, config):
    """The split-K candidate reducing its splits in the same launch (the last split to arrive
    reduces; kiln.kernels.plan.SPLITS_REDUCED_IN_KERNEL), or None without split-K."""
    if builder != "linear":
        return None
    spec = linear_spec(**args, config=config, reduce_in_kernel=True)
    return spec if spec.semaphores else None


def build(builder: str, args: dict, config):
    return (linear_spec if builder == "linear" else attention_spec)(**args, config=config)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=float, default=150.0, help="seconds for everything")
    parser.add_argument("--only", default="", help="prefix of the keys to tune")
    parser.add_argument("--max-m", type=int, default=1 << 30,
                        help="tune GEMM shapes with M up to this only")
    parser.add_argument("--cold", action="store_true",
                        help="time decode GEMMs (M <= 16) with their weights out of L2, as in "
                             "a decode step (kernel_common.time_us_cold)")
    parser.add_argument("--merge", default="", help="a table whose entries this run did not "
                        "tune are kept")
    options = parser.parse_args()
    deadline = common.Deadline(options.budget)
    work = [j for j in jobs() if j[0].startswith(options.only)
            and (j[2] != "linear" or j[3]["m"] <= options.max_m)]
    specs = []
    for key, label, builder, args, cands in work:
        for config in cands:
            specs.extend(build(builder, args, config).launches)
            one = in_kernel_spec(builder, args, config) if options.cold else None
            specs.extend(one.launches if one is not None else ())
    errors = common.precompile(specs)
    info = common.machine()
    print("#", info, flush=True)

    timings = defaultdict(lambda: defaultdict(dict))  # key → candidate label → shape → µs
    in_kernel = defaultdict(lambda: defaultdict(dict))  # same, splits reduced in the GEMM
    chosen_config = {}
    for key, label, builder, args, cands in work:
        if deadline.left() < 15:
            print(f"# out of time: {key} {label} not tuned", flush=True)
            continue
        spec0 = build(builder, args, cands[0])
        inputs = reference.random_inputs(spec0, None, "cuda", 0)
        seen = {}
        for config in cands:
            spec = build(builder, args, config)
            ident = tuple(launch.key() for launch in spec.launches)
            name = config.label()
            chosen_config[(key, name)] = config
            if ident in seen:  # fitted to the same kernels as another candidate
                timings[key][name][label] = timings[key][seen[ident]][label]
                continue
            seen[ident] = name
            if any(launch.key() in errors for launch in spec.launches):
                timings[key][name][label] = math.inf
                continue
            try:
                if options.cold and builder == "linear" and args["m"] <= 16:
                    timings[key][name][label] = time_cold(spec, inputs)
                    one = in_kernel_spec(builder, args, config)
                    if one is not None:  # the same split-K reduced in the GEMM
                        in_kernel[key][name][label] = time_cold(one, inputs)
                else:
                    buffers = execute.allocate(spec, inputs)
                    run = execute.launcher(spec, buffers, "aot")
                    timings[key][name][label] = common.time_us(run)
            except Exception as error:  # out of resources, ...
                print(f"# {key} {name}: {type(error).__name__}: {str(error)[:120]}")
                timings[key][name][label] = math.inf
        best = min(timings[key].items(), key=lambda kv: kv[1].get(label, math.inf))
        print(f"{key:44s} {label:28s} best {best[0]:>20s} {best[1][label]:8.2f} us", flush=True)
        torch.cuda.empty_cache()

    entries = {}
    if options.merge:
        kept = configs.table_entries(Path(options.merge))
        entries.update({k: v for k, v in kept.items() if k not in timings})
    for key, per_config in timings.items():
        shapes = sorted({s for times in per_config.values() for s in times})
        best_per_shape = {s: min(t.get(s, math.inf) for t in per_config.values())
                          for s in shapes}

        def score(times):
            logs = [math.log(times.get(s, math.inf) / best_per_shape[s]) for s in shapes]
            return math.exp(sum(logs) / len(logs))

        ranked = sorted(per_config.items(), key=lambda kv: score(kv[1]))
        name, times = ranked[0]
        if not math.isfinite(score(times)):
            continue
        entries[key] = {"config": dataclasses.asdict(chosen_config[(key, name)]),
                        "us": {s: round(times[s], 3) for s in shapes},
                        "best_us": {s: round(best_per_shape[s], 3) for s in shapes},
                        "slowdown_vs_best": round(score(times), 4),
                        "candidates": len(per_config)}
    table = {"format": configs.TABLE_FORMAT, "device": info["gpu"], "triton": info["triton"],
             "measured": time.strftime("%Y-%m-%d"),
             "entries": dict(sorted(entries.items()))}
    method = ("CUDA-graph median of 7 replays x 20 calls, f16, per-class geomean of "
              "time/best; bench/gpu/autotune_kernels.py")
    if options.cold:
        method += "; M <= 16 with cold weights (--cold: distinct copies, 3x the L2, in turn)"
    table["method"] = method
    common.write_json("table.json", table)
    common.write_json("autotune.json", {"machine": info, "timings": timings,
                                        "splitk_reduced_in_kernel": in_kernel,
                                        "cold": options.cold, "compile_errors": errors})
    return 0


if __name__ == "__main__":
    sys.exit(main())
