// Regression test (kiln-opt / kiln.pipelines) for a fixed bug.
// RUN: not kiln-opt %s -p 'kiln-raise-attention,canonicalise' 2>&1 | filecheck %s
// RUN: not kiln-opt %s -p 'func.func(kiln-raise-attention)' 2>&1 | filecheck %s --check-prefix=NESTED
//
// Guards against: a pipeline that MLIR's pass parser rejects (a misspelt upstream pass, or a kiln
// pass nested under func.func, where the Python passes are not registered) once escaped as a
// Python traceback from PassManager construction. kiln-opt must report it as an `error:` line
// that carries MLIR's message and exit non-zero.

// CHECK-NOT: Traceback
// CHECK:     error: {{.*}}'canonicalise' does not refer to a registered pass

// NESTED-NOT: Traceback
// NESTED:     error: {{.*}}kiln-raise-attention

func.func @f(%x: !torch.vtensor<[2],f32>) -> !torch.vtensor<[2],f32> {
  return %x : !torch.vtensor<[2],f32>
}
