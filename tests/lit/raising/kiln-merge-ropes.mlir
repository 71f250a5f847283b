// RUN: kiln-opt %s -p kiln-merge-ropes --split-input-file | filecheck %s

// kiln-merge-ropes: kiln.rope ops of touching slices of one tensor (same tables and form) → one
// kiln.rope of the union and a slice of it per original. Positive cases first, then what stays.

// Llama after kiln-hoist-head-split: q = heads [0, 4), k = heads [4, 6) of [1, 8, 3, 4]; the
// tables are two literal ops of one value (the importer's per-use literals) → one rope over
// heads [0, 6).
// CHECK-LABEL: func.func @q_and_k_heads(
// CHECK-SAME:    %[[QKV:[^:]+]]: !torch.vtensor<[1,8,3,4],f32>)
// CHECK:         %[[QK:.+]] = torch.aten.slice.Tensor %[[QKV]], %int1{{[_0-9]*}}, %int0{{[_0-9]*}}, %int6{{[_0-9]*}}, %int1{{[_0-9]*}} : !torch.vtensor<[1,8,3,4],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,6,3,4],f32>
// CHECK:         %[[R:.+]] = "kiln.rope"(%[[QK]], %{{.+}}, %{{.+}}) {interleaved = false} : (!torch.vtensor<[1,6,3,4],f32>, !torch.vtensor<[1,1,3,4],f32>, !torch.vtensor<[1,1,3,4],f32>) -> !torch.vtensor<[1,6,3,4],f32>
// CHECK:         %[[Q:.+]] = torch.aten.slice.Tensor %[[R]], %int1{{[_0-9]*}}, %int0{{[_0-9]*}}, %int4{{[_0-9]*}}, {{.*}} -> !torch.vtensor<[1,4,3,4],f32>
// CHECK:         %[[K:.+]] = torch.aten.slice.Tensor %[[R]], %int1{{[_0-9]*}}, %int4{{[_0-9]*}}, %int6{{[_0-9]*}}, {{.*}} -> !torch.vtensor<[1,2,3,4],f32>
// CHECK-NOT:     "kiln.rope"
// CHECK:         return %[[Q]], %[[K]]
func.func @q_and_k_heads(%qkv: !torch.vtensor<[1,8,3,4],f32>) -> (!torch.vtensor<[1,4,3,4],f32>, !torch.vtensor<[1,2,3,4],f32>) {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int4 = torch.constant.int 4
  %int6 = torch.constant.int 6
  %cos = torch.vtensor.literal(dense<0.5> : tensor<1x1x3x4xf32>) : !torch.vtensor<[1,1,3,4],f32>
  %sin = torch.vtensor.literal(dense<0.25> : tensor<1x1x3x4xf32>) : !torch.vtensor<[1,1,3,4],f32>
  %cos2 = torch.vtensor.literal(dense<0.5> : tensor<1x1x3x4xf32>) : !torch.vtensor<[1,1,3,4],f32>
  %sin2 = torch.vtensor.literal(dense<0.25> : tensor<1x1x3x4xf32>) : !torch.vtensor<[1,1,3,4],f32>
  %q = torch.aten.slice.Tensor %qkv, %int1, %int0, %int4, %int1 : !torch.vtensor<[1,8,3,4],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,4,3,4],f32>
  %k = torch.aten.slice.Tensor %qkv, %int1, %int4, %int6, %int1 : !torch.vtensor<[1,8,3,4],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,2,3,4],f32>
  %qr = "kiln.rope"(%q, %cos, %sin) {interleaved = false} : (!torch.vtensor<[1,4,3,4],f32>, !torch.vtensor<[1,1,3,4],f32>, !torch.vtensor<[1,1,3,4],f32>) -> !torch.vtensor<[1,4,3,4],f32>
  %kr = "kiln.rope"(%k, %cos2, %sin2) {interleaved = false} : (!torch.vtensor<[1,2,3,4],f32>, !torch.vtensor<[1,1,3,4],f32>, !torch.vtensor<[1,1,3,4],f32>) -> !torch.vtensor<[1,2,3,4],f32>
  return %qr, %kr : !torch.vtensor<[1,4,3,4],f32>, !torch.vtensor<[1,2,3,4],f32>
}

// -----

// Negative: a gap between two slices ([0, 2) and [3, 5)), and the slice [2, 3) that fills it
// with another sin table: nothing merges.
// CHECK-LABEL: func.func @gap_or_other_tables(
// CHECK-COUNT-3: "kiln.rope"(%{{[0-9]+}}, %arg1
// CHECK-NOT:     "kiln.rope"
func.func @gap_or_other_tables(%x: !torch.vtensor<[6,3,4],f32>, %cos: !torch.vtensor<[3,4],f32>, %sin: !torch.vtensor<[3,4],f32>, %sin2: !torch.vtensor<[3,4],f32>) -> (!torch.vtensor<[2,3,4],f32>, !torch.vtensor<[2,3,4],f32>, !torch.vtensor<[1,3,4],f32>) {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %int5 = torch.constant.int 5
  %a = torch.aten.slice.Tensor %x, %int0, %int0, %int2, %int1 : !torch.vtensor<[6,3,4],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[2,3,4],f32>
  %b = torch.aten.slice.Tensor %x, %int0, %int3, %int5, %int1 : !torch.vtensor<[6,3,4],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[2,3,4],f32>
  %c = torch.aten.slice.Tensor %x, %int0, %int2, %int3, %int1 : !torch.vtensor<[6,3,4],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,3,4],f32>
  %ar = "kiln.rope"(%a, %cos, %sin) {interleaved = false} : (!torch.vtensor<[2,3,4],f32>, !torch.vtensor<[3,4],f32>, !torch.vtensor<[3,4],f32>) -> !torch.vtensor<[2,3,4],f32>
  %br = "kiln.rope"(%b, %cos, %sin) {interleaved = false} : (!torch.vtensor<[2,3,4],f32>, !torch.vtensor<[3,4],f32>, !torch.vtensor<[3,4],f32>) -> !torch.vtensor<[2,3,4],f32>
  %cr = "kiln.rope"(%c, %cos, %sin2) {interleaved = false} : (!torch.vtensor<[1,3,4],f32>, !torch.vtensor<[3,4],f32>, !torch.vtensor<[3,4],f32>) -> !torch.vtensor<[1,3,4],f32>
  return %ar, %br, %cr : !torch.vtensor<[2,3,4],f32>, !torch.vtensor<[2,3,4],f32>, !torch.vtensor<[1,3,4],f32>
}

