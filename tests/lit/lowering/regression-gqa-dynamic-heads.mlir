// Regression test (convert-kiln-to-torch, decomposed attention) for a fixed bug.
// RUN: not kiln-opt %s -p convert-kiln-to-torch --split-input-file 2>&1 | filecheck %s
//
// Guards against: a kiln.attention with a dynamic head count on one side only (query heads ?
// over 2 kv heads, or 4 query heads over ?). The verifier accepts it (a dynamic dim matches
// anything), and the decomposed lowering's kv-head expansion once computed `query_heads // heads`
// with a None, dying with a bare Python TypeError ("unsupported operand type(s) for //:
// 'NoneType' and 'int") that named no op and no location. It must fail with a kiln error that
// names the kiln.attention and its source location instead. (If such ops are ever lowered,
// rewrite this test to check the lowered IR.)

// CHECK-NOT: unsupported operand type
// CHECK:     error: {{.*}}kiln.attention at {{.*}}
// CHECK-NOT: unsupported operand type
// CHECK:     error: {{.*}}kiln.attention at {{.*}}
// CHECK-NOT: unsupported operand type

func.func @dynamic_query_heads(%q: !torch.vtensor<[1,?,8,16],f32>, %k: !torch.vtensor<[1,2,8,16],f32>, %v: !torch.vtensor<[1,2,8,16],f32>) -> !torch.vtensor<[1,?,8,16],f32> {
  %0 = "kiln.attention"(%q, %k, %v) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 2.500000e-01 : f64} : (!torch.vtensor<[1,?,8,16],f32>, !torch.vtensor<[1,2,8,16],f32>, !torch.vtensor<[1,2,8,16],f32>) -> !torch.vtensor<[1,?,8,16],f32>
  return %0 : !torch.vtensor<[1,?,8,16],f32>
}

// -----

func.func @dynamic_kv_heads(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,?,8,16],f32>, %v: !torch.vtensor<[1,?,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %0 = "kiln.attention"(%q, %k, %v) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 2.500000e-01 : f64} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,?,8,16],f32>, !torch.vtensor<[1,?,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32>
  return %0 : !torch.vtensor<[1,4,8,16],f32>
}
