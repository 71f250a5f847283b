// RUN: kiln-opt %s -p kiln-drop-identities,kiln-raise-attention --split-input-file | filecheck %s

// kiln-raise-attention, softmax / dtype family: _softmax and softmax.int over the last axis,
// with the f32-softmax casts of f16/bf16 models absorbed, and identities (eval dropout, clone,
// same-dtype casts) removed first by kiln-drop-identities. Left alone: another softmax axis,
// half_to_float, probabilities or scores with a second use, training dropout, mixed dtypes.

// f16 q/k/v; scores cast to f32 (to.dtype 6), _softmax in f32, probabilities cast back to f16
// (to.dtype 5): both casts are absorbed and kiln.attention works on the f16 operands.
// CHECK-LABEL: func.func @f16_softmax_in_f32(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f16>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f16>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f16>)
// CHECK-NOT:     torch.aten.to.dtype
// CHECK-NOT:     torch.aten._softmax
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 2.500000e-01 : f64} : (!torch.vtensor<[1,4,8,16],f16>, !torch.vtensor<[1,4,8,16],f16>, !torch.vtensor<[1,4,8,16],f16>) -> !torch.vtensor<[1,4,8,16],f16>
// CHECK-NEXT:    return %[[O]]
func.func @f16_softmax_in_f32(%q: !torch.vtensor<[1,4,8,16],f16>, %k: !torch.vtensor<[1,4,8,16],f16>, %v: !torch.vtensor<[1,4,8,16],f16>) -> !torch.vtensor<[1,4,8,16],f16> {
  %none = torch.constant.none
  %int5 = torch.constant.int 5
  %int6 = torch.constant.int 6
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %f4 = torch.constant.float 4.000000e+00
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f16>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f16>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f16>, !torch.vtensor<[1,4,16,8],f16> -> !torch.vtensor<[1,4,8,8],f16>
  %d = torch.aten.div.Scalar %s, %f4 : !torch.vtensor<[1,4,8,8],f16>, !torch.float -> !torch.vtensor<[1,4,8,8],f16>
  %s32 = torch.aten.to.dtype %d, %int6, %false, %false, %none : !torch.vtensor<[1,4,8,8],f16>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %s32, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %p16 = torch.aten.to.dtype %sm, %int5, %false, %false, %none : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[1,4,8,8],f16>
  %o = torch.aten.matmul %p16, %v : !torch.vtensor<[1,4,8,8],f16>, !torch.vtensor<[1,4,8,16],f16> -> !torch.vtensor<[1,4,8,16],f16>
  return %o : !torch.vtensor<[1,4,8,16],f16>
}

// -----

// The same for bf16 (cast back with to.dtype 15).
// CHECK-LABEL: func.func @bf16_softmax_in_f32(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],bf16>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],bf16>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],bf16>)
// CHECK-NOT:     torch.aten.to.dtype
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 1.000000e+00 : f64} : (!torch.vtensor<[1,4,8,16],bf16>, !torch.vtensor<[1,4,8,16],bf16>, !torch.vtensor<[1,4,8,16],bf16>) -> !torch.vtensor<[1,4,8,16],bf16>
// CHECK-NEXT:    return %[[O]]
func.func @bf16_softmax_in_f32(%q: !torch.vtensor<[1,4,8,16],bf16>, %k: !torch.vtensor<[1,4,8,16],bf16>, %v: !torch.vtensor<[1,4,8,16],bf16>) -> !torch.vtensor<[1,4,8,16],bf16> {
  %none = torch.constant.none
  %int5 = torch.constant.int 5
  %int6 = torch.constant.int 6
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %int15 = torch.constant.int 15
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],bf16>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],bf16>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],bf16>, !torch.vtensor<[1,4,16,8],bf16> -> !torch.vtensor<[1,4,8,8],bf16>
  %s32 = torch.aten.to.dtype %s, %int6, %false, %false, %none : !torch.vtensor<[1,4,8,8],bf16>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %s32, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %p = torch.aten.to.dtype %sm, %int15, %false, %false, %none : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[1,4,8,8],bf16>
  %o = torch.aten.matmul %p, %v : !torch.vtensor<[1,4,8,8],bf16>, !torch.vtensor<[1,4,8,16],bf16> -> !torch.vtensor<[1,4,8,16],bf16>
  return %o : !torch.vtensor<[1,4,8,16],bf16>
}

// -----

