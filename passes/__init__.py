"""Kiln's pass registry: flag name -> lazy loader, no import side effects.

`kiln-opt --list-passes` prints it; the Python API and `kiln-opt` build pipelines from it.
Pipelines (`kiln-<phase>-pipeline`) are in `kiln.pipelines`.
"""

from __future__ import annotations

import importlib
from typing import Callable

from kiln.passes.base import KilnPass, PassError, Rewrite  # noqa: F401


def _loader(module: str, cls: str) -> Callable[[], type[KilnPass]]:
    return lambda: getattr(importlib.import_module(module), cls)


PASS_REGISTRY: dict[str, Callable[[], type[KilnPass]]] = dict(sorted({
    "convert-kiln-to-torch": _loader("kiln.passes.lowering.convert_kiln_to_torch",
                                     "ConvertKilnToTorch"),
    "kiln-chain-cuda-kernels": _loader("kiln.passes.lowering.kiln_chain_cuda_kernels",
                                       "ChainCudaKernels"),
    "kiln-drop-identities": _loader("kiln.passes.raising.kiln_drop_identities",
                                    "DropIdentities"),
    "kiln-fuse-residual-norms": _loader("kiln.passes.raising.kiln_fuse_residual_norms",
                                        "FuseResidualNorms"),
    "kiln-hoist-head-split": _loader("kiln.passes.raising.kiln_hoist_head_split",
                                     "HoistHeadSplit"),
    "kiln-merge-linears": _loader("kiln.passes.raising.kiln_merge_linears", "MergeLinears"),
    "kiln-merge-ropes": _loader("kiln.passes.raising.kiln_merge_ropes", "MergeRopes"),
    "kiln-raise-activations": _loader("kiln.passes.raising.kiln_raise_activations",
                                      "RaiseActivations"),
    "kiln-raise-attention": _loader("kiln.passes.raising.kiln_raise_attention",
                                    "RaiseAttention"),
    "kiln-raise-norms": _loader("kiln.passes.raising.kiln_raise_norms", "RaiseNorms"),
    "kiln-raise-rope": _loader("kiln.passes.raising.kiln_raise_rope", "RaiseRope"),
    "kiln-raise-swiglu": _loader("kiln.passes.raising.kiln_raise_swiglu", "RaiseSwiglu"),
    "kiln-raise-linear": _loader("kiln.passes.raising.kiln_raise_linear", "RaiseLinear"),
    "kiln-pointwise-conv-to-matmul": _loader("kiln.passes.lowering.kiln_pointwise_conv_to_matmul",
                                            "PointwiseConvToMatmul"),
    "kiln-select-cpu-kernels": _loader("kiln.passes.lowering.kiln_select_cpu_kernels",
                                       "SelectCpuKernels"),
    "kiln-select-cuda-kernels": _loader("kiln.passes.lowering.kiln_select_cuda_kernels",
                                        "SelectCudaKernels"),
}.items()))


def get_pass_class(name: str) -> type[KilnPass]:
    try:
        return PASS_REGISTRY[name]()
    except KeyError:
        raise PassError(f"unknown kiln pass '{name}'; known: {', '.join(PASS_REGISTRY)}") from None


def create_pass(name: str, options: dict[str, str] | None = None) -> KilnPass:
    return get_pass_class(name).from_options(options or {})
