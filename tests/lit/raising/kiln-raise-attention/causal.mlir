// RUN: kiln-opt %s -p kiln-raise-attention --split-input-file | filecheck %s

// kiln-raise-attention, causal family: a constant mask term is read (classify_mask). One that
// masks exactly "key j > query i" (top-left aligned) becomes causal = true with no mask operand;
// one that masks nothing is dropped; any other constant pattern stays the mask operand.

// where(tril, scores, finfo.min) with a constant bool lower-triangular literal: the mask is exactly
// "key j masked when j > i", so it becomes causal = true and no mask operand.
// CHECK-LABEL: func.func @where_bool_tril(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,2,4,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,2,4,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,2,4,16],f32>)
// CHECK-NOT:     torch.aten.where.self
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = true, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 1.000000e+00 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @where_bool_tril(%q: !torch.vtensor<[1,2,4,16],f32>, %k: !torch.vtensor<[1,2,4,16],f32>, %v: !torch.vtensor<[1,2,4,16],f32>) -> !torch.vtensor<[1,2,4,16],f32> {
  %int1 = torch.constant.int 1
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %m = torch.vtensor.literal(dense<[[true, false, false, false], [true, true, false, false], [true, true, true, false], [true, true, true, true]]> : tensor<4x4xi1>) : !torch.vtensor<[4,4],i1>
  %fill = torch.vtensor.literal(dense<-3.40282347E+38> : tensor<f32>) : !torch.vtensor<[],f32>
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,2,4,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,2,16,4],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,2,4,16],f32>, !torch.vtensor<[1,2,16,4],f32> -> !torch.vtensor<[1,2,4,4],f32>
  %w = torch.aten.where.self %m, %s, %fill : !torch.vtensor<[4,4],i1>, !torch.vtensor<[1,2,4,4],f32>, !torch.vtensor<[],f32> -> !torch.vtensor<[1,2,4,4],f32>
  %sm = torch.aten._softmax %w, %intm1, %false : !torch.vtensor<[1,2,4,4],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,2,4,4],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,2,4,4],f32>, !torch.vtensor<[1,2,4,16],f32> -> !torch.vtensor<[1,2,4,16],f32>
  return %o : !torch.vtensor<[1,2,4,16],f32>
}

// -----

// An additive 0 / -inf triangular literal added to the scores: causal = true.
// CHECK-LABEL: func.func @additive_tril_ninf(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,2,4,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,2,4,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,2,4,16],f32>)
// CHECK-NOT:     torch.aten.add.Tensor
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = true, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 1.000000e+00 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @additive_tril_ninf(%q: !torch.vtensor<[1,2,4,16],f32>, %k: !torch.vtensor<[1,2,4,16],f32>, %v: !torch.vtensor<[1,2,4,16],f32>) -> !torch.vtensor<[1,2,4,16],f32> {
  %int1 = torch.constant.int 1
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %m = torch.vtensor.literal(dense<[[0.0, 0xFF800000, 0xFF800000, 0xFF800000], [0.0, 0.0, 0xFF800000, 0xFF800000], [0.0, 0.0, 0.0, 0xFF800000], [0.0, 0.0, 0.0, 0.0]]> : tensor<4x4xf32>) : !torch.vtensor<[4,4],f32>
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,2,4,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,2,16,4],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,2,4,16],f32>, !torch.vtensor<[1,2,16,4],f32> -> !torch.vtensor<[1,2,4,4],f32>
  %a = torch.aten.add.Tensor %s, %m, %int1 : !torch.vtensor<[1,2,4,4],f32>, !torch.vtensor<[4,4],f32>, !torch.int -> !torch.vtensor<[1,2,4,4],f32>
  %sm = torch.aten._softmax %a, %intm1, %false : !torch.vtensor<[1,2,4,4],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,2,4,4],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,2,4,4],f32>, !torch.vtensor<[1,2,4,16],f32> -> !torch.vtensor<[1,2,4,16],f32>
  return %o : !torch.vtensor<[1,2,4,16],f32>
}

// -----

