// RUN: kiln-opt %s -p kiln-raise-rope --split-input-file | filecheck %s

// kiln-raise-rope: x·cos + rotate(x)·sin → kiln.rope, rotate-half (HF Llama) and interleaved
// (GPT-J) forms, products and sum in either order. Positive cases first, then the patterns
// the pass must leave alone.

// HF Llama: q·cos + cat(-q[..., 4:], q[..., :4])·sin with constant tables.
// CHECK-LABEL: func.func @rotate_half(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[1,2,3,8],f32>)
// CHECK-DAG:     %[[COS:.+]] = torch.vtensor.literal(dense<5.000000e-01> : tensor<1x1x3x8xf32>)
// CHECK-DAG:     %[[SIN:.+]] = torch.vtensor.literal(dense<2.500000e-01> : tensor<1x1x3x8xf32>)
// CHECK-NOT:     torch.aten.cat
// CHECK-NOT:     torch.aten.neg
// CHECK:         %[[Y:.+]] = "kiln.rope"(%[[X]], %[[COS]], %[[SIN]]) {interleaved = false} : (!torch.vtensor<[1,2,3,8],f32>, !torch.vtensor<[1,1,3,8],f32>, !torch.vtensor<[1,1,3,8],f32>) -> !torch.vtensor<[1,2,3,8],f32>
// CHECK-NEXT:    return %[[Y]]
func.func @rotate_half(%x: !torch.vtensor<[1,2,3,8],f32>) -> !torch.vtensor<[1,2,3,8],f32> {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int3 = torch.constant.int 3
  %int4 = torch.constant.int 4
  %int-1 = torch.constant.int -1
  %intmax = torch.constant.int 9223372036854775807
  %cos = torch.vtensor.literal(dense<0.5> : tensor<1x1x3x8xf32>) : !torch.vtensor<[1,1,3,8],f32>
  %sin = torch.vtensor.literal(dense<0.25> : tensor<1x1x3x8xf32>) : !torch.vtensor<[1,1,3,8],f32>
  %xc = torch.aten.mul.Tensor %x, %cos : !torch.vtensor<[1,2,3,8],f32>, !torch.vtensor<[1,1,3,8],f32> -> !torch.vtensor<[1,2,3,8],f32>
  %lo = torch.aten.slice.Tensor %x, %int3, %int0, %int4, %int1 : !torch.vtensor<[1,2,3,8],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,2,3,4],f32>
  %hi = torch.aten.slice.Tensor %x, %int3, %int4, %intmax, %int1 : !torch.vtensor<[1,2,3,8],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,2,3,4],f32>
  %neg = torch.aten.neg %hi : !torch.vtensor<[1,2,3,4],f32> -> !torch.vtensor<[1,2,3,4],f32>
  %parts = torch.prim.ListConstruct %neg, %lo : (!torch.vtensor<[1,2,3,4],f32>, !torch.vtensor<[1,2,3,4],f32>) -> !torch.list<vtensor>
  %rot = torch.aten.cat %parts, %int-1 : !torch.list<vtensor>, !torch.int -> !torch.vtensor<[1,2,3,8],f32>
  %rs = torch.aten.mul.Tensor %rot, %sin : !torch.vtensor<[1,2,3,8],f32>, !torch.vtensor<[1,1,3,8],f32> -> !torch.vtensor<[1,2,3,8],f32>
  %y = torch.aten.add.Tensor %xc, %rs, %int1 : !torch.vtensor<[1,2,3,8],f32>, !torch.vtensor<[1,2,3,8],f32>, !torch.int -> !torch.vtensor<[1,2,3,8],f32>
  return %y : !torch.vtensor<[1,2,3,8],f32>
}

// -----

