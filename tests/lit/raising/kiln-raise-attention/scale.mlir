// RUN: kiln-opt %s -p kiln-raise-attention --split-input-file | filecheck %s

// kiln-raise-attention, scale family: mul.Scalar / div.Scalar on the scores, on q, on kᵀ or on
// both q and k all fold into kiln.attention's `scale` (multiplied together). A factor that is
// not a constant (or is 0) leaves the pattern alone.

// div.Scalar(q·kᵀ, 4.0): scale = 1/4; the transpose, both matmuls, the div and the softmax are erased.
// CHECK-LABEL: func.func @div_scalar(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>)
// CHECK-NOT:     torch.aten.transpose.int
// CHECK-NOT:     torch.aten.matmul
// CHECK-NOT:     torch.aten.div.Scalar
// CHECK-NOT:     torch.aten._softmax
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 2.500000e-01 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @div_scalar(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
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

// div.Scalar by an integer constant (8): scale = 1/8.
// CHECK-LABEL: func.func @div_scalar_int(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>)
// CHECK-NOT:     torch.aten.div.Scalar
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 1.250000e-01 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @div_scalar_int(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %int8 = torch.constant.int 8
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %d = torch.aten.div.Scalar %s, %int8 : !torch.vtensor<[1,4,8,8],f32>, !torch.int -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %d, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// mul.Scalar(q·kᵀ, 0.125): the factor is the scale itself.
// CHECK-LABEL: func.func @mul_scalar(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>)
// CHECK-NOT:     torch.aten.mul.Scalar
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 1.250000e-01 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @mul_scalar(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
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
// CHECK-LABEL: func.func @no_scale(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>)
// CHECK-NOT:     torch.aten.matmul
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 1.000000e+00 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @no_scale(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
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

// The scale applied to q before the product (q * 0.25) @ kᵀ: folded into scale, and
// kiln.attention takes the unscaled q.
// CHECK-LABEL: func.func @scale_on_query(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>)
// CHECK-NOT:     torch.aten.mul.Scalar
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 2.500000e-01 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @scale_on_query(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %f = torch.constant.float 2.500000e-01
  %qs = torch.aten.mul.Scalar %q, %f : !torch.vtensor<[1,4,8,16],f32>, !torch.float -> !torch.vtensor<[1,4,8,16],f32>
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %qs, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %s, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// q and k each multiplied by D^-0.25 = 64^-0.25 (the "scale both sides" form): the factors
// multiply to 1/sqrt(64), printed with its f64 rounding.
// CHECK-LABEL: func.func @scale_q_and_k_quarter_root(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,64],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,64],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,64],f32>)
// CHECK-NOT:     torch.aten.mul.Scalar
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 0.12499999999999997 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @scale_q_and_k_quarter_root(%q: !torch.vtensor<[1,4,8,64],f32>, %k: !torch.vtensor<[1,4,8,64],f32>, %v: !torch.vtensor<[1,4,8,64],f32>) -> !torch.vtensor<[1,4,8,64],f32> {
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %f = torch.constant.float 0.35355339059327373
  %qs = torch.aten.mul.Scalar %q, %f : !torch.vtensor<[1,4,8,64],f32>, !torch.float -> !torch.vtensor<[1,4,8,64],f32>
  %ks = torch.aten.mul.Scalar %k, %f : !torch.vtensor<[1,4,8,64],f32>, !torch.float -> !torch.vtensor<[1,4,8,64],f32>
  %kt = torch.aten.transpose.int %ks, %intm2, %intm1 : !torch.vtensor<[1,4,8,64],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,64,8],f32>
  %s = torch.aten.matmul %qs, %kt : !torch.vtensor<[1,4,8,64],f32>, !torch.vtensor<[1,4,64,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %s, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,64],f32> -> !torch.vtensor<[1,4,8,64],f32>
  return %o : !torch.vtensor<[1,4,8,64],f32>
}

// -----

// The scale applied to kᵀ (after the transpose) is folded in too.
// CHECK-LABEL: func.func @scale_on_key_transposed(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>)
// CHECK-NOT:     torch.aten.mul.Scalar
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 5.000000e-01 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @scale_on_key_transposed(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %f = torch.constant.float 5.000000e-01
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %kts = torch.aten.mul.Scalar %kt, %f : !torch.vtensor<[1,4,16,8],f32>, !torch.float -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kts : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %s, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Chained scales multiply: (q / 2) @ kᵀ, then * 0.5, then / 3 → 1/12.
// CHECK-LABEL: func.func @chained_scales(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>)
// CHECK-NOT:     torch.aten.div.Scalar
// CHECK-NOT:     torch.aten.mul.Scalar
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 0.083333333333333329 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @chained_scales(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %f2 = torch.constant.float 2.000000e+00
  %f3 = torch.constant.float 3.000000e+00
  %f05 = torch.constant.float 5.000000e-01
  %qs = torch.aten.div.Scalar %q, %f2 : !torch.vtensor<[1,4,8,16],f32>, !torch.float -> !torch.vtensor<[1,4,8,16],f32>
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %qs, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %m = torch.aten.mul.Scalar %s, %f05 : !torch.vtensor<[1,4,8,8],f32>, !torch.float -> !torch.vtensor<[1,4,8,8],f32>
  %d = torch.aten.div.Scalar %m, %f3 : !torch.vtensor<[1,4,8,8],f32>, !torch.float -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %d, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// q multiplied by a non-constant (!torch.float argument) before the product is not a scale:
// the mul.Scalar stays and its result is the query operand, with scale = 1.0.
// CHECK-LABEL: func.func @query_scaled_by_argument(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[C:[^:]+]]: !torch.float)
// CHECK:         %[[QS:.+]] = torch.aten.mul.Scalar %[[Q]], %[[C]]
// CHECK-NOT:     torch.aten._softmax
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[QS]], %[[K]], %[[V]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 1.000000e+00 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @query_scaled_by_argument(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %c: !torch.float) -> !torch.vtensor<[1,4,8,16],f32> {
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %qs = torch.aten.mul.Scalar %q, %c : !torch.vtensor<[1,4,8,16],f32>, !torch.float -> !torch.vtensor<[1,4,8,16],f32>
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %qs, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %s, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Negative: the scores divided by a !torch.float argument (not a constant scale).
// CHECK-LABEL: func.func @div_by_float_argument(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[C:[^:]+]]: !torch.float)
// CHECK-NOT:     "kiln.attention"
// CHECK:         %[[S:.+]] = torch.aten.matmul %[[Q]], %{{.+}}
// CHECK:         %[[D:.+]] = torch.aten.div.Scalar %[[S]], %[[C]]
// CHECK:         %[[SM:.+]] = torch.aten._softmax %[[D]]
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[SM]], %[[V]]
// CHECK-NOT:     "kiln.attention"
// CHECK:         return %[[O]]
func.func @div_by_float_argument(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %c: !torch.float) -> !torch.vtensor<[1,4,8,16],f32> {
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %d = torch.aten.div.Scalar %s, %c : !torch.vtensor<[1,4,8,8],f32>, !torch.float -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %d, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Negative: the scores multiplied (mul.Tensor) by a 0-d tensor argument.
// CHECK-LABEL: func.func @mul_by_tensor_argument(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[C:[^:]+]]: !torch.vtensor<[],f32>)
// CHECK-NOT:     "kiln.attention"
// CHECK:         %[[S:.+]] = torch.aten.matmul %[[Q]], %{{.+}}
// CHECK:         %[[D:.+]] = torch.aten.mul.Tensor %[[S]], %[[C]]
// CHECK:         %[[SM:.+]] = torch.aten._softmax %[[D]]
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[SM]], %[[V]]
// CHECK-NOT:     "kiln.attention"
// CHECK:         return %[[O]]
func.func @mul_by_tensor_argument(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %c: !torch.vtensor<[],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %m = torch.aten.mul.Tensor %s, %c : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %m, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Negative: division by a constant 0 has no finite scale.
// CHECK-LABEL: func.func @div_by_zero(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>)
// CHECK-NOT:     "kiln.attention"
// CHECK:         %[[S:.+]] = torch.aten.matmul %[[Q]], %{{.+}}
// CHECK:         %[[D:.+]] = torch.aten.div.Scalar %[[S]], %{{.+}}
// CHECK:         %[[SM:.+]] = torch.aten._softmax %[[D]]
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[SM]], %[[V]]
// CHECK-NOT:     "kiln.attention"
// CHECK:         return %[[O]]
func.func @div_by_zero(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %f0 = torch.constant.float 0.000000e+00
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %d = torch.aten.div.Scalar %s, %f0 : !torch.vtensor<[1,4,8,8],f32>, !torch.float -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %d, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}
