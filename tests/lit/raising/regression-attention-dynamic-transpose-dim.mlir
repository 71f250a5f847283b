// KNOWN BUG (kiln-raise-attention, passes/matching.py), kept as an expected failure until fixed;
// remove the XFAIL line then.
// RUN: kiln-opt %s -p kiln-raise-attention | filecheck %s
//
// swaps_last_two reads transpose.int's dims with constant_or(dim, 0): a non-constant dim becomes 0,
// which for a rank-2 k is "the other axis", so transpose(k, %d, 1) is taken for kᵀ. With a square
// k and %d = 1 at run time that transpose is the identity and the raise computes softmax(q·kᵀ)·v
// where the program computes softmax(q·k)·v.
// Suggested fix: constant_or(op.operands[i], None) in swaps_last_two (the isinstance(d, int)
// filter that follows already drops the None).

// CHECK-LABEL: func.func @transpose_dynamic_dim(
// CHECK-NOT:     kiln.attention
// CHECK:         torch.aten.transpose.int
// CHECK:         torch.aten._softmax
func.func @transpose_dynamic_dim(%q: !torch.vtensor<[16,16],f32>, %k: !torch.vtensor<[16,16],f32>, %v: !torch.vtensor<[16,16],f32>, %d: !torch.int) -> !torch.vtensor<[16,16],f32> {
  %int1 = torch.constant.int 1
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %kt = torch.aten.transpose.int %k, %d, %int1 : !torch.vtensor<[16,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[16,16],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[16,16],f32>, !torch.vtensor<[16,16],f32> -> !torch.vtensor<[16,16],f32>
  %sm = torch.aten._softmax %s, %intm1, %false : !torch.vtensor<[16,16],f32>, !torch.int, !torch.bool -> !torch.vtensor<[16,16],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[16,16],f32>, !torch.vtensor<[16,16],f32> -> !torch.vtensor<[16,16],f32>
  return %o : !torch.vtensor<[16,16],f32>
}