// Operands commuted everywhere (sin·rot, cos·x, rotated term first), tables as arguments (cos
// and sin computed from position ids at run time), f16.
// CHECK-LABEL: func.func @rotate_half_commuted(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,5,4],f16>, %[[COS:[^:]+]]: !torch.vtensor<[5,4],f16>, %[[SIN:[^:]+]]: !torch.vtensor<[5,4],f16>)
// CHECK:         %[[Y:.+]] = "kiln.rope"(%[[X]], %[[COS]], %[[SIN]]) {interleaved = false}
// CHECK-NEXT:    return %[[Y]]
func.func @rotate_half_commuted(%x: !torch.vtensor<[2,5,4],f16>, %cos: !torch.vtensor<[5,4],f16>, %sin: !torch.vtensor<[5,4],f16>) -> !torch.vtensor<[2,5,4],f16> {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int4 = torch.constant.int 4
  %xc = torch.aten.mul.Tensor %cos, %x : !torch.vtensor<[5,4],f16>, !torch.vtensor<[2,5,4],f16> -> !torch.vtensor<[2,5,4],f16>
  %lo = torch.aten.slice.Tensor %x, %int2, %int0, %int2, %int1 : !torch.vtensor<[2,5,4],f16>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[2,5,2],f16>
  %hi = torch.aten.slice.Tensor %x, %int2, %int2, %int4, %int1 : !torch.vtensor<[2,5,4],f16>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[2,5,2],f16>
  %neg = torch.aten.neg %hi : !torch.vtensor<[2,5,2],f16> -> !torch.vtensor<[2,5,2],f16>
  %parts = torch.prim.ListConstruct %neg, %lo : (!torch.vtensor<[2,5,2],f16>, !torch.vtensor<[2,5,2],f16>) -> !torch.list<vtensor>
  %rot = torch.aten.cat %parts, %int2 : !torch.list<vtensor>, !torch.int -> !torch.vtensor<[2,5,4],f16>
  %rs = torch.aten.mul.Tensor %sin, %rot : !torch.vtensor<[5,4],f16>, !torch.vtensor<[2,5,4],f16> -> !torch.vtensor<[2,5,4],f16>
  %y = torch.aten.add.Tensor %rs, %xc, %int1 : !torch.vtensor<[2,5,4],f16>, !torch.vtensor<[2,5,4],f16>, !torch.int -> !torch.vtensor<[2,5,4],f16>
  return %y : !torch.vtensor<[2,5,4],f16>
}

// -----

// GPT-J rotate_every_two: stack(-x[..., 1::2], x[..., ::2], -1).flatten(-2), the stack as a
// cat of unsqueezes and the flatten as a view → interleaved = true.
// CHECK-LABEL: func.func @interleaved(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[1,2,3,8],f32>, %[[COS:[^:]+]]: !torch.vtensor<[1,1,3,8],f32>, %[[SIN:[^:]+]]: !torch.vtensor<[1,1,3,8],f32>)
// CHECK-NOT:     torch.aten.unsqueeze
// CHECK:         %[[Y:.+]] = "kiln.rope"(%[[X]], %[[COS]], %[[SIN]]) {interleaved = true}
// CHECK-NEXT:    return %[[Y]]
func.func @interleaved(%x: !torch.vtensor<[1,2,3,8],f32>, %cos: !torch.vtensor<[1,1,3,8],f32>, %sin: !torch.vtensor<[1,1,3,8],f32>) -> !torch.vtensor<[1,2,3,8],f32> {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %int4 = torch.constant.int 4
  %int8 = torch.constant.int 8
  %int-1 = torch.constant.int -1
  %intmax = torch.constant.int 9223372036854775807
  %even = torch.aten.slice.Tensor %x, %int3, %int0, %intmax, %int2 : !torch.vtensor<[1,2,3,8],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,2,3,4],f32>
  %odd = torch.aten.slice.Tensor %x, %int3, %int1, %intmax, %int2 : !torch.vtensor<[1,2,3,8],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,2,3,4],f32>
  %neg = torch.aten.neg %odd : !torch.vtensor<[1,2,3,4],f32> -> !torch.vtensor<[1,2,3,4],f32>
  %u0 = torch.aten.unsqueeze %neg, %int4 : !torch.vtensor<[1,2,3,4],f32>, !torch.int -> !torch.vtensor<[1,2,3,4,1],f32>
  %u1 = torch.aten.unsqueeze %even, %int4 : !torch.vtensor<[1,2,3,4],f32>, !torch.int -> !torch.vtensor<[1,2,3,4,1],f32>
  %parts = torch.prim.ListConstruct %u0, %u1 : (!torch.vtensor<[1,2,3,4,1],f32>, !torch.vtensor<[1,2,3,4,1],f32>) -> !torch.list<vtensor>
  %pairs = torch.aten.cat %parts, %int-1 : !torch.list<vtensor>, !torch.int -> !torch.vtensor<[1,2,3,4,2],f32>
  %shape = torch.prim.ListConstruct %int1, %int2, %int3, %int8 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %rot = torch.aten.view %pairs, %shape : !torch.vtensor<[1,2,3,4,2],f32>, !torch.list<int> -> !torch.vtensor<[1,2,3,8],f32>
  %xc = torch.aten.mul.Tensor %x, %cos : !torch.vtensor<[1,2,3,8],f32>, !torch.vtensor<[1,1,3,8],f32> -> !torch.vtensor<[1,2,3,8],f32>
  %rs = torch.aten.mul.Tensor %rot, %sin : !torch.vtensor<[1,2,3,8],f32>, !torch.vtensor<[1,1,3,8],f32> -> !torch.vtensor<[1,2,3,8],f32>
  %y = torch.aten.add.Tensor %xc, %rs, %int1 : !torch.vtensor<[1,2,3,8],f32>, !torch.vtensor<[1,2,3,8],f32>, !torch.int -> !torch.vtensor<[1,2,3,8],f32>
  return %y : !torch.vtensor<[1,2,3,8],f32>
}

