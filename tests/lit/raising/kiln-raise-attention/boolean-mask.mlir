// RUN: kiln-opt %s -p kiln-raise-attention --split-input-file | filecheck %s

// kiln-raise-attention, boolean-mask family: where.self / where.ScalarOther(keep, scores, fill),
// where.self / where.ScalarSelf(drop, fill, scores) (masked_fill after torch.export)
// and masked_fill.Scalar / .Tensor(scores, drop, fill) with a constant fill <= -1e4
// (MASKED_SCORE_BOUND) become kiln.attention's i1 keep-mask operand (logical_not of a drop mask).
// A fill that is not a large negative constant, or more than one mask kind, leaves the pattern
// alone.

// where.self(keep, scores, fill) with fill = finfo(f32).min as a 0-d literal (HF style): the i1
// condition becomes the keep-mask operand as it is.
// CHECK-LABEL: func.func @where_self_finfo_min(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[M:[^:]+]]: !torch.vtensor<[8,8],i1>)
// CHECK-NOT:     torch.aten.where.self
// CHECK-NOT:     torch.aten._softmax
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]], %[[M]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 1.000000e+00 : f64} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[8,8],i1>) -> !torch.vtensor<[1,4,8,16],f32>
// CHECK-NEXT:    return %[[O]]
func.func @where_self_finfo_min(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %m: !torch.vtensor<[8,8],i1>) -> !torch.vtensor<[1,4,8,16],f32> {
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %fill = torch.vtensor.literal(dense<-3.40282347E+38> : tensor<f32>) : !torch.vtensor<[],f32>
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %w = torch.aten.where.self %m, %s, %fill : !torch.vtensor<[8,8],i1>, !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %w, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// The same with fill = -inf (0xFF800000).
// CHECK-LABEL: func.func @where_self_ninf(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[M:[^:]+]]: !torch.vtensor<[8,8],i1>)
// CHECK-NOT:     torch.aten.where.self
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]], %[[M]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 1.000000e+00 : f64} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[8,8],i1>) -> !torch.vtensor<[1,4,8,16],f32>
// CHECK-NEXT:    return %[[O]]
func.func @where_self_ninf(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %m: !torch.vtensor<[8,8],i1>) -> !torch.vtensor<[1,4,8,16],f32> {
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %fill = torch.vtensor.literal(dense<0xFF800000> : tensor<f32>) : !torch.vtensor<[],f32>
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %w = torch.aten.where.self %m, %s, %fill : !torch.vtensor<[8,8],i1>, !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %w, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// fill = -1e4 exactly (MASKED_SCORE_BOUND, older BERT code) still counts as masking; a
// [1, 1, 8, 8] condition is kept with its own shape.
// CHECK-LABEL: func.func @where_self_bound(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[M:[^:]+]]: !torch.vtensor<[1,1,8,8],i1>)
// CHECK-NOT:     torch.aten.where.self
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]], %[[M]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 1.000000e+00 : f64} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,1,8,8],i1>) -> !torch.vtensor<[1,4,8,16],f32>
// CHECK-NEXT:    return %[[O]]
func.func @where_self_bound(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %m: !torch.vtensor<[1,1,8,8],i1>) -> !torch.vtensor<[1,4,8,16],f32> {
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %fill = torch.vtensor.literal(dense<-1.000000e+04> : tensor<f32>) : !torch.vtensor<[],f32>
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %w = torch.aten.where.self %m, %s, %fill : !torch.vtensor<[1,1,8,8],i1>, !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %w, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// where.ScalarOther(keep, scores, -inf): the fill is a !torch.float constant.
// CHECK-LABEL: func.func @where_scalar_other(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[M:[^:]+]]: !torch.vtensor<[8,8],i1>)
// CHECK-NOT:     torch.aten.where.ScalarOther
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]], %[[M]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 1.000000e+00 : f64} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[8,8],i1>) -> !torch.vtensor<[1,4,8,16],f32>
// CHECK-NEXT:    return %[[O]]
func.func @where_scalar_other(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %m: !torch.vtensor<[8,8],i1>) -> !torch.vtensor<[1,4,8,16],f32> {
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %ninf = torch.constant.float 0xFFF0000000000000
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %w = torch.aten.where.ScalarOther %m, %s, %ninf : !torch.vtensor<[8,8],i1>, !torch.vtensor<[1,4,8,8],f32>, !torch.float -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %w, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// where() applied to the scaled scores: scale and keep-mask both carried.
// CHECK-LABEL: func.func @where_after_scale(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[M:[^:]+]]: !torch.vtensor<[8,8],i1>)
// CHECK-NOT:     torch.aten.where.self
// CHECK-NOT:     torch.aten.div.Scalar
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]], %[[M]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 1.250000e-01 : f64} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[8,8],i1>) -> !torch.vtensor<[1,4,8,16],f32>
// CHECK-NEXT:    return %[[O]]
func.func @where_after_scale(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %m: !torch.vtensor<[8,8],i1>) -> !torch.vtensor<[1,4,8,16],f32> {
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %f8 = torch.constant.float 8.000000e+00
  %fill = torch.vtensor.literal(dense<-3.40282347E+38> : tensor<f32>) : !torch.vtensor<[],f32>
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %d = torch.aten.div.Scalar %s, %f8 : !torch.vtensor<[1,4,8,8],f32>, !torch.float -> !torch.vtensor<[1,4,8,8],f32>
  %w = torch.aten.where.self %m, %d, %fill : !torch.vtensor<[8,8],i1>, !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %w, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// masked_fill.Scalar(scores, drop, -inf): the mask marks the positions to DROP, so the
// keep-mask operand is its logical_not.
// CHECK-LABEL: func.func @masked_fill_scalar(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[M:[^:]+]]: !torch.vtensor<[8,8],i1>)
// CHECK-NOT:     torch.aten.masked_fill
// CHECK:         %[[KEEP:.+]] = torch.aten.logical_not %[[M]] : !torch.vtensor<[8,8],i1> -> !torch.vtensor<[8,8],i1>
// CHECK-NEXT:    %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]], %[[KEEP]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 1.000000e+00 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @masked_fill_scalar(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %m: !torch.vtensor<[8,8],i1>) -> !torch.vtensor<[1,4,8,16],f32> {
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %ninf = torch.constant.float 0xFFF0000000000000
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %mf = torch.aten.masked_fill.Scalar %s, %m, %ninf : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[8,8],i1>, !torch.float -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %mf, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// masked_fill.Tensor(scores, drop, finfo.min 0-d literal): the mask marks the positions to DROP, so the
// keep-mask operand is its logical_not.
// CHECK-LABEL: func.func @masked_fill_tensor(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[M:[^:]+]]: !torch.vtensor<[8,8],i1>)
// CHECK-NOT:     torch.aten.masked_fill
// CHECK:         %[[KEEP:.+]] = torch.aten.logical_not %[[M]] : !torch.vtensor<[8,8],i1> -> !torch.vtensor<[8,8],i1>
// CHECK-NEXT:    %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]], %[[KEEP]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 1.000000e+00 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @masked_fill_tensor(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %m: !torch.vtensor<[8,8],i1>) -> !torch.vtensor<[1,4,8,16],f32> {
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %fill = torch.vtensor.literal(dense<-3.40282347E+38> : tensor<f32>) : !torch.vtensor<[],f32>
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %mf = torch.aten.masked_fill.Tensor %s, %m, %fill : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[8,8],i1>, !torch.vtensor<[],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %mf, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Negative: fill = -1.0 is a penalty, not a mask (masked keys keep real weight).
// CHECK-LABEL: func.func @where_fill_minus_one(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[M:[^:]+]]: !torch.vtensor<[8,8],i1>)
// CHECK-NOT:     "kiln.attention"
// CHECK:         %[[KT:.+]] = torch.aten.transpose.int %[[K]]
// CHECK:         %[[S:.+]] = torch.aten.matmul %[[Q]], %[[KT]]
// CHECK:         %[[W:.+]] = torch.aten.where.self %[[M]], %[[S]], %{{.+}}
// CHECK:         %[[SM:.+]] = torch.aten._softmax %[[W]]
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[SM]], %[[V]]
// CHECK-NOT:     "kiln.attention"
// CHECK:         return %[[O]]
func.func @where_fill_minus_one(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %m: !torch.vtensor<[8,8],i1>) -> !torch.vtensor<[1,4,8,16],f32> {
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %fill = torch.vtensor.literal(dense<-1.000000e+00> : tensor<f32>) : !torch.vtensor<[],f32>
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %w = torch.aten.where.self %m, %s, %fill : !torch.vtensor<[8,8],i1>, !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %w, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Negative: fill = 0.
// CHECK-LABEL: func.func @where_fill_zero(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[M:[^:]+]]: !torch.vtensor<[8,8],i1>)
// CHECK-NOT:     "kiln.attention"
// CHECK:         %[[KT:.+]] = torch.aten.transpose.int %[[K]]
// CHECK:         %[[S:.+]] = torch.aten.matmul %[[Q]], %[[KT]]
// CHECK:         %[[W:.+]] = torch.aten.where.self %[[M]], %[[S]], %{{.+}}
// CHECK:         %[[SM:.+]] = torch.aten._softmax %[[W]]
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[SM]], %[[V]]
// CHECK-NOT:     "kiln.attention"
// CHECK:         return %[[O]]
func.func @where_fill_zero(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %m: !torch.vtensor<[8,8],i1>) -> !torch.vtensor<[1,4,8,16],f32> {
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %fill = torch.vtensor.literal(dense<0.000000e+00> : tensor<f32>) : !torch.vtensor<[],f32>
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %w = torch.aten.where.self %m, %s, %fill : !torch.vtensor<[8,8],i1>, !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %w, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Negative: fill = -9999, just above the -1e4 bound.
// CHECK-LABEL: func.func @where_fill_just_above_bound(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[M:[^:]+]]: !torch.vtensor<[8,8],i1>)
// CHECK-NOT:     "kiln.attention"
// CHECK:         %[[KT:.+]] = torch.aten.transpose.int %[[K]]
// CHECK:         %[[S:.+]] = torch.aten.matmul %[[Q]], %[[KT]]
// CHECK:         %[[W:.+]] = torch.aten.where.self %[[M]], %[[S]], %{{.+}}
// CHECK:         %[[SM:.+]] = torch.aten._softmax %[[W]]
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[SM]], %[[V]]
// CHECK-NOT:     "kiln.attention"
// CHECK:         return %[[O]]
func.func @where_fill_just_above_bound(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %m: !torch.vtensor<[8,8],i1>) -> !torch.vtensor<[1,4,8,16],f32> {
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %fill = torch.vtensor.literal(dense<-9.999000e+03> : tensor<f32>) : !torch.vtensor<[],f32>
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %w = torch.aten.where.self %m, %s, %fill : !torch.vtensor<[8,8],i1>, !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %w, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Negative: where.ScalarOther with fill -1.0.
// CHECK-LABEL: func.func @where_scalar_other_minus_one(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[M:[^:]+]]: !torch.vtensor<[8,8],i1>)
// CHECK-NOT:     "kiln.attention"
// CHECK:         %[[KT:.+]] = torch.aten.transpose.int %[[K]]
// CHECK:         %[[S:.+]] = torch.aten.matmul %[[Q]], %[[KT]]
// CHECK:         %[[W:.+]] = torch.aten.where.ScalarOther %[[M]], %[[S]], %{{.+}}
// CHECK:         %[[SM:.+]] = torch.aten._softmax %[[W]]
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[SM]], %[[V]]
// CHECK-NOT:     "kiln.attention"
// CHECK:         return %[[O]]
func.func @where_scalar_other_minus_one(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %m: !torch.vtensor<[8,8],i1>) -> !torch.vtensor<[1,4,8,16],f32> {
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %fill = torch.constant.float -1.000000e+00
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %w = torch.aten.where.ScalarOther %m, %s, %fill : !torch.vtensor<[8,8],i1>, !torch.vtensor<[1,4,8,8],f32>, !torch.float -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %w, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Negative: masked_fill.Scalar with 0.0.
// CHECK-LABEL: func.func @masked_fill_zero(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[M:[^:]+]]: !torch.vtensor<[8,8],i1>)
// CHECK-NOT:     "kiln.attention"
// CHECK:         %[[KT:.+]] = torch.aten.transpose.int %[[K]]
// CHECK:         %[[S:.+]] = torch.aten.matmul %[[Q]], %[[KT]]
// CHECK:         %[[W:.+]] = torch.aten.masked_fill.Scalar %[[S]], %[[M]], %{{.+}}
// CHECK:         %[[SM:.+]] = torch.aten._softmax %[[W]]
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[SM]], %[[V]]
// CHECK-NOT:     "kiln.attention"
// CHECK:         return %[[O]]
func.func @masked_fill_zero(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %m: !torch.vtensor<[8,8],i1>) -> !torch.vtensor<[1,4,8,16],f32> {
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %zero = torch.constant.float 0.000000e+00
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %mf = torch.aten.masked_fill.Scalar %s, %m, %zero : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[8,8],i1>, !torch.float -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %mf, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Negative: the fill is a function argument, unknown at compile time.
// CHECK-LABEL: func.func @where_fill_argument(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[M:[^:]+]]: !torch.vtensor<[8,8],i1>, %[[F:[^:]+]]: !torch.vtensor<[],f32>)
// CHECK-NOT:     "kiln.attention"
// CHECK:         %[[KT:.+]] = torch.aten.transpose.int %[[K]]
// CHECK:         %[[S:.+]] = torch.aten.matmul %[[Q]], %[[KT]]
// CHECK:         %[[W:.+]] = torch.aten.where.self %[[M]], %[[S]], %[[F]]
// CHECK:         %[[SM:.+]] = torch.aten._softmax %[[W]]
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[SM]], %[[V]]
// CHECK-NOT:     "kiln.attention"
// CHECK:         return %[[O]]
func.func @where_fill_argument(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %m: !torch.vtensor<[8,8],i1>, %fill: !torch.vtensor<[],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %w = torch.aten.where.self %m, %s, %fill : !torch.vtensor<[8,8],i1>, !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %w, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Negative: two boolean masks (where + masked_fill) would need an and of the two; the pass
// takes at most one boolean mask.
// CHECK-LABEL: func.func @two_boolean_masks(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[M:[^:]+]]: !torch.vtensor<[8,8],i1>, %[[M2:[^:]+]]: !torch.vtensor<[8,8],i1>)
// CHECK-NOT:     "kiln.attention"
// CHECK:         %[[KT:.+]] = torch.aten.transpose.int %[[K]]
// CHECK:         %[[S:.+]] = torch.aten.matmul %[[Q]], %[[KT]]
// CHECK:         %[[W:.+]] = torch.aten.where.ScalarOther %[[M]], %[[S]]
// CHECK:         %[[MF:.+]] = torch.aten.masked_fill.Scalar %[[W]], %[[M2]]
// CHECK:         %[[SM:.+]] = torch.aten._softmax %[[MF]]
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[SM]], %[[V]]
// CHECK-NOT:     "kiln.attention"
// CHECK:         return %[[O]]
func.func @two_boolean_masks(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %m: !torch.vtensor<[8,8],i1>, %m2: !torch.vtensor<[8,8],i1>) -> !torch.vtensor<[1,4,8,16],f32> {
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %ninf = torch.constant.float 0xFFF0000000000000
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %w = torch.aten.where.ScalarOther %m, %s, %ninf : !torch.vtensor<[8,8],i1>, !torch.vtensor<[1,4,8,8],f32>, !torch.float -> !torch.vtensor<[1,4,8,8],f32>
  %mf = torch.aten.masked_fill.Scalar %w, %m2, %ninf : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[8,8],i1>, !torch.float -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %mf, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Negative: a boolean mask on top of an additive one (kiln.attention has one mask operand).
// CHECK-LABEL: func.func @boolean_and_additive_masks(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[M:[^:]+]]: !torch.vtensor<[8,8],i1>, %[[B:[^:]+]]: !torch.vtensor<[1,4,8,8],f32>)
// CHECK-NOT:     "kiln.attention"
// CHECK:         %[[KT:.+]] = torch.aten.transpose.int %[[K]]
// CHECK:         %[[S:.+]] = torch.aten.matmul %[[Q]], %[[KT]]
// CHECK:         %[[A:.+]] = torch.aten.add.Tensor %[[S]], %[[B]]
// CHECK:         %[[W:.+]] = torch.aten.where.ScalarOther %[[M]], %[[A]]
// CHECK:         %[[SM:.+]] = torch.aten._softmax %[[W]]
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[SM]], %[[V]]
// CHECK-NOT:     "kiln.attention"
// CHECK:         return %[[O]]
func.func @boolean_and_additive_masks(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %m: !torch.vtensor<[8,8],i1>, %bias: !torch.vtensor<[1,4,8,8],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %int1 = torch.constant.int 1
  %ninf = torch.constant.float 0xFFF0000000000000
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %a = torch.aten.add.Tensor %s, %bias, %int1 : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,8],f32>, !torch.int -> !torch.vtensor<[1,4,8,8],f32>
  %w = torch.aten.where.ScalarOther %m, %a, %ninf : !torch.vtensor<[8,8],i1>, !torch.vtensor<[1,4,8,8],f32>, !torch.float -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %w, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// masked_fill(scores, drop, -inf) as torch.export decomposes it: where.self(drop, fill, scores),
