"""The device layer of Kiln's runtime: IREE's HAL device per kind and how data moves on it.

`RuntimeOptions` (how data moves), IREE's CUDA flags (`parse_cuda_flags`, once per process),
`_Device` (one HAL device per kind and process: device → host transfers, DLPack export to torch,
uploads of host data, device copies), `DeviceTensor` (data kept on the device) and the torch /
numpy conversions. Imports `iree.runtime` on first use and torch only when torch data is passed;
it knows nothing of artifacts or signatures (kiln.runtime.module).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from kiln.dtypes import bfloat16_numpy, numpy_dtype, numpy_name
from kiln.errors import KilnLoadError

DRIVERS = {"cpu": "local-task", "cuda": "cuda"}
# Stream command buffers (each dispatch launched as it is recorded), no tracing: on an H100 they
# gave generation 1.4-1.5x the decode tokens/s of CUDA graphs, which IREE records and
# instantiates anew for every call, and single forward calls within +-10% of graphs
# (docs/decisions.md, "CUDA runtime: streams, not graphs"). No stream-ordered (async)
# allocations: IREE's CUDA allocator cannot export buffers of that
# pool through DLPack ("CUDA buffer type is not supported for export"), and results allocated
# with cuMemAlloc can: torch gets them without a copy (docs/gpu.md has the measured trade-off).
# Parsed once per process, before the CUDA driver is created (IREE reads them then): the
# default of RuntimeOptions.cuda_flags, which the first CUDA load of a process applies.
SYNCHRONOUS_ALLOCATIONS = "--cuda_async_allocations=false"
CUDA_RUNTIME_FLAGS = ("--cuda_use_streams=true", "--cuda_tracing=0", SYNCHRONOUS_ALLOCATIONS)
# $KILN_CUDA_FLAGS (whitespace-separated IREE flags) replaces CUDA_RUNTIME_FLAGS as the
# process's default, e.g. "--cuda_use_streams=false --cuda_tracing=0" (CUDA graphs) to measure
# another mode.
CUDA_FLAGS_VARIABLE = "KILN_CUDA_FLAGS"
# The CUDA flags this process parsed (parse_cuda_flags), None before the first CUDA load.
_parsed_cuda_flags: Optional[tuple[str, ...]] = None
# CUDA devices Kiln created with IREE allocators around the device's own, per allocator list
# (RuntimeOptions.cuda_allocators); modules asking for the same list share one.
_CUDA_DEVICES_WITH_ALLOCATORS: dict = {}
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
    # CUDA: IREE allocators wrapped around the module's device's own ("caching": a released
    # buffer is kept for reuse instead of going to cuMemFree, which waits for the whole GPU).
    # A module with allocators runs on a CUDA device of its own (one per allocator list);
    # its results reach torch and the host only through copies (a pooled buffer handed to
    # torch could be reused by a later call while torch's stream still reads it). None: the
    # process default, ${KILN_CUDA_ALLOCATORS} (comma-separated) or none. Kiln's generators use
    # ("caching",) (kiln.generate.GENERATOR_RUNTIME, docs/decisions.md "Decode steps without
    # barriers").
    cuda_allocators: Optional[tuple[str, ...]] = None
    # CPU: the calling thread waits for each call as SCHED_BATCH (Linux; restored after). IREE's
    # waiting caller, woken by a worker, otherwise preempts that worker on its CPU and spins
    # until its time slice ends (2-core hosts: zoo mlp 9.16 -> 7.78 ms, docs/decisions.md).
    cpu_batch_wait: bool = True

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
        if self.cuda_allocators is not None:
            if isinstance(self.cuda_allocators, str) or \
                    not all(isinstance(a, str) for a in self.cuda_allocators):
                raise ValueError(f"RuntimeOptions: cuda_allocators takes a sequence of IREE "
                                 f"allocator specs, e.g. ('caching',), got "
                                 f"{self.cuda_allocators!r}")
            object.__setattr__(self, "cuda_allocators", tuple(self.cuda_allocators))


DEFAULT_OPTIONS = RuntimeOptions()

_DLPACK_CPU, _DLPACK_CUDA = 1, 2


def _iree_runtime():
    import iree.runtime as iree_runtime_module

    return iree_runtime_module


# Short names for the runtime's many uses (kiln.dtypes holds the dtype names).
_bfloat16 = bfloat16_numpy
_numpy_dtype = numpy_dtype


def _is_torch(value: Any) -> bool:
    return type(value).__module__.startswith("torch")


class _Device:
    """The HAL device of one kind ("cpu", "cuda") in this process, and what moves data on it.

    IREE creates one device per driver and process (iree.runtime caches it), so every module
    loaded for a kind shares it: a DeviceTensor of one module can be passed to another. CUDA
    modules with `cuda_allocators` run on a device Kiln made for their allocator list
    (cuda_hal_config), shared only by modules with the same list."""

    def __init__(self, kind: str, hal, pools: bool = False):
        rt = _iree_runtime()
        self.kind = kind
        # Whether released buffers go back to a pool (RuntimeOptions.cuda_allocators): then no
        # result's own memory is handed to torch (see `capsule`).
        self.pools = pools
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
            strategy = "torch" if self.can_export is not False and not self.pools and \
                "torch" in sys.modules else "staging"
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
        if self.can_export is not False and not self.pools:
            try:
                capsule = self.hal.create_dlpack_capsule(view, *self.dlpack_device)
                self.can_export = True
                return capsule
            except Exception:  # noqa: BLE001 - IREE raises RuntimeError/ValueError variants
                self.can_export = False
        return None

    def to_torch(self, view, dtype: str, held: Optional[list] = None):
        """`view` as a torch tensor of `dtype` on this device: zero-copy where IREE can export
        the buffer (shared memory); on a pooling device a copy into memory torch allocated
        (`_torch_owned_copy`; with `held`, its alias is appended there for the caller to
        release, after one `release_aliases` for all of a call's results); else after one
        device-to-device copy into a buffer that can be exported."""
        import torch.utils.dlpack

        if self.pools:
            tensor = self._torch_owned_copy(view, held)
        else:
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

    def _torch_owned_copy(self, view, held: Optional[list] = None):
        """A copy of `view` in memory from torch's allocator (whose stream-ordered reuse keeps
        it safe in torch's hands), made by torch from a DLPack alias of the pooled buffer; torch's
        stream is synchronized before the alias goes (here, or in `release_aliases(held)` where
        the alias is appended to `held`), so the buffer returns to IREE's pool only after the
        copy has read it."""
        import torch.utils.dlpack

        alias = torch.utils.dlpack.from_dlpack(
            self.hal.create_dlpack_capsule(view, *self.dlpack_device))
        copy = alias.clone()
        if held is not None:
            held.append(alias)
        else:
            self.release_aliases([alias])
        return copy

    def release_aliases(self, held: list) -> None:
        """Wait for torch's stream (the copies that read the aliased buffers), then drop the
        aliases in `held`: their pooled buffers may then be reused by IREE."""
        if held and self.kind == "cuda":
            import torch

            torch.cuda.current_stream(held[0].device).synchronize()
        held.clear()

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


def _device(kind: str, hal, pools: bool = False) -> _Device:
    """The _Device of IREE device `hal` (one per HAL device: a process may hold IREE's CUDA
    device and ones Kiln made with allocators)."""
    found = _DEVICES.get((kind, id(hal)))
    if found is None or found.hal is not hal:
        found = _DEVICES[(kind, id(hal))] = _Device(kind, hal, pools)
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
        if self._device.pools:  # a pooled result's memory never goes to torch (_Device.pools)
            return self.torch().__dlpack__()
        capsule = self._device.capsule(self._view)
        return capsule if capsule is not None else self._device._exportable_copy(self._view)

    def __dlpack_device__(self):
        return self._device.dlpack_device

    def __repr__(self) -> str:
        return f"DeviceTensor(shape={_shape_text(self.shape)}, dtype={self.dtype}, " \
            f"device={self.device!r})"


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


def default_cuda_flags() -> tuple[str, ...]:
    """CUDA_RUNTIME_FLAGS, or the flags in $KILN_CUDA_FLAGS where set."""
    import os

    override = os.environ.get(CUDA_FLAGS_VARIABLE, "").split()
    if override and not all(flag.startswith("--") for flag in override):
        raise KilnLoadError(f"${CUDA_FLAGS_VARIABLE}={os.environ[CUDA_FLAGS_VARIABLE]!r}: "
                            f"expected IREE flags such as --cuda_use_streams=true")
    return tuple(override) or CUDA_RUNTIME_FLAGS


def parse_cuda_flags(flags: Optional[Sequence[str]] = None) -> tuple[str, ...]:
    """Give IREE its CUDA runtime flags, once per process (IREE reads them when it creates the
    CUDA device): `flags` (None: default_cuda_flags()) the first time; later, None or the same
    flags return those parsed, and other flags raise KilnLoadError (IREE would ignore them)."""
    global _parsed_cuda_flags
    if _parsed_cuda_flags is None:
        wanted = default_cuda_flags() if flags is None else tuple(flags)
        _iree_runtime().flags.parse_flags(*wanted)
        _parsed_cuda_flags = wanted
    elif flags is not None and tuple(flags) != _parsed_cuda_flags:
        raise KilnLoadError(f"CUDA runtime flags {list(flags)} asked for, but this process "
                            f"already runs with {list(_parsed_cuda_flags)} (IREE reads them "
                            f"once per process); load in a fresh process")
    return _parsed_cuda_flags


CUDA_ALLOCATORS_VARIABLE = "KILN_CUDA_ALLOCATORS"


def cuda_allocators(options: RuntimeOptions) -> tuple[str, ...]:
    """The allocator specs a CUDA module of `options` runs with: its own, else those in
    $KILN_CUDA_ALLOCATORS (comma-separated, e.g. "caching"), else none."""
    if options.cuda_allocators is not None:
        return options.cuda_allocators
    return tuple(spec.strip() for spec in os.environ.get(CUDA_ALLOCATORS_VARIABLE, "").split(",")
                 if spec.strip())


def cuda_hal_config(allocators: Sequence[str] = ()):
    """iree.runtime's Config for a CUDA module: IREE's cached device of the process, or, with
    `allocators` (RuntimeOptions.cuda_allocators), a device Kiln creates with them
    (iree_hal_configure_allocator_from_specs), one per allocator list."""
    rt = _iree_runtime()
    allocators = tuple(allocators)
    if not allocators:
        return rt.Config(DRIVERS["cuda"])
    device = _CUDA_DEVICES_WITH_ALLOCATORS.get(allocators)
    if device is None:
        try:
            device = rt.get_driver(DRIVERS["cuda"]).create_device_by_uri(
                DRIVERS["cuda"], allocators=list(allocators))
        except Exception as error:
            raise KilnLoadError(f"CUDA device with allocators {list(allocators)} "
                                f"(RuntimeOptions.cuda_allocators): {error}") from error
        _CUDA_DEVICES_WITH_ALLOCATORS[allocators] = device
    return rt.Config(device=device)


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


@contextlib.contextmanager
def batch_scheduled_wait():
    """The calling thread as SCHED_BATCH (no wakeup preemption) for the block, where it runs as
    SCHED_OTHER on Linux; otherwise (another policy, no permission, no sched_setscheduler)
    unchanged. See RuntimeOptions.cpu_batch_wait."""
    try:
        switch = os.sched_getscheduler(0) == os.SCHED_OTHER
        if switch:
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (AttributeError, OSError):
        switch = False
    try:
        yield
    finally:
        if switch:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