// -----

// Negative: the sign on the other half (cat(x[..., 4:], -x[..., :4]) rotates the other way),
// and halves of the wrong size (slices at 3 of D = 8).
// CHECK-LABEL: func.func @wrong_sign_or_split(
// CHECK-COUNT-2: torch.aten.cat
// CHECK-NOT:     kiln.rope
func.func @wrong_sign_or_split(%x: !torch.vtensor<[1,2,3,8],f32>, %cos: !torch.vtensor<[1,1,3,8],f32>, %sin: !torch.vtensor<[1,1,3,8],f32>) -> (!torch.vtensor<[1,2,3,8],f32>, !torch.vtensor<[1,2,3,8],f32>) {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int3 = torch.constant.int 3
  %int4 = torch.constant.int 4
  %int5 = torch.constant.int 5
  %int8 = torch.constant.int 8
  %int-1 = torch.constant.int -1
  %lo = torch.aten.slice.Tensor %x, %int3, %int0, %int4, %int1 : !torch.vtensor<[1,2,3,8],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,2,3,4],f32>
  %hi = torch.aten.slice.Tensor %x, %int3, %int4, %int8, %int1 : !torch.vtensor<[1,2,3,8],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,2,3,4],f32>
  %neglo = torch.aten.neg %lo : !torch.vtensor<[1,2,3,4],f32> -> !torch.vtensor<[1,2,3,4],f32>
  %parts = torch.prim.ListConstruct %hi, %neglo : (!torch.vtensor<[1,2,3,4],f32>, !torch.vtensor<[1,2,3,4],f32>) -> !torch.list<vtensor>
  %rot = torch.aten.cat %parts, %int-1 : !torch.list<vtensor>, !torch.int -> !torch.vtensor<[1,2,3,8],f32>
  %xc = torch.aten.mul.Tensor %x, %cos : !torch.vtensor<[1,2,3,8],f32>, !torch.vtensor<[1,1,3,8],f32> -> !torch.vtensor<[1,2,3,8],f32>
  %rs = torch.aten.mul.Tensor %rot, %sin : !torch.vtensor<[1,2,3,8],f32>, !torch.vtensor<[1,1,3,8],f32> -> !torch.vtensor<[1,2,3,8],f32>
  %y = torch.aten.add.Tensor %xc, %rs, %int1 : !torch.vtensor<[1,2,3,8],f32>, !torch.vtensor<[1,2,3,8],f32>, !torch.int -> !torch.vtensor<[1,2,3,8],f32>
  %lo3 = torch.aten.slice.Tensor %x, %int3, %int0, %int3, %int1 : !torch.vtensor<[1,2,3,8],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,2,3,3],f32>
  %hi5 = torch.aten.slice.Tensor %x, %int3, %int3, %int8, %int1 : !torch.vtensor<[1,2,3,8],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,2,3,5],f32>
  %neghi5 = torch.aten.neg %hi5 : !torch.vtensor<[1,2,3,5],f32> -> !torch.vtensor<[1,2,3,5],f32>
  %parts2 = torch.prim.ListConstruct %neghi5, %lo3 : (!torch.vtensor<[1,2,3,5],f32>, !torch.vtensor<[1,2,3,3],f32>) -> !torch.list<vtensor>
  %rot2 = torch.aten.cat %parts2, %int-1 : !torch.list<vtensor>, !torch.int -> !torch.vtensor<[1,2,3,8],f32>
  %xc2 = torch.aten.mul.Tensor %x, %cos : !torch.vtensor<[1,2,3,8],f32>, !torch.vtensor<[1,1,3,8],f32> -> !torch.vtensor<[1,2,3,8],f32>
  %rs2 = torch.aten.mul.Tensor %rot2, %sin : !torch.vtensor<[1,2,3,8],f32>, !torch.vtensor<[1,1,3,8],f32> -> !torch.vtensor<[1,2,3,8],f32>
  %y2 = torch.aten.add.Tensor %xc2, %rs2, %int1 : !torch.vtensor<[1,2,3,8],f32>, !torch.vtensor<[1,2,3,8],f32>, !torch.int -> !torch.vtensor<[1,2,3,8],f32>
  return %y, %y2 : !torch.vtensor<[1,2,3,8],f32>, !torch.vtensor<[1,2,3,8],f32>
}

