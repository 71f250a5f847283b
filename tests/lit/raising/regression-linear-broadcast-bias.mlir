// Regression test (kiln-raise-linear) for a fixed bug.
// RUN: kiln-opt %s -p kiln-raise-linear --split-input-file | filecheck %s
//
// Guards against: a matmul + bias (or addmm) whose bias is rank 1 but not [out_features], e.g. a
// [1] bias that torch broadcasts. The matchers once accepted any rank-1 bias and built a
// kiln.linear that its verifier rejects ("'kiln.linear' bias 1xf32 should be 4xf32"), failing
// the whole pipeline. Such a bias must leave the ops alone. (If the pass later materialises the
// broadcast instead, update the CHECK lines to expect a kiln.linear.)

// CHECK-LABEL: func.func @matmul_broadcast_bias(
// CHECK-NOT:     kiln.linear
// CHECK:         torch.aten.matmul
// CHECK:         torch.aten.add.Tensor
func.func @matmul_broadcast_bias(%x: !torch.vtensor<[2,8],f32>) -> !torch.vtensor<[2,4],f32> {
  %int1 = torch.constant.int 1
  %w = torch.vtensor.literal(dense<1.0> : tensor<8x4xf32>) : !torch.vtensor<[8,4],f32>
  %b = torch.vtensor.literal(dense<0.5> : tensor<1xf32>) : !torch.vtensor<[1],f32>
  %m = torch.aten.matmul %x, %w : !torch.vtensor<[2,8],f32>, !torch.vtensor<[8,4],f32> -> !torch.vtensor<[2,4],f32>
  %y = torch.aten.add.Tensor %m, %b, %int1 : !torch.vtensor<[2,4],f32>, !torch.vtensor<[1],f32>, !torch.int -> !torch.vtensor<[2,4],f32>
  return %y : !torch.vtensor<[2,4],f32>
}

// -----

// CHECK-LABEL: func.func @addmm_broadcast_bias(
// CHECK-NOT:     kiln.linear
// CHECK:         torch.aten.addmm
func.func @addmm_broadcast_bias(%b: !torch.vtensor<[1],f32>, %x: !torch.vtensor<[2,8],f32>, %w: !torch.vtensor<[8,4],f32>) -> !torch.vtensor<[2,4],f32> {
  %int1 = torch.constant.int 1
  %a = torch.aten.addmm %b, %x, %w, %int1, %int1 : !torch.vtensor<[1],f32>, !torch.vtensor<[2,8],f32>, !torch.vtensor<[8,4],f32>, !torch.int, !torch.int -> !torch.vtensor<[2,4],f32>
  return %a : !torch.vtensor<[2,4],f32>
}
