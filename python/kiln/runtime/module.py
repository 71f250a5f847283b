"""The module layer of Kiln's runtime: a loaded artifact called like the model.

`load` / `KilnModule` read the artifact's contract (kiln.artifact: the `kiln.signature` of each
entry point, the `kiln.parameters` record of external weights), check the inputs against the
signature, marshal them to the device (kiln.runtime.device: zero-copy imports, uploads,
DeviceTensors), call the VM function, read the index guards and give the results back in the
model's own structure (kiln.outputs.build_tree), copying in-place updates into the inputs.
"""

from __future__ import annotations

import copy
import enum
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from kiln.archive import ArchiveEntry, verify
from kiln.artifact import (NONE_OUT_OF_BOUNDS, PARAMETER_SCOPE, PARAMETERS_KEY, SIGNATURE_KEY,
                           GuardSpec, Signature, TensorSpec, parameters_path)
from kiln.errors import KilnLoadError
from kiln.outputs import build_tree
from kiln.runtime.device import (DEFAULT_OPTIONS, DRIVERS, DeviceTensor, RuntimeOptions,
                                 _device, _dtype_name, _is_torch, _iree_runtime, _numpy_dtype,
                                 _numpy_to_torch, _shape_text, _to_numpy, _torch_dtype_name,
                                 batch_scheduled_wait, cuda_allocators, cuda_hal_config,
                                 importable_problem, parse_cuda_flags)

OUTPUT_MODES = ("auto", "numpy", "torch", "device")
# What outputs="auto" gives after torch tensors on the host: torch tensors on the host (for a
# CUDA module, copied back from the device; a mode of its own, not one a caller can ask for).
_TORCH_ON_HOST = "torch-host"


def _read_artifact(source: Union[bytes, bytearray, memoryview, str, Path]) -> Union[bytes, Path]:
    """The artifact's bytes, or the path of its file: a file is mapped, not read (KilnModule)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"no Kiln artifact at {path}")
    return path


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


@dataclass(frozen=True, slots=True)
class _CachedImport:
    """The DLPack import of the torch tensor last passed to an input (RuntimeOptions.
    cache_imports): reused while the same tensor comes with the same `_import_layout`."""

    tensor: Any
    layout: tuple
    view: Any  # the HalBufferView sharing the tensor's memory
    kind: ArgumentKind

    def matches(self, tensor, layout: tuple) -> bool:
        return self.tensor is tensor and self.layout == layout


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
        # input index → the import of the last torch tensor passed there
        self.imports: dict[int, _CachedImport] = {}
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
        array: [guards, 2] rows of [the largest out-of-bounds index (int64's minimum: none),
        the dim's size], read once per call (or one guard's [2], artifacts before row)."""
        values = {}
        for guard in self.guards:
            if guard.output not in values:
                values[guard.output] = read(guard.output)
            value = values[guard.output]
            index, size = (int(v) for v in (value if guard.row is None else value[guard.row]))
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

    def __init__(self, vmfb: Union[bytes, Path], device: str = "cpu", function: Optional[str] = None,
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
        cuda_flags = parse_cuda_flags(self.options.cuda_flags) if device == "cuda" else None
        allocators = cuda_allocators(self.options) if device == "cuda" else ()
        try:
            config = cuda_hal_config(allocators) if device == "cuda" else \
                rt.Config(DRIVERS[device])
        except KilnLoadError:
            raise
        except Exception as error:
            raise KilnLoadError(f"IREE runtime driver '{DRIVERS[device]}' for device "
                                f"'{device}' is not available here: {error}") from error
        self._context = rt.SystemContext(config=config)
        try:
            # A file is mapped, not read: its pages are the page cache's, shared between the
            # processes that load it, and IREE uses its constants in place (GPT-2 small: peak
            # RSS of a load 1.47 GB read and copied; docs/decisions.md "Weights reach ...").
            vm_module = rt.VmModule.mmap(self._context.instance, str(vmfb)) \
                if isinstance(vmfb, Path) else rt.VmModule.copy_buffer(self._context.instance, vmfb)
        except Exception as error:
            size = vmfb.stat().st_size if isinstance(vmfb, Path) else len(vmfb)
            raise KilnLoadError(
                f"not a loadable IREE .vmfb ({size} bytes; truncated, corrupt or another "
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
        if device == "cuda":
            from kiln.queue_waits import check_runtime_flags

            check_runtime_flags(reflections, cuda_flags)
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
        self._device = _device(device, config.device, pools=bool(allocators))
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
        if self.device_kind == "cpu" and self.options.cpu_batch_wait:
            with batch_scheduled_wait():
                self._vm_context.invoke(entry.vm_function, arguments, results)
        else:
            self._vm_context.invoke(entry.vm_function, arguments, results)
        if entry.guards:
            entry.check_guards(lambda i: self._result(entry, results, i, "numpy"))
        if mode == "auto":
            mode = seen.auto_outputs()
        # guard results (last) are not the model's: index by result, guards left out
        returned = range(len(results)) if entry.user_outputs is None else entry.user_outputs
        # a pooling device's results reach torch as copies; one wait for all before the
        # pooled buffers go back (_Device.release_aliases)
        held: Optional[list] = [] if self._device.pools else None
        converted = tuple(self._result(entry, results, i, mode, held) for i in returned)
        if held:
            self._device.release_aliases(held)
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
                other = f"'{value.device}'" if value.device != self.device_kind else \
                    f"'{value.device}' with other cuda_allocators (another HAL device)"
                raise ValueError(f"{spec.label if spec else f'input #{index}'}: a DeviceTensor "
                                 f"of device {other} passed to a module on "
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
                    if hit is not None and hit.matches(value, layout):
                        return hit.view, hit.kind
                view = self._import_torch(spec, index, value)
                if view is not None:
                    kind = _TORCH_ON_GPU if value.is_cuda else ArgumentKind.TORCH
                    if cache:
                        entry.imports[index] = _CachedImport(value, layout, view, kind)
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

    def _result(self, entry: _EntryPoint, results, index: int, mode: str,
                held: Optional[list] = None):
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
            return self._device.to_torch(view, dtype, held)
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


def _describe(spec: TensorSpec) -> str:
    return f"{_shape_text(spec.shape)} {spec.dtype}"


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