// An additive 0 / finfo.min triangular literal of shape [1, 1, 4, 4]: causal = true.
// CHECK-LABEL: func.func @additive_tril_finfo_min_4d(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,2,4,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,2,4,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,2,4,16],f32>)
// CHECK-NOT:     torch.aten.add.Tensor
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = true, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 1.000000e+00 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @additive_tril_finfo_min_4d(%q: !torch.vtensor<[1,2,4,16],f32>, %k: !torch.vtensor<[1,2,4,16],f32>, %v: !torch.vtensor<[1,2,4,16],f32>) -> !torch.vtensor<[1,2,4,16],f32> {
  %int1 = torch.constant.int 1
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %m = torch.vtensor.literal(dense<[[[[0.0, -3.40282347E+38, -3.40282347E+38, -3.40282347E+38], [0.0, 0.0, -3.40282347E+38, -3.40282347E+38], [0.0, 0.0, 0.0, -3.40282347E+38], [0.0, 0.0, 0.0, 0.0]]]]> : tensor<1x1x4x4xf32>) : !torch.vtensor<[1,1,4,4],f32>
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,2,4,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,2,16,4],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,2,4,16],f32>, !torch.vtensor<[1,2,16,4],f32> -> !torch.vtensor<[1,2,4,4],f32>
  %a = torch.aten.add.Tensor %s, %m, %int1 : !torch.vtensor<[1,2,4,4],f32>, !torch.vtensor<[1,1,4,4],f32>, !torch.int -> !torch.vtensor<[1,2,4,4],f32>
  %sm = torch.aten._softmax %a, %intm1, %false : !torch.vtensor<[1,2,4,4],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,2,4,4],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,2,4,4],f32>, !torch.vtensor<[1,2,4,16],f32> -> !torch.vtensor<[1,2,4,16],f32>
  return %o : !torch.vtensor<[1,2,4,16],f32>
}

// -----

// masked_fill(scores, triu(ones, 1), -inf): the constant DROP mask is the strict upper
// triangle, i.e. the future: causal = true, and no logical_not is built.
// CHECK-LABEL: func.func @masked_fill_triu_drop(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,2,4,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,2,4,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,2,4,16],f32>)
// CHECK-NOT:     torch.aten.masked_fill.Scalar
// CHECK-NOT:     torch.aten.logical_not
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = true, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 1.000000e+00 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @masked_fill_triu_drop(%q: !torch.vtensor<[1,2,4,16],f32>, %k: !torch.vtensor<[1,2,4,16],f32>, %v: !torch.vtensor<[1,2,4,16],f32>) -> !torch.vtensor<[1,2,4,16],f32> {
  %int1 = torch.constant.int 1
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %m = torch.vtensor.literal(dense<[[false, true, true, true], [false, false, true, true], [false, false, false, true], [false, false, false, false]]> : tensor<4x4xi1>) : !torch.vtensor<[4,4],i1>
  %ninf = torch.constant.float 0xFFF0000000000000
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,2,4,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,2,16,4],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,2,4,16],f32>, !torch.vtensor<[1,2,16,4],f32> -> !torch.vtensor<[1,2,4,4],f32>
  %mf = torch.aten.masked_fill.Scalar %s, %m, %ninf : !torch.vtensor<[1,2,4,4],f32>, !torch.vtensor<[4,4],i1>, !torch.float -> !torch.vtensor<[1,2,4,4],f32>
  %sm = torch.aten._softmax %mf, %intm1, %false : !torch.vtensor<[1,2,4,4],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,2,4,4],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,2,4,4],f32>, !torch.vtensor<[1,2,4,16],f32> -> !torch.vtensor<[1,2,4,16],f32>
  return %o : !torch.vtensor<[1,2,4,16],f32>
}

// -----

