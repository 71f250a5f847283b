"""Kiln: compile PyTorch models into fast IREE artifacts for CPU and CUDA.

    vmfb = kiln.compile_to_vmfb(model, example_args, target="cpu")
    run = kiln.load(vmfb, device="cpu")
    outputs = run(*example_args)

The compiler half (torch-mlir, IREE's compiler) is imported on first use, so a deployment
machine with only `iree-base-runtime` can `import kiln` and call `kiln.load`.
"""

__version__ = "0.1.0"

_LAZY = {
    "compile_to_vmfb": "kiln.compiler",
    "compile_model": "kiln.compiler",
    "compile_entry_points": "kiln.compiler",
    "CompileOptions": "kiln.compiler",
    "import_model": "kiln.frontend",
    "load": "kiln.runtime",
    "KilnModule": "kiln.runtime",
    "DeviceTensor": "kiln.runtime",
    "RuntimeOptions": "kiln.runtime",
    "KilnError": "kiln.errors",
    "KilnCompileError": "kiln.errors",
    "KilnImportError": "kiln.errors",
    "KilnLoadError": "kiln.errors",
    "KilnUnsupportedError": "kiln.errors",
    "check": "kiln.equivalence",
    "CheckResult": "kiln.equivalence",
    "compile_generator": "kiln.generate",
    "load_generator": "kiln.generate",
    "Generator": "kiln.generate",
    "compile_report": "kiln.dynamo",  # torch.compile(model, backend="kiln") reports
}

# Submodules reachable as attributes without an import of their own (`kiln.diagnose.
# export_issues(model, args)`); each is imported on first use like the names above.
_SUBMODULES = ("cache", "compile_key", "diagnose", "equivalence", "kernels")

__all__ = sorted(_LAZY) + sorted(_SUBMODULES)


def __getattr__(name):
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"kiln.{name}")
    raise AttributeError(f"module 'kiln' has no attribute {name!r}")


def __dir__():
    """The public names too (they are imported lazily, so `globals()` alone lacks them)."""
    return sorted(set(globals()) | set(__all__))
