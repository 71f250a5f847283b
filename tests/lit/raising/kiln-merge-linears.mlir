// RUN: kiln-opt %s -p kiln-merge-linears --split-input-file | filecheck %s

// kiln-merge-linears: the q/k/v kiln.linear ops of one input, each used only by a head split
// (view [..., H, D] → permute heads-first), → one kiln.linear over the concatenated constant
// weights and a last-axis slice per original. Positive cases first, then what must stay.

// Llama-style grouped-query projections (4 query heads, 2 kv heads, D = 4), no bias: weights
// concatenated on the out-features axis (0 for out_in), slices at 0/16/24.
// CHECK-LABEL: func.func @qkv_out_in(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[1,3,8],f32>)
// CHECK-DAG:     %[[WQ:.+]] = torch.vtensor.literal(dense<1.000000e+00> : tensor<16x8xf32>)
// CHECK-DAG:     %[[WK:.+]] = torch.vtensor.literal(dense<2.000000e+00> : tensor<8x8xf32>)
// CHECK-DAG:     %[[WV:.+]] = torch.vtensor.literal(dense<3.000000e+00> : tensor<8x8xf32>)
// CHECK:         %[[WS:.+]] = torch.prim.ListConstruct %[[WQ]], %[[WK]], %[[WV]] : {{.*}} -> !torch.list<vtensor>
// CHECK:         %[[W:.+]] = torch.aten.cat %[[WS]], %{{.+}} : !torch.list<vtensor>, !torch.int -> !torch.vtensor<[32,8],f32>
// CHECK:         %[[QKV:.+]] = "kiln.linear"(%[[X]], %[[W]]) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[32,8],f32>) -> !torch.vtensor<[1,3,32],f32>
// CHECK:         %[[Q:.+]] = torch.aten.slice.Tensor %[[QKV]], %{{.+}}, %{{.+}}, %{{.+}}, %{{.+}} : !torch.vtensor<[1,3,32],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,3,16],f32>
// CHECK:         %[[K:.+]] = torch.aten.slice.Tensor %[[QKV]], {{.*}} -> !torch.vtensor<[1,3,8],f32>
// CHECK:         %[[V:.+]] = torch.aten.slice.Tensor %[[QKV]], {{.*}} -> !torch.vtensor<[1,3,8],f32>
// CHECK-NOT:     "kiln.linear"
// CHECK:         torch.aten.view %[[Q]]
// CHECK:         torch.aten.view %[[K]]
// CHECK:         torch.aten.view %[[V]]
func.func @qkv_out_in(%x: !torch.vtensor<[1,3,8],f32>) -> (!torch.vtensor<[1,4,3,4],f32>, !torch.vtensor<[1,2,3,4],f32>, !torch.vtensor<[1,2,3,4],f32>) {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %int4 = torch.constant.int 4
  %wq = torch.vtensor.literal(dense<1.0> : tensor<16x8xf32>) : !torch.vtensor<[16,8],f32>
  %wk = torch.vtensor.literal(dense<2.0> : tensor<8x8xf32>) : !torch.vtensor<[8,8],f32>
  %wv = torch.vtensor.literal(dense<3.0> : tensor<8x8xf32>) : !torch.vtensor<[8,8],f32>
  %perm = torch.prim.ListConstruct %int0, %int2, %int1, %int3 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %q = "kiln.linear"(%x, %wq) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[16,8],f32>) -> !torch.vtensor<[1,3,16],f32>
  %qs = torch.prim.ListConstruct %int1, %int3, %int4, %int4 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %q4 = torch.aten.view %q, %qs : !torch.vtensor<[1,3,16],f32>, !torch.list<int> -> !torch.vtensor<[1,3,4,4],f32>
  %qh = torch.aten.permute %q4, %perm : !torch.vtensor<[1,3,4,4],f32>, !torch.list<int> -> !torch.vtensor<[1,4,3,4],f32>
  %k = "kiln.linear"(%x, %wk) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[8,8],f32>) -> !torch.vtensor<[1,3,8],f32>
  %ks = torch.prim.ListConstruct %int1, %int3, %int2, %int4 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %k4 = torch.aten.view %k, %ks : !torch.vtensor<[1,3,8],f32>, !torch.list<int> -> !torch.vtensor<[1,3,2,4],f32>
  %kh = torch.aten.permute %k4, %perm : !torch.vtensor<[1,3,2,4],f32>, !torch.list<int> -> !torch.vtensor<[1,2,3,4],f32>
  %v = "kiln.linear"(%x, %wv) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[8,8],f32>) -> !torch.vtensor<[1,3,8],f32>
  %v4 = torch.aten.view %v, %ks : !torch.vtensor<[1,3,8],f32>, !torch.list<int> -> !torch.vtensor<[1,3,2,4],f32>
  %vh = torch.aten.transpose.int %v4, %int1, %int2 : !torch.vtensor<[1,3,2,4],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,2,3,4],f32>
  return %qh, %kh, %vh : !torch.vtensor<[1,4,3,4],f32>, !torch.vtensor<[1,2,3,4],f32>, !torch.vtensor<[1,2,3,4],f32>
}