// A causal literal plus a padding-mask argument: the literal turns into causal = true and only
// the argument remains as the mask operand (no add is built).
// CHECK-LABEL: func.func @causal_literal_plus_padding_mask(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,2,4,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,2,4,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,2,4,16],f32>, %[[P:[^:]+]]: !torch.vtensor<[1,1,1,4],f32>)
// CHECK-NOT:     torch.aten.add.Tensor
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]], %[[P]]) {causal = true, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 1.000000e+00 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @causal_literal_plus_padding_mask(%q: !torch.vtensor<[1,2,4,16],f32>, %k: !torch.vtensor<[1,2,4,16],f32>, %v: !torch.vtensor<[1,2,4,16],f32>, %pad: !torch.vtensor<[1,1,1,4],f32>) -> !torch.vtensor<[1,2,4,16],f32> {
  %int1 = torch.constant.int 1
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %m = torch.vtensor.literal(dense<[[0.0, -3.40282347E+38, -3.40282347E+38, -3.40282347E+38], [0.0, 0.0, -3.40282347E+38, -3.40282347E+38], [0.0, 0.0, 0.0, -3.40282347E+38], [0.0, 0.0, 0.0, 0.0]]> : tensor<4x4xf32>) : !torch.vtensor<[4,4],f32>
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,2,4,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,2,16,4],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,2,4,16],f32>, !torch.vtensor<[1,2,16,4],f32> -> !torch.vtensor<[1,2,4,4],f32>
  %a = torch.aten.add.Tensor %s, %m, %int1 : !torch.vtensor<[1,2,4,4],f32>, !torch.vtensor<[4,4],f32>, !torch.int -> !torch.vtensor<[1,2,4,4],f32>
  %b = torch.aten.add.Tensor %a, %pad, %int1 : !torch.vtensor<[1,2,4,4],f32>, !torch.vtensor<[1,1,1,4],f32>, !torch.int -> !torch.vtensor<[1,2,4,4],f32>
  %sm = torch.aten._softmax %b, %intm1, %false : !torch.vtensor<[1,2,4,4],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,2,4,4],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,2,4,4],f32>, !torch.vtensor<[1,2,4,16],f32> -> !torch.vtensor<[1,2,4,16],f32>
  return %o : !torch.vtensor<[1,2,4,16],f32>
}

// -----

// Sq = 1 query against Sk = 4 keys. classify_mask is top-left aligned, as kiln.attention's causal
// (and torch SDPA's is_causal): query 0 may see key 0 only. A 1x4 literal keeping only key 0 is
// therefore "causal".
// CHECK-LABEL: func.func @decode_keep_first_key(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,2,1,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,2,4,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,2,4,16],f32>)
// CHECK-NOT:     torch.aten.where.self
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = true, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 1.000000e+00 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @decode_keep_first_key(%q: !torch.vtensor<[1,2,1,16],f32>, %k: !torch.vtensor<[1,2,4,16],f32>, %v: !torch.vtensor<[1,2,4,16],f32>) -> !torch.vtensor<[1,2,1,16],f32> {
  %int1 = torch.constant.int 1
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %m = torch.vtensor.literal(dense<[[true, false, false, false]]> : tensor<1x4xi1>) : !torch.vtensor<[1,4],i1>
  %fill = torch.vtensor.literal(dense<-3.40282347E+38> : tensor<f32>) : !torch.vtensor<[],f32>
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,2,4,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,2,16,4],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,2,1,16],f32>, !torch.vtensor<[1,2,16,4],f32> -> !torch.vtensor<[1,2,1,4],f32>
  %w = torch.aten.where.self %m, %s, %fill : !torch.vtensor<[1,4],i1>, !torch.vtensor<[1,2,1,4],f32>, !torch.vtensor<[],f32> -> !torch.vtensor<[1,2,1,4],f32>
  %sm = torch.aten._softmax %w, %intm1, %false : !torch.vtensor<[1,2,1,4],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,2,1,4],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,2,1,4],f32>, !torch.vtensor<[1,2,4,16],f32> -> !torch.vtensor<[1,2,1,16],f32>
  return %o : !torch.vtensor<[1,2,1,16],f32>
}

// -----

// A 1x4 literal keeping all four keys masks nothing ("none"): dropped, causal = false.
// CHECK-LABEL: func.func @decode_keep_all_keys(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,2,1,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,2,4,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,2,4,16],f32>)
// CHECK-NOT:     torch.aten.where.self
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 1.000000e+00 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @decode_keep_all_keys(%q: !torch.vtensor<[1,2,1,16],f32>, %k: !torch.vtensor<[1,2,4,16],f32>, %v: !torch.vtensor<[1,2,4,16],f32>) -> !torch.vtensor<[1,2,1,16],f32> {
  %int1 = torch.constant.int 1
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %m = torch.vtensor.literal(dense<[[true, true, true, true]]> : tensor<1x4xi1>) : !torch.vtensor<[1,4],i1>
  %fill = torch.vtensor.literal(dense<-3.40282347E+38> : tensor<f32>) : !torch.vtensor<[],f32>
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,2,4,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,2,16,4],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,2,1,16],f32>, !torch.vtensor<[1,2,16,4],f32> -> !torch.vtensor<[1,2,1,4],f32>
  %w = torch.aten.where.self %m, %s, %fill : !torch.vtensor<[1,4],i1>, !torch.vtensor<[1,2,1,4],f32>, !torch.vtensor<[],f32> -> !torch.vtensor<[1,2,1,4],f32>
  %sm = torch.aten._softmax %w, %intm1, %false : !torch.vtensor<[1,2,1,4],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,2,1,4],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,2,1,4],f32>, !torch.vtensor<[1,2,4,16],f32> -> !torch.vtensor<[1,2,1,16],f32>
  return %o : !torch.vtensor<[1,2,1,16],f32>
}

