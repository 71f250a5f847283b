// KNOWN BUG (kiln-raise-linear), kept as an expected failure until fixed; remove the XFAIL line then.
// RUN: kiln-opt %s -p kiln-raise-linear --split-input-file | filecheck %s
//
// The matmul+bias and addmm matchers accept any rank-1 bias, but kiln.linear's verifier wants
// exactly [out_features]. A bias of shape [1] (valid torch: it broadcasts) makes the pass build an
// invalid kiln.linear and the pipeline fails ("'kiln.linear' bias 1xf32 should be 4xf32") instead
// of leaving the op alone.
// Suggested fix: in match_linear / _match_matmul_plus_bias, return None unless the bias shape is
// [N] with N the weight's out_features (w.shape[1] for in_out) and its dtype the input's. (Or
// materialise the broadcast; then update the CHECK lines below to expect a kiln.linear.)

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
