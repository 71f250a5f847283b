// Regression test (kiln-raise-attention constant-mask reading, passes/matching.py): this was a bug, fixed since.
// RUN: kiln-opt %s -p kiln-raise-attention --split-input-file | filecheck %s
//
// literal_array looks through to.dtype / _to_copy / convert_element_type to the literal but returns
// the literal's values as they were *before* the conversion, and classify_mask then reads them
// with the meaning of their pre-cast dtype:
//  * a bool tril cast to f32 and *added* to the scores (+1.0 on kept entries, +0 above the
//    diagonal: no masking at all) is read as a keep-mask and raised as causal = true;
//  * an additive f32 causal mask (0 / finfo.min) cast to bool and passed to SDPA (True, i.e. keep,
//    exactly on the future entries) is read as additive and raised as causal = true.
// Both are silent miscompiles. Suggested fix: in literal_array, apply the conversion(s) to the
// numpy value (astype to the dtype of `value`'s type: bool→f32 gives 1.0/0.0, f32→bool gives
// != 0), or only look through conversions between float dtypes. Then both masks classify as
// "general" and stay as the mask operand.

// CHECK-LABEL: func.func @bool_tril_cast_to_float_added(
// CHECK-NOT:     causal = true
// CHECK:         "kiln.attention"({{.*}}) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>,
func.func @bool_tril_cast_to_float_added(%q: !torch.vtensor<[1,2,3,16],f32>, %k: !torch.vtensor<[1,2,3,16],f32>, %v: !torch.vtensor<[1,2,3,16],f32>) -> !torch.vtensor<[1,2,3,16],f32> {
  %int1 = torch.constant.int 1
  %int6 = torch.constant.int 6
  %none = torch.constant.none
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %mb = torch.vtensor.literal(dense<[[true, false, false], [true, true, false], [true, true, true]]> : tensor<3x3xi1>) : !torch.vtensor<[3,3],i1>
  %mask = torch.aten.to.dtype %mb, %int6, %false, %false, %none : !torch.vtensor<[3,3],i1>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[3,3],f32>
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,2,3,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,2,16,3],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,2,3,16],f32>, !torch.vtensor<[1,2,16,3],f32> -> !torch.vtensor<[1,2,3,3],f32>
  %a = torch.aten.add.Tensor %s, %mask, %int1 : !torch.vtensor<[1,2,3,3],f32>, !torch.vtensor<[3,3],f32>, !torch.int -> !torch.vtensor<[1,2,3,3],f32>
  %sm = torch.aten._softmax %a, %intm1, %false : !torch.vtensor<[1,2,3,3],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,2,3,3],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,2,3,3],f32>, !torch.vtensor<[1,2,3,16],f32> -> !torch.vtensor<[1,2,3,16],f32>
  return %o : !torch.vtensor<[1,2,3,16],f32>
}

// -----

// CHECK-LABEL: func.func @additive_causal_cast_to_bool_sdpa(
// CHECK-NOT:     causal = true
// CHECK:         "kiln.attention"({{.*}}) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>,
func.func @additive_causal_cast_to_bool_sdpa(%q: !torch.vtensor<[1,2,3,16],f32>, %k: !torch.vtensor<[1,2,3,16],f32>, %v: !torch.vtensor<[1,2,3,16],f32>) -> !torch.vtensor<[1,2,3,16],f32> {
  %float0 = torch.constant.float 0.000000e+00
  %none = torch.constant.none
  %false = torch.constant.bool false
  %int11 = torch.constant.int 11
  %mf = torch.vtensor.literal(dense<[[0.0, -3.40282347E+38, -3.40282347E+38], [0.0, 0.0, -3.40282347E+38], [0.0, 0.0, 0.0]]> : tensor<3x3xf32>) : !torch.vtensor<[3,3],f32>
  %mb = torch.aten.to.dtype %mf, %int11, %false, %false, %none : !torch.vtensor<[3,3],f32>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[3,3],i1>
  %o = torch.aten.scaled_dot_product_attention %q, %k, %v, %mb, %float0, %false, %none, %false : !torch.vtensor<[1,2,3,16],f32>, !torch.vtensor<[1,2,3,16],f32>, !torch.vtensor<[1,2,3,16],f32>, !torch.vtensor<[3,3],i1>, !torch.float, !torch.bool, !torch.none, !torch.bool -> !torch.vtensor<[1,2,3,16],f32>
  return %o : !torch.vtensor<[1,2,3,16],f32>
}