// -----

// tril(ones, diagonal = 1) (each query also sees the next key) is not causal: it stays the
// mask operand with causal = false.
// CHECK-LABEL: func.func @tril_shifted_by_one(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,2,4,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,2,4,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,2,4,16],f32>)
// CHECK:         %[[M:.+]] = torch.vtensor.literal({{.*}}) : !torch.vtensor<[4,4],i1>
// CHECK-NOT:     torch.aten.where.self
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]], %[[M]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 1.000000e+00 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @tril_shifted_by_one(%q: !torch.vtensor<[1,2,4,16],f32>, %k: !torch.vtensor<[1,2,4,16],f32>, %v: !torch.vtensor<[1,2,4,16],f32>) -> !torch.vtensor<[1,2,4,16],f32> {
  %int1 = torch.constant.int 1
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %m = torch.vtensor.literal(dense<[[true, true, false, false], [true, true, true, false], [true, true, true, true], [true, true, true, true]]> : tensor<4x4xi1>) : !torch.vtensor<[4,4],i1>
  %fill = torch.vtensor.literal(dense<-3.40282347E+38> : tensor<f32>) : !torch.vtensor<[],f32>
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,2,4,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,2,16,4],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,2,4,16],f32>, !torch.vtensor<[1,2,16,4],f32> -> !torch.vtensor<[1,2,4,4],f32>
  %w = torch.aten.where.self %m, %s, %fill : !torch.vtensor<[4,4],i1>, !torch.vtensor<[1,2,4,4],f32>, !torch.vtensor<[],f32> -> !torch.vtensor<[1,2,4,4],f32>
  %sm = torch.aten._softmax %w, %intm1, %false : !torch.vtensor<[1,2,4,4],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,2,4,4],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,2,4,4],f32>, !torch.vtensor<[1,2,4,16],f32> -> !torch.vtensor<[1,2,4,16],f32>
  return %o : !torch.vtensor<[1,2,4,16],f32>
}

// -----

// A constant bool pattern that is neither "none" nor causal stays the mask operand.
// CHECK-LABEL: func.func @random_pattern(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,2,4,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,2,4,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,2,4,16],f32>)
// CHECK:         %[[M:.+]] = torch.vtensor.literal({{.*}}) : !torch.vtensor<[4,4],i1>
// CHECK-NOT:     torch.aten.where.self
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]], %[[M]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 1.000000e+00 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @random_pattern(%q: !torch.vtensor<[1,2,4,16],f32>, %k: !torch.vtensor<[1,2,4,16],f32>, %v: !torch.vtensor<[1,2,4,16],f32>) -> !torch.vtensor<[1,2,4,16],f32> {
  %int1 = torch.constant.int 1
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %m = torch.vtensor.literal(dense<[[true, false, true, false], [false, true, true, true], [true, true, false, true], [true, false, false, true]]> : tensor<4x4xi1>) : !torch.vtensor<[4,4],i1>
  %fill = torch.vtensor.literal(dense<-3.40282347E+38> : tensor<f32>) : !torch.vtensor<[],f32>
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,2,4,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,2,16,4],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,2,4,16],f32>, !torch.vtensor<[1,2,16,4],f32> -> !torch.vtensor<[1,2,4,4],f32>
  %w = torch.aten.where.self %m, %s, %fill : !torch.vtensor<[4,4],i1>, !torch.vtensor<[1,2,4,4],f32>, !torch.vtensor<[],f32> -> !torch.vtensor<[1,2,4,4],f32>
  %sm = torch.aten._softmax %w, %intm1, %false : !torch.vtensor<[1,2,4,4],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,2,4,4],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,2,4,4],f32>, !torch.vtensor<[1,2,4,16],f32> -> !torch.vtensor<[1,2,4,16],f32>
  return %o : !torch.vtensor<[1,2,4,16],f32>
}

// -----

