"""Op-level conformance: PyTorch's OpInfo samples through Kiln and through the plain path.

Each OpInfo sample (`torch.testing._internal.common_methods_invocations.op_db`, CPU, inference)
is wrapped as a small `nn.Module` whose inputs are the sample's tensors, then run

  - through Kiln: `kiln.compile_to_vmfb(..., cache=False)` + `kiln.load` (torch tensors in, so
    outputs come back as the model's own structure and in-place mutations reach the caller);
  - through the plain path: `torch.export` → torch-mlir's `fx.export_and_import` (its default
    decompositions) → `iree.compiler.compile_str` for llvm-cpu with plain flags → `iree.runtime`;

and compared with eager (dtype-aware tolerances, exact for integers and booleans).

Modules: `samples` (which samples, wrapping, comparison), `paths` (the two pipelines and the
outcome classification), `worker` (a process that runs samples one at a time), `run` (the
driver: workers with per-sample timeouts, results JSON, docs/conformance.md).

    python -m tests.conformance.run --subset ci          # the CI subset (a few minutes)
    python -m tests.conformance.run --full               # every op (hours on 2 cores)
"""
