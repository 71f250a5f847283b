// RUN: kiln-opt %s -p kiln-raise-attention --split-input-file | filecheck %s

// kiln-raise-attention, bmm / rank family: the 3-D [B·H, S, D] form with torch.aten.bmm for
// either product (and rank 2), raised with operands of their own rank. The right operand of q·kᵀ
// must be a transpose / permute that swaps exactly the last two axes (with constant dims).

// 3-D [B·H, S, D] attention: bmm(q, transpose(k, 1, 2)) / 4 → _softmax → bmm(·, v): raised with
// the rank-3 operands as they are.
// CHECK-LABEL: func.func @bmm_transpose_1_2(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[4,8,16],f32>)
// CHECK-NOT:     torch.aten.bmm
// CHECK-NOT:     torch.aten.transpose.int
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 2.500000e-01 : f64} : (!torch.vtensor<[4,8,16],f32>, !torch.vtensor<[4,8,16],f32>, !torch.vtensor<[4,8,16],f32>) -> !torch.vtensor<[4,8,16],f32>
// CHECK-NEXT:    return %[[O]]
func.func @bmm_transpose_1_2(%q: !torch.vtensor<[4,8,16],f32>, %k: !torch.vtensor<[4,8,16],f32>, %v: !torch.vtensor<[4,8,16],f32>) -> !torch.vtensor<[4,8,16],f32> {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %f4 = torch.constant.float 4.000000e+00
  %kt = torch.aten.transpose.int %k, %int1, %int2 : !torch.vtensor<[4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[4,16,8],f32>
  %s = torch.aten.bmm %q, %kt : !torch.vtensor<[4,8,16],f32>, !torch.vtensor<[4,16,8],f32> -> !torch.vtensor<[4,8,8],f32>
  %d = torch.aten.div.Scalar %s, %f4 : !torch.vtensor<[4,8,8],f32>, !torch.float -> !torch.vtensor<[4,8,8],f32>
  %sm = torch.aten._softmax %d, %intm1, %false : !torch.vtensor<[4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[4,8,8],f32>
  %o = torch.aten.bmm %sm, %v : !torch.vtensor<[4,8,8],f32>, !torch.vtensor<[4,8,16],f32> -> !torch.vtensor<[4,8,16],f32>
  return %o : !torch.vtensor<[4,8,16],f32>
}

// -----

// 3-D form with an additive [B·H, Sq, Sk] mask.
// CHECK-LABEL: func.func @bmm_additive_mask(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[4,8,16],f32>, %[[M:[^:]+]]: !torch.vtensor<[4,8,8],f32>)
// CHECK-NOT:     torch.aten.bmm
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]], %[[M]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 1.000000e+00 : f64} : (!torch.vtensor<[4,8,16],f32>, !torch.vtensor<[4,8,16],f32>, !torch.vtensor<[4,8,16],f32>, !torch.vtensor<[4,8,8],f32>) -> !torch.vtensor<[4,8,16],f32>
// CHECK-NEXT:    return %[[O]]
func.func @bmm_additive_mask(%q: !torch.vtensor<[4,8,16],f32>, %k: !torch.vtensor<[4,8,16],f32>, %v: !torch.vtensor<[4,8,16],f32>, %m: !torch.vtensor<[4,8,8],f32>) -> !torch.vtensor<[4,8,16],f32> {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %kt = torch.aten.transpose.int %k, %int1, %int2 : !torch.vtensor<[4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[4,16,8],f32>
  %s = torch.aten.bmm %q, %kt : !torch.vtensor<[4,8,16],f32>, !torch.vtensor<[4,16,8],f32> -> !torch.vtensor<[4,8,8],f32>
  %a = torch.aten.add.Tensor %s, %m, %int1 : !torch.vtensor<[4,8,8],f32>, !torch.vtensor<[4,8,8],f32>, !torch.int -> !torch.vtensor<[4,8,8],f32>
  %sm = torch.aten._softmax %a, %intm1, %false : !torch.vtensor<[4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[4,8,8],f32>
  %o = torch.aten.bmm %sm, %v : !torch.vtensor<[4,8,8],f32>, !torch.vtensor<[4,8,16],f32> -> !torch.vtensor<[4,8,16],f32>
  return %o : !torch.vtensor<[4,8,16],f32>
}

// -----

// bmm for q·kᵀ (k transposed by permute [0, 2, 1]) and matmul for the second product.
// CHECK-LABEL: func.func @bmm_then_matmul_permute(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[4,8,16],f32>)
// CHECK-NOT:     torch.aten.permute
// CHECK-NOT:     torch.aten.bmm
// CHECK-NOT:     torch.aten.matmul
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 1.000000e+00 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @bmm_then_matmul_permute(%q: !torch.vtensor<[4,8,16],f32>, %k: !torch.vtensor<[4,8,16],f32>, %v: !torch.vtensor<[4,8,16],f32>) -> !torch.vtensor<[4,8,16],f32> {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %l = torch.prim.ListConstruct %int0, %int2, %int1 : (!torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %kt = torch.aten.permute %k, %l : !torch.vtensor<[4,8,16],f32>, !torch.list<int> -> !torch.vtensor<[4,16,8],f32>
  %s = torch.aten.bmm %q, %kt : !torch.vtensor<[4,8,16],f32>, !torch.vtensor<[4,16,8],f32> -> !torch.vtensor<[4,8,8],f32>
  %sm = torch.aten._softmax %s, %intm1, %false : !torch.vtensor<[4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[4,8,8],f32>, !torch.vtensor<[4,8,16],f32> -> !torch.vtensor<[4,8,16],f32>
  return %o : !torch.vtensor<[4,8,16],f32>
}

// -----

// Negative: the right operand of the first bmm is transpose(k, 0, 1), not a swap of the last two
// axes, so it is not kᵀ.
// CHECK-LABEL: func.func @bmm_transpose_0_1(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[16,4,8],f32>, %[[V:[^:]+]]: !torch.vtensor<[4,8,16],f32>)
// CHECK-NOT:     "kiln.attention"
// CHECK:         %[[KT:.+]] = torch.aten.transpose.int %[[K]], %int0, %int1
// CHECK:         %[[S:.+]] = torch.aten.bmm %[[Q]], %[[KT]]
// CHECK:         %[[SM:.+]] = torch.aten._softmax %[[S]]
// CHECK:         %[[O:.+]] = torch.aten.bmm %[[SM]], %[[V]]
// CHECK-NOT:     "kiln.attention"
// CHECK:         return %[[O]]
func.func @bmm_transpose_0_1(%q: !torch.vtensor<[4,8,16],f32>, %k: !torch.vtensor<[16,4,8],f32>, %v: !torch.vtensor<[4,8,16],f32>) -> !torch.vtensor<[4,8,16],f32> {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %kt = torch.aten.transpose.int %k, %int0, %int1 : !torch.vtensor<[16,4,8],f32>, !torch.int, !torch.int -> !torch.vtensor<[4,16,8],f32>
  %s = torch.aten.bmm %q, %kt : !torch.vtensor<[4,8,16],f32>, !torch.vtensor<[4,16,8],f32> -> !torch.vtensor<[4,8,8],f32>
  %sm = torch.aten._softmax %s, %intm1, %false : !torch.vtensor<[4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[4,8,8],f32>
  %o = torch.aten.bmm %sm, %v : !torch.vtensor<[4,8,8],f32>, !torch.vtensor<[4,8,16],f32> -> !torch.vtensor<[4,8,16],f32>
  return %o : !torch.vtensor<[4,8,16],f32>
}

// -----

// Negative: permute(k, [2, 0, 1]) is not a swap of the last two axes either.
// CHECK-LABEL: func.func @bmm_permute_2_0_1(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[16,8,4],f32>, %[[V:[^:]+]]: !torch.vtensor<[4,8,16],f32>)
// CHECK-NOT:     "kiln.attention"
// CHECK:         %[[KT:.+]] = torch.aten.permute %[[K]]
// CHECK:         %[[S:.+]] = torch.aten.bmm %[[Q]], %[[KT]]
// CHECK:         %[[SM:.+]] = torch.aten._softmax %[[S]]
// CHECK:         %[[O:.+]] = torch.aten.bmm %[[SM]], %[[V]]
// CHECK-NOT:     "kiln.attention"
// CHECK:         return %[[O]]
func.func @bmm_permute_2_0_1(%q: !torch.vtensor<[4,8,16],f32>, %k: !torch.vtensor<[16,8,4],f32>, %v: !torch.vtensor<[4,8,16],f32>) -> !torch.vtensor<[4,8,16],f32> {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %l = torch.prim.ListConstruct %int2, %int0, %int1 : (!torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %kt = torch.aten.permute %k, %l : !torch.vtensor<[16,8,4],f32>, !torch.list<int> -> !torch.vtensor<[4,16,8],f32>
  %s = torch.aten.bmm %q, %kt : !torch.vtensor<[4,8,16],f32>, !torch.vtensor<[4,16,8],f32> -> !torch.vtensor<[4,8,8],f32>
  %sm = torch.aten._softmax %s, %intm1, %false : !torch.vtensor<[4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[4,8,8],f32>
  %o = torch.aten.bmm %sm, %v : !torch.vtensor<[4,8,8],f32>, !torch.vtensor<[4,8,16],f32> -> !torch.vtensor<[4,8,16],f32>
  return %o : !torch.vtensor<[4,8,16],f32>
}

// -----

// Negative: k arrives already laid out as [B·H, D, S] (no transpose op to strip).
// CHECK-LABEL: func.func @bmm_no_transpose(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[4,8,16],f32>, %[[KT:[^:]+]]: !torch.vtensor<[4,16,8],f32>, %[[V:[^:]+]]: !torch.vtensor<[4,8,16],f32>)
// CHECK-NOT:     "kiln.attention"
// CHECK:         %[[S:.+]] = torch.aten.bmm %[[Q]], %[[KT]]
// CHECK:         %[[SM:.+]] = torch.aten._softmax %[[S]]
// CHECK:         %[[O:.+]] = torch.aten.bmm %[[SM]], %[[V]]
// CHECK-NOT:     "kiln.attention"
// CHECK:         return %[[O]]
func.func @bmm_no_transpose(%q: !torch.vtensor<[4,8,16],f32>, %kt: !torch.vtensor<[4,16,8],f32>, %v: !torch.vtensor<[4,8,16],f32>) -> !torch.vtensor<[4,8,16],f32> {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %s = torch.aten.bmm %q, %kt : !torch.vtensor<[4,8,16],f32>, !torch.vtensor<[4,16,8],f32> -> !torch.vtensor<[4,8,8],f32>
  %sm = torch.aten._softmax %s, %intm1, %false : !torch.vtensor<[4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[4,8,8],f32>
  %o = torch.aten.bmm %sm, %v : !torch.vtensor<[4,8,8],f32>, !torch.vtensor<[4,8,16],f32> -> !torch.vtensor<[4,8,16],f32>
  return %o : !torch.vtensor<[4,8,16],f32>
}

// -----

// Rank 2 (one head, no batch): [Sq, D] x [D, Sk] with transpose(k, 0, 1), Sq != Sk, Dv != D.
// CHECK-LABEL: func.func @matmul_2d_single_head(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[10,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[10,32],f32>)
// CHECK-NOT:     torch.aten.matmul
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 1.000000e+00 : f64} : (!torch.vtensor<[8,16],f32>, !torch.vtensor<[10,16],f32>, !torch.vtensor<[10,32],f32>) -> !torch.vtensor<[8,32],f32>
// CHECK-NEXT:    return %[[O]]
func.func @matmul_2d_single_head(%q: !torch.vtensor<[8,16],f32>, %k: !torch.vtensor<[10,16],f32>, %v: !torch.vtensor<[10,32],f32>) -> !torch.vtensor<[8,32],f32> {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %kt = torch.aten.transpose.int %k, %int0, %int1 : !torch.vtensor<[10,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[16,10],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[8,16],f32>, !torch.vtensor<[16,10],f32> -> !torch.vtensor<[8,10],f32>
  %sm = torch.aten._softmax %s, %intm1, %false : !torch.vtensor<[8,10],f32>, !torch.int, !torch.bool -> !torch.vtensor<[8,10],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[8,10],f32>, !torch.vtensor<[10,32],f32> -> !torch.vtensor<[8,32],f32>
  return %o : !torch.vtensor<[8,32],f32>
}

// -----

// Negative (regression): transpose(k, %d, 1) with %d a function argument. A non-constant dim
// was once read as 0, which for a rank-2 k made this look like kᵀ; with %d = 1 at run time the
// transpose is the identity and the raise would compute softmax(q·kᵀ)·v instead of
// softmax(q·k)·v. A dim that is not a constant must not match.
// CHECK-LABEL: func.func @transpose_dynamic_dim(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[16,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[16,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[16,16],f32>, %[[D:[^:]+]]: !torch.int)
// CHECK-NOT:     "kiln.attention"
// CHECK:         %[[KT:.+]] = torch.aten.transpose.int %[[K]], %[[D]], %int1
// CHECK:         %[[S:.+]] = torch.aten.matmul %[[Q]], %[[KT]]
// CHECK:         %[[SM:.+]] = torch.aten._softmax %[[S]]
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[SM]], %[[V]]
// CHECK-NOT:     "kiln.attention"
// CHECK:         return %[[O]]
func.func @transpose_dynamic_dim(%q: !torch.vtensor<[16,16],f32>, %k: !torch.vtensor<[16,16],f32>, %v: !torch.vtensor<[16,16],f32>, %d: !torch.int) -> !torch.vtensor<[16,16],f32> {
  %int1 = torch.constant.int 1
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %kt = torch.aten.transpose.int %k, %d, %int1 : !torch.vtensor<[16,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[16,16],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[16,16],f32>, !torch.vtensor<[16,16],f32> -> !torch.vtensor<[16,16],f32>
  %sm = torch.aten._softmax %s, %intm1, %false : !torch.vtensor<[16,16],f32>, !torch.int, !torch.bool -> !torch.vtensor<[16,16],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[16,16],f32>, !torch.vtensor<[16,16],f32> -> !torch.vtensor<[16,16],f32>
  return %o : !torch.vtensor<[16,16],f32>
}