// -----

// BERT-style projections with biases and weights in "in_out" layout: weights concatenated on
// axis 1, biases on axis 0; a weight literal defined after the first linear moves up.
// CHECK-LABEL: func.func @qk_in_out_bias(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[3,8],f32>)
// CHECK:         %[[W:.+]] = torch.aten.cat %{{.+}}, %{{.+}} : !torch.list<vtensor>, !torch.int -> !torch.vtensor<[8,16],f32>
// CHECK:         %[[B:.+]] = torch.aten.cat %{{.+}}, %{{.+}} : !torch.list<vtensor>, !torch.int -> !torch.vtensor<[16],f32>
// CHECK:         %[[QK:.+]] = "kiln.linear"(%[[X]], %[[W]], %[[B]]) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1>, weight_layout = "in_out"} : (!torch.vtensor<[3,8],f32>, !torch.vtensor<[8,16],f32>, !torch.vtensor<[16],f32>) -> !torch.vtensor<[3,16],f32>
// CHECK-COUNT-2: torch.aten.slice.Tensor %[[QK]]
// CHECK-NOT:     "kiln.linear"
func.func @qk_in_out_bias(%x: !torch.vtensor<[3,8],f32>) -> (!torch.vtensor<[2,3,4],f32>, !torch.vtensor<[2,3,4],f32>) {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %int4 = torch.constant.int 4
  %wq = torch.vtensor.literal(dense<1.0> : tensor<8x8xf32>) : !torch.vtensor<[8,8],f32>
  %bq = torch.vtensor.literal(dense<0.5> : tensor<8xf32>) : !torch.vtensor<[8],f32>
  %bk = torch.vtensor.literal(dense<0.25> : tensor<8xf32>) : !torch.vtensor<[8],f32>
  %s = torch.prim.ListConstruct %int3, %int2, %int4 : (!torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %q = "kiln.linear"(%x, %wq, %bq) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1>, weight_layout = "in_out"} : (!torch.vtensor<[3,8],f32>, !torch.vtensor<[8,8],f32>, !torch.vtensor<[8],f32>) -> !torch.vtensor<[3,8],f32>
  %q3 = torch.aten.view %q, %s : !torch.vtensor<[3,8],f32>, !torch.list<int> -> !torch.vtensor<[3,2,4],f32>
  %qh = torch.aten.transpose.int %q3, %int0, %int1 : !torch.vtensor<[3,2,4],f32>, !torch.int, !torch.int -> !torch.vtensor<[2,3,4],f32>
  %wk = torch.vtensor.literal(dense<2.0> : tensor<8x8xf32>) : !torch.vtensor<[8,8],f32>
  %k = "kiln.linear"(%x, %wk, %bk) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1>, weight_layout = "in_out"} : (!torch.vtensor<[3,8],f32>, !torch.vtensor<[8,8],f32>, !torch.vtensor<[8],f32>) -> !torch.vtensor<[3,8],f32>
  %k3 = torch.aten.view %k, %s : !torch.vtensor<[3,8],f32>, !torch.list<int> -> !torch.vtensor<[3,2,4],f32>
  %kh = torch.aten.transpose.int %k3, %int0, %int1 : !torch.vtensor<[3,2,4],f32>, !torch.int, !torch.int -> !torch.vtensor<[2,3,4],f32>
  return %qh, %kh : !torch.vtensor<[2,3,4],f32>, !torch.vtensor<[2,3,4],f32>
}