// torch.aten.softmax.int(scores, -1, dtype = none).
// CHECK-LABEL: func.func @softmax_int_dtype_none(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>)
// CHECK-NOT:     torch.aten.softmax.int
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 1.000000e+00 : f64} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32>
// CHECK-NEXT:    return %[[O]]
func.func @softmax_int_dtype_none(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %none = torch.constant.none
  %int5 = torch.constant.int 5
  %int6 = torch.constant.int 6
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten.softmax.int %s, %intm1, %none : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.none -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// softmax.int(f16 scores, -1, dtype = f32), cast back to f16: the f32-softmax form written with
// softmax's own dtype argument.
// CHECK-LABEL: func.func @softmax_int_dtype_f32_in_f16_model(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f16>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f16>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f16>)
// CHECK-NOT:     torch.aten.softmax.int
// CHECK-NOT:     torch.aten.to.dtype
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 1.000000e+00 : f64} : (!torch.vtensor<[1,4,8,16],f16>, !torch.vtensor<[1,4,8,16],f16>, !torch.vtensor<[1,4,8,16],f16>) -> !torch.vtensor<[1,4,8,16],f16>
// CHECK-NEXT:    return %[[O]]
func.func @softmax_int_dtype_f32_in_f16_model(%q: !torch.vtensor<[1,4,8,16],f16>, %k: !torch.vtensor<[1,4,8,16],f16>, %v: !torch.vtensor<[1,4,8,16],f16>) -> !torch.vtensor<[1,4,8,16],f16> {
  %none = torch.constant.none
  %int5 = torch.constant.int 5
  %int6 = torch.constant.int 6
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f16>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f16>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f16>, !torch.vtensor<[1,4,16,8],f16> -> !torch.vtensor<[1,4,8,8],f16>
  %sm = torch.aten.softmax.int %s, %intm1, %int6 : !torch.vtensor<[1,4,8,8],f16>, !torch.int, !torch.int -> !torch.vtensor<[1,4,8,8],f32>
  %p16 = torch.aten.to.dtype %sm, %int5, %false, %false, %none : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[1,4,8,8],f16>
  %o = torch.aten.matmul %p16, %v : !torch.vtensor<[1,4,8,8],f16>, !torch.vtensor<[1,4,8,16],f16> -> !torch.vtensor<[1,4,8,16],f16>
  return %o : !torch.vtensor<[1,4,8,16],f16>
}

// -----

// dropout(train = false) and clone between the softmax and the second product are removed by
// kiln-drop-identities first, which lets the raise see the pattern.
// CHECK-LABEL: func.func @eval_dropout_and_clone(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>)
// CHECK-NOT:     torch.aten.dropout
// CHECK-NOT:     torch.aten.clone
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 1.000000e+00 : f64} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32>
// CHECK-NEXT:    return %[[O]]
func.func @eval_dropout_and_clone(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %none = torch.constant.none
  %int5 = torch.constant.int 5
  %int6 = torch.constant.int 6
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %p = torch.constant.float 1.000000e-01
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %s, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %dr = torch.aten.dropout %sm, %p, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.float, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %cl = torch.aten.clone %dr, %none : !torch.vtensor<[1,4,8,8],f32>, !torch.none -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %cl, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// .to(q.dtype) after an f32 softmax in an f32 model (a same-dtype cast) is an identity.
// CHECK-LABEL: func.func @same_dtype_cast_after_softmax(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>)
// CHECK-NOT:     torch.aten.to.dtype
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 1.000000e+00 : f64} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32>
// CHECK-NEXT:    return %[[O]]
func.func @same_dtype_cast_after_softmax(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %none = torch.constant.none
  %int5 = torch.constant.int 5
  %int6 = torch.constant.int 6
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %s, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %c = torch.aten.to.dtype %sm, %int6, %false, %false, %none : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %c, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Negative: _softmax over dim 1 (the heads) of the 4-D scores is not attention.
// CHECK-LABEL: func.func @softmax_wrong_axis(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>)
// CHECK-NOT:     "kiln.attention"
// CHECK:         %[[KT:.+]] = torch.aten.transpose.int %[[K]]
// CHECK:         %[[S:.+]] = torch.aten.matmul %[[Q]], %[[KT]]
// CHECK:         %[[SM:.+]] = torch.aten._softmax %[[S]], %int1, %false
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[SM]], %[[V]]
// CHECK-NOT:     "kiln.attention"
// CHECK:         return %[[O]]
func.func @softmax_wrong_axis(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %none = torch.constant.none
  %int5 = torch.constant.int 5
  %int6 = torch.constant.int 6
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %int1 = torch.constant.int 1
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %s, %int1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Negative: softmax.int over dim 2 (the queries).
// CHECK-LABEL: func.func @softmax_int_axis_2(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>)
// CHECK-NOT:     "kiln.attention"
// CHECK:         %[[KT:.+]] = torch.aten.transpose.int %[[K]]
// CHECK:         %[[S:.+]] = torch.aten.matmul %[[Q]], %[[KT]]
// CHECK:         %[[SM:.+]] = torch.aten.softmax.int %[[S]], %int2, %none
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[SM]], %[[V]]
// CHECK-NOT:     "kiln.attention"
// CHECK:         return %[[O]]
func.func @softmax_int_axis_2(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %none = torch.constant.none
  %int5 = torch.constant.int 5
  %int6 = torch.constant.int 6
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %int2 = torch.constant.int 2
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten.softmax.int %s, %int2, %none : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.none -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Negative: _softmax with half_to_float = true is left alone.
// CHECK-LABEL: func.func @half_to_float(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f16>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f16>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f16>)
// CHECK-NOT:     "kiln.attention"
// CHECK:         %[[KT:.+]] = torch.aten.transpose.int %[[K]]
// CHECK:         %[[S:.+]] = torch.aten.matmul %[[Q]], %[[KT]]
// CHECK:         %[[SM:.+]] = torch.aten._softmax %[[S]], %int-1, %true
// CHECK:         %[[P:.+]] = torch.aten.to.dtype %[[SM]]
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[P]], %[[V]]
// CHECK-NOT:     "kiln.attention"
// CHECK:         return %[[O]]
func.func @half_to_float(%q: !torch.vtensor<[1,4,8,16],f16>, %k: !torch.vtensor<[1,4,8,16],f16>, %v: !torch.vtensor<[1,4,8,16],f16>) -> !torch.vtensor<[1,4,8,16],f16> {
  %none = torch.constant.none
  %int5 = torch.constant.int 5
  %int6 = torch.constant.int 6
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %true = torch.constant.bool true
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f16>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f16>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f16>, !torch.vtensor<[1,4,16,8],f16> -> !torch.vtensor<[1,4,8,8],f16>
  %sm = torch.aten._softmax %s, %intm1, %true : !torch.vtensor<[1,4,8,8],f16>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %p16 = torch.aten.to.dtype %sm, %int5, %false, %false, %none : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[1,4,8,8],f16>
  %o = torch.aten.matmul %p16, %v : !torch.vtensor<[1,4,8,8],f16>, !torch.vtensor<[1,4,8,16],f16> -> !torch.vtensor<[1,4,8,16],f16>
  return %o : !torch.vtensor<[1,4,8,16],f16>
}

