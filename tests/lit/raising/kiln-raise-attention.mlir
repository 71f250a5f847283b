// RUN: kiln-opt %s -p kiln-raise-attention --split-input-file | filecheck %s

// kiln-raise-attention: SDPA and matmul-softmax-matmul → one kiln.attention.
// Positive cases first, then the patterns the pass must leave alone.
// Per-family cases (with negatives) live in kiln-raise-attention/; known pass bugs are kept in
// kiln-raise-attention/known-bugs.mlir (XFAIL), fixed ones as regression cases in the family files.

// SDPA with is_causal = true and no scale: default scale is 1/sqrt(16) = 0.25.
// CHECK-LABEL: func.func @sdpa_causal(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>)
// CHECK-NOT:     torch.aten.scaled_dot_product_attention
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = true, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 2.500000e-01 : f64} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32>
// CHECK-NEXT:    return %[[O]] : !torch.vtensor<[1,4,8,16],f32>
func.func @sdpa_causal(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %none = torch.constant.none
  %float0 = torch.constant.float 0.000000e+00
  %true = torch.constant.bool true
  %false = torch.constant.bool false
  %o = torch.aten.scaled_dot_product_attention %q, %k, %v, %none, %float0, %true, %none, %false : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.none, !torch.float, !torch.bool, !torch.none, !torch.bool -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// SDPA with an explicit additive mask, Sq != Sk and Dv != D; default scale 1/sqrt(64) = 0.125.
// CHECK-LABEL: func.func @sdpa_mask(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[2,4,8,64],f32>, %[[K:[^:]+]]: !torch.vtensor<[2,4,10,64],f32>, %[[V:[^:]+]]: !torch.vtensor<[2,4,10,32],f32>, %[[M:[^:]+]]: !torch.vtensor<[2,1,8,10],f32>)
// CHECK-NOT:     torch.aten.scaled_dot_product_attention
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]], %[[M]])
// CHECK-SAME:      causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 1.250000e-01 : f64
// CHECK-SAME:      -> !torch.vtensor<[2,4,8,32],f32>
// CHECK-NEXT:    return %[[O]]
func.func @sdpa_mask(%q: !torch.vtensor<[2,4,8,64],f32>, %k: !torch.vtensor<[2,4,10,64],f32>, %v: !torch.vtensor<[2,4,10,32],f32>, %mask: !torch.vtensor<[2,1,8,10],f32>) -> !torch.vtensor<[2,4,8,32],f32> {
  %none = torch.constant.none
  %float0 = torch.constant.float 0.000000e+00
  %false = torch.constant.bool false
  %o = torch.aten.scaled_dot_product_attention %q, %k, %v, %mask, %float0, %false, %none, %false : !torch.vtensor<[2,4,8,64],f32>, !torch.vtensor<[2,4,10,64],f32>, !torch.vtensor<[2,4,10,32],f32>, !torch.vtensor<[2,1,8,10],f32>, !torch.float, !torch.bool, !torch.none, !torch.bool -> !torch.vtensor<[2,4,8,32],f32>
  return %o : !torch.vtensor<[2,4,8,32],f32>
}

// -----