// -----

// Only the two projections that are head-split merge; the third (used by a plain add) stays.
// CHECK-LABEL: func.func @only_head_split_results(
// CHECK:         %[[QK:.+]] = "kiln.linear"(%{{.+}}, %{{.+}}) {{.*}} -> !torch.vtensor<[1,3,16],f32>
// CHECK:         "kiln.linear"(%{{.+}}, %{{.+}}) {{.*}} -> !torch.vtensor<[1,3,8],f32>
// CHECK-NOT:     "kiln.linear"
func.func @only_head_split_results(%x: !torch.vtensor<[1,3,8],f32>) -> (!torch.vtensor<[1,2,3,4],f32>, !torch.vtensor<[1,2,3,4],f32>, !torch.vtensor<[1,3,8],f32>) {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %int4 = torch.constant.int 4
  %w = torch.vtensor.literal(dense<1.0> : tensor<8x8xf32>) : !torch.vtensor<[8,8],f32>
  %perm = torch.prim.ListConstruct %int0, %int2, %int1, %int3 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %s = torch.prim.ListConstruct %int1, %int3, %int2, %int4 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %q = "kiln.linear"(%x, %w) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[8,8],f32>) -> !torch.vtensor<[1,3,8],f32>
  %q4 = torch.aten.view %q, %s : !torch.vtensor<[1,3,8],f32>, !torch.list<int> -> !torch.vtensor<[1,3,2,4],f32>
  %qh = torch.aten.permute %q4, %perm : !torch.vtensor<[1,3,2,4],f32>, !torch.list<int> -> !torch.vtensor<[1,2,3,4],f32>
  %k = "kiln.linear"(%x, %w) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[8,8],f32>) -> !torch.vtensor<[1,3,8],f32>
  %k4 = torch.aten.view %k, %s : !torch.vtensor<[1,3,8],f32>, !torch.list<int> -> !torch.vtensor<[1,3,2,4],f32>
  %kh = torch.aten.permute %k4, %perm : !torch.vtensor<[1,3,2,4],f32>, !torch.list<int> -> !torch.vtensor<[1,2,3,4],f32>
  %o = "kiln.linear"(%x, %w) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[8,8],f32>) -> !torch.vtensor<[1,3,8],f32>
  %r = torch.aten.add.Tensor %o, %x, %int1 : !torch.vtensor<[1,3,8],f32>, !torch.vtensor<[1,3,8],f32>, !torch.int -> !torch.vtensor<[1,3,8],f32>
  return %qh, %kh, %r : !torch.vtensor<[1,2,3,4],f32>, !torch.vtensor<[1,2,3,4],f32>, !torch.vtensor<[1,3,8],f32>
}

// -----

