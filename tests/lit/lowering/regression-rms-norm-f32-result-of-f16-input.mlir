// Regression test (kiln-raise-norms + convert-kiln-to-torch): this was a bug, fixed since.
// RUN: kiln-opt %s -p 'kiln-raise-norms,canonicalize,convert-kiln-to-torch,canonicalize' | filecheck %s
//
// T5's RMSNorm with an f16 input and an f32 weight (T5LayerNorm casts back to the weight's dtype
// only when that is f16/bf16): torch computes x16 · rsqrt32 → f32 and w32 · that → f32, never
// rounding the normalized value to f16. kiln-raise-norms raises it to
//     kiln.rms_norm(x: f16, w: f32) -> f32
// and lower_rms_norm always casts the normalized value to the *input* dtype (`b.cast(y,
// tensor_info(x).dtype)`, written for Llama, which does cast), so the lowered program rounds to
// f16 in the middle (relative error up to 2^-11 ≈ 5e-4 that eager does not have). Same without
// a weight: rms_norm(x: f16) -> f32 lowers to f32 → f16 → f32.
// Suggested fix: record in the op whether the normalized value is cast back (e.g. lower with
// `b.cast(y, out.dtype if no cast was matched ...)`), or simplest: in lower_rms_norm cast to the
// input dtype only when the result dtype equals it, i.e.
//     y = b.cast(y, tensor_info(x).dtype if out.dtype == tensor_info(x).dtype else out.dtype)
// (Llama's f16-input/f32-weight case, which does round, then needs the raise to keep the cast
// outside the op — or the verifier should reject result dtype != input dtype, as the dialect
// docstring says "the result has x's dtype".)

// CHECK-LABEL: func.func @rms_norm_t5_f32_weight(
// CHECK:         torch.aten.rsqrt
// CHECK-NOT:     -> !torch.vtensor<[2,8],f16>
// CHECK:         return %{{.+}} : !torch.vtensor<[2,8],f32>
func.func @rms_norm_t5_f32_weight(%x: !torch.vtensor<[2,8],f16>) -> !torch.vtensor<[2,8],f32> {
  %int6 = torch.constant.int 6
  %int2 = torch.constant.int 2
  %int1 = torch.constant.int 1
  %int-1 = torch.constant.int -1
  %false = torch.constant.bool false
  %true = torch.constant.bool true
  %none = torch.constant.none
  %eps = torch.constant.float 9.9999999999999995E-7
  %w = torch.vtensor.literal(dense<2.0> : tensor<8xf32>) : !torch.vtensor<[8],f32>
  %xf = torch.aten.to.dtype %x, %int6, %false, %false, %none : !torch.vtensor<[2,8],f16>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[2,8],f32>
  %sq = torch.aten.pow.Tensor_Scalar %xf, %int2 : !torch.vtensor<[2,8],f32>, !torch.int -> !torch.vtensor<[2,8],f32>
  %dims = torch.prim.ListConstruct %int-1 : (!torch.int) -> !torch.list<int>
  %ms = torch.aten.mean.dim %sq, %dims, %true, %none : !torch.vtensor<[2,8],f32>, !torch.list<int>, !torch.bool, !torch.none -> !torch.vtensor<[2,1],f32>
  %add = torch.aten.add.Scalar %ms, %eps, %int1 : !torch.vtensor<[2,1],f32>, !torch.float, !torch.int -> !torch.vtensor<[2,1],f32>
  %r = torch.aten.rsqrt %add : !torch.vtensor<[2,1],f32> -> !torch.vtensor<[2,1],f32>
  %n = torch.aten.mul.Tensor %x, %r : !torch.vtensor<[2,8],f16>, !torch.vtensor<[2,1],f32> -> !torch.vtensor<[2,8],f32>
  %y = torch.aten.mul.Tensor %w, %n : !torch.vtensor<[8],f32>, !torch.vtensor<[2,8],f32> -> !torch.vtensor<[2,8],f32>
  return %y : !torch.vtensor<[2,8],f32>
}
