"""Compile cache: content-addressed `.vmfb` artifacts, so compiling the same model twice is instant.

    KILN_CACHE_DIR   where entries live (default: $XDG_CACHE_HOME/kiln, i.e. ~/.cache/kiln)
    KILN_CACHE=0     turn the cache off (as does the compile option `cache=False`)
    KILN_CACHE_MAX_MB  prune least-recently-used artifacts above this size (default 2048)

Two keys, both sha256 over everything that decides the artifact, neither running Kiln's pipeline
or IREE:

* **graph key** (exact): the torch.export graph after decompositions (text of every graph module,
  graph signature, input/output tree specs, placeholder shapes, range constraints) and the bytes
  of every parameter, buffer and lifted constant.
* **module key** (checked before export, which costs 0.4–1.2 s on small models; see
  docs/decisions.md): the bytes of every parameter and buffer, each submodule's class and its
  non-tensor attributes, the text of the source files that define those classes (plus one level
  of the user files they import from), and the example inputs' shapes and dtypes. A module key
  maps to a graph key (`<module key>.alias`). Models it cannot describe reliably (source not
  available, forward hooks, fx GraphModules, `dynamic_shapes`, attributes of unknown kinds) get no
  module key and use the graph key only. It cannot see code reached only through runtime
  monkeypatching of globals: use `cache=False` for such experiments.

Both keys also cover: Kiln's version and the digest of its own source files (so a changed pass
invalidates entries even without a version bump), the versions of torch, torch-mlir and
iree-base-compiler, the normalized target, every compile option except `verbose` and `cache`,
the phase, and the host CPU when compiling for `cpu="host"`.

An entry is `<graph key>.vmfb` plus `<graph key>.json` (format, key, sha256 and size of the vmfb,
the compile report, Kiln's version). Both are written atomically (temporary file, then
`os.replace`); the json is written last and acts as the commit marker. On read the sha256 is
verified: a corrupt, truncated or stale entry is logged as a warning (logger `kiln.cache`),
deleted, and rebuilt. Only full compiles (`.vmfb`) are cached; `compile_to=` phases bypass it.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import importlib.metadata
import importlib.util
import inspect
import json
import logging
import os
import platform
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import torch

import kiln

logger = logging.getLogger("kiln.cache")

CACHE_FORMAT = 1
DEFAULT_MAX_MB = 2048
_OFF_VALUES = {"0", "false", "off", "no"}
_VERSIONED_DISTRIBUTIONS = ("torch", "torch-mlir", "iree-base-compiler", "triton")


# ---------------------------------------------------------------------------------------------
# Configuration


def cache_dir() -> Path:
    """$KILN_CACHE_DIR, else $XDG_CACHE_HOME/kiln, else ~/.cache/kiln."""
    explicit = os.environ.get("KILN_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "kiln"


def cache_enabled(option: bool = True) -> bool:
    """The compile option `cache` and the environment switch `KILN_CACHE=0` together."""
    return bool(option) and os.environ.get("KILN_CACHE", "1").strip().lower() not in _OFF_VALUES


def _max_bytes() -> int:
    try:
        return int(float(os.environ.get("KILN_CACHE_MAX_MB", DEFAULT_MAX_MB)) * 2**20)
    except ValueError:
        return DEFAULT_MAX_MB * 2**20


# ---------------------------------------------------------------------------------------------
# Hashing helpers


class _Unkeyable(Exception):
    """The model holds something the module key cannot describe reliably."""


class _Hasher:
    def __init__(self, kind: str):
        self._h = hashlib.sha256()
        self.feed("kiln-cache", CACHE_FORMAT, kind)

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
        raise _Unkeyable(f"tensor of layout {getattr(tensor, 'layout', '?')} on "
                         f"{getattr(tensor, 'device', '?')}")
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    h = hashlib.sha256(f"{flat.dtype}|{tuple(tensor.shape)}|".encode())
    if flat.numel():
        h.update(flat.view(torch.uint8).numpy().data)
    return h.hexdigest()


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


# Kiln modules that do not take part in compiling (their edits keep the cache valid).
_NOT_COMPILER = frozenset({"cli.py", "check.py", "runtime.py", "opt.py"})


def _source_files() -> list[Path]:
    """Kiln's files that take part in compiling: the package (less _NOT_COMPILER and the
    bundled examples), its passes and dialects."""
    files = []
    for directory in _package_dirs():
        for path in sorted(directory.rglob("*")):
            relative = path.relative_to(directory)
            # .json: the kernel library's measured config table picks the kernels compiled in.
            if path.suffix not in (".py", ".mlir", ".json") or "__pycache__" in relative.parts:
                continue
            if relative.parts[0] == "examples" or (directory.name == "kiln" and
                                                    str(relative) in _NOT_COMPILER):
                continue
            files.append(path)
    return files


def kiln_source_digest() -> str:
    """Digest of Kiln's own sources: a changed pass invalidates entries without a version bump.
    Recomputed per compile (~2 ms), so a long-lived process sees edits too."""
    h = hashlib.sha256()
    for path in _source_files():
        h.update(f"{path.parent.name}/{path.name}\0".encode())
        h.update(path.read_bytes())
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def host_cpu_fingerprint() -> str:
    """What `--iree-llvmcpu-target-cpu=host` resolves from: machine, CPU model and ISA flags."""
    parts = [platform.machine(), platform.processor()]
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
        first = text.split("\n\n", 1)[0]
        parts += [line for line in first.splitlines()
                  if line.split(":")[0].strip() in ("model name", "flags", "Features",
                                                   "CPU part", "vendor_id")]
    except OSError:
        pass
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _environment() -> tuple:
    return (kiln.__version__, kiln_source_digest(), platform.python_version(),
            tuple((d, _distribution_version(d)) for d in _VERSIONED_DISTRIBUTIONS))


def _compile_context(targets: tuple, phase: Any, options: Any) -> tuple:
    """Everything besides the model: environment, target, phase, options (not verbose/cache)."""
    values = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)
              if f.name not in ("verbose", "cache")}
    values = {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in values.items()}
    host = host_cpu_fingerprint() if "cpu" in targets and values.get("cpu") == "host" else ""
    return (_environment(), tuple(targets), str(getattr(phase, "value", phase)),
            json.dumps(values, sort_keys=True, default=str), host,
            str(torch.get_default_dtype()))


# ---------------------------------------------------------------------------------------------
# Graph key (after torch.export)


def _describe_value(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor{tuple(value.shape)}:{value.dtype}:{value.device.type}"
    return f"{type(value).__name__}:{value!r}"


def graph_key(program: "torch.export.ExportedProgram", context: tuple) -> str:
    """Exact key of an exported (decomposed) program; call before `import_program` mutates it."""
    h = _Hasher("graph")
    h.feed(*context)
    for name, module in program.graph_module.named_modules():
        if isinstance(module, torch.fx.GraphModule):
            h.feed("graph", name, str(module.graph))
            for node in module.graph.nodes:
                if node.op == "placeholder":
                    h.feed(node.name, _describe_value(node.meta.get("val")))
    h.feed(str(program.graph_signature), repr(program.range_constraints),
           str(program.call_spec.in_spec), str(program.call_spec.out_spec))
    digests = {}
    for label, state in (("state", program.state_dict), ("constant", program.constants)):
        for name in sorted(state):
            value = state[name]
            if not isinstance(value, torch.Tensor):
                raise _Unkeyable(f"{label} {name} is a {type(value).__name__}")
            key = id(value)
            digests[key] = digests.get(key) or tensor_digest(value)
            h.feed(label, name, digests[key])
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Module key (before torch.export)

_TORCH_DIR = Path(torch.__file__).resolve().parent
_SKIPPED_DIRS = tuple({Path(sysconfig.get_paths()["stdlib"]).resolve(), _TORCH_DIR})
_BASE_MODULE_ATTRS = frozenset(vars(torch.nn.Module()))
_PLAIN = (type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device,
          torch.Size, torch.memory_format, torch.layout)
_MAX_OBJECTS = 20000


def _file_digest(path: Path) -> str:
    # Read every time: an (mtime, size) memo misses same-size edits within the clock's tick.
    return hashlib.sha256(path.read_bytes()).hexdigest()


@functools.lru_cache(maxsize=8192)
def _skipped(path: Path) -> bool:
    """torch's and the standard library's files are covered by the versions in the key."""
    return any(path.is_relative_to(d) for d in _SKIPPED_DIRS)


class _ModuleFingerprint:
    """Hashes a module tree: tensors by bytes, attributes by value, code by source files."""

    def __init__(self, model: torch.nn.Module, hasher: _Hasher):
        self.h = hasher
        self.paths = {id(m): name for name, m in model.named_modules(remove_duplicate=True)}
        self.files: dict[Path, Any] = {}  # source file → its module
        self.classes: set[type] = set()
        self.tensor_digests: dict[int, str] = {}
        self.objects = 0

    # -- code
    def add_code(self, obj: Any) -> None:
        """Record the source files defining a class (with its bases) or a Python function."""
        if isinstance(obj, type):
            for cls in obj.__mro__:
                if cls is not object and cls not in self.classes:
                    self.classes.add(cls)
                    self._add_class(cls)
        elif inspect.isfunction(obj):
            self._add_code_file(obj.__code__.co_filename, obj)

    def _add_class(self, cls: type) -> None:
        module = sys.modules.get(getattr(cls, "__module__", None) or "")
        if _is_builtin_module(module):
            if getattr(module, cls.__name__, None) is cls:
                return  # a real builtin type
            raise _Unkeyable(f"{cls.__qualname__} was defined without a module (exec?)")
        for name, value in list(vars(cls).items()):  # where its methods' code really lives
            function = getattr(value, "__func__", value)
            if not inspect.isfunction(function):
                continue
            generated = name.startswith("__") and name.endswith("__") and \
                function.__code__.co_filename.startswith("<")  # dataclass/attrs/namedtuple
            if not generated:
                self._add_code_file(function.__code__.co_filename, function)
        path = _module_path(module)
        if path is None:
            raise _Unkeyable(f"no source file for {cls.__qualname__} (module "
                             f"{cls.__module__})")
        self._add_path(path, module, cls)

    def _add_code_file(self, filename: str, obj: Any) -> None:
        path = _resolved_file(filename)
        if path is None:
            raise _Unkeyable(f"no source file for {getattr(obj, '__qualname__', obj)} "
                             f"({filename})")
        if _skipped(path):
            return
        module = sys.modules.get(getattr(obj, "__module__", None) or "")
        self._add_path(path, module if _module_path(module) == path else None, obj)

    def _add_path(self, path: Path, module: Any, obj: Any) -> None:
        if _skipped(path) or self.files.get(path) is not None:
            return
        if not path.is_file():
            raise _Unkeyable(f"source file {path} of {obj!r} is missing")
        self.files[path] = module

    def import_closure(self) -> None:
        """One level: the user files that the model's source files import names from."""
        for module in [m for m in self.files.values() if m is not None]:
            for value in list(vars(module).values()):
                if inspect.ismodule(value):
                    imported = value
                elif inspect.isclass(value) or inspect.isfunction(value):
                    imported = sys.modules.get(getattr(value, "__module__", None) or "")
                else:
                    continue
                path = _module_path(imported)
                if path is not None and path not in self.files and not _skipped(path) \
                        and path.is_file():
                    self.files[path] = imported

    def feed_files(self) -> None:
        for path in sorted(self.files):
            self.h.feed("file", str(path), _file_digest(path))

    # -- modules and values
    def module(self, name: str, module: torch.nn.Module) -> None:
        if isinstance(module, torch.fx.GraphModule):
            raise _Unkeyable("fx GraphModule (its code is not in a source file)")
        for attr in _BASE_MODULE_ATTRS:
            if "hook" in attr and getattr(module, attr, None):
                raise _Unkeyable(f"{name or 'model'} has hooks ({attr})")
        cls = type(module)
        self.add_code(cls)
        self.h.feed("module", name, f"{cls.__module__}.{cls.__qualname__}")
        for pname, param in module._parameters.items():
            self.h.feed("param", pname, "None" if param is None else self.tensor(param))
        for bname, buffer in module._buffers.items():
            self.h.feed("buffer", bname, "None" if buffer is None else self.tensor(buffer))
        for attr in sorted(set(vars(module)) - _BASE_MODULE_ATTRS):
            self.h.feed("attr", attr)
            self.value(vars(module)[attr], depth=0, seen=set())

    def tensor(self, tensor: torch.Tensor) -> str:
        key = id(tensor)
        if key not in self.tensor_digests:
            self.tensor_digests[key] = tensor_digest(tensor)
        return self.tensor_digests[key]

    def value(self, value: Any, depth: int, seen: set) -> None:
        self.objects += 1
        if self.objects > _MAX_OBJECTS or depth > 8:
            raise _Unkeyable("attributes too large or deep to describe")
        feed = self.h.feed
        if isinstance(value, _PLAIN):
            feed(type(value).__name__, repr(value))
        elif isinstance(value, torch.Tensor):
            feed("tensor", self.tensor(value))
        elif isinstance(value, torch.nn.Module):
            if id(value) not in self.paths:
                raise _Unkeyable(f"attribute holds a module outside the model ({type(value)})")
            feed("module-ref", self.paths[id(value)])
        elif isinstance(value, enum.Enum):
            feed("enum", f"{type(value).__module__}.{type(value).__qualname__}", value.name)
        elif isinstance(value, (list, tuple, set, frozenset, dict)):
            if id(value) in seen:
                feed("cycle")
                return
            seen = seen | {id(value)}
            items = value.items() if isinstance(value, dict) else enumerate(value)
            if isinstance(value, (set, frozenset)):
                items = enumerate(sorted(value, key=repr))
            feed(type(value).__name__, len(value))
            for key, item in items:
                self.value(key, depth + 1, seen)
                self.value(item, depth + 1, seen)
        elif inspect.isclass(value):
            self.add_code(value)
            feed("class", f"{value.__module__}.{value.__qualname__}")
        elif inspect.isfunction(value) or inspect.ismethod(value):
            function = getattr(value, "__func__", value)
            self.add_code(function)
            feed("function", f"{function.__module__}.{function.__qualname__}")
            if inspect.ismethod(value):
                self.value(value.__self__, depth + 1, seen)
            for cell in function.__closure__ or ():
                self.value(cell.cell_contents, depth + 1, seen)
            self.value(function.__defaults__, depth + 1, seen)
            self.value(function.__kwdefaults__, depth + 1, seen)
        elif inspect.isbuiltin(value) or isinstance(value, torch._ops.OpOverload):
            feed("builtin", getattr(value, "__module__", ""), getattr(value, "__qualname__",
                                                                     repr(value)))
        elif isinstance(value, functools.partial):
            feed("partial")
            for part in (value.func, value.args, value.keywords):
                self.value(part, depth + 1, seen)
        elif hasattr(value, "__dict__") and not inspect.ismodule(value):
            if id(value) in seen:
                feed("cycle")
                return
            cls = type(value)
            self.add_code(cls)
            feed("object", f"{cls.__module__}.{cls.__qualname__}")
            self.value(dict(vars(value)), depth + 1, seen | {id(value)})
        else:
            raise _Unkeyable(f"attribute of type {type(value).__qualname__}")


