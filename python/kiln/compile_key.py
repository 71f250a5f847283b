"""The compile key: one sha256 over everything that decides an artifact.

The key is computed from what will actually be compiled, never from how the model was written:

* the **exported programs** (after Kiln's decompositions, before import): every node of every
  graph module (op, target, arguments with tensors by their bytes, the shape and dtype that
  torch.export inferred), the graph signature, input/output tree specs and range constraints,
  and the bytes of every parameter, buffer and lifted constant;
* the **context**: Kiln's version and a digest of its compiling sources (a changed pass
  invalidates entries without a version bump), the versions of torch, torch-mlir,
  iree-base-compiler and triton, the kernel config table in use, the normalized targets, every
  compile option except `verbose` and `cache`, the phase, torch's default dtype, and the host
  CPU when compiling for `cpu="host"`.

Two models that export to the same program compile to the same artifact, so they may share an
entry; two models whose code differs in any way that reaches the program (a lambda's constant,
an edited source file, a monkeypatched function) export to different programs and get different
keys. Anything the key cannot describe exactly (a graph argument of an unknown kind, a
non-tensor constant) raises `Unkeyable`, and that compile does not use the cache.

The price is the export: a warm compile costs torch.export (0.4-2.5 s on small models,
docs/decisions.md), never a wrong artifact.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import platform
from pathlib import Path
from typing import Any, Mapping

import torch

import kiln
from kiln.targets import read_cpuinfo

KEY_FORMAT = 2
_VERSIONED_DISTRIBUTIONS = ("torch", "torch-mlir", "iree-base-compiler", "triton")
# Kiln modules that do not take part in compiling (their edits keep the cache valid).
# (files, or folders: the runtime package)
_NOT_COMPILER = frozenset({"cli.py", "equivalence.py", "runtime", "opt.py", "cache.py"})
# Callables that may appear as fx node targets: their code is covered by the versions above.
_KNOWN_CALLABLE_MODULES = ("torch", "_operator", "operator", "builtins", "math")


class Unkeyable(Exception):
    """The program holds something the key cannot describe exactly."""


class _Hasher:
    def __init__(self, kind: str):
        self._h = hashlib.sha256()
        self.feed("kiln-compile-key", KEY_FORMAT, kind)

    def feed(self, *parts: Any) -> None:
        for part in parts:
            data = part if isinstance(part, bytes) else str(part).encode()
            self._h.update(len(data).to_bytes(8, "little"))
            self._h.update(data)

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def tensor_digest(tensor: torch.Tensor) -> str:
    """sha256 of a tensor's dtype, shape and element bytes (any dtype, bf16 and fp8 included)."""
    if not isinstance(tensor, torch.Tensor) or tensor.layout != torch.strided or \
            tensor.device.type == "meta" or tensor.is_quantized:
        raise Unkeyable(f"tensor of layout {getattr(tensor, 'layout', '?')} on "
                        f"{getattr(tensor, 'device', '?')}")
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    h = hashlib.sha256(f"{flat.dtype}|{tuple(tensor.shape)}|".encode())
    if flat.numel():
        h.update(flat.view(torch.uint8).numpy().data)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Context: everything besides the program


@functools.lru_cache(maxsize=None)
def _distribution_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def _package_dirs() -> list[Path]:
    dirs = []
    for name in ("kiln", "kiln.passes", "kiln.dialects"):
        spec = importlib.util.find_spec(name)
        if spec is not None:
            dirs += [Path(p) for p in spec.submodule_search_locations or ()]
    return sorted(set(dirs))


def source_files() -> list[Path]:
    """Kiln's files that take part in compiling: the package (less _NOT_COMPILER and the
    bundled examples), its passes and dialects, and the kernel config table."""
    files = []
    for directory in _package_dirs():
        for path in sorted(directory.rglob("*")):
            relative = path.relative_to(directory)
            # .json: the kernel library's measured config table picks the kernels compiled in.
            if path.suffix not in (".py", ".mlir", ".json") or "__pycache__" in relative.parts:
                continue
            if relative.parts[0] == "examples" or (directory.name == "kiln" and
                                                    relative.parts[0] in _NOT_COMPILER):
                continue
            files.append(path)
    return files


def kiln_source_digest() -> str:
    """Digest of Kiln's own compiling sources. Recomputed per compile (~2 ms), so a
    long-lived process sees edits too."""
    h = hashlib.sha256()
    for path in source_files():
        h.update(f"{path.parent.name}/{path.name}\0".encode())
        h.update(path.read_bytes())
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def host_cpu_fingerprint() -> str:
    """What `--iree-llvmcpu-target-cpu=host` resolves from: machine, CPU model and ISA flags."""
    parts = [platform.machine(), platform.processor()]
    parts += [line for line in read_cpuinfo().lines
              if line.split(":")[0].strip() in ("model name", "flags", "Features", "CPU part",
                                               "vendor_id")]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _kernel_table_digest() -> str:
    """The kernel config table in use ($KILN_KERNEL_TABLE can point outside the package)."""
    from kiln.kernels.configs import table_path

    try:
        return hashlib.sha256(table_path().read_bytes()).hexdigest()
    except OSError as error:
        return f"unreadable: {error}"


def compile_context(targets: tuple, phase: Any, options: Any) -> tuple:
    """Everything besides the programs that decides the artifact (see the module docstring).
    `options` is a `CompileOptions`; `verbose` and `cache` do not change the artifact."""
    values = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)
              if f.name not in ("verbose", "cache")}
    values = {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in values.items()}
    host = host_cpu_fingerprint() if "cpu" in targets and values.get("cpu") == "host" else ""
    table = _kernel_table_digest() if "cuda" in targets else ""
    return (kiln.__version__, kiln_source_digest(), platform.python_version(),
            tuple((d, _distribution_version(d)) for d in _VERSIONED_DISTRIBUTIONS),
            tuple(targets), str(getattr(phase, "value", phase)),
            json.dumps(values, sort_keys=True, default=str), host, table,
            str(torch.get_default_dtype()))