// Sq = 2 against Sk = 4 with the bottom-right aligned (KV-cache style) triangle: NOT causal in
// the top-left sense kiln.attention uses, so it stays an additive mask operand.
// CHECK-LABEL: func.func @bottom_right_aligned(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,2,2,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,2,4,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,2,4,16],f32>)
// CHECK:         %[[M:.+]] = torch.vtensor.literal({{.*}}) : !torch.vtensor<[2,4],f32>
// CHECK-NOT:     torch.aten.add.Tensor
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]], %[[M]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 1.000000e+00 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @bottom_right_aligned(%q: !torch.vtensor<[1,2,2,16],f32>, %k: !torch.vtensor<[1,2,4,16],f32>, %v: !torch.vtensor<[1,2,4,16],f32>) -> !torch.vtensor<[1,2,2,16],f32> {
  %int1 = torch.constant.int 1
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %m = torch.vtensor.literal(dense<[[0.0, 0.0, 0.0, -3.40282347E+38], [0.0, 0.0, 0.0, 0.0]]> : tensor<2x4xf32>) : !torch.vtensor<[2,4],f32>
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,2,4,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,2,16,4],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,2,2,16],f32>, !torch.vtensor<[1,2,16,4],f32> -> !torch.vtensor<[1,2,2,4],f32>
  %a = torch.aten.add.Tensor %s, %m, %int1 : !torch.vtensor<[1,2,2,4],f32>, !torch.vtensor<[2,4],f32>, !torch.int -> !torch.vtensor<[1,2,2,4],f32>
  %sm = torch.aten._softmax %a, %intm1, %false : !torch.vtensor<[1,2,2,4],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,2,2,4],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,2,2,4],f32>, !torch.vtensor<[1,2,4,16],f32> -> !torch.vtensor<[1,2,2,16],f32>
  return %o : !torch.vtensor<[1,2,2,16],f32>
}

// -----

// Negative: a causal bool literal used with fill -1.0 is not a mask at all; nothing is rewritten.
// CHECK-LABEL: func.func @causal_literal_fill_minus_one(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,2,4,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,2,4,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,2,4,16],f32>)
// CHECK-NOT:     "kiln.attention"
// CHECK:         %[[M:.+]] = torch.vtensor.literal({{.*}}) : !torch.vtensor<[4,4],i1>
// CHECK:         %[[KT:.+]] = torch.aten.transpose.int %[[K]]
// CHECK:         %[[S:.+]] = torch.aten.matmul %[[Q]], %[[KT]]
// CHECK:         %[[W:.+]] = torch.aten.where.self %[[M]], %[[S]], %{{.+}}
// CHECK:         %[[SM:.+]] = torch.aten._softmax %[[W]]
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[SM]], %[[V]]
// CHECK-NOT:     "kiln.attention"
// CHECK:         return %[[O]]
func.func @causal_literal_fill_minus_one(%q: !torch.vtensor<[1,2,4,16],f32>, %k: !torch.vtensor<[1,2,4,16],f32>, %v: !torch.vtensor<[1,2,4,16],f32>) -> !torch.vtensor<[1,2,4,16],f32> {
  %int1 = torch.constant.int 1
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %m = torch.vtensor.literal(dense<[[true, false, false, false], [true, true, false, false], [true, true, true, false], [true, true, true, true]]> : tensor<4x4xi1>) : !torch.vtensor<[4,4],i1>
  %fill = torch.vtensor.literal(dense<-1.000000e+00> : tensor<f32>) : !torch.vtensor<[],f32>
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,2,4,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,2,16,4],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,2,4,16],f32>, !torch.vtensor<[1,2,16,4],f32> -> !torch.vtensor<[1,2,4,4],f32>
  %w = torch.aten.where.self %m, %s, %fill : !torch.vtensor<[4,4],i1>, !torch.vtensor<[1,2,4,4],f32>, !torch.vtensor<[],f32> -> !torch.vtensor<[1,2,4,4],f32>
  %sm = torch.aten._softmax %w, %intm1, %false : !torch.vtensor<[1,2,4,4],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,2,4,4],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,2,4,4],f32>, !torch.vtensor<[1,2,4,16],f32> -> !torch.vtensor<[1,2,4,16],f32>
  return %o : !torch.vtensor<[1,2,4,16],f32>
}

// -----

