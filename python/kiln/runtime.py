"""Load a Kiln `.vmfb` and call it like the model: numpy in → numpy out, torch in → torch out.

The only module that imports `iree.runtime`; it needs neither torch-mlir nor IREE's compiler
(torch only when torch tensors are passed), so it runs on machines that carry just the runtime.
Inputs are checked against the signature Kiln embeds in the artifact (`kiln.signature`
reflection on `main`): a wrong count, shape or dtype raises ValueError naming the argument.
An artifact compiled with weights="external" (reflection `kiln.parameters`) gets its IREE
parameter archive (`.irpa`, by default beside the `.vmfb`) added to the context first.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from kiln.errors import KilnLoadError

SIGNATURE_KEY = "kiln.signature"
# Reflection entry of artifacts compiled with weights="external" (kiln.parameters): JSON
# {"scope", "count", "bytes"}; their weights live in an IREE parameter archive (.irpa).
PARAMETERS_KEY = "kiln.parameters"
PARAMETER_SCOPE = "model"
DRIVERS = {"cpu": "local-task", "cuda": "cuda"}
# Graph command buffers, no tracing: launch-bound models lose most time to per-dispatch overhead.
CUDA_RUNTIME_FLAGS = ("--cuda_use_streams=false", "--cuda_tracing=0")
_cuda_flags_parsed = False


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


def _bfloat16():
    import ml_dtypes

    return np.dtype(ml_dtypes.bfloat16)


class KilnModule:
    """A loaded artifact; call it with the exported signature's inputs."""

    def __init__(self, vmfb: bytes, device: str = "cpu", function: Optional[str] = None,
                 parameters: Union[str, Path, None] = None):
        if device not in DRIVERS:
            raise ValueError(f"unknown device {device!r}; use one of {', '.join(DRIVERS)}")
        rt = _iree_runtime()
        self.device_kind = device
        if device == "cuda":
            _parse_cuda_flags(rt)
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
        reflections = {name: dict(vm_module.lookup_function(name).reflection)
                       for name in vm_module.function_names
                       if not name.startswith("__") and "$" not in name}
        # Entry points: functions Kiln compiled (with a signature); any function otherwise.
        self.entry_points = [n for n, r in reflections.items() if SIGNATURE_KEY in r] or \
            list(reflections)
        if function is None:
            function = "main" if "main" in reflections else \
                self.entry_points[0] if len(self.entry_points) == 1 else None
        if function is not None and function not in reflections:
            raise KilnLoadError(f"the artifact has no function '{function}' (it has "
                                f"{', '.join(self.entry_points)})")
        self.function_name = function
        reflection = {k: v for r in reflections.values() for k, v in r.items()
                      if k != SIGNATURE_KEY}
        self._signatures = {n: json.loads(r[SIGNATURE_KEY]) for n, r in reflections.items()
                            if SIGNATURE_KEY in r}
        self.signature: Optional[dict] = self._signatures.get(function)
        # The parameters module must be in the context before the module that imports it.
        self.parameters_file = self._add_parameters(rt, reflection, parameters)
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
        self._vm_name = vm_module.name
        self._function = self._context.modules[vm_module.name][function] if function else None

    def __getitem__(self, name: str) -> "KilnModule":
        """The entry point `name` of a multi-function artifact (same loaded context)."""
        if name not in self.entry_points:
            raise KeyError(f"no entry point '{name}'; this artifact has "
                           f"{', '.join(self.entry_points)}")
        view = copy.copy(self)
        view.function_name, view.signature = name, self._signatures.get(name)
        view._function = self._context.modules[self._vm_name][name]
        return view

    def __getattr__(self, name: str):
        entry_points = self.__dict__.get("entry_points", ())
        if name in entry_points:
            return self[name]
        raise AttributeError(f"KilnModule has no attribute or entry point '{name}'")

    def _add_parameters(self, rt, reflection: dict, parameters) -> Optional[Path]:
        """Load the .irpa an artifact with external weights needs; None for inline weights."""
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
        provider = index.create_provider(scope=info.get("scope", PARAMETER_SCOPE))
        self._context.add_vm_module(rt.create_io_parameters_module(self._context.instance,
                                                                   provider))
        self._parameter_index, self._parameter_provider = index, provider  # keep them alive
        return path

    @property
    def input_names(self) -> list[str]:
        return [i["name"] for i in self.signature["inputs"]] if self.signature else []

    def __call__(self, *args: Any):
        if self._function is None:
            raise ValueError(f"this artifact has several entry points "
                             f"({', '.join(self.entry_points)}): call one by name, e.g. "
                             f"run.{self.entry_points[0]}(...)")
        uses_torch = any(type(a).__module__.startswith("torch") for a in args)
        arrays = [self._check(i, a) for i, a in enumerate(self._check_arity(args))]
        results = self._function(*arrays)
        outputs = results if isinstance(results, (tuple, list)) else (results,)
        converted = tuple(self._to_user(r, i, uses_torch) for i, r in enumerate(outputs))
        return converted[0] if len(converted) == 1 else converted

    def _check_arity(self, args: Sequence[Any]) -> Sequence[Any]:
        if self.signature is not None and len(args) != len(self.signature["inputs"]):
            expected = ", ".join(f"{s['name']}: {_describe(s)}" for s in self.signature["inputs"])
            raise ValueError(f"expected {len(self.signature['inputs'])} input(s) ({expected}), "
                             f"got {len(args)}")
        return args

    def _check(self, index: int, value: Any) -> np.ndarray:
        array = _to_numpy(value, index)
        if self.signature is None:
            return array
        spec = self.signature["inputs"][index]
        label = f"input '{spec['name']}' (#{index})"
        want_dtype = _bfloat16() if spec["dtype"] == "bfloat16" else np.dtype(spec["dtype"])
        if array.dtype != want_dtype:
            raise ValueError(f"{label}: expected dtype {spec['dtype']}, got {array.dtype}")
        shape = spec["shape"]
        if len(array.shape) != len(shape) or any(
                want is not None and want != got for want, got in zip(shape, array.shape)):
            raise ValueError(f"{label}: expected shape {_shape_text(shape)}, got "
                             f"{_shape_text(array.shape)}")
        for axis, (bounds, got) in enumerate(zip(spec.get("bounds", ()), array.shape)):
            if bounds is not None and not (bounds[0] <= got and (bounds[1] is None or
                                                                 got <= bounds[1])):
                raise ValueError(f"{label}: dim {axis} is {got}, outside the compiled range "
                                 f"[{bounds[0]}, {'∞' if bounds[1] is None else bounds[1]}]")
        return array

    def _to_user(self, result: Any, index: int, as_torch: bool):
        array = result.to_host() if hasattr(result, "to_host") else np.asarray(result)
        if self.signature and self.signature["outputs"][index]["dtype"] == "bfloat16" \
                and array.dtype != _bfloat16():
            array = array.view(_bfloat16())
        if not as_torch:
            return array
        import torch

        if array.dtype == _bfloat16():
            return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
        return torch.from_numpy(np.ascontiguousarray(array))