@functools.lru_cache(maxsize=8192)
def _resolved_file(filename: str) -> Optional[Path]:
    """An existing absolute source file, resolved (memoized: paths, not contents)."""
    path = Path(filename)
    return path.resolve() if path.is_absolute() and path.is_file() else None


def _module_path(module: Any) -> Optional[Path]:
    file = getattr(module, "__file__", None)
    return _resolved_path(file) if file else None


@functools.lru_cache(maxsize=8192)
def _resolved_path(filename: str) -> Path:
    return Path(filename).resolve()


def _is_builtin_module(module: Any) -> bool:
    return module is not None and getattr(module, "__name__", "") in sys.builtin_module_names


def _input_description(example_args: Any) -> tuple:
    leaves, spec = torch.utils._pytree.tree_flatten(example_args)
    return (str(spec),) + tuple(_describe_value(leaf) for leaf in leaves)


def module_key(model: Any, example_args: Any, context: tuple, *,
               dynamic_shapes: Any = None) -> tuple[Optional[str], str]:
    """(key, "") for a model the key describes reliably, else (None, why not)."""
    if dynamic_shapes is not None:
        return None, "dynamic_shapes given"
    if not isinstance(model, torch.nn.Module):
        return None, "not an nn.Module"
    from torch.nn.modules import module as module_globals

    if any(getattr(module_globals, name, None) for name in (
            "_global_forward_hooks", "_global_forward_pre_hooks")):
        return None, "global module hooks are registered"
    h = _Hasher("module")
    h.feed(*context)
    fingerprint = _ModuleFingerprint(model, h)
    try:
        for name, module in model.named_modules(remove_duplicate=True):
            fingerprint.module(name, module)
        fingerprint.import_closure()
        fingerprint.feed_files()
        args = example_args if isinstance(example_args, (tuple, list)) else (example_args,)
        h.feed("inputs", *_input_description(tuple(args)))
    except _Unkeyable as reason:
        return None, str(reason)
    except Exception as error:  # noqa: BLE001 - an odd model falls back to the graph key
        return None, f"{type(error).__name__}: {error}"
    return h.hexdigest(), ""