// -----

// Negative: the rotated tensor has another use (it is returned), and, separately, the halves
// are sliced on axis 2 instead of the last axis.
// CHECK-LABEL: func.func @extra_use_or_wrong_axis(
// CHECK-NOT:     kiln.rope
func.func @extra_use_or_wrong_axis(%x: !torch.vtensor<[2,8,8],f32>, %cos: !torch.vtensor<[8,8],f32>, %sin: !torch.vtensor<[8,8],f32>) -> (!torch.vtensor<[2,8,8],f32>, !torch.vtensor<[2,8,8],f32>, !torch.vtensor<[2,8,8],f32>) {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int4 = torch.constant.int 4
  %int8 = torch.constant.int 8
  %lo = torch.aten.slice.Tensor %x, %int2, %int0, %int4, %int1 : !torch.vtensor<[2,8,8],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[2,8,4],f32>
  %hi = torch.aten.slice.Tensor %x, %int2, %int4, %int8, %int1 : !torch.vtensor<[2,8,8],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[2,8,4],f32>
  %neg = torch.aten.neg %hi : !torch.vtensor<[2,8,4],f32> -> !torch.vtensor<[2,8,4],f32>
  %parts = torch.prim.ListConstruct %neg, %lo : (!torch.vtensor<[2,8,4],f32>, !torch.vtensor<[2,8,4],f32>) -> !torch.list<vtensor>
  %rot = torch.aten.cat %parts, %int2 : !torch.list<vtensor>, !torch.int -> !torch.vtensor<[2,8,8],f32>
  %xc = torch.aten.mul.Tensor %x, %cos : !torch.vtensor<[2,8,8],f32>, !torch.vtensor<[8,8],f32> -> !torch.vtensor<[2,8,8],f32>
  %rs = torch.aten.mul.Tensor %rot, %sin : !torch.vtensor<[2,8,8],f32>, !torch.vtensor<[8,8],f32> -> !torch.vtensor<[2,8,8],f32>
  %y = torch.aten.add.Tensor %xc, %rs, %int1 : !torch.vtensor<[2,8,8],f32>, !torch.vtensor<[2,8,8],f32>, !torch.int -> !torch.vtensor<[2,8,8],f32>
  %lo1 = torch.aten.slice.Tensor %x, %int1, %int0, %int4, %int1 : !torch.vtensor<[2,8,8],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[2,4,8],f32>
  %hi1 = torch.aten.slice.Tensor %x, %int1, %int4, %int8, %int1 : !torch.vtensor<[2,8,8],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[2,4,8],f32>
  %neg1 = torch.aten.neg %hi1 : !torch.vtensor<[2,4,8],f32> -> !torch.vtensor<[2,4,8],f32>
  %parts1 = torch.prim.ListConstruct %neg1, %lo1 : (!torch.vtensor<[2,4,8],f32>, !torch.vtensor<[2,4,8],f32>) -> !torch.list<vtensor>
  %rot1 = torch.aten.cat %parts1, %int1 : !torch.list<vtensor>, !torch.int -> !torch.vtensor<[2,8,8],f32>
  %xc1 = torch.aten.mul.Tensor %x, %cos : !torch.vtensor<[2,8,8],f32>, !torch.vtensor<[8,8],f32> -> !torch.vtensor<[2,8,8],f32>
  %rs1 = torch.aten.mul.Tensor %rot1, %sin : !torch.vtensor<[2,8,8],f32>, !torch.vtensor<[8,8],f32> -> !torch.vtensor<[2,8,8],f32>
  %y1 = torch.aten.add.Tensor %xc1, %rs1, %int1 : !torch.vtensor<[2,8,8],f32>, !torch.vtensor<[2,8,8],f32>, !torch.int -> !torch.vtensor<[2,8,8],f32>
  return %y, %rot, %y1 : !torch.vtensor<[2,8,8],f32>, !torch.vtensor<[2,8,8],f32>, !torch.vtensor<[2,8,8],f32>
}

