"""Running one hand-written CPU executable (a Kiln kernel's `hal.executable.source`) alone, shared
by the CPU kernel tests: a module whose `main` dispatches it on the given arrays, compiled for
this host and run by IREE's runtime."""

from __future__ import annotations

import numpy as np


def run_dispatch(executable: str, entry: str, arrays: tuple, out_shape: tuple) -> np.ndarray:
    """`executable`'s `entry` (its executable named @exe) on `arrays` (f32), its one result of
    `out_shape`."""
    import iree.runtime as rt

    from kiln.bindings import iree_compiler

    types = [f"tensor<{'x'.join(map(str, x.shape))}xf32>" for x in arrays]
    out = f"tensor<{'x'.join(map(str, out_shape))}xf32>"
    names = [f"%in{i}" for i in range(len(arrays))]
    arguments = ", ".join(f"{name}: {type_}" for name, type_ in zip(names, types))
    module = (f"module {{\n{executable}util.func public @main({arguments}) -> {out} {{\n"
              f"  %c = flow.dispatch @exe::@{entry}({', '.join(names)}) : ({', '.join(types)})"
              f" -> {out}\n  util.return %c : {out}\n}}\n}}\n")
    vmfb = iree_compiler().compile_str(module, target_backends=["llvm-cpu"],
                                       extra_args=["--iree-llvmcpu-target-cpu=host"])
    context = rt.SystemContext(config=rt.Config("local-task"))
    context.add_vm_module(rt.VmModule.copy_buffer(context.instance, vmfb))
    return np.asarray(context.modules.module["main"](*arrays))