// SDPA with a bool (keep = true) mask and an explicit scale: both carried over as they are.
// CHECK-LABEL: func.func @sdpa_bool_mask_scale(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[M:[^:]+]]: !torch.vtensor<[8,8],i1>)
// CHECK-NOT:     torch.aten.scaled_dot_product_attention
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]], %[[M]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 5.000000e-01 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @sdpa_bool_mask_scale(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %mask: !torch.vtensor<[8,8],i1>) -> !torch.vtensor<[1,4,8,16],f32> {
  %float0 = torch.constant.float 0.000000e+00
  %scale = torch.constant.float 5.000000e-01
  %false = torch.constant.bool false
  %o = torch.aten.scaled_dot_product_attention %q, %k, %v, %mask, %float0, %false, %scale, %false : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[8,8],i1>, !torch.float, !torch.bool, !torch.float, !torch.bool -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// matmul(q, transpose(k, -2, -1)) / 4 → _softmax(-1) → matmul(·, v): scale 1/4.
// The whole chain (transpose included, it has no other use) is erased.
// CHECK-LABEL: func.func @softmax_div_transpose(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>)
// CHECK-NOT:     torch.aten.transpose.int
// CHECK-NOT:     torch.aten.matmul
// CHECK-NOT:     torch.aten.div.Scalar
// CHECK-NOT:     torch.aten._softmax
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 2.500000e-01 : f64} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32>
// CHECK-NEXT:    return %[[O]]
func.func @softmax_div_transpose(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %f4 = torch.constant.float 4.000000e+00
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %d = torch.aten.div.Scalar %s, %f4 : !torch.vtensor<[1,4,8,8],f32>, !torch.float -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %d, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Same chain with k transposed by permute [0, 1, 3, 2].
// CHECK-LABEL: func.func @softmax_div_permute(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>)
// CHECK-NOT:     torch.aten.permute
// CHECK-NOT:     torch.aten.matmul
// CHECK-NOT:     torch.aten._softmax
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 2.500000e-01 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @softmax_div_permute(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %f4 = torch.constant.float 4.000000e+00
  %l = torch.prim.ListConstruct %int0, %int1, %int3, %int2 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %p = torch.aten.permute %k, %l : !torch.vtensor<[1,4,8,16],f32>, !torch.list<int> -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %p : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %d = torch.aten.div.Scalar %s, %f4 : !torch.vtensor<[1,4,8,8],f32>, !torch.float -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %d, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Scale written as mul.Scalar: the factor is the scale itself.
// CHECK-LABEL: func.func @softmax_mul_scale(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>)
// CHECK-NOT:     torch.aten.mul.Scalar
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 1.250000e-01 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @softmax_mul_scale(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %f = torch.constant.float 1.250000e-01
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %m = torch.aten.mul.Scalar %s, %f : !torch.vtensor<[1,4,8,8],f32>, !torch.float -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %m, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// No scale op at all: scale = 1.0.
// CHECK-LABEL: func.func @softmax_no_scale(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>)
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 1.000000e+00 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @softmax_no_scale(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %s, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Additive float mask added (alpha 1) after the scale becomes the mask operand.
// CHECK-LABEL: func.func @softmax_additive_mask(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[M:[^:]+]]: !torch.vtensor<[1,1,8,8],f32>)
// CHECK-NOT:     torch.aten.add.Tensor
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]], %[[M]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 2.500000e-01 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @softmax_additive_mask(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %mask: !torch.vtensor<[1,1,8,8],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %int1 = torch.constant.int 1
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %f4 = torch.constant.float 4.000000e+00
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %d = torch.aten.div.Scalar %s, %f4 : !torch.vtensor<[1,4,8,8],f32>, !torch.float -> !torch.vtensor<[1,4,8,8],f32>
  %a = torch.aten.add.Tensor %d, %mask, %int1 : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,1,8,8],f32>, !torch.int -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %a, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Mask on the left of the add, softmax.int over dim 3 (= rank - 1), transpose written (3, 2),
// integer divisor: all still attention.
// CHECK-LABEL: func.func @softmax_int_mask_lhs(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[M:[^:]+]]: !torch.vtensor<[8,8],f32>)
// CHECK-NOT:     torch.aten.softmax.int
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]], %[[M]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 2.500000e-01 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @softmax_int_mask_lhs(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %mask: !torch.vtensor<[8,8],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %int4 = torch.constant.int 4
  %none = torch.constant.none
  %kt = torch.aten.transpose.int %k, %int3, %int2 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %d = torch.aten.div.Scalar %s, %int4 : !torch.vtensor<[1,4,8,8],f32>, !torch.int -> !torch.vtensor<[1,4,8,8],f32>
  %a = torch.aten.add.Tensor %mask, %d, %int1 : !torch.vtensor<[8,8],f32>, !torch.vtensor<[1,4,8,8],f32>, !torch.int -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten.softmax.int %a, %int3, %none : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.none -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Constant masks are read. An additive literal that is 0 on and below the diagonal and
// <= -1e4 (here finfo(f32).min) above it is exactly the causal mask: causal = true, no mask.
// CHECK-LABEL: func.func @constant_causal_additive_mask(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,2,3,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,2,3,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,2,3,16],f32>)
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = true, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 1.000000e+00 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @constant_causal_additive_mask(%q: !torch.vtensor<[1,2,3,16],f32>, %k: !torch.vtensor<[1,2,3,16],f32>, %v: !torch.vtensor<[1,2,3,16],f32>) -> !torch.vtensor<[1,2,3,16],f32> {
  %int1 = torch.constant.int 1
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %mask = torch.vtensor.literal(dense<[[0.0, -3.40282347E+38, -3.40282347E+38], [0.0, 0.0, -3.40282347E+38], [0.0, 0.0, 0.0]]> : tensor<3x3xf32>) : !torch.vtensor<[3,3],f32>
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,2,3,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,2,16,3],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,2,3,16],f32>, !torch.vtensor<[1,2,16,3],f32> -> !torch.vtensor<[1,2,3,3],f32>
  %a = torch.aten.add.Tensor %s, %mask, %int1 : !torch.vtensor<[1,2,3,3],f32>, !torch.vtensor<[3,3],f32>, !torch.int -> !torch.vtensor<[1,2,3,3],f32>
  %sm = torch.aten._softmax %a, %intm1, %false : !torch.vtensor<[1,2,3,3],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,2,3,3],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,2,3,3],f32>, !torch.vtensor<[1,2,3,16],f32> -> !torch.vtensor<[1,2,3,16],f32>
  return %o : !torch.vtensor<[1,2,3,16],f32>
}