// Negative: weights that are not constants (function arguments) cannot be concatenated at
// compile time.
// CHECK-LABEL: func.func @weights_not_constant(
// CHECK-COUNT-2: "kiln.linear"
// CHECK-NOT:     torch.aten.cat
func.func @weights_not_constant(%x: !torch.vtensor<[1,3,8],f32>, %wq: !torch.vtensor<[8,8],f32>, %wk: !torch.vtensor<[8,8],f32>) -> (!torch.vtensor<[1,2,3,4],f32>, !torch.vtensor<[1,2,3,4],f32>) {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %int4 = torch.constant.int 4
  %perm = torch.prim.ListConstruct %int0, %int2, %int1, %int3 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %s = torch.prim.ListConstruct %int1, %int3, %int2, %int4 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %q = "kiln.linear"(%x, %wq) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[8,8],f32>) -> !torch.vtensor<[1,3,8],f32>
  %q4 = torch.aten.view %q, %s : !torch.vtensor<[1,3,8],f32>, !torch.list<int> -> !torch.vtensor<[1,3,2,4],f32>
  %qh = torch.aten.permute %q4, %perm : !torch.vtensor<[1,3,2,4],f32>, !torch.list<int> -> !torch.vtensor<[1,2,3,4],f32>
  %k = "kiln.linear"(%x, %wk) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[8,8],f32>) -> !torch.vtensor<[1,3,8],f32>
  %k4 = torch.aten.view %k, %s : !torch.vtensor<[1,3,8],f32>, !torch.list<int> -> !torch.vtensor<[1,3,2,4],f32>
  %kh = torch.aten.permute %k4, %perm : !torch.vtensor<[1,3,2,4],f32>, !torch.list<int> -> !torch.vtensor<[1,2,3,4],f32>
  return %qh, %kh : !torch.vtensor<[1,2,3,4],f32>, !torch.vtensor<[1,2,3,4],f32>
}

// -----

// Negative: different activations (and, separately, different head dims) do not merge.
// CHECK-LABEL: func.func @different_activation_or_head_dim(
// CHECK-COUNT-3: "kiln.linear"
// CHECK-NOT:     torch.aten.cat
func.func @different_activation_or_head_dim(%x: !torch.vtensor<[1,3,8],f32>) -> (!torch.vtensor<[1,2,3,4],f32>, !torch.vtensor<[1,2,3,4],f32>, !torch.vtensor<[1,4,3,2],f32>) {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %int4 = torch.constant.int 4
  %w = torch.vtensor.literal(dense<1.0> : tensor<8x8xf32>) : !torch.vtensor<[8,8],f32>
  %perm = torch.prim.ListConstruct %int0, %int2, %int1, %int3 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %s = torch.prim.ListConstruct %int1, %int3, %int2, %int4 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %s2 = torch.prim.ListConstruct %int1, %int3, %int4, %int2 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %q = "kiln.linear"(%x, %w) {activation = "silu", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[8,8],f32>) -> !torch.vtensor<[1,3,8],f32>
  %q4 = torch.aten.view %q, %s : !torch.vtensor<[1,3,8],f32>, !torch.list<int> -> !torch.vtensor<[1,3,2,4],f32>
  %qh = torch.aten.permute %q4, %perm : !torch.vtensor<[1,3,2,4],f32>, !torch.list<int> -> !torch.vtensor<[1,2,3,4],f32>
  %k = "kiln.linear"(%x, %w) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[8,8],f32>) -> !torch.vtensor<[1,3,8],f32>
  %k4 = torch.aten.view %k, %s : !torch.vtensor<[1,3,8],f32>, !torch.list<int> -> !torch.vtensor<[1,3,2,4],f32>
  %kh = torch.aten.permute %k4, %perm : !torch.vtensor<[1,3,2,4],f32>, !torch.list<int> -> !torch.vtensor<[1,2,3,4],f32>
  %v = "kiln.linear"(%x, %w) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[8,8],f32>) -> !torch.vtensor<[1,3,8],f32>
  %v4 = torch.aten.view %v, %s2 : !torch.vtensor<[1,3,8],f32>, !torch.list<int> -> !torch.vtensor<[1,3,4,2],f32>
  %vh = torch.aten.permute %v4, %perm : !torch.vtensor<[1,3,4,2],f32>, !torch.list<int> -> !torch.vtensor<[1,4,3,2],f32>
  return %qh, %kh, %vh : !torch.vtensor<[1,2,3,4],f32>, !torch.vtensor<[1,2,3,4],f32>, !torch.vtensor<[1,4,3,2],f32>
}

