"""The one place that imports MLIR bindings and IREE's compiler.

Kiln lives in two MLIR worlds: torch-mlir's build (torch + kiln dialects, where Kiln's passes
run) and IREE's compiler (a separate MLIR build). They never exchange Python objects, only IR
text. Every other module imports bindings from here, so a pin bump touches one file.

`iree.runtime` is imported only by `kiln.runtime`: a deployment machine (the GPU machine here)
carries the IREE runtime alone, without torch-mlir or IREE's compiler.
"""

from torch_mlir import ir, passmanager, rewrite  # noqa: F401
from torch_mlir.dialects import ext as dialect_ext  # noqa: F401
from torch_mlir.dialects import func as func_d  # noqa: F401
from torch_mlir.dialects import irdl as irdl_d  # noqa: F401
from torch_mlir.dialects import torch as torch_d  # noqa: F401
from torch_mlir.extras.fx_importer import FxImporter, FxImporterHooks  # noqa: F401
from torch_mlir.extras.fx_decomp_util import (  # noqa: F401
    get_decomposition_table as torch_mlir_decompositions)


def iree_compiler():
    """IREE's compiler module, imported lazily: it is large and only needed to make a .vmfb."""
    import iree.compiler as iree_compiler_module

    return iree_compiler_module


def iree_compile_tool() -> str:
    """Path of the `iree-compile` binary that ships in iree-base-compiler."""
    from iree.compiler.tools import binaries

    return binaries.find_tool("iree-compile")
