"""The one table of tensor element types Kiln knows, and the lookups derived from it.

Each dtype has several names: the torch dialect's element type (`si64`, `ui8`, `i1`,
`complex<f32>`), the signless builtin element IREE sees after lowering (`i64`, `i8`), the name
the signature and numpy use (`int64`, `bfloat16`), the `torch.dtype`, and torch's ScalarType
code that aten ops take as a dtype integer (c10/core/ScalarType.h). Every other dtype map in
Kiln is derived from `DTYPES` so the names cannot drift apart.

Importing this module imports neither torch nor the compiler or runtime: the runtime and the
command line use it without torch; `DType.torch_dtype` imports torch on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np


@dataclass(frozen=True)
class DType:
    """One element type under all its names."""

    mlir: str  # torch dialect element type: f32, si64, ui8, i1, complex<f32>
    builtin: str  # signless builtin element type (IREE's): f32, i64, i8, i1, complex<f32>
    numpy: str  # numpy's (and the signature's) name: float32, int64, bool, bfloat16
    torch_name: str  # the attribute of the torch module: torch.float32, torch.int64
    scalar_type: int  # torch ScalarType code (aten ops' `dtype` integer)
    kind: str  # "float", "int", "bool" or "complex"

    @property
    def torch_dtype(self) -> Any:
        """The `torch.dtype` (imports torch)."""
        import torch

        return getattr(torch, self.torch_name)

    @property
    def is_float(self) -> bool:
        return self.kind == "float"

    @property
    def numpy_native(self) -> bool:
        """Whether numpy has this dtype built in (bfloat16 needs ml_dtypes)."""
        return self.numpy != "bfloat16"


# The order is that of compiler.TORCH_TO_NUMPY_DTYPE before this table existed: its values,
# joined in this order, are the "supported dtypes" of the compiler's error message.
DTYPES: tuple[DType, ...] = (
    DType("f16", "f16", "float16", "float16", 5, "float"),
    DType("bf16", "bf16", "bfloat16", "bfloat16", 15, "float"),
    DType("f32", "f32", "float32", "float32", 6, "float"),
    DType("f64", "f64", "float64", "float64", 7, "float"),
    DType("si64", "i64", "int64", "int64", 4, "int"),
    DType("si32", "i32", "int32", "int32", 3, "int"),
    DType("si16", "i16", "int16", "int16", 2, "int"),
    DType("si8", "i8", "int8", "int8", 1, "int"),
    DType("ui8", "i8", "uint8", "uint8", 0, "int"),
    DType("i1", "i1", "bool", "bool", 11, "bool"),
    DType("complex<f32>", "complex<f32>", "complex64", "complex64", 9, "complex"),
    DType("complex<f64>", "complex<f64>", "complex128", "complex128", 10, "complex"),
)

BY_MLIR: dict[str, DType] = {d.mlir: d for d in DTYPES}
BY_NUMPY: dict[str, DType] = {d.numpy: d for d in DTYPES}
# A signless builtin name (i8, i64) read as an element type means the signed dtype, as torch's
# own signless integers do; ui8 keeps its torch-dialect name.
_BY_BUILTIN: dict[str, DType] = {d.builtin: d for d in DTYPES if d.mlir != "ui8"}

# Element types in the torch dialect → numpy names, every dtype.
MLIR_TO_NUMPY: dict[str, str] = {d.mlir: d.numpy for d in DTYPES}
FLOAT_ELEMENTS: tuple[str, ...] = tuple(d.mlir for d in DTYPES if d.is_float)


def by_element(name: str) -> Optional[DType]:
    """The dtype of an element type written in the torch dialect (si64, ui8, complex<f32>) or
    as a signless builtin (i64, i8: the signed dtype); None when Kiln has no such dtype."""
    return BY_MLIR.get(name) or _BY_BUILTIN.get(name)


def by_torch(dtype: Any) -> Optional[DType]:
    """The entry of a `torch.dtype`, or None (imports torch)."""
    for entry in DTYPES:
        if entry.torch_dtype == dtype:
            return entry
    return None


def bfloat16_numpy() -> np.dtype:
    """numpy's bfloat16 (ml_dtypes, imported on first use: numpy has none of its own)."""
    import ml_dtypes

    return np.dtype(ml_dtypes.bfloat16)


def numpy_dtype(name: str) -> np.dtype:
    """The numpy dtype of a signature's dtype name ("float32", "bfloat16", ...)."""
    return bfloat16_numpy() if name == "bfloat16" else np.dtype(name)


def numpy_name(dtype: Any) -> str:
    """The signature's name of a numpy dtype ("float32", "bfloat16", ...)."""
    return "bfloat16" if dtype == bfloat16_numpy() else str(np.dtype(dtype))