// SDPA with a constant bool tril attn_mask → causal = true, no mask.
// CHECK-LABEL: func.func @sdpa_bool_tril(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,2,3,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,2,3,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,2,3,16],f32>)
// CHECK-NOT:     torch.aten.scaled_dot_product_attention
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = true, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 2.500000e-01 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @sdpa_bool_tril(%q: !torch.vtensor<[1,2,3,16],f32>, %k: !torch.vtensor<[1,2,3,16],f32>, %v: !torch.vtensor<[1,2,3,16],f32>) -> !torch.vtensor<[1,2,3,16],f32> {
  %float0 = torch.constant.float 0.000000e+00
  %none = torch.constant.none
  %false = torch.constant.bool false
  %mask = torch.vtensor.literal(dense<[[true, false, false], [true, true, false], [true, true, true]]> : tensor<3x3xi1>) : !torch.vtensor<[3,3],i1>
  %o = torch.aten.scaled_dot_product_attention %q, %k, %v, %mask, %float0, %false, %none, %false : !torch.vtensor<[1,2,3,16],f32>, !torch.vtensor<[1,2,3,16],f32>, !torch.vtensor<[1,2,3,16],f32>, !torch.vtensor<[3,3],i1>, !torch.float, !torch.bool, !torch.none, !torch.bool -> !torch.vtensor<[1,2,3,16],f32>
  return %o : !torch.vtensor<[1,2,3,16],f32>
}

// -----

// SDPA with an all-zero additive literal mask: masks nothing, dropped.
// CHECK-LABEL: func.func @sdpa_additive_zero_mask(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,2,3,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,2,3,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,2,3,16],f32>)
// CHECK-NOT:     torch.aten.scaled_dot_product_attention
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 2.500000e-01 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @sdpa_additive_zero_mask(%q: !torch.vtensor<[1,2,3,16],f32>, %k: !torch.vtensor<[1,2,3,16],f32>, %v: !torch.vtensor<[1,2,3,16],f32>) -> !torch.vtensor<[1,2,3,16],f32> {
  %float0 = torch.constant.float 0.000000e+00
  %none = torch.constant.none
  %false = torch.constant.bool false
  %mask = torch.vtensor.literal(dense<0.0> : tensor<1x1x3x3xf32>) : !torch.vtensor<[1,1,3,3],f32>
  %o = torch.aten.scaled_dot_product_attention %q, %k, %v, %mask, %float0, %false, %none, %false : !torch.vtensor<[1,2,3,16],f32>, !torch.vtensor<[1,2,3,16],f32>, !torch.vtensor<[1,2,3,16],f32>, !torch.vtensor<[1,1,3,3],f32>, !torch.float, !torch.bool, !torch.none, !torch.bool -> !torch.vtensor<[1,2,3,16],f32>
  return %o : !torch.vtensor<[1,2,3,16],f32>
}

// -----

// Regression (constant masks read through casts): a bool tril cast to f32 and ADDED adds 1.0 on
// the kept entries and 0 above the diagonal, so it masks nothing and is no causal mask. The
// literal must be read with its post-cast values (1.0 / 0.0): a general bias, kept as the mask
// operand, causal = false. (It was once raised as causal = true.)
// CHECK-LABEL: func.func @bool_tril_cast_to_float_added(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,2,3,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,2,3,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,2,3,16],f32>)
// CHECK:         %[[M:.+]] = torch.aten.to.dtype %{{.+}}, %{{.+}} : !torch.vtensor<[3,3],i1>, {{.*}} -> !torch.vtensor<[3,3],f32>
// CHECK-NOT:     causal = true
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]], %[[M]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 1.000000e+00 : f64}
// CHECK-NEXT:    return %[[O]]
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

// Regression (constant masks read through casts): an additive 0 / finfo.min causal mask cast to
// bool is True (keep) exactly on the FUTURE entries. Passed to SDPA as a keep-mask it is not
// causal: kept as the mask operand, causal = false. (It was once raised as causal = true.)
// CHECK-LABEL: func.func @additive_causal_cast_to_bool_sdpa(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,2,3,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,2,3,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,2,3,16],f32>)
// CHECK:         %[[M:.+]] = torch.aten.to.dtype %{{.+}}, %{{.+}} : !torch.vtensor<[3,3],f32>, {{.*}} -> !torch.vtensor<[3,3],i1>
// CHECK-NOT:     causal = true
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]], %[[M]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 2.500000e-01 : f64}
// CHECK-NEXT:    return %[[O]]
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