// -----

// Negative: the attention probabilities are also returned.
// CHECK-LABEL: func.func @softmax_second_use(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>)
// CHECK-NOT:     "kiln.attention"
// CHECK:         %[[KT:.+]] = torch.aten.transpose.int %[[K]]
// CHECK:         %[[S:.+]] = torch.aten.matmul %[[Q]], %[[KT]]
// CHECK:         %[[SM:.+]] = torch.aten._softmax %[[S]]
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[SM]], %[[V]]
// CHECK-NOT:     "kiln.attention"
// CHECK:         return %[[O]], %[[SM]]
func.func @softmax_second_use(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,8],f32>) {
  %none = torch.constant.none
  %int5 = torch.constant.int 5
  %int6 = torch.constant.int 6
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

// Negative: the f16 probabilities (after the cast back) are also returned.
// CHECK-LABEL: func.func @downcast_probs_second_use(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f16>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f16>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f16>)
// CHECK-NOT:     "kiln.attention"
// CHECK:         %[[KT:.+]] = torch.aten.transpose.int %[[K]]
// CHECK:         %[[S:.+]] = torch.aten.matmul %[[Q]], %[[KT]]
// CHECK:         %[[UP:.+]] = torch.aten.to.dtype %[[S]], %int6
// CHECK:         %[[SM:.+]] = torch.aten._softmax %[[UP]]
// CHECK:         %[[P:.+]] = torch.aten.to.dtype %[[SM]], %int5
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[P]], %[[V]]
// CHECK-NOT:     "kiln.attention"
// CHECK:         return %[[O]], %[[P]]
func.func @downcast_probs_second_use(%q: !torch.vtensor<[1,4,8,16],f16>, %k: !torch.vtensor<[1,4,8,16],f16>, %v: !torch.vtensor<[1,4,8,16],f16>) -> (!torch.vtensor<[1,4,8,16],f16>, !torch.vtensor<[1,4,8,8],f16>) {
  %none = torch.constant.none
  %int5 = torch.constant.int 5
  %int6 = torch.constant.int 6
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f16>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f16>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f16>, !torch.vtensor<[1,4,16,8],f16> -> !torch.vtensor<[1,4,8,8],f16>
  %s32 = torch.aten.to.dtype %s, %int6, %false, %false, %none : !torch.vtensor<[1,4,8,8],f16>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %s32, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %p16 = torch.aten.to.dtype %sm, %int5, %false, %false, %none : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[1,4,8,8],f16>
  %o = torch.aten.matmul %p16, %v : !torch.vtensor<[1,4,8,8],f16>, !torch.vtensor<[1,4,8,16],f16> -> !torch.vtensor<[1,4,8,16],f16>
  return %o, %p16 : !torch.vtensor<[1,4,8,16],f16>, !torch.vtensor<[1,4,8,8],f16>
}