// -----

// SDPA with a constant bool lower-triangular (keep) mask → causal = true, no mask.
// CHECK-LABEL: func.func @sdpa_constant_bool_tril(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,2,3,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,2,3,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,2,3,16],f32>)
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = true, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 2.500000e-01 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @sdpa_constant_bool_tril(%q: !torch.vtensor<[1,2,3,16],f32>, %k: !torch.vtensor<[1,2,3,16],f32>, %v: !torch.vtensor<[1,2,3,16],f32>) -> !torch.vtensor<[1,2,3,16],f32> {
  %float0 = torch.constant.float 0.000000e+00
  %none = torch.constant.none
  %false = torch.constant.bool false
  %mask = torch.vtensor.literal(dense<[[true, false, false], [true, true, false], [true, true, true]]> : tensor<3x3xi1>) : !torch.vtensor<[3,3],i1>
  %o = torch.aten.scaled_dot_product_attention %q, %k, %v, %mask, %float0, %false, %none, %false : !torch.vtensor<[1,2,3,16],f32>, !torch.vtensor<[1,2,3,16],f32>, !torch.vtensor<[1,2,3,16],f32>, !torch.vtensor<[3,3],i1>, !torch.float, !torch.bool, !torch.none, !torch.bool -> !torch.vtensor<[1,2,3,16],f32>
  return %o : !torch.vtensor<[1,2,3,16],f32>
}

// -----

// SDPA with an all-zero additive literal mask: it masks nothing and is dropped.
// CHECK-LABEL: func.func @sdpa_constant_empty_mask(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,2,3,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,2,3,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,2,3,16],f32>)
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 2.500000e-01 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @sdpa_constant_empty_mask(%q: !torch.vtensor<[1,2,3,16],f32>, %k: !torch.vtensor<[1,2,3,16],f32>, %v: !torch.vtensor<[1,2,3,16],f32>) -> !torch.vtensor<[1,2,3,16],f32> {
  %float0 = torch.constant.float 0.000000e+00
  %none = torch.constant.none
  %false = torch.constant.bool false
  %mask = torch.vtensor.literal(dense<0.0> : tensor<1x1x3x3xf32>) : !torch.vtensor<[1,1,3,3],f32>
  %o = torch.aten.scaled_dot_product_attention %q, %k, %v, %mask, %float0, %false, %none, %false : !torch.vtensor<[1,2,3,16],f32>, !torch.vtensor<[1,2,3,16],f32>, !torch.vtensor<[1,2,3,16],f32>, !torch.vtensor<[1,1,3,3],f32>, !torch.float, !torch.bool, !torch.none, !torch.bool -> !torch.vtensor<[1,2,3,16],f32>
  return %o : !torch.vtensor<[1,2,3,16],f32>
}

// -----