// -----

// Negative: tables that vary along the sliced axis (cos [4, 3, 4] on axis 0: each slice uses
// its own rows) and different forms (interleaved vs rotate-half) do not merge.
// CHECK-LABEL: func.func @table_varies_or_other_form(
// CHECK-COUNT-4: "kiln.rope"(%{{[0-9]+}}, %
// CHECK-NOT:     "kiln.rope"
func.func @table_varies_or_other_form(%x: !torch.vtensor<[4,3,4],f32>, %cos: !torch.vtensor<[4,3,4],f32>, %sin: !torch.vtensor<[4,3,4],f32>, %c1: !torch.vtensor<[3,4],f32>, %s1: !torch.vtensor<[3,4],f32>) -> (!torch.vtensor<[2,3,4],f32>, !torch.vtensor<[2,3,4],f32>, !torch.vtensor<[2,3,4],f32>, !torch.vtensor<[2,3,4],f32>) {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int4 = torch.constant.int 4
  %a = torch.aten.slice.Tensor %x, %int0, %int0, %int2, %int1 : !torch.vtensor<[4,3,4],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[2,3,4],f32>
  %b = torch.aten.slice.Tensor %x, %int0, %int2, %int4, %int1 : !torch.vtensor<[4,3,4],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[2,3,4],f32>
  %ca = torch.aten.slice.Tensor %cos, %int0, %int0, %int2, %int1 : !torch.vtensor<[4,3,4],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[2,3,4],f32>
  %sa = torch.aten.slice.Tensor %sin, %int0, %int0, %int2, %int1 : !torch.vtensor<[4,3,4],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[2,3,4],f32>
  %ar = "kiln.rope"(%a, %ca, %sa) {interleaved = false} : (!torch.vtensor<[2,3,4],f32>, !torch.vtensor<[2,3,4],f32>, !torch.vtensor<[2,3,4],f32>) -> !torch.vtensor<[2,3,4],f32>
  %br = "kiln.rope"(%b, %ca, %sa) {interleaved = false} : (!torch.vtensor<[2,3,4],f32>, !torch.vtensor<[2,3,4],f32>, !torch.vtensor<[2,3,4],f32>) -> !torch.vtensor<[2,3,4],f32>
  %cr = "kiln.rope"(%a, %c1, %s1) {interleaved = false} : (!torch.vtensor<[2,3,4],f32>, !torch.vtensor<[3,4],f32>, !torch.vtensor<[3,4],f32>) -> !torch.vtensor<[2,3,4],f32>
  %dr = "kiln.rope"(%b, %c1, %s1) {interleaved = true} : (!torch.vtensor<[2,3,4],f32>, !torch.vtensor<[3,4],f32>, !torch.vtensor<[3,4],f32>) -> !torch.vtensor<[2,3,4],f32>
  return %ar, %br, %cr, %dr : !torch.vtensor<[2,3,4],f32>, !torch.vtensor<[2,3,4],f32>, !torch.vtensor<[2,3,4],f32>, !torch.vtensor<[2,3,4],f32>
}

// -----

// Negative: batch 2. Slices of heads of [2, 8, 3, 4] are not contiguous, so slicing q and k
// out of a merged rotation would be copies (measured: Llama at batch 2, 15 dispatches per
// layer merged vs 14 apart); the ropes stay apart.
// CHECK-LABEL: func.func @batch_two(
// CHECK-COUNT-2: "kiln.rope"(%{{[0-9]+}}, %arg1
// CHECK-NOT:     "kiln.rope"
func.func @batch_two(%qkv: !torch.vtensor<[2,8,3,4],f32>, %cos: !torch.vtensor<[3,4],f32>, %sin: !torch.vtensor<[3,4],f32>) -> (!torch.vtensor<[2,4,3,4],f32>, !torch.vtensor<[2,2,3,4],f32>) {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int4 = torch.constant.int 4
  %int6 = torch.constant.int 6
  %q = torch.aten.slice.Tensor %qkv, %int1, %int0, %int4, %int1 : !torch.vtensor<[2,8,3,4],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[2,4,3,4],f32>
  %k = torch.aten.slice.Tensor %qkv, %int1, %int4, %int6, %int1 : !torch.vtensor<[2,8,3,4],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[2,2,3,4],f32>
  %qr = "kiln.rope"(%q, %cos, %sin) {interleaved = false} : (!torch.vtensor<[2,4,3,4],f32>, !torch.vtensor<[3,4],f32>, !torch.vtensor<[3,4],f32>) -> !torch.vtensor<[2,4,3,4],f32>
  %kr = "kiln.rope"(%k, %cos, %sin) {interleaved = false} : (!torch.vtensor<[2,2,3,4],f32>, !torch.vtensor<[3,4],f32>, !torch.vtensor<[3,4],f32>) -> !torch.vtensor<[2,2,3,4],f32>
  return %qr, %kr : !torch.vtensor<[2,4,3,4],f32>, !torch.vtensor<[2,2,3,4],f32>
}
