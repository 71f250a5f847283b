// KNOWN BUG (convert-kiln-to-torch, decomposed attention), kept as an expected failure until
// fixed; remove the XFAIL line then.
// RUN: not kiln-opt %s -p convert-kiln-to-torch --split-input-file 2>&1 | filecheck %s
//
// The verifier accepts a dynamic head count on one side (query heads ? over 2 kv heads, or 4 over
// ?), since a dynamic dim matches anything. lower_attention_decomposed then sees the heads differ
// and calls _expand_kv_heads, which computes `query_heads // heads` with a None and dies with a
// Python TypeError: "kiln-opt failed: unsupported operand type(s) for //: 'NoneType' and 'int'",
// no op, no location. (The fused lowering is fine: it just sets enable_gqa.)
// Suggested fix: in lower_attention_decomposed, when either head count is None and they are not
// both None, raise PassError(f"kiln.attention at {source_location(op)}: grouped-query attention
// with a dynamic head count is not supported yet") as the dynamic causal case already does (or
// expand with a runtime group size). If the fix lowers these instead, rewrite this test to check
// the lowered IR.

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
