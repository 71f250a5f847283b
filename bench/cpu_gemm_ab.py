"""Kiln's CPU GEMM variants on zoo models, compared in one process:

    8x2      the kernel before 2026-12-06: 8 × 2 tile (32-column panels) everywhere, row
             blocks up to 48 workgroups, no prefetch
    8x3      today's tile choice (kiln.cpu_kernels.gemm_vectors: 8 × 3 where N is a multiple
             of 48; row blocks up to 32 workgroups), no prefetch
    default  today's default (8x3 + the next panel prefetched, PREFETCH_PANELS)
    prefetch2  8x3, prefetching the panel after the next
    iree     no Kiln CPU kernels: IREE's data-tiled matmul and decomposed attention
             (cpu_kernels="off")
    gemm     Kiln's GEMMs, the attention decomposed (attention="decomposed")
    folded   bias and activation in the kernels' stores, not torch ops after them (IREE's
             dispatches; kiln.cpu_kernels.FOLD_EPILOGUES)
    noconv   Kiln's GEMMs and attention, convolutions left to IREE (no kiln.cpu_conv)
    noprop   IREE's transpose propagation off whatever the model (the compiler turns it on
             for models whose convolutions Kiln's kernel took)
    winograd convolutions left to IREE with its Winograd rewrite of every 3×3 convolution
             (iree-linalg-ext-convert-conv2d-to-winograd, replace-all-convs)

Every variant but "iree" compiles with cpu_kernels="on"; on an AVX2 host the kernels are
written for 8-float vectors (kiln.targets.cpu_vector_lanes).

Each model is compiled once per variant (cache off), the artifacts are loaded and called in
turn (rounds of `--calls` calls each, the order reversed every other round, so that the shared
machine's noise falls on all); medians of the per-call times and the largest difference from
the first variant's output are printed.

    python -m bench.cpu_gemm_ab --models gpt2-prefill,bert,llama --rounds 12
"""

from __future__ import annotations

import argparse
import contextlib
import statistics

import numpy as np


def _narrow_tiles() -> dict:
    """REGISTER_TILES with the wide tile the narrow one (8 × 2 on AVX-512)."""
    from dataclasses import replace

    from kiln.cpu_kernels import REGISTER_TILES

    return {lanes: replace(t, wide_vectors=t.vectors) for lanes, t in REGISTER_TILES.items()}


VARIANTS = {  # (kiln.cpu_kernels constants set while compiling, compile options)
    "8x2": ({"REGISTER_TILES": _narrow_tiles, "MIN_WORKGROUPS": 48, "PREFETCH_PANELS": 0}, {}),
    "8x3": ({"PREFETCH_PANELS": 0}, {}),
    "default": ({}, {}),
    "prefetch2": ({"PREFETCH_PANELS": 2}, {}),
    "iree": ({}, {"cpu_kernels": "off"}),
    "gemm": ({}, {"attention": "decomposed"}),
    "folded": ({"FOLD_EPILOGUES": True}, {}),
    "unfolded": ({"FOLD_EPILOGUES": False}, {}),
    "noprop": ({}, {"extra_iree_flags": ["--iree-global-opt-propagate-transposes=false"]}),
    "im2col": ({"targets.use_cpu_convolutions": lambda: lambda mode, cpu: False},
               {"extra_iree_flags": ["--iree-global-opt-use-im2col-for-convs"]}),
    "noconv": ({"targets.use_cpu_convolutions": lambda: lambda mode, cpu: False}, {}),
    "winograd": ({"targets.use_cpu_convolutions": lambda: lambda mode, cpu: False},
                 {"extra_iree_flags": [
                     "--iree-preprocessing-pass-pipeline=builtin.module(util.func("
                     "iree-linalg-ext-convert-conv2d-to-winograd{replace-all-convs=true}))"]}),
}


@contextlib.contextmanager
def patched(values: dict):
    """kiln.cpu_kernels with `values` for its constants ("module.NAME": another kiln module's),
    restored on exit."""
    import importlib

    def owner(name: str):
        module, _, attribute = name.rpartition(".")
        return importlib.import_module(f"kiln.{module or 'cpu_kernels'}"), attribute

    saved = {name: getattr(*owner(name)) for name in values}
    for name, value in values.items():  # a callable value is computed now
        setattr(*owner(name), value() if callable(value) else value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(*owner(name), value)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="gpt2-prefill,bert,llama")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--variants", default="8x2,8x3,default",
                        help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--quiet-wait", type=float, default=20.0,
                        help="seconds to wait for other processes' load to drop before each "
                             "round")
    args = parser.parse_args(argv)
    from bench.common import interleaved_ms
    from bench.suite.load import ForeignLoad, wait_for_quiet

    import torch

    import kiln
    from kiln.examples import zoo

    for name in args.models.split(","):
        model, inputs = zoo.build(name, args.batch)
        runs = {}
        for variant in args.variants.split(","):
            constants, options = VARIANTS[variant]
            with patched(constants):
                compiled = kiln.compile_model(model, tuple(inputs), cache=False,
                                              **{"cpu_kernels": "on", **options})
            runs[variant] = kiln.load(compiled.vmfb)
        outputs = {v: np.asarray(torch.as_tensor(f(*inputs))) for v, f in runs.items()}
        first = next(iter(outputs.values()))
        difference = max(float(np.abs(o - first).max()) for o in outputs.values())
        foreign = []

        @contextlib.contextmanager
        def quiet_round():
            wait_for_quiet(args.quiet_wait)
            with ForeignLoad() as load:
                yield
            foreign.append(load.cores)

        samples = interleaved_ms(runs, inputs, args.rounds, args.calls, quiet_round)
        cells = ", ".join(f"{v} {statistics.median(t):.2f} (min {min(t):.2f})"
                          for v, t in samples.items())
        print(f"{name} b{args.batch}: {cells} ms per call (median of {args.rounds} rounds of "
              f"{args.calls}); max |difference| {difference:.1e}; other processes' load in the "
              f"rounds: median {statistics.median(foreign):.2f} cores, max "
              f"{max(foreign):.2f}", flush=True)


if __name__ == "__main__":
    main()