// -----

// Negative: a view that is not a head split (it merges the leading dims) keeps the linears
// apart: their slices would be copied.
// CHECK-LABEL: func.func @not_a_head_split(
// CHECK-COUNT-2: "kiln.linear"
// CHECK-NOT:     torch.aten.cat
func.func @not_a_head_split(%x: !torch.vtensor<[2,3,8],f32>) -> (!torch.vtensor<[6,2,4],f32>, !torch.vtensor<[6,2,4],f32>) {
  %int2 = torch.constant.int 2
  %int4 = torch.constant.int 4
  %int6 = torch.constant.int 6
  %w = torch.vtensor.literal(dense<1.0> : tensor<8x8xf32>) : !torch.vtensor<[8,8],f32>
  %s = torch.prim.ListConstruct %int6, %int2, %int4 : (!torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %q = "kiln.linear"(%x, %w) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[2,3,8],f32>, !torch.vtensor<[8,8],f32>) -> !torch.vtensor<[2,3,8],f32>
  %q3 = torch.aten.view %q, %s : !torch.vtensor<[2,3,8],f32>, !torch.list<int> -> !torch.vtensor<[6,2,4],f32>
  %k = "kiln.linear"(%x, %w) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[2,3,8],f32>, !torch.vtensor<[8,8],f32>) -> !torch.vtensor<[2,3,8],f32>
  %k3 = torch.aten.view %k, %s : !torch.vtensor<[2,3,8],f32>, !torch.list<int> -> !torch.vtensor<[6,2,4],f32>
  return %q3, %k3 : !torch.vtensor<[6,2,4],f32>, !torch.vtensor<[6,2,4],f32>
}

// -----

// Negative: a dynamic sequence length. Its slices could not become whole-head slices (IREE
// 3.13's CPU backend fails on those with dynamic lengths), so merging would only add copies.
// CHECK-LABEL: func.func @dynamic_sequence(
// CHECK-COUNT-2: "kiln.linear"
// CHECK-NOT:     torch.aten.cat
func.func @dynamic_sequence(%x: !torch.vtensor<[1,?,8],f32>, %len: !torch.int) -> (!torch.vtensor<[1,2,?,4],f32>, !torch.vtensor<[1,2,?,4],f32>) {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %int4 = torch.constant.int 4
  %w = torch.vtensor.literal(dense<1.0> : tensor<8x8xf32>) : !torch.vtensor<[8,8],f32>
  %perm = torch.prim.ListConstruct %int0, %int2, %int1, %int3 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %s = torch.prim.ListConstruct %int1, %len, %int2, %int4 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %q = "kiln.linear"(%x, %w) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[1,?,8],f32>, !torch.vtensor<[8,8],f32>) -> !torch.vtensor<[1,?,8],f32>
  %q4 = torch.aten.view %q, %s : !torch.vtensor<[1,?,8],f32>, !torch.list<int> -> !torch.vtensor<[1,?,2,4],f32>
  %qh = torch.aten.permute %q4, %perm : !torch.vtensor<[1,?,2,4],f32>, !torch.list<int> -> !torch.vtensor<[1,2,?,4],f32>
  %k = "kiln.linear"(%x, %w) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[1,?,8],f32>, !torch.vtensor<[8,8],f32>) -> !torch.vtensor<[1,?,8],f32>
  %k4 = torch.aten.view %k, %s : !torch.vtensor<[1,?,8],f32>, !torch.list<int> -> !torch.vtensor<[1,?,2,4],f32>
  %kh = torch.aten.permute %k4, %perm : !torch.vtensor<[1,?,2,4],f32>, !torch.list<int> -> !torch.vtensor<[1,2,?,4],f32>
  return %qh, %kh : !torch.vtensor<[1,2,?,4],f32>, !torch.vtensor<[1,2,?,4],f32>
}