// the fill first. The drop condition becomes a keep-mask through logical_not.
// CHECK-LABEL: func.func @where_self_drop_first(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[M:[^:]+]]: !torch.vtensor<[8,8],i1>)
// CHECK-NOT:     torch.aten.where.self
// CHECK:         %[[KEEP:.+]] = torch.aten.logical_not %[[M]]
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]], %[[KEEP]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 1.000000e+00 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @where_self_drop_first(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %m: !torch.vtensor<[8,8],i1>) -> !torch.vtensor<[1,4,8,16],f32> {
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %fill = torch.vtensor.literal(dense<0xFF800000> : tensor<f32>) : !torch.vtensor<[],f32>
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %w = torch.aten.where.self %m, %fill, %s : !torch.vtensor<[8,8],i1>, !torch.vtensor<[],f32>, !torch.vtensor<[1,4,8,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %w, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// A causal mask built in forward (triu(ones(T, T, bool), 1), folded to a ui8 literal converted
// to i1) filled with -inf through where.self(drop, fill, scores): causal = true, no mask operand.
// CHECK-LABEL: func.func @where_self_drop_triu_causal(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,2,4,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,2,4,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,2,4,16],f32>)
// CHECK-NOT:     torch.aten.where.self
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = true, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 2.500000e-01 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @where_self_drop_triu_causal(%q: !torch.vtensor<[1,2,4,16],f32>, %k: !torch.vtensor<[1,2,4,16],f32>, %v: !torch.vtensor<[1,2,4,16],f32>) -> !torch.vtensor<[1,2,4,16],f32> {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %int11 = torch.constant.int 11
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %f4 = torch.constant.float 4.000000e+00
  %perm = torch.prim.ListConstruct %int0, %int1, %int3, %int2 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %kt = torch.aten.permute %k, %perm : !torch.vtensor<[1,2,4,16],f32>, !torch.list<int> -> !torch.vtensor<[1,2,16,4],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,2,4,16],f32>, !torch.vtensor<[1,2,16,4],f32> -> !torch.vtensor<[1,2,4,4],f32>
  %d = torch.aten.div.Scalar %s, %f4 : !torch.vtensor<[1,2,4,4],f32>, !torch.float -> !torch.vtensor<[1,2,4,4],f32>
  %bits = torch.vtensor.literal(dense<[[0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1], [0, 0, 0, 0]]> : tensor<4x4xui8>) : !torch.vtensor<[4,4],ui8>
  %drop = torch.prims.convert_element_type %bits, %int11 : !torch.vtensor<[4,4],ui8>, !torch.int -> !torch.vtensor<[4,4],i1>
  %fill = torch.vtensor.literal(dense<0xFF800000> : tensor<f32>) : !torch.vtensor<[],f32>
  %w = torch.aten.where.self %drop, %fill, %d : !torch.vtensor<[4,4],i1>, !torch.vtensor<[],f32>, !torch.vtensor<[1,2,4,4],f32> -> !torch.vtensor<[1,2,4,4],f32>
  %sm = torch.aten._softmax %w, %intm1, %false : !torch.vtensor<[1,2,4,4],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,2,4,4],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,2,4,4],f32>, !torch.vtensor<[1,2,4,16],f32> -> !torch.vtensor<[1,2,4,16],f32>
  return %o : !torch.vtensor<[1,2,4,16],f32>
}

// -----

// Negative: where.self(cond, fill, scores) with a fill that is not masking (-1.0): left alone.
// CHECK-LABEL: func.func @where_self_drop_first_small_fill(
// CHECK-NOT:     kiln.attention
// CHECK:         torch.aten.where.self
// CHECK:         return
func.func @where_self_drop_first_small_fill(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %m: !torch.vtensor<[8,8],i1>) -> !torch.vtensor<[1,4,8,16],f32> {
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %fill = torch.vtensor.literal(dense<-1.0> : tensor<f32>) : !torch.vtensor<[],f32>
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %w = torch.aten.where.self %m, %fill, %s : !torch.vtensor<[8,8],i1>, !torch.vtensor<[],f32>, !torch.vtensor<[1,4,8,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %w, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}