# ---------------------------------------------------------------------------------------------
# The program


def _describe_value(value: Any) -> str:
    """An fx node's inferred value (meta["val"]): shapes (symbolic ones by expression), dtype."""
    if isinstance(value, torch.Tensor):
        return f"tensor{tuple(str(d) for d in value.shape)}:{value.dtype}:{value.device.type}"
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(_describe_value(v) for v in value) + ")"
    if isinstance(value, (torch.SymInt, torch.SymFloat, torch.SymBool)):
        return f"sym:{value.node.expr}"
    return f"{type(value).__name__}:{value!r}" if isinstance(
        value, (type(None), bool, int, float, complex, str)) else type(value).__name__


def _target_name(target: Any) -> str:
    if isinstance(target, str):
        return target
    if isinstance(target, (torch._ops.OpOverload, torch._ops.OpOverloadPacket,
                           torch._ops.HigherOrderOperator)):
        return f"op:{target}"
    module = getattr(target, "__module__", None) or ""
    qualname = getattr(target, "__qualname__", None)
    if qualname and "<" not in qualname and module.split(".")[0] in _KNOWN_CALLABLE_MODULES:
        return f"fn:{module}.{qualname}"
    raise Unkeyable(f"graph calls {target!r}, whose code the key cannot see")


def _argument_text(value: Any, digests: dict) -> str:
    """Exact text of an fx argument; tensors by their bytes; unknown kinds are Unkeyable."""
    if isinstance(value, torch.fx.Node):
        return f"%{value.name}"
    if isinstance(value, (type(None), bool, int, float, complex, str)):
        return f"{type(value).__name__}:{value!r}"
    if isinstance(value, (torch.dtype, torch.device, torch.layout, torch.memory_format)):
        return f"{type(value).__name__}:{value}"
    if isinstance(value, (torch.SymInt, torch.SymFloat, torch.SymBool)):
        return f"sym:{value.node.expr}"
    if isinstance(value, torch.Tensor):
        key = id(value)
        digests[key] = digests.get(key) or tensor_digest(value)
        return f"tensor:{digests[key]}"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_argument_text(v, digests) for v in value)
        return f"{type(value).__name__}[{inner}]"
    if isinstance(value, dict):
        inner = ", ".join(f"{_argument_text(k, digests)}: {_argument_text(v, digests)}"
                          for k, v in value.items())
        return "{" + inner + "}"
    if isinstance(value, slice):
        return "slice" + _argument_text((value.start, value.stop, value.step), digests)
    if isinstance(value, enum.Enum):
        return f"enum:{type(value).__module__}.{type(value).__qualname__}.{value.name}"
    raise Unkeyable(f"graph argument of type {type(value).__qualname__}")


def _feed_program(h: _Hasher, name: str, program, digests: dict) -> None:
    h.feed("program", name)
    root = program.graph_module
    for module_name, module in root.named_modules():
        if not isinstance(module, torch.fx.GraphModule):
            continue
        h.feed("graph", module_name)
        for node in module.graph.nodes:
            h.feed(node.op, node.name, _target_name(node.target),
                   _argument_text(node.args, digests), _argument_text(node.kwargs, digests),
                   _describe_value(node.meta.get("val")))
            if node.op == "get_attr":
                attribute = module
                for part in node.target.split("."):
                    attribute = getattr(attribute, part)
                if isinstance(attribute, torch.Tensor):
                    h.feed("attribute", _argument_text(attribute, digests))
                elif not isinstance(attribute, torch.fx.GraphModule):  # graphs: fed above
                    raise Unkeyable(f"get_attr {node.target} of type "
                                    f"{type(attribute).__qualname__}")
    h.feed(str(program.graph_signature), repr(program.range_constraints),
           str(program.call_spec.in_spec), str(program.call_spec.out_spec))
    for label, state in (("state", program.state_dict), ("constant", program.constants)):
        for state_name in sorted(state):
            value = state[state_name]
            if not isinstance(value, torch.Tensor):
                raise Unkeyable(f"{label} {state_name} is a {type(value).__name__}")
            h.feed(label, state_name, _argument_text(value, digests))


def artifact_key(programs: Mapping[str, Any], context: tuple) -> str:
    """The key of compiling `programs` ({function name: ExportedProgram}) in `context`.
    Call it before `import_program`, which folds constants into the program's graph."""
    h = _Hasher("artifact")
    h.feed(*context)
    digests: dict = {}  # id → digest: a tensor shared by several programs is hashed once
    for name in programs:
        _feed_program(h, name, programs[name], digests)
    return h.hexdigest()


def key_for(model, example_args, *, target="cpu", compile_to=None, dynamic_shapes=None,
            **options) -> str:
    """The key `kiln.compile_model` would use for this model (exports it; no Kiln pass, no
    IREE). For tools and tests."""
    from kiln.compiler import CompileOptions
    from kiln.frontend import export_model
    from kiln.pipelines import Phase
    from kiln.targets import normalize_target

    opts = CompileOptions.from_kwargs(options)
    args = example_args if isinstance(example_args, (tuple, list)) else (example_args,)
    program = export_model(model, tuple(args), dynamic_shapes=dynamic_shapes,
                           strict=opts.strict_export)
    context = compile_context(normalize_target(target), Phase.parse(compile_to), opts)
    return artifact_key({"main": program}, context)