def _parse_cuda_flags(rt) -> None:
    global _cuda_flags_parsed
    if not _cuda_flags_parsed:
        rt.flags.parse_flags(*CUDA_RUNTIME_FLAGS)
        _cuda_flags_parsed = True


def _to_numpy(value: Any, index: int) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return np.ascontiguousarray(value)
    if type(value).__module__.startswith("torch"):
        import torch

        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()
            if tensor.dtype == torch.bfloat16:
                return tensor.view(torch.int16).numpy().view(_bfloat16())
            return tensor.numpy()
    if np.isscalar(value):
        return np.asarray(value)
    raise TypeError(f"input #{index}: expected a numpy array or torch tensor, got "
                    f"{type(value).__name__}")


def _shape_text(shape) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def _describe(spec: dict) -> str:
    return f"{_shape_text(spec['shape'])} {spec['dtype']}"


def parameters_path(vmfb_path: Union[str, Path]) -> Path:
    """Where an artifact's external weights live: beside the .vmfb, suffix .irpa."""
    return Path(vmfb_path).with_suffix(".irpa")


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


def _umask() -> int:
    try:  # read without setting it (os.umask would change it for other threads meanwhile)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def load(vmfb_or_path, device: str = "cpu",
         parameters: Union[str, Path, None] = None) -> KilnModule:
    """Load `.vmfb` bytes or a file path for `device` ("cpu" or "cuda").

    An artifact compiled with weights="external" needs its parameter archive: `parameters`, or
    by default the `.irpa` beside a `.vmfb` path (same stem)."""
    if parameters is None and isinstance(vmfb_or_path, (str, Path)):
        parameters = parameters_path(vmfb_or_path)
    return KilnModule(_read_artifact(vmfb_or_path), device=device, parameters=parameters)
