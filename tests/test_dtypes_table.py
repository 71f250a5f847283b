"""kiln.dtypes is the one dtype table: each map derived from it keeps exactly the entries it had
when it was written by hand (copied literally below), and every dtype's names round-trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kiln import cli, compiler, cuda_kernels, device_state, dtypes, fx_constants, runtime, torch_ir
from kiln.kernels import execute
from kiln.passes import matching

# The hand-written maps as they were before kiln.dtypes (same keys, same values).
OLD_TORCH_TO_NUMPY_DTYPE = {"f16": "float16", "bf16": "bfloat16", "f32": "float32",
                            "f64": "float64", "si64": "int64", "si32": "int32", "si16": "int16",
                            "si8": "int8", "ui8": "uint8", "i1": "bool",
                            "complex<f32>": "complex64", "complex<f64>": "complex128"}
OLD_TORCH_TO_MLIR_DTYPE = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16",
                           torch.float64: "f64", torch.int64: "si64", torch.int32: "si32",
                           torch.int16: "si16", torch.int8: "si8", torch.uint8: "ui8",
                           torch.bool: "i1"}
OLD_TORCH_DTYPE_CODE = {"ui8": 0, "si8": 1, "si16": 2, "si32": 3, "si64": 4, "f16": 5, "f32": 6,
                        "f64": 7, "i1": 11, "bf16": 15}
OLD_FLOAT_DTYPES = ("f16", "bf16", "f32", "f64")
OLD_BUILTIN_ELEMENT = {"f16": "f16", "bf16": "bf16", "f32": "f32", "f64": "f64", "si64": "i64",
                       "si32": "i32", "si16": "i16", "si8": "i8", "ui8": "i8", "i1": "i1"}
# + i64 since the decode attention kernel reads its KV cache slot (an int64 [1] input), + i32
# since split kernels count their arrivals at int32 semaphores
OLD_MLIR_ELEMENT = {"f16": "f16", "bf16": "bf16", "f32": "f32", "i8": "i8", "i32": "i32",
                    "i64": "i64"}
OLD_INPUT_DTYPES = {"f16": np.float16, "f32": np.float32, "f64": np.float64, "i1": np.bool_,
                    "i8": np.int8, "i16": np.int16, "i32": np.int32, "i64": np.int64,
                    "si64": np.int64, "si32": np.int32, "ui8": np.uint8, "bf16": "bfloat16"}
OLD_NUMPY_DTYPES = {"f16": "float16", "f32": "float32", "f64": "float64", "i1": "bool",
                    "si64": "int64", "si32": "int32", "si16": "int16", "si8": "int8",
                    "ui8": "uint8"}
OLD_KERNEL_TORCH_DTYPES = {"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32,
                           "i8": torch.int8, "i32": torch.int32, "i64": torch.int64}


def test_derived_maps_keep_their_old_entries():
    assert compiler.TORCH_TO_NUMPY_DTYPE == OLD_TORCH_TO_NUMPY_DTYPE
    # the compiler's error message lists the supported dtypes in this order
    assert list(compiler.TORCH_TO_NUMPY_DTYPE.values()) == list(OLD_TORCH_TO_NUMPY_DTYPE.values())
    assert fx_constants.TORCH_TO_MLIR_DTYPE == OLD_TORCH_TO_MLIR_DTYPE
    assert torch_ir.TORCH_DTYPE_CODE == OLD_TORCH_DTYPE_CODE
    assert torch_ir.FLOAT_DTYPES == OLD_FLOAT_DTYPES
    assert device_state._BUILTIN_ELEMENT == OLD_BUILTIN_ELEMENT
    assert cuda_kernels.MLIR_ELEMENT == OLD_MLIR_ELEMENT
    assert matching.NUMPY_DTYPES == OLD_NUMPY_DTYPES
    assert execute.TORCH_DTYPES == OLD_KERNEL_TORCH_DTYPES


def test_input_spec_dtypes_keep_their_old_entries():
    """The command line's spec names (f32, si64, i8, bf16, ...) and the numpy dtype each means."""
    assert list(cli.INPUT_DTYPES) == list(OLD_INPUT_DTYPES)
    for spec, old in OLD_INPUT_DTYPES.items():
        want = dtypes.bfloat16_numpy() if old == "bfloat16" else np.dtype(old)
        assert cli._input_dtype(spec) == want, spec
    with pytest.raises(cli.UsageError, match="si8"):  # never a spec name: still refused
        cli.parse_input_spec("2xsi8", np.random.default_rng(0), 4)


@torch.jit.script
def _scalar_type_code(x: torch.Tensor) -> int:
    """torch's own ScalarType code of x's dtype (a dtype is an int in TorchScript)."""
    return x.dtype


@pytest.mark.parametrize("entry", dtypes.DTYPES, ids=lambda d: d.mlir)
def test_every_dtype_round_trips_torch_mlir_numpy(entry):
    assert dtypes.by_torch(entry.torch_dtype) is entry
    assert dtypes.by_element(entry.mlir) is entry
    assert dtypes.BY_NUMPY[entry.numpy] is entry
    numpy_dtype = dtypes.numpy_dtype(entry.numpy)
    assert dtypes.numpy_name(numpy_dtype) == entry.numpy
    # torch agrees: a tensor of the dtype reaches numpy as that numpy dtype, same width, same
    # kind, and its ScalarType code is the table's
    tensor = torch.zeros(2, dtype=entry.torch_dtype)
    assert runtime.device._torch_to_numpy(tensor).dtype == numpy_dtype
    assert tensor.element_size() == numpy_dtype.itemsize
    assert entry.is_float == tensor.is_floating_point()
    assert (entry.kind == "complex") == tensor.is_complex()
    assert _scalar_type_code(tensor) == entry.scalar_type


def test_signless_builtin_names_mean_the_signed_dtype():
    assert dtypes.by_element("i8").mlir == "si8"
    assert dtypes.by_element("i64").mlir == "si64"
    assert dtypes.by_element("ui8").numpy == "uint8"
    assert dtypes.by_element("i3") is None and dtypes.by_torch(torch.float8_e4m3fn) is None
