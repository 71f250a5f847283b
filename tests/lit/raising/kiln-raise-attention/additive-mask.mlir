// RUN: kiln-opt %s -p kiln-raise-attention --split-input-file | filecheck %s

// kiln-raise-attention, additive-mask family: add.Tensor(scores, term) with alpha 1 and a float
// term, on either side, any number of times. The terms become one mask operand (summed when there
// are several); a constant term that masks nothing is dropped. Left alone: alpha != 1, a term
// that is not float (i1 / si64 add as numbers), and masked scores that have another use.

// One additive f32 mask argument added (alpha 1) after the scale: it becomes the mask operand.
// CHECK-LABEL: func.func @additive_mask_argument(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[M:[^:]+]]: !torch.vtensor<[1,1,8,8],f32>)
// CHECK-NOT:     torch.aten.add.Tensor
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]], %[[M]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 2.500000e-01 : f64} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,1,8,8],f32>) -> !torch.vtensor<[1,4,8,16],f32>
// CHECK-NEXT:    return %[[O]]
func.func @additive_mask_argument(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %mask: !torch.vtensor<[1,1,8,8],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
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

// The mask on the left of the add (mask + q·kᵀ), broadcast from [8, 8].
// CHECK-LABEL: func.func @additive_mask_on_lhs(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[M:[^:]+]]: !torch.vtensor<[8,8],f32>)
// CHECK-NOT:     torch.aten.add.Tensor
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]], %[[M]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 1.000000e+00 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @additive_mask_on_lhs(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %mask: !torch.vtensor<[8,8],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %int1 = torch.constant.int 1
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %a = torch.aten.add.Tensor %mask, %s, %int1 : !torch.vtensor<[8,8],f32>, !torch.vtensor<[1,4,8,8],f32>, !torch.int -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %a, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Two additive terms, T5-style ((q·kᵀ + position_bias) + mask): they are summed into one mask
// operand, broadcast to [1, 4, 8, 8], and that sum feeds kiln.attention.
// CHECK-LABEL: func.func @bias_plus_mask(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[B:[^:]+]]: !torch.vtensor<[1,4,8,8],f32>, %[[M:[^:]+]]: !torch.vtensor<[1,1,1,8],f32>)
// CHECK-NOT:     torch.aten.matmul
// CHECK:         %[[SUM:.+]] = torch.aten.add.Tensor %[[B]], %[[M]], %{{.+}} : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,1,1,8],f32>, !torch.int -> !torch.vtensor<[1,4,8,8],f32>
// CHECK-NEXT:    %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]], %[[SUM]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 1.000000e+00 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @bias_plus_mask(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %bias: !torch.vtensor<[1,4,8,8],f32>, %mask: !torch.vtensor<[1,1,1,8],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %int1 = torch.constant.int 1
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %a = torch.aten.add.Tensor %s, %bias, %int1 : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,8],f32>, !torch.int -> !torch.vtensor<[1,4,8,8],f32>
  %b = torch.aten.add.Tensor %a, %mask, %int1 : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,1,1,8],f32>, !torch.int -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %b, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Three additive terms after the scale, one of them on the left of its add: summed innermost
// first ((bias + mask) + extra).
// CHECK-LABEL: func.func @three_terms_after_scale(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[B:[^:]+]]: !torch.vtensor<[1,4,8,8],f32>, %[[M:[^:]+]]: !torch.vtensor<[1,1,1,8],f32>, %[[E:[^:]+]]: !torch.vtensor<[8,8],f32>)
// CHECK-NOT:     torch.aten.div.Scalar
// CHECK:         %[[S1:.+]] = torch.aten.add.Tensor %[[B]], %[[M]], %{{.+}} : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,1,1,8],f32>, !torch.int -> !torch.vtensor<[1,4,8,8],f32>
// CHECK:         %[[S2:.+]] = torch.aten.add.Tensor %[[S1]], %[[E]], %{{.+}} : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[8,8],f32>, !torch.int -> !torch.vtensor<[1,4,8,8],f32>
// CHECK-NEXT:    %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]], %[[S2]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 2.500000e-01 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @three_terms_after_scale(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %bias: !torch.vtensor<[1,4,8,8],f32>, %mask: !torch.vtensor<[1,1,1,8],f32>, %extra: !torch.vtensor<[8,8],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %int1 = torch.constant.int 1
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %f4 = torch.constant.float 4.000000e+00
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %d = torch.aten.div.Scalar %s, %f4 : !torch.vtensor<[1,4,8,8],f32>, !torch.float -> !torch.vtensor<[1,4,8,8],f32>
  %a = torch.aten.add.Tensor %d, %bias, %int1 : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,8],f32>, !torch.int -> !torch.vtensor<[1,4,8,8],f32>
  %b = torch.aten.add.Tensor %mask, %a, %int1 : !torch.vtensor<[1,1,1,8],f32>, !torch.vtensor<[1,4,8,8],f32>, !torch.int -> !torch.vtensor<[1,4,8,8],f32>
  %c = torch.aten.add.Tensor %b, %extra, %int1 : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[8,8],f32>, !torch.int -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %c, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// A constant all-zero additive mask masks nothing: dropped, no mask operand.
