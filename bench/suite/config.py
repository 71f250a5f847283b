"""The suite's settings: paths, systems, Kiln variants, GPU cells, tolerances, timing plans.

One place for each: the stages, the orchestration and the CLI (bench.run_suite) read them.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1]
REPO = BENCH.parent
RESULTS = BENCH / "results"

# Where `kiln` is imported from (default: this checkout's python/). On the GPU machine a frozen
# copy of the runtime keeps the run independent of uncommitted edits in the tree.
KILN_PYTHON = Path(os.environ.get("KILN_BENCH_KILN_PYTHON", REPO / "python"))


def use_kiln_python() -> None:
    """Import `kiln` (and the zoo in kiln.examples) from KILN_PYTHON in this process too, as the
    children do: the folder is chosen at run time (KILN_BENCH_KILN_PYTHON), which no import
    statement can name. The one place the suite touches sys.path."""
    if str(KILN_PYTHON) not in sys.path:
        sys.path.insert(0, str(KILN_PYTHON))


SYSTEMS = {
    "cpu": ["eager", "torch.compile", "onnxruntime", "kiln"],
    "cuda": ["eager", "torch.compile", "torch.compile:reduce-overhead",
             "torch.compile:max-autotune-no-cudagraphs", "kiln"],
}


DTYPES = {"cpu": ["f32"], "cuda": ["f16", "bf16"]}


# Kiln systems: name → compile options ("options": always passed; "if_known": passed when this
# Kiln's CompileOptions has the field — older commits lack it and behave as that value).
# A new variant is one entry here (and --systems <name> in both halves).
KILN_SYSTEMS = {
    "kiln": {"if_known": {"cuda_kernels": "off"}},
    "kiln+kernels": {"options": {"cuda_kernels": "on"}},
    # issue 14's A/B on the same card: the kernels as before the fused layers (one kernel per
    # linear/attention, split-K reduces, separate q/k/v and gate/up as with external weights
    # then), and the fused layers with split-K GEMMs allowed
    "kiln+kernels-unfused": {"options": {"cuda_kernels": "on", "disable_passes": [
                                 "kiln-merge-linears", "kiln-raise-swiglu"]},
                             "if_known": {"cuda_fuse": False, "cuda_split_k": True}},
    "kiln+kernels-splitk": {"options": {"cuda_kernels": "on"},
                            "if_known": {"cuda_split_k": True}},
    # one launch per linear: fewer operations for IREE's host to submit per call
    "kiln+kernels-nosplitk": {"options": {"cuda_kernels": "on", "cuda_split_k": False}},
    # each decoder layer's kernel calls as one launch of ticketed stages
    "kiln+chain": {"options": {"cuda_kernels": "on", "cuda_chain": True}},
    # ... and each later stage's programs prefetch their weights into L2 before they wait
    "kiln+chain-prefetch": {"options": {"cuda_kernels": "on", "cuda_chain": True,
                                        "cuda_chain_prefetch": True}},
}


# The GPU suite's cells in priority order (--cells gpu): the goal cells first (single-token
# decode b1 and prefill 8×512 in f16 and bf16), then the rest of the zoo.
GPU_CELLS = ["gpt2-decode:1:f16", "gpt2-prefill-512:8:f16", "gpt2-decode:1:bf16",
             "gpt2-prefill-512:8:bf16", "llama:1:f16", "llama:8:f16", "bert:8:f16", "mlp:1:f16",
             "resnet:1:f16", "mlp:8:f16", "resnet:8:f16", "bert:1:f16", "gpt2-decode:8:f16",
             "llama:1:bf16", "llama:8:bf16"]


# Max abs error allowed, relative to max(1, max|eager|). Looser than tests/compare.py for the
# 12-layer models: rounding compounds with depth in f16/bf16.
TOLERANCE = {"f32": 1e-4, "f16": 5e-2, "bf16": 1e-1}


TORCH_DTYPES = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}


IREE_ELEMENT = {"float32": "f32", "float16": "f16", "bfloat16": "bf16", "int64": "i64",
                "int32": "i32"}


# Timing plan: (warm-up calls, max timed calls, time budget per cell in s, min timed calls).
TIMING = {"full": (3, 50, 20.0, 5), "quick": (2, 10, 5.0, 3)}


GPU_TIMING = {"full": (10, 100, 3.0, 10), "quick": (5, 30, 1.0, 5)}


TIMEOUT_S = {"reference": 600, "prepare": 2400, "run": 1200, "params": 900}


# Harness self-test without a GPU: KILN_BENCH_FAKE_CUDA=1 runs the "cuda" flow on the CPU
# (artifacts compiled for cpu, torch on cpu, no CUDA memory or device-time measurements).
FAKE_CUDA = os.environ.get("KILN_BENCH_FAKE_CUDA") == "1"


def torch_device_for(device: str) -> str:
    return "cpu" if FAKE_CUDA else device


def is_kiln(system: str) -> bool:
    return system in KILN_SYSTEMS


def kiln_variant_suffix(system: str) -> str:
    """'' for kiln, '-kernels' for kiln+kernels: artifact file names."""
    return "" if system == "kiln" else "-" + re.sub(r"[^a-z0-9]+", "-", system.split("+", 1)[1])


def zoo_names(device: str | None = None) -> tuple:
    """The zoo's models; for the CPU suite's default list without the GPU-only ones."""
    from kiln.examples import zoo

    if device == "cpu":
        return tuple(m for m in zoo.MODEL_NAMES if m not in getattr(zoo, "GPU_ONLY", ()))
    return zoo.MODEL_NAMES


def log(message: str) -> None:
    print(f"[suite {time.strftime('%H:%M:%S')}] {message}", flush=True)