// A constant bias that is not a mask (ALiBi-like small negatives) stays as the mask operand.
// CHECK-LABEL: func.func @sdpa_constant_bias_kept(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,2,3,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,2,3,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,2,3,16],f32>)
// CHECK:         %[[B:.+]] = torch.vtensor.literal({{.*}}) : !torch.vtensor<[3,3],f32>
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]], %[[B]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 2.500000e-01 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @sdpa_constant_bias_kept(%q: !torch.vtensor<[1,2,3,16],f32>, %k: !torch.vtensor<[1,2,3,16],f32>, %v: !torch.vtensor<[1,2,3,16],f32>) -> !torch.vtensor<[1,2,3,16],f32> {
  %float0 = torch.constant.float 0.000000e+00
  %none = torch.constant.none
  %false = torch.constant.bool false
  %bias = torch.vtensor.literal(dense<[[0.0, -1.0, -2.0], [-1.0, 0.0, -1.0], [-2.0, -1.0, 0.0]]> : tensor<3x3xf32>) : !torch.vtensor<[3,3],f32>
  %o = torch.aten.scaled_dot_product_attention %q, %k, %v, %bias, %float0, %false, %none, %false : !torch.vtensor<[1,2,3,16],f32>, !torch.vtensor<[1,2,3,16],f32>, !torch.vtensor<[1,2,3,16],f32>, !torch.vtensor<[3,3],f32>, !torch.float, !torch.bool, !torch.none, !torch.bool -> !torch.vtensor<[1,2,3,16],f32>
  return %o : !torch.vtensor<[1,2,3,16],f32>
}

// -----

// Negative: softmax over axis 2 of a rank-4 tensor is not attention.
// CHECK-LABEL: func.func @softmax_not_last_axis(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>)
// CHECK-NOT:     kiln.attention
// CHECK:         %[[KT:.+]] = torch.aten.transpose.int %[[K]]
// CHECK:         %[[S:.+]] = torch.aten.matmul %[[Q]], %[[KT]]
// CHECK:         %[[SM:.+]] = torch.aten._softmax %[[S]], %{{.+}}, %{{.+}} :
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[SM]], %[[V]]
// CHECK-NOT:     kiln.attention
// CHECK:         return %[[O]]
func.func @softmax_not_last_axis(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %int2 = torch.constant.int 2
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %s, %int2, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Negative: the attention probabilities are also returned, so the softmax must stay.
// CHECK-LABEL: func.func @softmax_second_use(
// CHECK-NOT:     kiln.attention
// CHECK:         %[[SM:.+]] = torch.aten._softmax
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[SM]], %{{.+}} :
// CHECK-NOT:     kiln.attention
// CHECK:         return %[[O]], %[[SM]]
func.func @softmax_second_use(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,8],f32>) {
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %s, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o, %sm : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,8],f32>
}

// -----

// Negative: SDPA with dropout_p = 0.1 is left alone.
// CHECK-LABEL: func.func @sdpa_dropout(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>)
// CHECK-NOT:     kiln.attention
// CHECK:         %[[P:.+]] = torch.constant.float 1.000000e-01
// CHECK:         %[[O:.+]] = torch.aten.scaled_dot_product_attention %[[Q]], %[[K]], %[[V]], %{{.+}}, %[[P]],
// CHECK-NOT:     kiln.attention
// CHECK:         return %[[O]]
func.func @sdpa_dropout(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %none = torch.constant.none
  %dropout = torch.constant.float 1.000000e-01
  %false = torch.constant.bool false
  %o = torch.aten.scaled_dot_product_attention %q, %k, %v, %none, %dropout, %false, %none, %false : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.none, !torch.float, !torch.bool, !torch.none, !torch.bool -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Negative: SDPA with both is_causal and attn_mask (torch rejects that combination).
// CHECK-LABEL: func.func @sdpa_causal_and_mask(
// CHECK-NOT:     kiln.attention
// CHECK:         torch.aten.scaled_dot_product_attention
// CHECK-NOT:     kiln.attention
// CHECK:         return
func.func @sdpa_causal_and_mask(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %mask: !torch.vtensor<[8,8],i1>) -> !torch.vtensor<[1,4,8,16],f32> {
  %float0 = torch.constant.float 0.000000e+00
  %none = torch.constant.none
  %true = torch.constant.bool true
  %false = torch.constant.bool false
  %o = torch.aten.scaled_dot_product_attention %q, %k, %v, %mask, %float0, %true, %none, %false : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[8,8],i1>, !torch.float, !torch.bool, !torch.none, !torch.bool -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Negative: q·k with no transpose of k (k arrives already laid out as [.., D, S]).
// CHECK-LABEL: func.func @qk_no_transpose(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[KT:[^:]+]]: !torch.vtensor<[1,4,16,8],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>)
// CHECK-NOT:     kiln.attention
// CHECK:         %[[S:.+]] = torch.aten.matmul %[[Q]], %[[KT]]
// CHECK:         %[[SM:.+]] = torch.aten._softmax %[[S]]
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[SM]], %[[V]]
// CHECK-NOT:     kiln.attention
// CHECK:         return %[[O]]
func.func @qk_no_transpose(%q: !torch.vtensor<[1,4,8,16],f32>, %kt: !torch.vtensor<[1,4,16,8],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %s, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}