// -----

// Negative: a sum with alpha 2 (x·cos + 2·rot·sin) and tables of another dtype (f32 tables
// with an f16 input promote the products to f32) are not a rope.
// CHECK-LABEL: func.func @alpha_or_table_dtype(
// CHECK-NOT:     kiln.rope
func.func @alpha_or_table_dtype(%x: !torch.vtensor<[3,4],f32>, %cos: !torch.vtensor<[3,4],f32>, %sin: !torch.vtensor<[3,4],f32>, %h: !torch.vtensor<[3,4],f16>) -> (!torch.vtensor<[3,4],f32>, !torch.vtensor<[3,4],f32>) {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int4 = torch.constant.int 4
  %lo = torch.aten.slice.Tensor %x, %int1, %int0, %int2, %int1 : !torch.vtensor<[3,4],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[3,2],f32>
  %hi = torch.aten.slice.Tensor %x, %int1, %int2, %int4, %int1 : !torch.vtensor<[3,4],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[3,2],f32>
  %neg = torch.aten.neg %hi : !torch.vtensor<[3,2],f32> -> !torch.vtensor<[3,2],f32>
  %parts = torch.prim.ListConstruct %neg, %lo : (!torch.vtensor<[3,2],f32>, !torch.vtensor<[3,2],f32>) -> !torch.list<vtensor>
  %rot = torch.aten.cat %parts, %int1 : !torch.list<vtensor>, !torch.int -> !torch.vtensor<[3,4],f32>
  %xc = torch.aten.mul.Tensor %x, %cos : !torch.vtensor<[3,4],f32>, !torch.vtensor<[3,4],f32> -> !torch.vtensor<[3,4],f32>
  %rs = torch.aten.mul.Tensor %rot, %sin : !torch.vtensor<[3,4],f32>, !torch.vtensor<[3,4],f32> -> !torch.vtensor<[3,4],f32>
  %y = torch.aten.add.Tensor %xc, %rs, %int2 : !torch.vtensor<[3,4],f32>, !torch.vtensor<[3,4],f32>, !torch.int -> !torch.vtensor<[3,4],f32>
  %hlo = torch.aten.slice.Tensor %h, %int1, %int0, %int2, %int1 : !torch.vtensor<[3,4],f16>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[3,2],f16>
  %hhi = torch.aten.slice.Tensor %h, %int1, %int2, %int4, %int1 : !torch.vtensor<[3,4],f16>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[3,2],f16>
  %hneg = torch.aten.neg %hhi : !torch.vtensor<[3,2],f16> -> !torch.vtensor<[3,2],f16>
  %hparts = torch.prim.ListConstruct %hneg, %hlo : (!torch.vtensor<[3,2],f16>, !torch.vtensor<[3,2],f16>) -> !torch.list<vtensor>
  %hrot = torch.aten.cat %hparts, %int1 : !torch.list<vtensor>, !torch.int -> !torch.vtensor<[3,4],f16>
  %hc = torch.aten.mul.Tensor %h, %cos : !torch.vtensor<[3,4],f16>, !torch.vtensor<[3,4],f32> -> !torch.vtensor<[3,4],f32>
  %hs = torch.aten.mul.Tensor %hrot, %sin : !torch.vtensor<[3,4],f16>, !torch.vtensor<[3,4],f32> -> !torch.vtensor<[3,4],f32>
  %hy = torch.aten.add.Tensor %hc, %hs, %int1 : !torch.vtensor<[3,4],f32>, !torch.vtensor<[3,4],f32>, !torch.int -> !torch.vtensor<[3,4],f32>
  return %y, %hy : !torch.vtensor<[3,4],f32>, !torch.vtensor<[3,4],f32>
}
