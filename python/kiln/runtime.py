"""Load a Kiln `.vmfb` and call it like the model: numpy in → numpy out, torch in → torch out.

The only module that imports `iree.runtime`; it needs neither torch-mlir nor IREE's compiler
(torch only when torch tensors are passed), so it runs on machines that carry just the runtime.
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

from __future__ import annotations

import copy
import enum
import json
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from kiln.archive import ArchiveEntry, verify
from kiln.artifact import (NONE_OUT_OF_BOUNDS, PARAMETER_SCOPE, PARAMETERS_KEY,  # noqa: F401
                           SIGNATURE_KEY, GuardSpec, Signature, TensorSpec, parameters_path)
from kiln.dtypes import bfloat16_numpy, numpy_dtype, numpy_name
from kiln.errors import KilnLoadError
from kiln.outputs import build_tree

DRIVERS = {"cpu": "local-task", "cuda": "cuda"}
# Graph command buffers, no tracing: launch-bound models lose most time to per-dispatch overhead.
# No stream-ordered (async) allocations: IREE's CUDA allocator cannot export buffers of that
# pool through DLPack ("CUDA buffer type is not supported for export"), and results allocated
# with cuMemAlloc can: torch gets them without a copy (docs/gpu.md has the measured trade-off).
# Parsed once per process, before the CUDA driver is created (IREE reads them then): the
# default of RuntimeOptions.cuda_flags, which the first CUDA load of a process applies.
CUDA_RUNTIME_FLAGS = ("--cuda_use_streams=false", "--cuda_tracing=0",
                      "--cuda_async_allocations=false")
# The CUDA flags this process parsed (parse_cuda_flags), None before the first CUDA load.
_parsed_cuda_flags: Optional[tuple[str, ...]] = None
OUTPUT_MODES = ("auto", "numpy", "torch", "device")
# What outputs="auto" gives after torch tensors on the host: torch tensors on the host (for a
# CUDA module, copied back from the device; a mode of its own, not one a caller can ask for).
_TORCH_ON_HOST = "torch-host"
# IREE's generated code assumes 64-byte aligned bindings; imported tensors must honour it.
ALIGNMENT = 64
HOST_TRANSFERS = ("auto", "staging", "iree", "torch")
HOST_UPLOADS = ("auto", "iree", "torch")


@dataclass(frozen=True)
class RuntimeOptions:
    """How a loaded module moves data (`kiln.load(..., options=RuntimeOptions(...))`); the
    defaults are the measured choices (docs/gpu.md). DeviceTensors keep the options of the
    module that made them."""

    # How results reach the host on a device whose memory the host cannot map (CUDA):
    # "staging": one reused pinned buffer per device (a queue copy, then a host copy);
    # "iree": iree.runtime's DeviceArray.to_host (registers a fresh numpy array each call);
    # "torch": DLPack export to a torch CUDA tensor, then .cpu() (the fastest where results
    # export); "auto": "torch" when torch is imported and results export, else "staging".
    host_transfer: str = "auto"
    # How host inputs (numpy, torch CPU) reach such a device: "iree" (allocate_buffer_copy),
    # "torch" (torch.from_numpy(...).cuda(), then a DLPack import) or "auto" ("torch" when
    # torch is already imported; the runtime never imports torch for numpy users).
    host_upload: str = "auto"
    # Reuse the DLPack import of a torch tensor passed again to the same input of an entry
    # point (same object, same view of the same memory: `_import_layout`): the view aliases its
    # memory, so new contents are seen.
    cache_imports: bool = True
    # IREE's CUDA runtime flags. IREE reads them once per process, when the first CUDA
    # device is created: None takes what this process parsed (CUDA_RUNTIME_FLAGS if nothing
    # yet); flags other than those already parsed are refused (KilnLoadError).
    cuda_flags: Optional[tuple[str, ...]] = None

    def __post_init__(self):
        if self.host_transfer not in HOST_TRANSFERS:
            raise ValueError(f"RuntimeOptions: host_transfer={self.host_transfer!r}; use one of "
                             f"{', '.join(HOST_TRANSFERS)}")
        if self.host_upload not in HOST_UPLOADS:
            raise ValueError(f"RuntimeOptions: host_upload={self.host_upload!r}; use one of "
                             f"{', '.join(HOST_UPLOADS)}")
        if self.cuda_flags is not None:
            if isinstance(self.cuda_flags, str):
                raise ValueError("RuntimeOptions: cuda_flags takes a sequence of flags, e.g. "
                                 "('--cuda_use_streams=false',), not one string")
            object.__setattr__(self, "cuda_flags", tuple(self.cuda_flags))


DEFAULT_OPTIONS = RuntimeOptions()

_DLPACK_CPU, _DLPACK_CUDA = 1, 2


def _iree_runtime():
    import iree.runtime as iree_runtime_module

    return iree_runtime_module


def _read_artifact(source: Union[bytes, bytearray, memoryview, str, Path]) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"no Kiln artifact at {path}")
    return path.read_bytes()


# Short names for the runtime's many uses (kiln.dtypes holds the dtype names).
_bfloat16 = bfloat16_numpy
_numpy_dtype = numpy_dtype


def _is_torch(value: Any) -> bool:
    return type(value).__module__.startswith("torch")


class ArgumentKind(enum.Flag):
    """What a call's arguments were, or-ed over all of them: whether torch's stream must be
    synchronized first (CUDA) and what outputs="auto" returns (`auto_outputs`)."""

    HOST = 0  # numpy arrays, Python numbers
    TORCH = enum.auto()  # torch tensors (on the host, or with CUDA on the GPU)
    CUDA = enum.auto()  # torch tensors on the GPU
    DEVICE_TENSOR = enum.auto()  # kiln DeviceTensors

    def auto_outputs(self) -> str:
        """outputs="auto": like the inputs: torch on the GPU after CUDA tensors, torch on the
        host after host tensors, DeviceTensors after DeviceTensors, else numpy."""
        if ArgumentKind.CUDA in self:
            return "torch"
        if ArgumentKind.TORCH in self:
            return _TORCH_ON_HOST
        if ArgumentKind.DEVICE_TENSOR in self:
            return "device"
        return "numpy"


_TORCH_ON_GPU = ArgumentKind.TORCH | ArgumentKind.CUDA


def _check_mode(outputs: str) -> str:
    if outputs not in OUTPUT_MODES:
        raise ValueError(f"unknown outputs={outputs!r}; use one of "
                         f"{', '.join(repr(m) for m in OUTPUT_MODES)}")
    return outputs


class _Device:
    """The HAL device of one kind ("cpu", "cuda") in this process, and what moves data on it.

    IREE creates one device per driver and process (iree.runtime caches it), so every module
    loaded for a kind shares it: a DeviceTensor of one module can be passed to another."""

    def __init__(self, kind: str, hal):
        rt = _iree_runtime()
        self.kind = kind
        self.hal = hal
        self.allocator = hal.allocator
        self.torch_type = "cuda" if kind == "cuda" else "cpu"
        self.dlpack_device = (_DLPACK_CUDA, 0) if kind == "cuda" else (_DLPACK_CPU, 0)
        # Whether results can be exported through DLPack (the CUDA allocator refuses buffers
        # from stream-ordered pools); learnt on the first try.
        self.can_export: Optional[bool] = None
        self._rt = rt
        self._host_visible = int(rt.MemoryType.HOST_VISIBLE)
        self._mapping = int(rt.BufferUsage.MAPPING_SCOPED)
        self._lock = threading.Lock()
        self._semaphore = None
        self._semaphore_value = 0
        self._staging = None  # (HalBuffer, MappedMemory) of a pinned host buffer, reused
        self._staging_size = 0

    # -- device → host -------------------------------------------------------------------
    def mappable(self, view) -> bool:
        buffer = view.get_buffer()
        return (buffer.memory_type() & self._host_visible) == self._host_visible and \
            (buffer.allowed_usage() & self._mapping) == self._mapping

    def to_numpy(self, view, host_transfer: str = "auto") -> np.ndarray:
        """The contents of `view` as a numpy array (raw element type; bf16 comes as bf16)."""
        rt = self._rt
        dtype = rt.HalElementType.map_to_dtype(view.element_type)
        shape = tuple(view.shape)
        if self.mappable(view):  # host memory (CPU device): a view of the result, no copy
            return view.map().asarray(list(shape), np.dtype(dtype))
        strategy = host_transfer
        if strategy == "auto":
            strategy = "torch" if self.can_export is not False and "torch" in sys.modules \
                else "staging"
        if strategy == "torch":
            return _torch_to_numpy(self.to_torch(view, _dtype_name(view.element_type)).cpu())
        if strategy == "iree":
            return rt.DeviceArray(self.hal, view, implicit_host_transfer=True).to_host()
        return self._download(view.get_buffer(), shape, dtype)

    def _download(self, buffer, shape, dtype) -> np.ndarray:
        rt = self._rt
        size = buffer.byte_length()
        with self._lock:
            if size > self._staging_size:
                staging = self.allocator.allocate_buffer(
                    memory_type=int(rt.MemoryType.HOST_LOCAL) | int(rt.MemoryType.DEVICE_VISIBLE),
                    allowed_usage=int(rt.BufferUsage.TRANSFER_TARGET)
                    | int(rt.BufferUsage.MAPPING_SCOPED) | int(rt.BufferUsage.MAPPING_PERSISTENT),
                    allocation_size=max(size, 4096))
                self._staging = (staging, staging.map())
                self._staging_size = max(size, 4096)
            staging, mapped = self._staging
            self._copy(buffer, staging)
            flat = mapped.asarray([self._staging_size], np.dtype(np.uint8))
            return flat[:size].copy().view(dtype).reshape(shape)

    def _copy(self, source, target) -> None:
        """Queue a device copy of `source` into `target` (from offset 0) and wait for it."""
        rt = self._rt
        if self._semaphore is None:
            self._semaphore = self.hal.create_semaphore(0)
        value = self._semaphore_value
        self._semaphore_value = value + 1
        self.hal.queue_copy(source, target,
                            wait_semaphores=rt.HalFence.create_at(self._semaphore, value),
                            signal_semaphores=rt.HalFence.create_at(self._semaphore, value + 1))
        rt.HalFence.create_at(self._semaphore, value + 1).wait()

    # -- device → torch ------------------------------------------------------------------
    def capsule(self, view):
        """A DLPack capsule sharing `view`'s memory, or None where IREE cannot export it (the
        CUDA allocator refuses buffers of the stream-ordered pool, where results are allocated
        unless --cuda_async_allocations=false); remembered after the first refusal."""
        if self.can_export is not False:
            try:
                capsule = self.hal.create_dlpack_capsule(view, *self.dlpack_device)
                self.can_export = True
                return capsule
            except Exception:  # noqa: BLE001 - IREE raises RuntimeError/ValueError variants
                self.can_export = False
        return None

    def to_torch(self, view, dtype: str):
        """`view` as a torch tensor of `dtype` on this device: zero-copy where IREE can export
        the buffer (shared memory), else after one device-to-device copy into a buffer that
        can be exported."""
        import torch.utils.dlpack

        capsule = self.capsule(view)
        if capsule is None:
            capsule = self._exportable_copy(view)
        tensor = torch.utils.dlpack.from_dlpack(capsule)
        want = _torch_dtype(dtype)
        if tensor.dtype != want:  # e.g. i1 results that come back as i8
            tensor = tensor.view(want) if tensor.element_size() == want.itemsize else \
                tensor.to(want)
        return tensor

    def duplicate(self, view):
        """A device copy of `view` in a fresh buffer straight from the allocator (not the
        queue's stream-ordered pool, so it exports)."""
        rt = self._rt
        source = view.get_buffer()
        target = self.allocator.allocate_buffer(
            memory_type=rt.MemoryType.DEVICE_LOCAL, allowed_usage=rt.BufferUsage.DEFAULT,
            allocation_size=max(source.byte_length(), 1))
        with self._lock:
            self._copy(source, target)
        return rt.HalBufferView(target, list(view.shape), view.element_type)

    def _exportable_copy(self, view):
        return self.hal.create_dlpack_capsule(self.duplicate(view), *self.dlpack_device)

    # -- host → device -------------------------------------------------------------------
    def upload(self, array: np.ndarray, host_upload: str = "auto"):
        rt = self._rt
        if self.kind == "cuda" and (host_upload == "torch" or host_upload == "auto" and
                                    "torch" in sys.modules) \
                and array.dtype != _bfloat16() and array.flags.writeable:
            import torch
            import torch.utils.dlpack

            tensor = torch.from_numpy(array).to(self.torch_type)
            torch.cuda.current_stream(tensor.device).synchronize()
            return self.hal.from_dlpack_capsule(torch.utils.dlpack.to_dlpack(tensor))
        element_type = _element_type(array.dtype)
        return self.allocator.allocate_buffer_copy(
            memory_type=rt.MemoryType.DEVICE_LOCAL, allowed_usage=rt.BufferUsage.DEFAULT,
            device=self.hal, buffer=array, element_type=element_type)


_DEVICES: dict = {}


def _device(kind: str, hal) -> _Device:
    found = _DEVICES.get(kind)
    if found is None or found.hal is not hal:
        found = _DEVICES[kind] = _Device(kind, hal)
    return found


def _element_type(dtype: np.dtype):
    rt = _iree_runtime()
    if dtype == _bfloat16():
        return rt.HalElementType.BFLOAT_16
    from iree.runtime.dtypes import map_dtype_to_hal_element_type

    return map_dtype_to_hal_element_type(dtype)


_TORCH_DTYPES: dict = {}


def _torch_dtype(name: str):
    import torch

    return getattr(torch, name)


def _torch_dtype_name(dtype) -> str:
    name = _TORCH_DTYPES.get(dtype)
    if name is None:
        name = _TORCH_DTYPES[dtype] = str(dtype).replace("torch.", "")
    return name


def _torch_to_numpy(tensor) -> np.ndarray:
    import torch

    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(_bfloat16())
    return tensor.numpy()


def _numpy_to_torch(array: np.ndarray):
    import torch

    if array.dtype == _bfloat16():
        return torch.from_numpy(np.ascontiguousarray(array).view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(np.ascontiguousarray(array))


class DeviceTensor:
    """An input or output kept in the memory of a loaded module's device.

    Made by calls with `outputs="device"` (or `KilnModule.to_device`); pass it straight to the
    next call (no copy) or convert it: `.torch()` (a tensor on the same device, sharing memory
    where the runtime can export it through DLPack, else a device copy), `.numpy()` (a host
    copy on CUDA; on the CPU driver a view of the result). `torch.from_dlpack(t)` and
    `np.asarray(t)` work too. `shape` is a tuple, `dtype` the name ("float16", "int64", ...).
    Inputs of a call are only read: a DeviceTensor can be passed to any number of calls."""

    __slots__ = ("_view", "_device", "_options", "shape", "dtype")

    def __init__(self, view, device: _Device, dtype: str,
                 options: RuntimeOptions = DEFAULT_OPTIONS):
        self._view = view
        self._device = device
        self._options = options
        self.shape = tuple(view.shape)
        self.dtype = dtype

    @property
    def device(self) -> str:
        return self._device.kind

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return self._view.byte_length

    def numpy(self) -> np.ndarray:
        array = self._device.to_numpy(self._view, self._options.host_transfer)
        want = _numpy_dtype(self.dtype)
        if array.dtype != want:
            array = array.view(want) if array.dtype.itemsize == want.itemsize else \
                array.astype(want)
        return array

    def torch(self):
        """A torch tensor on this tensor's device (CUDA tensors for device "cuda")."""
        return self._device.to_torch(self._view, self.dtype)

    def __array__(self, dtype=None, copy=None):
        array = self.numpy()
        return array if dtype is None else array.astype(dtype)

    def __dlpack__(self, stream=None, **kwargs):
        # Results are complete when a call returns (calls are synchronous): no stream to wait on.
        capsule = self._device.capsule(self._view)
        return capsule if capsule is not None else self._device._exportable_copy(self._view)

    def __dlpack_device__(self):
        return self._device.dlpack_device

    def __repr__(self) -> str:
        return f"DeviceTensor(shape={_shape_text(self.shape)}, dtype={self.dtype}, " \
            f"device={self.device!r})"


class _EntryPoint:
    """One function of the artifact: its VM function and its signature, read once (`signature`:
    the JSON object, as `KilnModule.signature` shows it)."""

    __slots__ = ("name", "vm_function", "signature", "inputs", "output_dtypes", "result_count",
                 "imports", "guards", "user_outputs", "mutations", "dropped", "output_tree",
                 "written")

    def __init__(self, name: str, vm_function, signature: Optional[Signature]):
        self.name = name
        self.vm_function = vm_function
        self.signature = None if signature is None else signature.to_dict()
        self.inputs = None
        self.output_dtypes: Sequence[Optional[str]] = ()
        self.result_count = 1
        # input index → (tensor, _import_layout(tensor), view, kind) of the last torch tensor
        # imported there
        self.imports: dict = {}
        # Index bounds checks the artifact computes (kiln.guards), results after the user's;
        # the runtime raises IndexError for a set one and returns the user's results only
        self.guards: Sequence[GuardSpec] = ()
        self.user_outputs: Optional[list[int]] = None  # result indices returned; None: all
        # (result index, input index or None) of in-place input updates (kiln.outputs); those
        # results are copied into the caller's inputs and not returned
        self.mutations: list = []
        self.dropped: frozenset = frozenset()
        self.output_tree: Optional[dict] = None
        # inputs the artifact may compute in place (kiln.outputs.written_inputs): passed as
        # copies, so the caller's tensors keep their values as in eager PyTorch
        self.written: frozenset = frozenset()
        if signature is not None:
            self.written = frozenset(signature.written_inputs or ())
            self.mutations = [(m["output"], m["input"])
                              for m in signature.mutated_inputs or ()
                              if m["output"] is not None]
            self.dropped = frozenset(output for output, _ in self.mutations)
            self.output_tree = signature.output_tree
            self.inputs = [_InputSpec(i, spec) for i, spec in enumerate(signature.inputs)]
            self.output_dtypes = [o.dtype for o in signature.outputs]
            self.result_count = max(1, len(signature.outputs))
            self.guards = signature.guards or ()
            if self.guards:
                flags = {g.output for g in self.guards}
                self.user_outputs = [i for i in range(len(signature.outputs))
                                     if i not in flags]

    def check_guards(self, read) -> None:
        """IndexError for the first guard that is set; `read(i)` gives result i as a numpy
        array: [the largest out-of-bounds index (int64's minimum: none), the dim's size]."""
        for guard in self.guards:
            index, size = (int(v) for v in read(guard.output))
            if index != NONE_OUT_OF_BOUNDS:
                raise IndexError(
                    f"{guard.op} at {guard.source}: index {index} is out of bounds for "
                    f"dimension {guard.dim} with size {size}; {guard.message}")


class _InputSpec:
    __slots__ = ("label", "dtype", "numpy_dtype", "shape", "bounds", "spec")

    def __init__(self, index: int, spec: TensorSpec):
        self.spec = spec
        self.label = f"input '{spec.name}' (#{index})"
        self.dtype = spec.dtype
        self.numpy_dtype = _numpy_dtype(spec.dtype)
        self.shape = spec.shape
        self.bounds = spec.bounds or ()

    def check_shape(self, shape: Sequence[int]) -> None:
        want = self.shape
        if len(shape) != len(want) or any(w is not None and w != g for w, g in zip(want, shape)):
            raise ValueError(f"{self.label}: expected shape {_shape_text(want)}, got "
                             f"{_shape_text(shape)}")
        for axis, (bounds, got) in enumerate(zip(self.bounds, shape)):
            if bounds is not None and not (bounds[0] <= got and (bounds[1] is None or
                                                                 got <= bounds[1])):
                raise ValueError(f"{self.label}: dim {axis} is {got}, outside the compiled range "
                                 f"[{bounds[0]}, {'∞' if bounds[1] is None else bounds[1]}]")

    def check_dtype(self, got: str) -> None:
        if got != self.dtype:
            raise ValueError(f"{self.label}: expected dtype {self.dtype}, got {got}")


class KilnModule:
    """A loaded artifact; call it with the exported signature's inputs.

    `outputs` ("auto", "numpy", "torch", "device") says what calls return (module docstring);
    a call may override it: `run(*inputs, outputs="device")`."""

    def __init__(self, vmfb: bytes, device: str = "cpu", function: Optional[str] = None,
                 parameters: Union[str, Path, None] = None, outputs: str = "auto",
                 verify_parameters: bool = True, options: Optional[RuntimeOptions] = None):
        if device not in DRIVERS:
            raise ValueError(f"unknown device {device!r}; use one of {', '.join(DRIVERS)}")
        if options is not None and not isinstance(options, RuntimeOptions):
            raise TypeError(f"options: expected kiln.runtime.RuntimeOptions, got "
                            f"{type(options).__name__}")
        self.outputs = _check_mode(outputs)
        # How this module moves data; may be replaced (dataclasses.replace) between calls.
        self.options = options or DEFAULT_OPTIONS
        rt = _iree_runtime()
        self.device_kind = device
        if device == "cuda":
            parse_cuda_flags(self.options.cuda_flags)
        try:
            config = rt.Config(DRIVERS[device])
        except Exception as error:
            raise KilnLoadError(f"IREE runtime driver '{DRIVERS[device]}' for device "
                                f"'{device}' is not available here: {error}") from error
        self._context = rt.SystemContext(config=config)
        try:
            vm_module = rt.VmModule.copy_buffer(self._context.instance, vmfb)
        except Exception as error:
            raise KilnLoadError(
                f"not a loadable IREE .vmfb ({len(vmfb)} bytes; truncated, corrupt or another "
                f"kind of file): {error}") from error
        functions = {name: vm_module.lookup_function(name) for name in vm_module.function_names
                     if not name.startswith("__") and "$" not in name}
        reflections = {name: dict(f.reflection) for name, f in functions.items()}
        # Entry points: functions Kiln compiled (with a signature); any function otherwise.
        self.entry_points = [n for n, r in reflections.items() if SIGNATURE_KEY in r] or \
            list(reflections)
        if function is None:
            function = "main" if "main" in reflections else \
                self.entry_points[0] if len(self.entry_points) == 1 else None
        if function is not None and function not in reflections:
            raise KilnLoadError(f"the artifact has no function '{function}' (it has "
                                f"{', '.join(self.entry_points)})")
        reflection = {k: v for r in reflections.values() for k, v in r.items()
                      if k != SIGNATURE_KEY}
        self._entries = {n: _EntryPoint(n, f, Signature.from_json(reflections[n][SIGNATURE_KEY])
                                        if SIGNATURE_KEY in reflections[n] else None)
                         for n, f in functions.items()}
        # The parameters module must be in the context before the module that imports it.
        self.parameters_file = self._add_parameters(rt, reflection, parameters,
                                                    verify_parameters)
        try:
            self._context.add_vm_module(vm_module)
        except Exception as error:
            if self.parameters_file is not None:
                raise KilnLoadError(
                    f"the artifact could not start with the parameters in "
                    f"{self.parameters_file} (an archive from another compile?) on device "
                    f"'{device}': {error}") from error
            raise KilnLoadError(f"the artifact cannot run on device '{device}' (was it compiled "
                                f"for this target?): {error}") from error
        self._vm_context = self._context.vm_context
        self._device = _device(device, config.device)
        self._list_type = rt.VmVariantList
        self._view_type = rt.HalBufferView
        self._select(function)

    def _select(self, function: Optional[str]) -> None:
        self.function_name = function
        self._entry: Optional[_EntryPoint] = self._entries[function] if function else None
        self.signature: Optional[dict] = self._entry.signature if self._entry else None

    def __getitem__(self, name: str) -> "KilnModule":
        """The entry point `name` of a multi-function artifact (same loaded context)."""
        if name not in self.entry_points:
            raise KeyError(f"no entry point '{name}'; this artifact has "
                           f"{', '.join(self.entry_points)}")
        view = copy.copy(self)
        view._select(name)
        return view

    def __getattr__(self, name: str):
        entry_points = self.__dict__.get("entry_points", ())
        if name in entry_points:
            return self[name]
        raise AttributeError(f"KilnModule has no attribute or entry point '{name}'")

    def _add_parameters(self, rt, reflection: dict, parameters,
                        verify_parameters: bool = True) -> Optional[Path]:
        """Load the .irpa an artifact with external weights needs, checked against the
        artifact's record (keys and byte lengths always; contents unless `verify_parameters`
        is False); None for inline weights."""
        if PARAMETERS_KEY not in reflection:
            return None
        info = json.loads(reflection[PARAMETERS_KEY])
        what = (f"this artifact keeps its weights ({info.get('count')} tensors, "
                f"{info.get('bytes')} bytes) in an IREE parameter archive (.irpa)")
        if parameters is None:
            raise KilnLoadError(f"{what}: load it from its .vmfb path (the .irpa beside it is "
                                f"found) or pass parameters='path/to/model.irpa'")
        path = Path(parameters)
        if not path.is_file():
            raise KilnLoadError(f"{what}, expected at {path}, which does not exist (compiling "
                                f"with weights='external' and output= writes it there; or "
                                f"pass parameters=...)")
        index = rt.ParameterIndex()
        try:
            index.load(str(path))
        except Exception as error:
            raise KilnLoadError(f"{path} is not a readable IREE parameter archive: "
                                f"{error}") from error
        verify(info, [ArchiveEntry(entry.key, entry.length,
                                   entry.file_view if entry.is_file else None,
                                   None if entry.is_file else entry.splat_pattern)
                      for entry in (index[i] for i in range(len(index)))],
               path, contents=verify_parameters)
        provider = index.create_provider(scope=info.get("scope", PARAMETER_SCOPE))
        self._context.add_vm_module(rt.create_io_parameters_module(self._context.instance,
                                                                   provider))
        self._parameter_index, self._parameter_provider = index, provider  # keep them alive
        return path

    @property
    def input_names(self) -> list[str]:
        return [i["name"] for i in self.signature["inputs"]] if self.signature else []

    @property
    def device(self) -> str:
        return self.device_kind

    def to_device(self, value: Any) -> DeviceTensor:
        """`value` (numpy array, torch tensor) as a DeviceTensor on this module's device, e.g.
        a KV cache uploaded once. Host data is copied; a torch tensor already on the device
        is imported without a copy (they share memory)."""
        if isinstance(value, DeviceTensor):
            return value
        view = None
        if _is_torch(value):
            view = self._import_torch(None, 0, value)
        if view is None:
            view = self._device.upload(_to_numpy(value, 0), self.options.host_upload)
        return DeviceTensor(view, self._device, _dtype_name(view.element_type), self.options)

    def __call__(self, *args: Any, outputs: Optional[str] = None):
        entry = self._entry
        if entry is None:
            raise ValueError(f"this artifact has several entry points "
                             f"({', '.join(self.entry_points)}): call one by name, e.g. "
                             f"run.{self.entry_points[0]}(...)")
        mode = self.outputs if outputs is None else _check_mode(outputs)
        self._check_arity(args)
        arguments = self._list_type(len(args))
        kinds = set()  # or-ed once below: a Flag | costs 0.5 µs, a set add 50 ns
        for index, value in enumerate(args):
            if index in entry.written:
                value = _private_copy(value)
            view, kind = self._argument(entry, index, value)
            arguments.push_ref(view)
            kinds.add(kind)
        seen = ArgumentKind.HOST
        for kind in kinds:
            seen |= kind
        if ArgumentKind.CUDA in seen:
            import torch

            torch.cuda.current_stream().synchronize()  # IREE runs on its own stream
        results = self._list_type(entry.result_count)
        self._vm_context.invoke(entry.vm_function, arguments, results)
        if entry.guards:
            entry.check_guards(lambda i: self._result(entry, results, i, "numpy"))
        if mode == "auto":
            mode = seen.auto_outputs()
        # guard results (last) are not the model's: index by result, guards left out
        returned = range(len(results)) if entry.user_outputs is None else entry.user_outputs
        converted = tuple(self._result(entry, results, i, mode) for i in returned)
        for output, target in entry.mutations:
            if target is not None:
                self._write_back(target, args[target], converted[output], results, output)
        if entry.output_tree is not None:
            return build_tree(entry.output_tree, lambda index, scalar: _python_number(
                converted[index], scalar) if scalar else converted[index])
        kept = tuple(c for i, c in enumerate(converted) if i not in entry.dropped)
        return kept[0] if len(kept) == 1 else kept

    def _write_back(self, index: int, target: Any, value: Any, results, output: int) -> None:
        """Copy the result `output` into input `index`, which the model updates in place (as
        eager PyTorch would have updated the caller's tensor)."""
        if isinstance(target, DeviceTensor):
            view = results.get_as_object(output, self._view_type)
            self._device._copy(view.get_buffer(), target._view.get_buffer())
        elif _is_torch(target):
            import torch

            if isinstance(value, DeviceTensor):
                value = value.torch()
            elif isinstance(value, np.ndarray):
                value = _numpy_to_torch(value)
            with torch.no_grad():
                target.copy_(value)
        elif isinstance(target, np.ndarray):
            if not target.flags.writeable:
                raise ValueError(f"input #{index}: the model updates this input in place, but "
                                 f"the numpy array passed is read-only")
            np.copyto(target, value.numpy() if isinstance(value, DeviceTensor) else
                      np.asarray(value))

    def _check_arity(self, args: Sequence[Any]) -> None:
        inputs = self._entry.inputs
        if inputs is not None and len(args) != len(inputs):
            expected = ", ".join(f"{s.spec.name}: {_describe(s.spec)}" for s in inputs)
            raise ValueError(f"expected {len(inputs)} input(s) ({expected}), got {len(args)}")

    def _argument(self, entry: _EntryPoint, index: int, value: Any):
        """(buffer view, ArgumentKind) of input `index`, checked against the signature."""
        spec = entry.inputs[index] if entry.inputs is not None else None
        if isinstance(value, DeviceTensor):
            if value._device is not self._device:
                raise ValueError(f"{spec.label if spec else f'input #{index}'}: a DeviceTensor "
                                 f"of device '{value.device}' passed to a module on "
                                 f"'{self.device_kind}' (convert it: .numpy() or .torch())")
            if spec is not None:
                spec.check_dtype(value.dtype)
                spec.check_shape(value.shape)
            return value._view, ArgumentKind.DEVICE_TENSOR
        if _is_torch(value):
            import torch

            if isinstance(value, torch.Tensor):
                cache = self.options.cache_imports
                if cache:
                    hit = entry.imports.get(index)
                    layout = _import_layout(value)
                    if hit is not None and hit[0] is value and hit[1] == layout:
                        return hit[2], hit[3]
                view = self._import_torch(spec, index, value)
                if view is not None:
                    kind = _TORCH_ON_GPU if value.is_cuda else ArgumentKind.TORCH
                    if cache:
                        entry.imports[index] = (value, layout, view, kind)
                    return view, kind
                return self._device.upload(self._check_host(spec, index, value),
                                           self.options.host_upload), ArgumentKind.TORCH
        return self._device.upload(self._check_host(spec, index, value),
                                   self.options.host_upload), ArgumentKind.HOST

    def _import_torch(self, spec: Optional[_InputSpec], index: int, tensor):
        """A zero-copy DLPack import of a torch tensor on this module's device; None when the
        tensor is on the host of a GPU module (or, on the CPU, not importable): copy it."""
        if tensor.device.type != self._device.torch_type:
            return None
        label = spec.label if spec else f"input #{index}"
        if spec is not None:
            spec.check_dtype(_torch_dtype_name(tensor.dtype))
            spec.check_shape(tuple(tensor.shape))
        problem = importable_problem(tensor)
        if problem is not None:
            if not tensor.is_cuda:
                return None  # CPU tensors are copied instead, as before
            raise ValueError(f"{label}: {problem}")
        if tensor.is_cuda and (tensor.device.index or 0) != 0:
            raise ValueError(f"{label}: the tensor is on {tensor.device}, the module runs on "
                             f"cuda:0 (move it with .to('cuda:0'))")
        import torch.utils.dlpack

        return self._device.hal.from_dlpack_capsule(
            torch.utils.dlpack.to_dlpack(tensor.detach()))

    def _check_host(self, spec: Optional[_InputSpec], index: int, value: Any) -> np.ndarray:
        array = _to_numpy(value, index)
        if spec is not None:
            spec.check_dtype(str(array.dtype))
            spec.check_shape(array.shape)
        return array

    def _result(self, entry: _EntryPoint, results, index: int, mode: str):
        try:
            view = results.get_as_object(index, self._view_type)
        except Exception:  # noqa: BLE001 - not a buffer (a scalar result)
            return results.get_variant(index)
        dtypes = entry.output_dtypes
        dtype = dtypes[index] if index < len(dtypes) and dtypes[index] else \
            _dtype_name(view.element_type)
        if mode == "device":
            return DeviceTensor(view, self._device, dtype, self.options)
        if mode == "torch" or (mode == _TORCH_ON_HOST and self._device.kind == "cpu"):
            return self._device.to_torch(view, dtype)
        array = DeviceTensor(view, self._device, dtype, self.options).numpy()
        return _numpy_to_torch(array) if mode == _TORCH_ON_HOST else array


def _import_layout(tensor) -> tuple:
    """What a DLPack import of `tensor` depends on besides its contents: the same object can
    change all of it in place (`t_()`, `as_strided_()`, `set_()`, `.data = other.view(dtype)`),
    and a cached import must then be redone (and the tensor checked again). The negative bit
    too (`.data = torch._neg_view(...)`): such tensors are copied, not imported. Complex
    tensors (conjugate bit) are never imported. About 1.5 µs per torch input and call."""
    return (tensor.data_ptr(), tensor.shape, tensor.stride(), tensor.storage_offset(),
            tensor.dtype, tensor.device, tensor.is_neg())


def _private_copy(value: Any) -> Any:
    """A copy of an input the artifact may overwrite (torch tensors stay on their device;
    numpy arrays are copied by the upload anyway)."""
    if isinstance(value, DeviceTensor):
        return DeviceTensor(value._device.duplicate(value._view), value._device, value.dtype,
                            value._options)
    if _is_torch(value) and hasattr(value, "clone"):
        return value.clone(memory_format=_contiguous_format())
    return value


def _contiguous_format():
    import torch

    return torch.contiguous_format


def _python_number(value: Any, kind: str):
    """A model's Python int/float/bool result, returned by the artifact as a 0-d tensor."""
    if isinstance(value, DeviceTensor):
        value = value.numpy()
    return {"int": int, "float": float, "bool": bool}[kind](value.item())


def importable_problem(tensor) -> Optional[str]:
    """Why a torch tensor cannot be imported without a copy (DLPack), or None."""
    if tensor.dtype.is_complex:
        return f"dtype {tensor.dtype} cannot be passed to a Kiln module"
    if tensor.is_neg():  # a lazy negation (e.g. `.conj().imag`): DLPack would drop the sign
        return "a tensor with its negative bit set cannot be passed as is; pass .resolve_neg()"
    if not tensor.is_contiguous():
        return (f"a non-contiguous tensor (shape {_shape_text(tuple(tensor.shape))}, strides "
                f"{tuple(tensor.stride())}) cannot be passed without a copy; pass "
                f".contiguous()")
    if tensor.numel() and tensor.data_ptr() % ALIGNMENT:
        return (f"the tensor's data is not {ALIGNMENT}-byte aligned (a view at offset "
                f"{tensor.storage_offset()}); pass .clone()")
    return None


def _dtype_name(element_type) -> str:
    dtype = _iree_runtime().HalElementType.map_to_dtype(element_type)
    return numpy_name(dtype)


def parse_cuda_flags(flags: Optional[Sequence[str]] = None) -> tuple[str, ...]:
    """Give IREE its CUDA runtime flags, once per process (IREE reads them when it creates the
    CUDA device): `flags` (None: CUDA_RUNTIME_FLAGS) the first time; later, None or the same
    flags return those parsed, and other flags raise KilnLoadError (IREE would ignore them)."""
    global _parsed_cuda_flags
    if _parsed_cuda_flags is None:
        wanted = CUDA_RUNTIME_FLAGS if flags is None else tuple(flags)
        _iree_runtime().flags.parse_flags(*wanted)
        _parsed_cuda_flags = wanted
    elif flags is not None and tuple(flags) != _parsed_cuda_flags:
        raise KilnLoadError(f"CUDA runtime flags {list(flags)} asked for, but this process "
                            f"already runs with {list(_parsed_cuda_flags)} (IREE reads them "
                            f"once per process); load in a fresh process")
    return _parsed_cuda_flags


def _to_numpy(value: Any, index: int) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return np.ascontiguousarray(value)
    if _is_torch(value):
        import torch

        if isinstance(value, torch.Tensor):
            return _torch_to_numpy(value.detach().cpu().resolve_neg().contiguous())
    if np.isscalar(value):
        return np.asarray(value)
    raise TypeError(f"input #{index}: expected a numpy array or torch tensor (or a kiln "
                    f"DeviceTensor), got {type(value).__name__}")


def _shape_text(shape) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def _describe(spec: TensorSpec) -> str:
    return f"{_shape_text(spec.shape)} {spec.dtype}"


def write_parameter_archive(path: Union[str, Path], arrays: dict) -> Path:
    """Write {key: numpy array} as an IREE parameter archive (.irpa) at `path`."""
    rt = _iree_runtime()
    index = rt.ParameterIndex()
    for key, array in arrays.items():
        index.add_buffer(key, np.ascontiguousarray(array))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    index.create_archive_file(str(path))
    os.chmod(path, 0o666 & ~_umask())  # IREE creates it 0640; make it readable like the .vmfb
    return path


def save_artifact(path: Union[str, Path], vmfb: bytes, parameters: Optional[dict] = None) -> Path:
    """Write a `.vmfb` to `path` and, with external weights ({key: numpy array}), its archive
    to `parameters_path(path)`, as a pair: both go to temporary names beside their targets,
    then are renamed, archive first and artifact last, so a failure never leaves a new
    artifact beside an old archive (a stale pair left by a crash between the two renames is
    refused at load: the digests differ). Returns `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    renames: list[tuple[Path, Path]] = []
    try:
        if parameters:
            target = parameters_path(path)
            renames.append((_temporary_beside(target), target))
            write_parameter_archive(renames[-1][0], parameters)
        renames.append((_temporary_beside(path), path))
        renames[-1][0].write_bytes(vmfb)
        os.chmod(renames[-1][0], 0o666 & ~_umask())
        for temporary, target in renames:
            os.replace(temporary, target)
    finally:
        for temporary, _ in renames:
            temporary.unlink(missing_ok=True)  # left only by a failure
    return path


def _temporary_beside(target: Path) -> Path:
    """A fresh, empty file in `target`'s folder (a rename there is atomic)."""
    import tempfile

    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    return Path(name)


def _umask() -> int:
    try:  # read without setting it (os.umask would change it for other threads meanwhile)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def load(vmfb_or_path, device: str = "cpu",
         parameters: Union[str, Path, None] = None, outputs: str = "auto",
         verify_parameters: bool = True,
         options: Optional[RuntimeOptions] = None) -> KilnModule:
    """Load `.vmfb` bytes or a file path for `device` ("cpu" or "cuda").

    An artifact compiled with weights="external" needs its parameter archive: `parameters`, or
    by default `parameters_path(path)` beside a `.vmfb` path (`m.vmfb` → `m.irpa`, `m.b1` →
    `m.b1.irpa`). The archive must be the one compiled with the artifact: KilnLoadError names
    the first parameter that is missing, extra, of another byte length or of other contents.
    `verify_parameters=False` skips only the contents check (hashing the whole archive;
    docs/weights.md has its cost) and is unsafe: same-shaped weights of another model or
    compile then run silently. `outputs` ("auto", "numpy", "torch", "device") says what calls
    return; "device" keeps results on the device as `DeviceTensor`s that the next call takes
    without a copy. `options` (RuntimeOptions) says how data moves: host transfers, uploads,
    the import cache, IREE's CUDA flags."""
    if parameters is None and isinstance(vmfb_or_path, (str, Path)):
        parameters = parameters_path(vmfb_or_path)
    return KilnModule(_read_artifact(vmfb_or_path), device=device, parameters=parameters,
                      outputs=outputs, verify_parameters=verify_parameters, options=options)