def keys(model, example_args, *, target="cpu", compile_to=None, dynamic_shapes=None,
         **options) -> dict:
    """The cache keys `compile_model` would use: {"module": key or None, "module_note": why
    not, "graph": key}. Exports the model (for the graph key); runs no Kiln pass, no IREE."""
    from kiln.compiler import CompileOptions
    from kiln.frontend import export_model
    from kiln.pipelines import Phase
    from kiln.targets import normalize_target

    opts = CompileOptions.from_kwargs(options)
    context = _compile_context(normalize_target(target), Phase.parse(compile_to), opts)
    module, why = module_key(model, example_args, context, dynamic_shapes=dynamic_shapes)
    args = example_args if isinstance(example_args, (tuple, list)) else (example_args,)
    program = export_model(model, tuple(args), dynamic_shapes=dynamic_shapes,
                           strict=opts.strict_export)
    return {"module": module, "module_note": why, "graph": graph_key(program, context)}


# ---------------------------------------------------------------------------------------------
# Storage


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would keep a shared cache private
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _unlink(*paths: Path) -> None:
    for path in paths:
        try:
            path.unlink()
        except OSError:  # already gone, or not ours to delete: the next write replaces it
            pass


class CompileCache:
    """The on-disk store: `<key>.vmfb` + `<key>.json`, and `<module key>.alias` → graph key."""

    def __init__(self, root: Optional[Path] = None):
        self.root = Path(root) if root is not None else cache_dir() / f"v{CACHE_FORMAT}"

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.root / f"{key}.vmfb", self.root / f"{key}.json"

    def get(self, key: str) -> Optional[tuple[bytes, dict]]:
        """The verified entry, or None. Corrupt or stale entries are deleted with a warning."""
        vmfb_path, meta_path = self._paths(key)
        try:
            meta_text = meta_path.read_text()
        except FileNotFoundError:
            return None
        try:
            meta = json.loads(meta_text)
            data = vmfb_path.read_bytes()
        except (ValueError, OSError) as error:
            return self._discard(key, f"unreadable ({type(error).__name__}: {error})")
        if meta.get("format") != CACHE_FORMAT or meta.get("key") != key:
            return self._discard(key, "stale (written by another cache format)")
        if len(data) != meta.get("size") or hashlib.sha256(data).hexdigest() != meta.get(
                "sha256"):
            return self._discard(key, f"corrupt ({len(data)} bytes, sha256 does not match)")
        now = time.time()
        try:
            os.utime(meta_path, (now, now))  # recency for pruning
        except OSError:
            pass
        return data, meta

    def _discard(self, key: str, why: str) -> None:
        logger.warning("kiln cache: entry %s… in %s is %s; deleting it and rebuilding",
                       key[:16], self.root, why)
        _unlink(*self._paths(key))
        return None

    def put(self, key: str, vmfb: bytes, report: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        vmfb_path, meta_path = self._paths(key)
        meta = {"format": CACHE_FORMAT, "key": key, "size": len(vmfb),
                "sha256": hashlib.sha256(vmfb).hexdigest(), "kiln_version": kiln.__version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "report": report}
        _atomic_write(vmfb_path, vmfb)
        _atomic_write(meta_path, json.dumps(meta, indent=1).encode())  # commit marker

    def get_alias(self, module_key: str) -> Optional[str]:
        try:
            target = json.loads((self.root / f"{module_key}.alias").read_text()).get("graph_key")
        except FileNotFoundError:
            return None
        except (ValueError, OSError, AttributeError):
            _unlink(self.root / f"{module_key}.alias")
            return None
        return target if isinstance(target, str) and len(target) == 64 else None

    def put_alias(self, module_key: str, graph_key: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.root / f"{module_key}.alias",
                      json.dumps({"graph_key": graph_key}).encode())

    def entries(self) -> list[Path]:
        return sorted(self.root.glob("*.json")) if self.root.is_dir() else []

    def prune(self, max_bytes: int) -> None:
        """Delete least recently used entries until the artifacts take at most `max_bytes`."""
        entries = []
        for meta_path in self.entries():
            vmfb_path = meta_path.with_suffix(".vmfb")
            try:
                entries.append((meta_path.stat().st_mtime, vmfb_path.stat().st_size,
                                meta_path, vmfb_path))
            except FileNotFoundError:
                continue
        total = sum(size for _, size, _, _ in entries)
        for _, size, meta_path, vmfb_path in sorted(entries):
            if total <= max_bytes:
                break
            _unlink(meta_path, vmfb_path)
            total -= size
        live = {p.stem for p in self.entries()}
        if len(live) < len(entries):  # drop aliases to deleted entries
            for alias in self.root.glob("*.alias"):
                if self.get_alias(alias.stem) not in live:
                    _unlink(alias)


# ---------------------------------------------------------------------------------------------
# The hook in compile_model


def _report_to_json(report) -> dict:
    return {"target": list(report.target),
            "rewrites": [dataclasses.asdict(r) for r in report.rewrites],
            "unmatched_softmax": [list(u) for u in report.unmatched_softmax],
            "phase_seconds": dict(report.phase_seconds)}


def _rediskreport(report, saved: dict) -> None:
    from kiln.passes import Rewrite

    report.rewrites[:] = [Rewrite(**r) for r in saved.get("rewrites", [])]
    report.unmatched_softmax[:] = [tuple(u) for u in saved.get("unmatched_softmax", [])]
    lookup = dict(report.phase_seconds)
    report.phase_seconds.clear()
    report.phase_seconds.update(saved.get("phase_seconds", {}))  # of the compile that built it
    report.phase_seconds.update(lookup)


class CacheSession:
    """One compile's use of the cache: `start` (module key), `lookup_graph` (graph key, after
    export), `store` (after IREE). `hit` is the CompiledModel when the cache answered."""

    def __init__(self, report, log: Callable[[str], None], verbose: bool):
        self.report, self._log, self.verbose = report, log, verbose
        self.disk = None
        self.context: tuple = ()
        self.module_key: Optional[str] = None
        self.graph_key: Optional[str] = None
        self.hit = None
        self.report.cache = "off"

    def log(self, message: str) -> None:
        if self.verbose:
            self._log(f"[kiln] {message}")

    @classmethod
    def start(cls, model, example_args, *, targets, phase, dynamic_shapes, options, report,
              log: Callable[[str], None]) -> "CacheSession":
        from kiln.pipelines import Phase

        session = cls(report, log, options.verbose)
        if not cache_enabled(getattr(options, "cache", True)):
            session.log("cache off")
            return session
        if phase is not Phase.VMFB:
            session.log(f"cache bypassed for compile_to={phase.value}")
            return session
        start = time.perf_counter()
        try:
            session.disk = CompileCache()
            session.context = _compile_context(targets, phase, options)
            session.module_key, why = module_key(model, example_args, session.context,
                                                 dynamic_shapes=dynamic_shapes)
        except Exception as error:  # the cache must never break a compile
            logger.warning("kiln cache: disabled for this compile: %s: %s",
                           type(error).__name__, error)
            session.disk = None
            return session
        report.cache = "miss"
        if session.module_key is None:
            session.log(f"cache: no module key ({why}); using the graph key after export")
        else:
            try:
                graph = session.disk.get_alias(session.module_key)
            except OSError as error:
                logger.warning("kiln cache: cannot read %s: %s", session.disk.root, error)
                graph = None
            if graph is not None:
                session._answer(graph, "module", start)
        return session

    def lookup_graph(self, program) -> Optional[Any]:
        """After export: the graph key; a hit returns the CompiledModel, else None."""
        if self.disk is None or self.hit is not None:
            return self.hit
        start = time.perf_counter()
        try:
            self.graph_key = graph_key(program, self.context)
        except Exception as error:
            self.log(f"cache off: cannot key the exported program ({error})")
            self.disk, self.report.cache = None, "off"
            return None
        if self._answer(self.graph_key, "graph", start) is not None and self.module_key:
            self._safely(self.disk.put_alias, self.module_key, self.graph_key)
        return self.hit

    def _answer(self, key: str, level: str, start: float):
        try:
            entry = self.disk.get(key)
        except OSError as error:
            logger.warning("kiln cache: cannot read %s: %s", self.disk.root, error)
            entry = None
        if entry is None:
            return None
        from kiln.compiler import CompiledModel

        vmfb, meta = entry
        seconds = time.perf_counter() - start
        self.report.phase_seconds["cache-lookup"] = seconds
        _rediskreport(self.report, meta.get("report", {}))
        self.report.cache = "hit"
        self.log(f"cache hit ({level} key {key[:16]}…, {len(vmfb)} bytes) in {seconds:.3f} s")
        self.hit = CompiledModel(vmfb, None, self.report)
        return self.hit

    def store(self, compiled):
        """After a full compile: write the entry (and the alias); returns `compiled`."""
        if self.disk is None or compiled.vmfb is None or self.graph_key is None:
            return compiled
        if self._safely(self.disk.put, self.graph_key, compiled.vmfb,
                        _report_to_json(compiled.report)):
            if self.module_key:
                self._safely(self.disk.put_alias, self.module_key, self.graph_key)
            self._safely(self.disk.prune, _max_bytes())
            self.log(f"cache: stored {self.graph_key[:16]}… in {self.disk.root}")
        return compiled

    def _safely(self, fn, *args) -> bool:
        try:
            fn(*args)
            return True
        except OSError as error:
            logger.warning("kiln cache: cannot write %s: %s", self.disk.root, error)
            return False


def clear(root: Optional[Path] = None) -> int:
    """Delete every entry; returns how many artifacts were removed."""
    store = CompileCache(root)
    count = 0
    if store.root.is_dir():
        for path in list(store.root.iterdir()):
            if path.suffix in (".vmfb", ".json", ".alias", ".tmp"):
                count += path.suffix == ".vmfb"
                _unlink(path)
    return count


def iter_entries(root: Optional[Path] = None) -> Iterable[dict]:
    """Metadata of every entry (for tooling and tests)."""
    for meta_path in CompileCache(root).entries():
        try:
            yield json.loads(meta_path.read_text())
        except (ValueError, OSError):
            continue
