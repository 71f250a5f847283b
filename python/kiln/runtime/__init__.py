"""Load a Kiln `.vmfb` and call it like the model: numpy in → numpy out, torch in → torch out.

The only package that imports `iree.runtime`; it needs neither torch-mlir nor IREE's compiler
(torch only when torch tensors are passed), so it runs on machines that carry just the runtime.
Two layers: `kiln.runtime.device` (IREE's device per kind, RuntimeOptions, DeviceTensor,
transfers and zero-copy imports) and `kiln.runtime.module` (load, KilnModule: the artifact's
signature, argument marshalling, guards, outputs), plus `kiln.runtime.files` (writing `.irpa`
archives and artifact pairs). The public names are re-exported here.
Inputs are checked against the signature Kiln embeds in the artifact (`kiln.signature`
reflection on `main`): a wrong count, shape, dtype or device raises ValueError naming the
argument. After a call, the index bounds checks the artifact computed (signature "guards",
kiln.guards) are read: an out-of-range index raises IndexError naming the op and the model's
line, and guard results are not returned. An artifact compiled with weights="external"
(reflection `kiln.parameters`) gets its IREE parameter archive (`.irpa`, by default beside the
`.vmfb`) added to the context first, after checking that it is the archive the artifact was
compiled with (kiln.archive.verify).

Inputs and outputs (docs/gpu.md, "Calling from Python"):
  - numpy arrays and torch tensors on the host are copied to the device for the call;
  - torch tensors already on the module's device (CUDA tensors for device="cuda", CPU tensors
    for device="cpu") are imported without a copy through DLPack; they must be contiguous,
    64-byte aligned and without a negative bit (ValueError otherwise; for CPU tensors a copy is
    made instead, as before); a tensor passed again reuses its import while its view is the same;
  - a `DeviceTensor` (an output kept on the device, `outputs="device"`) is passed as is, so a
    decode loop keeps its KV cache on the GPU.
  Outputs follow `outputs=` (of `load`, or per call): "auto" (the default: torch if any input is
  a torch tensor, on the GPU if one was a CUDA tensor; `DeviceTensor` if the inputs were
  device tensors; numpy otherwise), "numpy", "torch" (tensors on the module's device) or
  "device" (`DeviceTensor`, converted later with `.torch()` or `.numpy()`).
Results come back as the model returned them (kiln.outputs: the signature's "output_tree":
tuple, list, dict, named tuple, Python numbers, None); inputs the model updates in place are
updated in the caller's tensors or arrays ("mutated_inputs"), and inputs the artifact would
compute in place are passed as copies ("written_inputs"), so the caller sees what eager
PyTorch does. Artifacts without a tree return their tensors as a tuple (one: itself).
Calls are synchronous: the results are complete when a call returns, and torch's current
stream is synchronized before a call that reads CUDA tensors. Results go to torch without a
copy (DLPack export; `.torch()` shares the result's memory) since Kiln's CUDA flags turn off
IREE's stream-ordered allocations, whose buffers IREE cannot export (CUDA_RUNTIME_FLAGS).
How data moves (host transfers, uploads, the import cache, CUDA flags) is a `RuntimeOptions`
per module: `kiln.load(..., options=RuntimeOptions(...))`.
"""

from kiln.artifact import PARAMETER_SCOPE, PARAMETERS_KEY, SIGNATURE_KEY, parameters_path
from kiln.runtime.device import (ALIGNMENT, CUDA_RUNTIME_FLAGS, DEFAULT_OPTIONS, DRIVERS,
                                 HOST_TRANSFERS, HOST_UPLOADS, DeviceTensor, RuntimeOptions,
                                 importable_problem, parse_cuda_flags)
from kiln.runtime.device import _iree_runtime  # noqa: F401 (bench/gpu scripts use it)
from kiln.runtime.files import save_artifact, write_parameter_archive
from kiln.runtime.module import OUTPUT_MODES, ArgumentKind, KilnModule, load

__all__ = ["ALIGNMENT", "CUDA_RUNTIME_FLAGS", "DEFAULT_OPTIONS", "DRIVERS", "HOST_TRANSFERS",
           "HOST_UPLOADS", "OUTPUT_MODES", "PARAMETERS_KEY", "PARAMETER_SCOPE", "SIGNATURE_KEY",
           "ArgumentKind", "DeviceTensor", "KilnModule", "RuntimeOptions", "importable_problem",
           "load", "parameters_path", "parse_cuda_flags", "save_artifact",
           "write_parameter_archive"]
