// RUN: kiln-opt %s -p kiln-raise-attention --split-input-file | filecheck %s

// kiln-raise-attention, grouped-query family: k and v repeated to the query head count by
// repeat_kv (unsqueeze(2) → expand → reshape/view) or repeat_interleave(dim 1) are unwrapped, so
// kiln.attention keeps the kv heads. Other repeats (tiling, other axes) are not head repeats and
// stay in front of kiln.attention.

// Llama repeat_kv: k and v [1, 2, 8, 16] → unsqueeze(2) → expand [1, 2, 2, 8, 16] → reshape
// [1, 4, 8, 16]. kiln.attention takes the UNREPEATED k and v (4 query heads over 2 kv heads).
// (The now-dead repeat ops are left for canonicalize.)
// CHECK-LABEL: func.func @repeat_kv_reshape(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,2,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,2,8,16],f32>)
// CHECK-NOT:     torch.aten.matmul
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 1.000000e+00 : f64} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,2,8,16],f32>, !torch.vtensor<[1,2,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32>
// CHECK-NEXT:    return %[[O]]
func.func @repeat_kv_reshape(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,2,8,16],f32>, %v: !torch.vtensor<[1,2,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %none = torch.constant.none
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %int4 = torch.constant.int 4
  %int8 = torch.constant.int 8
  %int16 = torch.constant.int 16
  %intm3 = torch.constant.int -3
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %sz = torch.prim.ListConstruct %int1, %int2, %int2, %int8, %int16 : (!torch.int, !torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %sh = torch.prim.ListConstruct %int1, %int4, %int8, %int16 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %ku = torch.aten.unsqueeze %k, %int2 : !torch.vtensor<[1,2,8,16],f32>, !torch.int -> !torch.vtensor<[1,2,1,8,16],f32>
  %ke = torch.aten.expand %ku, %sz, %false : !torch.vtensor<[1,2,1,8,16],f32>, !torch.list<int>, !torch.bool -> !torch.vtensor<[1,2,2,8,16],f32>
  %kr = torch.aten.reshape %ke, %sh : !torch.vtensor<[1,2,2,8,16],f32>, !torch.list<int> -> !torch.vtensor<[1,4,8,16],f32>
  %vu = torch.aten.unsqueeze %v, %int2 : !torch.vtensor<[1,2,8,16],f32>, !torch.int -> !torch.vtensor<[1,2,1,8,16],f32>
  %ve = torch.aten.expand %vu, %sz, %false : !torch.vtensor<[1,2,1,8,16],f32>, !torch.list<int>, !torch.bool -> !torch.vtensor<[1,2,2,8,16],f32>
  %vr = torch.aten.reshape %ve, %sh : !torch.vtensor<[1,2,2,8,16],f32>, !torch.list<int> -> !torch.vtensor<[1,4,8,16],f32>
  %kt = torch.aten.transpose.int %kr, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %s, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %vr : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// The same written with unsqueeze(-3) and view.
// CHECK-LABEL: func.func @repeat_kv_view_dim_minus_3(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,2,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,2,8,16],f32>)
// CHECK-NOT:     torch.aten.matmul
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 1.000000e+00 : f64} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,2,8,16],f32>, !torch.vtensor<[1,2,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32>
// CHECK-NEXT:    return %[[O]]
func.func @repeat_kv_view_dim_minus_3(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,2,8,16],f32>, %v: !torch.vtensor<[1,2,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %none = torch.constant.none
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %int4 = torch.constant.int 4
  %int8 = torch.constant.int 8
  %int16 = torch.constant.int 16
  %intm3 = torch.constant.int -3
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %sz = torch.prim.ListConstruct %int1, %int2, %int2, %int8, %int16 : (!torch.int, !torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %sh = torch.prim.ListConstruct %int1, %int4, %int8, %int16 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %ku = torch.aten.unsqueeze %k, %intm3 : !torch.vtensor<[1,2,8,16],f32>, !torch.int -> !torch.vtensor<[1,2,1,8,16],f32>
  %ke = torch.aten.expand %ku, %sz, %false : !torch.vtensor<[1,2,1,8,16],f32>, !torch.list<int>, !torch.bool -> !torch.vtensor<[1,2,2,8,16],f32>
  %kr = torch.aten.view %ke, %sh : !torch.vtensor<[1,2,2,8,16],f32>, !torch.list<int> -> !torch.vtensor<[1,4,8,16],f32>
  %vu = torch.aten.unsqueeze %v, %intm3 : !torch.vtensor<[1,2,8,16],f32>, !torch.int -> !torch.vtensor<[1,2,1,8,16],f32>
  %ve = torch.aten.expand %vu, %sz, %false : !torch.vtensor<[1,2,1,8,16],f32>, !torch.list<int>, !torch.bool -> !torch.vtensor<[1,2,2,8,16],f32>
  %vr = torch.aten.view %ve, %sh : !torch.vtensor<[1,2,2,8,16],f32>, !torch.list<int> -> !torch.vtensor<[1,4,8,16],f32>
  %kt = torch.aten.transpose.int %kr, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %s, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %vr : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// repeat_interleave(k, 2, dim = 1) (same head order as repeat_kv) is unwrapped too.
// CHECK-LABEL: func.func @repeat_interleave(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,2,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,2,8,16],f32>)
// CHECK-NOT:     torch.aten.matmul
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 1.000000e+00 : f64} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,2,8,16],f32>, !torch.vtensor<[1,2,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32>
// CHECK-NEXT:    return %[[O]]
func.func @repeat_interleave(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,2,8,16],f32>, %v: !torch.vtensor<[1,2,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %none = torch.constant.none
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %int4 = torch.constant.int 4
  %int8 = torch.constant.int 8
  %int16 = torch.constant.int 16
  %intm3 = torch.constant.int -3
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %kr = torch.aten.repeat_interleave.self_int %k, %int2, %int1, %none : !torch.vtensor<[1,2,8,16],f32>, !torch.int, !torch.int, !torch.none -> !torch.vtensor<[1,4,8,16],f32>
  %vr = torch.aten.repeat_interleave.self_int %v, %int2, %int1, %none : !torch.vtensor<[1,2,8,16],f32>, !torch.int, !torch.int, !torch.none -> !torch.vtensor<[1,4,8,16],f32>
  %kt = torch.aten.transpose.int %kr, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %s, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %vr : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// SDPA on repeat_kv outputs (enable_gqa = false): unwrapped the same way.
// CHECK-LABEL: func.func @sdpa_repeat_kv(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,2,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,2,8,16],f32>)
// CHECK-NOT:     torch.aten.scaled_dot_product_attention
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 2.500000e-01 : f64} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,2,8,16],f32>, !torch.vtensor<[1,2,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32>
// CHECK-NEXT:    return %[[O]]
func.func @sdpa_repeat_kv(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,2,8,16],f32>, %v: !torch.vtensor<[1,2,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %none = torch.constant.none
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %int4 = torch.constant.int 4
  %int8 = torch.constant.int 8
  %int16 = torch.constant.int 16
  %intm3 = torch.constant.int -3
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %sz = torch.prim.ListConstruct %int1, %int2, %int2, %int8, %int16 : (!torch.int, !torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %sh = torch.prim.ListConstruct %int1, %int4, %int8, %int16 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %ku = torch.aten.unsqueeze %k, %int2 : !torch.vtensor<[1,2,8,16],f32>, !torch.int -> !torch.vtensor<[1,2,1,8,16],f32>
  %ke = torch.aten.expand %ku, %sz, %false : !torch.vtensor<[1,2,1,8,16],f32>, !torch.list<int>, !torch.bool -> !torch.vtensor<[1,2,2,8,16],f32>
  %kr = torch.aten.reshape %ke, %sh : !torch.vtensor<[1,2,2,8,16],f32>, !torch.list<int> -> !torch.vtensor<[1,4,8,16],f32>
  %vu = torch.aten.unsqueeze %v, %int2 : !torch.vtensor<[1,2,8,16],f32>, !torch.int -> !torch.vtensor<[1,2,1,8,16],f32>
  %ve = torch.aten.expand %vu, %sz, %false : !torch.vtensor<[1,2,1,8,16],f32>, !torch.list<int>, !torch.bool -> !torch.vtensor<[1,2,2,8,16],f32>
  %vr = torch.aten.reshape %ve, %sh : !torch.vtensor<[1,2,2,8,16],f32>, !torch.list<int> -> !torch.vtensor<[1,4,8,16],f32>
  %float0 = torch.constant.float 0.000000e+00
  %o = torch.aten.scaled_dot_product_attention %q, %kr, %vr, %none, %float0, %false, %none, %false : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.none, !torch.float, !torch.bool, !torch.none, !torch.bool -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// unsqueeze(1) → expand → reshape TILES the kv heads (query head h reads kv head h mod 2, not
// h / 2): not repeat_kv, so kiln.attention gets the repeated k and v, 4 heads each.
// CHECK-LABEL: func.func @unsqueeze_dim_1_tiles(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,2,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,2,8,16],f32>)
// CHECK:         %[[KR:.+]] = torch.aten.{{reshape|repeat_interleave.self_int}} {{.*}} -> !torch.vtensor<[1,4,8,16],f32>
// CHECK:         %[[VR:.+]] = torch.aten.{{reshape|repeat_interleave.self_int}} {{.*}} -> !torch.vtensor<[1,4,8,16],f32>
// CHECK-NOT:     torch.aten.matmul
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[KR]], %[[VR]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 1.000000e+00 : f64} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32>
// CHECK-NEXT:    return %[[O]]
func.func @unsqueeze_dim_1_tiles(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,2,8,16],f32>, %v: !torch.vtensor<[1,2,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %none = torch.constant.none
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %int4 = torch.constant.int 4
  %int8 = torch.constant.int 8
  %int16 = torch.constant.int 16
  %intm3 = torch.constant.int -3
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %sz = torch.prim.ListConstruct %int1, %int2, %int2, %int8, %int16 : (!torch.int, !torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %sh = torch.prim.ListConstruct %int1, %int4, %int8, %int16 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %ku = torch.aten.unsqueeze %k, %int1 : !torch.vtensor<[1,2,8,16],f32>, !torch.int -> !torch.vtensor<[1,1,2,8,16],f32>
  %ke = torch.aten.expand %ku, %sz, %false : !torch.vtensor<[1,1,2,8,16],f32>, !torch.list<int>, !torch.bool -> !torch.vtensor<[1,2,2,8,16],f32>
  %kr = torch.aten.reshape %ke, %sh : !torch.vtensor<[1,2,2,8,16],f32>, !torch.list<int> -> !torch.vtensor<[1,4,8,16],f32>
  %vu = torch.aten.unsqueeze %v, %int1 : !torch.vtensor<[1,2,8,16],f32>, !torch.int -> !torch.vtensor<[1,1,2,8,16],f32>
  %ve = torch.aten.expand %vu, %sz, %false : !torch.vtensor<[1,1,2,8,16],f32>, !torch.list<int>, !torch.bool -> !torch.vtensor<[1,2,2,8,16],f32>
  %vr = torch.aten.reshape %ve, %sh : !torch.vtensor<[1,2,2,8,16],f32>, !torch.list<int> -> !torch.vtensor<[1,4,8,16],f32>
  %kt = torch.aten.transpose.int %kr, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %s, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %vr : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// unsqueeze(3) → expand [1, 2, 8, 2, 16] → reshape [1, 4, 8, 16] interleaves sequence positions
// into heads: not repeat_kv; k and v stay repeated.
// CHECK-LABEL: func.func @unsqueeze_dim_3(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,2,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,2,8,16],f32>)
// CHECK:         %[[KR:.+]] = torch.aten.{{reshape|repeat_interleave.self_int}} {{.*}} -> !torch.vtensor<[1,4,8,16],f32>
// CHECK:         %[[VR:.+]] = torch.aten.{{reshape|repeat_interleave.self_int}} {{.*}} -> !torch.vtensor<[1,4,8,16],f32>
// CHECK-NOT:     torch.aten.matmul
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[KR]], %[[VR]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 1.000000e+00 : f64} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32>
// CHECK-NEXT:    return %[[O]]
func.func @unsqueeze_dim_3(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,2,8,16],f32>, %v: !torch.vtensor<[1,2,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %none = torch.constant.none
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %int4 = torch.constant.int 4
  %int8 = torch.constant.int 8
  %int16 = torch.constant.int 16
  %intm3 = torch.constant.int -3
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %sz = torch.prim.ListConstruct %int1, %int2, %int8, %int2, %int16 : (!torch.int, !torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %sh = torch.prim.ListConstruct %int1, %int4, %int8, %int16 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %ku = torch.aten.unsqueeze %k, %int3 : !torch.vtensor<[1,2,8,16],f32>, !torch.int -> !torch.vtensor<[1,2,8,1,16],f32>
  %ke = torch.aten.expand %ku, %sz, %false : !torch.vtensor<[1,2,8,1,16],f32>, !torch.list<int>, !torch.bool -> !torch.vtensor<[1,2,8,2,16],f32>
  %kr = torch.aten.reshape %ke, %sh : !torch.vtensor<[1,2,8,2,16],f32>, !torch.list<int> -> !torch.vtensor<[1,4,8,16],f32>
  %vu = torch.aten.unsqueeze %v, %int3 : !torch.vtensor<[1,2,8,16],f32>, !torch.int -> !torch.vtensor<[1,2,8,1,16],f32>
  %ve = torch.aten.expand %vu, %sz, %false : !torch.vtensor<[1,2,8,1,16],f32>, !torch.list<int>, !torch.bool -> !torch.vtensor<[1,2,8,2,16],f32>
  %vr = torch.aten.reshape %ve, %sh : !torch.vtensor<[1,2,8,2,16],f32>, !torch.list<int> -> !torch.vtensor<[1,4,8,16],f32>
  %kt = torch.aten.transpose.int %kr, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %s, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %vr : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// repeat_interleave along the sequence axis (dim 2) is not a head repeat: k and v stay repeated.
// CHECK-LABEL: func.func @repeat_interleave_seq_axis(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,4,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,4,16],f32>)
// CHECK:         %[[KR:.+]] = torch.aten.{{reshape|repeat_interleave.self_int}} {{.*}} -> !torch.vtensor<[1,4,8,16],f32>
// CHECK:         %[[VR:.+]] = torch.aten.{{reshape|repeat_interleave.self_int}} {{.*}} -> !torch.vtensor<[1,4,8,16],f32>
// CHECK-NOT:     torch.aten.matmul
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[KR]], %[[VR]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 1.000000e+00 : f64} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32>
// CHECK-NEXT:    return %[[O]]
func.func @repeat_interleave_seq_axis(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,4,16],f32>, %v: !torch.vtensor<[1,4,4,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %none = torch.constant.none
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %int4 = torch.constant.int 4
  %int8 = torch.constant.int 8
  %int16 = torch.constant.int 16
  %intm3 = torch.constant.int -3
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %kr = torch.aten.repeat_interleave.self_int %k, %int2, %int2, %none : !torch.vtensor<[1,4,4,16],f32>, !torch.int, !torch.int, !torch.none -> !torch.vtensor<[1,4,8,16],f32>
  %vr = torch.aten.repeat_interleave.self_int %v, %int2, %int2, %none : !torch.vtensor<[1,4,4,16],f32>, !torch.int, !torch.int, !torch.none -> !torch.vtensor<[1,4,8,16],f32>
  %kt = torch.aten.transpose.int %kr, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %s, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %vr : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Negative: repeat_kv attention whose probabilities are also returned: nothing is rewritten and
// the repeated k / v still feed the two products.
// CHECK-LABEL: func.func @repeat_kv_softmax_second_use(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,2,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,2,8,16],f32>)
// CHECK-NOT:     "kiln.attention"
// CHECK:         %[[KR:.+]] = torch.aten.reshape
// CHECK:         %[[VR:.+]] = torch.aten.reshape
// CHECK:         %[[KT:.+]] = torch.aten.transpose.int %[[KR]]
// CHECK:         %[[S:.+]] = torch.aten.matmul %[[Q]], %[[KT]]
// CHECK:         %[[SM:.+]] = torch.aten._softmax %[[S]]
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[SM]], %[[VR]]
// CHECK-NOT:     "kiln.attention"
// CHECK:         return %[[O]], %[[SM]]
func.func @repeat_kv_softmax_second_use(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,2,8,16],f32>, %v: !torch.vtensor<[1,2,8,16],f32>) -> (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,8],f32>) {
  %none = torch.constant.none
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %int4 = torch.constant.int 4
  %int8 = torch.constant.int 8
  %int16 = torch.constant.int 16
  %intm3 = torch.constant.int -3
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %sz = torch.prim.ListConstruct %int1, %int2, %int2, %int8, %int16 : (!torch.int, !torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %sh = torch.prim.ListConstruct %int1, %int4, %int8, %int16 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %ku = torch.aten.unsqueeze %k, %int2 : !torch.vtensor<[1,2,8,16],f32>, !torch.int -> !torch.vtensor<[1,2,1,8,16],f32>
  %ke = torch.aten.expand %ku, %sz, %false : !torch.vtensor<[1,2,1,8,16],f32>, !torch.list<int>, !torch.bool -> !torch.vtensor<[1,2,2,8,16],f32>
  %kr = torch.aten.reshape %ke, %sh : !torch.vtensor<[1,2,2,8,16],f32>, !torch.list<int> -> !torch.vtensor<[1,4,8,16],f32>
  %vu = torch.aten.unsqueeze %v, %int2 : !torch.vtensor<[1,2,8,16],f32>, !torch.int -> !torch.vtensor<[1,2,1,8,16],f32>
  %ve = torch.aten.expand %vu, %sz, %false : !torch.vtensor<[1,2,1,8,16],f32>, !torch.list<int>, !torch.bool -> !torch.vtensor<[1,2,2,8,16],f32>
  %vr = torch.aten.reshape %ve, %sh : !torch.vtensor<[1,2,2,8,16],f32>, !torch.list<int> -> !torch.vtensor<[1,4,8,16],f32>
  %kt = torch.aten.transpose.int %kr, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %s, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %vr : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o, %sm : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,8],f32>
}