// CHECK-LABEL: func.func @constant_zero_mask(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>)
// CHECK-NOT:     torch.aten.add.Tensor
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 1.000000e+00 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @constant_zero_mask(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %int1 = torch.constant.int 1
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %zero = torch.vtensor.literal(dense<0.000000e+00> : tensor<1x1x8x8xf32>) : !torch.vtensor<[1,1,8,8],f32>
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %a = torch.aten.add.Tensor %s, %zero, %int1 : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,1,8,8],f32>, !torch.int -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %a, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// A zero literal next to a real bias: the zero term is dropped, the bias alone is the mask (no add).
// CHECK-LABEL: func.func @constant_zero_mask_and_bias(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[B:[^:]+]]: !torch.vtensor<[1,4,8,8],f32>)
// CHECK-NOT:     torch.aten.add.Tensor
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]], %[[B]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 1.000000e+00 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @constant_zero_mask_and_bias(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %bias: !torch.vtensor<[1,4,8,8],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %int1 = torch.constant.int 1
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %zero = torch.vtensor.literal(dense<0.000000e+00> : tensor<8xf32>) : !torch.vtensor<[8],f32>
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %a = torch.aten.add.Tensor %s, %bias, %int1 : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,8],f32>, !torch.int -> !torch.vtensor<[1,4,8,8],f32>
  %b = torch.aten.add.Tensor %a, %zero, %int1 : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[8],f32>, !torch.int -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %b, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// A constant bias that is not a mask (small negatives, ALiBi-like) stays as the mask operand.
// CHECK-LABEL: func.func @constant_bias_kept(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,2,3,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,2,3,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,2,3,16],f32>)
// CHECK:         %[[B:.+]] = torch.vtensor.literal({{.*}}) : !torch.vtensor<[3,3],f32>
// CHECK-NOT:     torch.aten.add.Tensor
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]], %[[B]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 1.000000e+00 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @constant_bias_kept(%q: !torch.vtensor<[1,2,3,16],f32>, %k: !torch.vtensor<[1,2,3,16],f32>, %v: !torch.vtensor<[1,2,3,16],f32>) -> !torch.vtensor<[1,2,3,16],f32> {
  %int1 = torch.constant.int 1
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %bias = torch.vtensor.literal(dense<[[0.0, -1.0, -2.0], [-1.0, 0.0, -1.0], [-2.0, -1.0, 0.0]]> : tensor<3x3xf32>) : !torch.vtensor<[3,3],f32>
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,2,3,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,2,16,3],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,2,3,16],f32>, !torch.vtensor<[1,2,16,3],f32> -> !torch.vtensor<[1,2,3,3],f32>
  %a = torch.aten.add.Tensor %s, %bias, %int1 : !torch.vtensor<[1,2,3,3],f32>, !torch.vtensor<[3,3],f32>, !torch.int -> !torch.vtensor<[1,2,3,3],f32>
  %sm = torch.aten._softmax %a, %intm1, %false : !torch.vtensor<[1,2,3,3],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,2,3,3],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,2,3,3],f32>, !torch.vtensor<[1,2,3,16],f32> -> !torch.vtensor<[1,2,3,16],f32>
  return %o : !torch.vtensor<[1,2,3,16],f32>
}

// -----