// -----

// Negative: the f32 scores (before the softmax) are also returned.
// CHECK-LABEL: func.func @upcast_scores_second_use(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f16>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f16>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f16>)
// CHECK-NOT:     "kiln.attention"
// CHECK:         %[[KT:.+]] = torch.aten.transpose.int %[[K]]
// CHECK:         %[[S:.+]] = torch.aten.matmul %[[Q]], %[[KT]]
// CHECK:         %[[UP:.+]] = torch.aten.to.dtype %[[S]], %int6
// CHECK:         %[[SM:.+]] = torch.aten._softmax %[[UP]]
// CHECK:         %[[P:.+]] = torch.aten.to.dtype %[[SM]], %int5
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[P]], %[[V]]
// CHECK-NOT:     "kiln.attention"
// CHECK:         return %[[O]], %[[UP]]
func.func @upcast_scores_second_use(%q: !torch.vtensor<[1,4,8,16],f16>, %k: !torch.vtensor<[1,4,8,16],f16>, %v: !torch.vtensor<[1,4,8,16],f16>) -> (!torch.vtensor<[1,4,8,16],f16>, !torch.vtensor<[1,4,8,8],f32>) {
  %none = torch.constant.none
  %int5 = torch.constant.int 5
  %int6 = torch.constant.int 6
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f16>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f16>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f16>, !torch.vtensor<[1,4,16,8],f16> -> !torch.vtensor<[1,4,8,8],f16>
  %s32 = torch.aten.to.dtype %s, %int6, %false, %false, %none : !torch.vtensor<[1,4,8,8],f16>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %s32, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %p16 = torch.aten.to.dtype %sm, %int5, %false, %false, %none : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[1,4,8,8],f16>
  %o = torch.aten.matmul %p16, %v : !torch.vtensor<[1,4,8,8],f16>, !torch.vtensor<[1,4,8,16],f16> -> !torch.vtensor<[1,4,8,16],f16>
  return %o, %s32 : !torch.vtensor<[1,4,8,16],f16>, !torch.vtensor<[1,4,8,8],f32>
}

// -----

// Negative: dropout(p = 0.1, train = true) is not an identity; it stays between the softmax and
// the second product, so there is no softmax(...)·v to raise.
// CHECK-LABEL: func.func @train_dropout(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>)
// CHECK-NOT:     "kiln.attention"
// CHECK:         %[[KT:.+]] = torch.aten.transpose.int %[[K]]
// CHECK:         %[[S:.+]] = torch.aten.matmul %[[Q]], %[[KT]]
// CHECK:         %[[SM:.+]] = torch.aten._softmax %[[S]]
// CHECK:         %[[D:.+]] = torch.aten.dropout %[[SM]]
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[D]], %[[V]]
// CHECK-NOT:     "kiln.attention"
// CHECK:         return %[[O]]
func.func @train_dropout(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %none = torch.constant.none
  %int5 = torch.constant.int 5
  %int6 = torch.constant.int 6
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %true = torch.constant.bool true
  %p = torch.constant.float 1.000000e-01
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %s, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %dr = torch.aten.dropout %sm, %p, %true : !torch.vtensor<[1,4,8,8],f32>, !torch.float, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %dr, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Negative: f16 q/k with an f32 softmax that is NOT cast back (v is f32): q, k and v dtypes
// differ, which kiln.attention does not allow.
// CHECK-LABEL: func.func @f32_probs_f16_query(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f16>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f16>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>)
// CHECK-NOT:     "kiln.attention"
// CHECK:         %[[KT:.+]] = torch.aten.transpose.int %[[K]]
// CHECK:         %[[S:.+]] = torch.aten.matmul %[[Q]], %[[KT]]
// CHECK:         %[[UP:.+]] = torch.aten.to.dtype %[[S]], %int6
// CHECK:         %[[SM:.+]] = torch.aten._softmax %[[UP]]
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[SM]], %[[V]]
// CHECK-NOT:     "kiln.attention"
// CHECK:         return %[[O]]
func.func @f32_probs_f16_query(%q: !torch.vtensor<[1,4,8,16],f16>, %k: !torch.vtensor<[1,4,8,16],f16>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %none = torch.constant.none
  %int5 = torch.constant.int 5
  %int6 = torch.constant.int 6
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f16>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f16>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f16>, !torch.vtensor<[1,4,16,8],f16> -> !torch.vtensor<[1,4,8,8],f16>
  %s32 = torch.aten.to.dtype %s, %int6, %false, %false, %none : !torch.vtensor<[1,4,8,8],f16>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %s32, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}
