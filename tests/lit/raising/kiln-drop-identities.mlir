// RUN: kiln-opt %s -p kiln-drop-identities --split-input-file | filecheck %s
// RUN: kiln-opt %s -p kiln-drop-identities,kiln-raise-attention --split-input-file | filecheck %s --check-prefix=RAISE

// kiln-drop-identities: ops that do nothing to a value tensor (result type = input type) are
// replaced by their input, so the matchers after it see through them.

// clone, contiguous, alias, detach, eval dropout (train = false), dropout with p = 0, same-dtype
// to.dtype / _to_copy / type_as: the whole chain folds to the argument.
// CHECK-LABEL: func.func @identities(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,4],f32>
// CHECK-NOT:     torch.aten.
// CHECK:         return %[[X]] : !torch.vtensor<[2,4],f32>
func.func @identities(%x: !torch.vtensor<[2,4],f32>, %y: !torch.vtensor<[3],f32>) -> !torch.vtensor<[2,4],f32> {
  %none = torch.constant.none
  %false = torch.constant.bool false
  %true = torch.constant.bool true
  %int0 = torch.constant.int 0
  %int6 = torch.constant.int 6
  %p = torch.constant.float 1.000000e-01
  %p0 = torch.constant.float 0.000000e+00
  %0 = torch.aten.clone %x, %none : !torch.vtensor<[2,4],f32>, !torch.none -> !torch.vtensor<[2,4],f32>
  %1 = torch.aten.contiguous %0, %int0 : !torch.vtensor<[2,4],f32>, !torch.int -> !torch.vtensor<[2,4],f32>
  %2 = torch.aten.alias %1 : !torch.vtensor<[2,4],f32> -> !torch.vtensor<[2,4],f32>
  %3 = torch.aten.detach %2 : !torch.vtensor<[2,4],f32> -> !torch.vtensor<[2,4],f32>
  %4 = torch.aten.dropout %3, %p, %false : !torch.vtensor<[2,4],f32>, !torch.float, !torch.bool -> !torch.vtensor<[2,4],f32>
  %5 = torch.aten.dropout %4, %p0, %true : !torch.vtensor<[2,4],f32>, !torch.float, !torch.bool -> !torch.vtensor<[2,4],f32>
  %6 = torch.aten.to.dtype %5, %int6, %false, %false, %none : !torch.vtensor<[2,4],f32>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[2,4],f32>
  %7 = torch.aten._to_copy %6, %none, %none, %none, %none, %false, %none : !torch.vtensor<[2,4],f32>, !torch.none, !torch.none, !torch.none, !torch.none, !torch.bool, !torch.none -> !torch.vtensor<[2,4],f32>
  %8 = torch.aten.type_as %7, %y : !torch.vtensor<[2,4],f32>, !torch.vtensor<[3],f32> -> !torch.vtensor<[2,4],f32>
  return %8 : !torch.vtensor<[2,4],f32>
}

// -----

// Negative: training-mode dropout with p > 0 and a real dtype change stay.
// CHECK-LABEL: func.func @not_identities(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,4],f32>)
// CHECK:         %[[D:.+]] = torch.aten.dropout %[[X]], %{{.+}}, %{{.+}} :
// CHECK:         %[[C:.+]] = torch.aten.to.dtype %[[D]], {{.*}} -> !torch.vtensor<[2,4],f16>
// CHECK:         return %[[D]], %[[C]]
func.func @not_identities(%x: !torch.vtensor<[2,4],f32>) -> (!torch.vtensor<[2,4],f32>, !torch.vtensor<[2,4],f16>) {
  %none = torch.constant.none
  %false = torch.constant.bool false
  %true = torch.constant.bool true
  %int5 = torch.constant.int 5
  %p = torch.constant.float 1.000000e-01
  %0 = torch.aten.dropout %x, %p, %true : !torch.vtensor<[2,4],f32>, !torch.float, !torch.bool -> !torch.vtensor<[2,4],f32>
  %1 = torch.aten.to.dtype %0, %int5, %false, %false, %none : !torch.vtensor<[2,4],f32>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[2,4],f16>
  return %0, %1 : !torch.vtensor<[2,4],f32>, !torch.vtensor<[2,4],f16>
}

// -----

// Negative: dropout whose train flag is not a constant stays.
// CHECK-LABEL: func.func @dropout_unknown_train(
// CHECK:         %[[D:.+]] = torch.aten.dropout
// CHECK:         return %[[D]]
func.func @dropout_unknown_train(%x: !torch.vtensor<[2,4],f32>, %train: !torch.bool) -> !torch.vtensor<[2,4],f32> {
  %p = torch.constant.float 1.000000e-01
  %0 = torch.aten.dropout %x, %p, %train : !torch.vtensor<[2,4],f32>, !torch.float, !torch.bool -> !torch.vtensor<[2,4],f32>
  return %0 : !torch.vtensor<[2,4],f32>
}

// -----

// Negative: a clone whose result type is more refined than its input ([?,4] → [2,4]) stays, so
// no use sees a type change.
// CHECK-LABEL: func.func @clone_refines_type(
// CHECK:         %[[C:.+]] = torch.aten.clone
// CHECK:         return %[[C]]
func.func @clone_refines_type(%x: !torch.vtensor<[?,4],f32>) -> !torch.vtensor<[2,4],f32> {
  %none = torch.constant.none
  %0 = torch.aten.clone %x, %none : !torch.vtensor<[?,4],f32>, !torch.none -> !torch.vtensor<[2,4],f32>
  return %0 : !torch.vtensor<[2,4],f32>
}

// -----

// Why the pass exists: an eval-mode dropout between softmax and ·v, and a .contiguous() after
// the transpose, hide attention from kiln-raise-attention until they are dropped.
// CHECK-LABEL: func.func @attention_with_identities(
// CHECK-NOT:     torch.aten.dropout
// CHECK-NOT:     torch.aten.contiguous
// CHECK:         torch.aten._softmax
// RAISE-LABEL: func.func @attention_with_identities(
// RAISE-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>)
// RAISE-NOT:     torch.aten._softmax
// RAISE:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 2.500000e-01 : f64}
// RAISE-NEXT:    return %[[O]]
func.func @attention_with_identities(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %int0 = torch.constant.int 0
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %f4 = torch.constant.float 4.000000e+00
  %p = torch.constant.float 1.000000e-01
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %ktc = torch.aten.contiguous %kt, %int0 : !torch.vtensor<[1,4,16,8],f32>, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %ktc : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %d = torch.aten.div.Scalar %s, %f4 : !torch.vtensor<[1,4,8,8],f32>, !torch.float -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %d, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %dr = torch.aten.dropout %sm, %p, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.float, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %dr, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}
