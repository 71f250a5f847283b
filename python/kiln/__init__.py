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
    "KilnError": "kiln.errors",
    "KilnCompileError": "kiln.errors",
    "KilnImportError": "kiln.errors",
    "KilnLoadError": "kiln.errors",
    "check": "kiln.check",  # the module is callable too: kiln.check(...) works either way
    "CheckResult": "kiln.check",
    "compile_report": "kiln.dynamo",  # torch.compile(model, backend="kiln") reports
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kiln' has no attribute {name!r}")