// Negative: add.Tensor(scores, mask, alpha = 2) adds 2·mask, not a mask.
// CHECK-LABEL: func.func @mask_add_alpha_2(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[M:[^:]+]]: !torch.vtensor<[1,1,8,8],f32>)
// CHECK-NOT:     "kiln.attention"
// CHECK:         %[[KT:.+]] = torch.aten.transpose.int %[[K]]
// CHECK:         %[[S:.+]] = torch.aten.matmul %[[Q]], %[[KT]]
// CHECK:         %[[A:.+]] = torch.aten.add.Tensor %[[S]], %[[M]], %int2
// CHECK:         %[[SM:.+]] = torch.aten._softmax %[[A]]
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[SM]], %[[V]]
// CHECK-NOT:     "kiln.attention"
// CHECK:         return %[[O]]
func.func @mask_add_alpha_2(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %mask: !torch.vtensor<[1,1,8,8],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %int2 = torch.constant.int 2
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %a = torch.aten.add.Tensor %s, %mask, %int2 : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,1,8,8],f32>, !torch.int -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %a, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Negative: an i1 tensor added to the scores. torch promotes it and adds 1.0 where true, so it
// is neither a keep-mask nor an additive -inf mask; left alone. (Regression: this was once
// raised as a bool keep-mask, a silent miscompile.)
// CHECK-LABEL: func.func @bool_mask_added(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[M:[^:]+]]: !torch.vtensor<[8,8],i1>)
// CHECK-NOT:     "kiln.attention"
// CHECK:         %[[KT:.+]] = torch.aten.transpose.int %[[K]]
// CHECK:         %[[S:.+]] = torch.aten.matmul %[[Q]], %[[KT]]
// CHECK:         %[[A:.+]] = torch.aten.add.Tensor %[[S]], %[[M]], %{{.+}} : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[8,8],i1>
// CHECK:         %[[SM:.+]] = torch.aten._softmax %[[A]]
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[SM]], %[[V]]
// CHECK-NOT:     "kiln.attention"
// CHECK:         return %[[O]]
func.func @bool_mask_added(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %mask: !torch.vtensor<[8,8],i1>) -> !torch.vtensor<[1,4,8,16],f32> {
  %int1 = torch.constant.int 1
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %a = torch.aten.add.Tensor %s, %mask, %int1 : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[8,8],i1>, !torch.int -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %a, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Negative: an si64 tensor added to the scores is left alone. (Regression: this once produced a
// kiln.attention with an si64 mask that failed its verifier, failing the whole pipeline.)
// CHECK-LABEL: func.func @int_mask_added(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[M:[^:]+]]: !torch.vtensor<[8,8],si64>)
// CHECK-NOT:     "kiln.attention"
// CHECK:         %[[KT:.+]] = torch.aten.transpose.int %[[K]]
// CHECK:         %[[S:.+]] = torch.aten.matmul %[[Q]], %[[KT]]
// CHECK:         %[[A:.+]] = torch.aten.add.Tensor %[[S]], %[[M]], %{{.+}} : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[8,8],si64>
// CHECK:         %[[SM:.+]] = torch.aten._softmax %[[A]]
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[SM]], %[[V]]
// CHECK-NOT:     "kiln.attention"
// CHECK:         return %[[O]]
func.func @int_mask_added(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %mask: !torch.vtensor<[8,8],si64>) -> !torch.vtensor<[1,4,8,16],f32> {
  %int1 = torch.constant.int 1
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %a = torch.aten.add.Tensor %s, %mask, %int1 : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[8,8],si64>, !torch.int -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %a, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Negative: the masked scores are also returned, so nothing can be folded away.
// CHECK-LABEL: func.func @masked_scores_second_use(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[M:[^:]+]]: !torch.vtensor<[1,1,8,8],f32>)
// CHECK-NOT:     "kiln.attention"
// CHECK:         %[[KT:.+]] = torch.aten.transpose.int %[[K]]
// CHECK:         %[[S:.+]] = torch.aten.matmul %[[Q]], %[[KT]]
// CHECK:         %[[D:.+]] = torch.aten.div.Scalar %[[S]]
// CHECK:         %[[A:.+]] = torch.aten.add.Tensor %[[D]], %[[M]]
// CHECK:         %[[SM:.+]] = torch.aten._softmax %[[A]]
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[SM]], %[[V]]
// CHECK-NOT:     "kiln.attention"
// CHECK:         return %[[O]], %[[A]]
func.func @masked_scores_second_use(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %mask: !torch.vtensor<[1,1,8,8],f32>) -> (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,8],f32>) {
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
  return %o, %a : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,8],f32>
}

// -----

// Negative: the raw q·kᵀ scores under the mask are also returned.
// CHECK-LABEL: func.func @raw_scores_second_use(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[M:[^:]+]]: !torch.vtensor<[1,1,8,8],f32>)
// CHECK-NOT:     "kiln.attention"
// CHECK:         %[[KT:.+]] = torch.aten.transpose.int %[[K]]
// CHECK:         %[[S:.+]] = torch.aten.matmul %[[Q]], %[[KT]]
// CHECK:         %[[A:.+]] = torch.aten.add.Tensor %[[S]], %[[M]]
// CHECK:         %[[SM:.+]] = torch.aten._softmax %[[A]]
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[SM]], %[[V]]
// CHECK-NOT:     "kiln.attention"
// CHECK:         return %[[O]], %[[S]]
func.func @raw_scores_second_use(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %mask: !torch.vtensor<[1,1,8,8],f32>) -> (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,8],f32>) {
  %int1 = torch.constant.int 1
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %a = torch.aten.add.Tensor %s, %mask, %int1 : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,1,8,8],f32>, !torch.int -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %a, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o, %s : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,8],f32>
}

// -----

// Negative: softmax(x + y) · v where neither addend comes from a q·kᵀ product.
// CHECK-LABEL: func.func @add_without_scores(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[1,4,8,8],f32>, %[[Y:[^:]+]]: !torch.vtensor<[1,4,8,8],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>)
// CHECK-NOT:     "kiln.attention"
// CHECK:         %[[A:.+]] = torch.aten.add.Tensor %[[X]], %[[Y]]
// CHECK:         %[[SM:.+]] = torch.aten._softmax %[[A]]
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[SM]], %[[V]]
// CHECK-NOT:     "kiln.attention"
// CHECK:         return %[[O]]
func.func @add_without_scores(%x: !torch.vtensor<[1,4,8,8],f32>, %y: !torch.vtensor<[1,4,8,8],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %int1 = torch.constant.int 1
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %a = torch.aten.add.Tensor %x, %y, %int1 : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,8],f32>, !torch.int -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %a, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}
