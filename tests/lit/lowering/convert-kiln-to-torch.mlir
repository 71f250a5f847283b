// RUN: kiln-opt %s -p 'convert-kiln-to-torch{target=cpu}' --split-input-file | filecheck %s
// RUN: kiln-opt %s -p 'convert-kiln-to-torch{attention=fused}' --split-input-file | filecheck %s --check-prefix=FUSED

// convert-kiln-to-torch: every kiln op becomes torch-dialect ops.
//   prefix CHECK (target=cpu) sees the decomposed attention: transpose, matmul, f32 softmax, matmul;
//   prefix FUSED (attention=fused) sees torch.aten.scaled_dot_product_attention.
// kiln.linear lowers the same way under both, so only the CHECK prefix looks at it.

// Plain attention. Decomposed: kᵀ via transpose(-2, -1), scores = q·kᵀ, scale by mul.Scalar,
// softmax over -1, then ·v. Fused: one SDPA carrying the scale, dropout 0, not causal.
// CHECK-LABEL: func.func @attention(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>)
// CHECK-NOT:     kiln.
// CHECK:         %[[M2:.+]] = torch.constant.int -2
// CHECK:         %[[M1:.+]] = torch.constant.int -1
// CHECK:         %[[KT:.+]] = torch.aten.transpose.int %[[K]], %[[M2]], %[[M1]] : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
// CHECK:         %[[S:.+]] = torch.aten.matmul %[[Q]], %[[KT]] : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
// CHECK:         %[[SCALE:.+]] = torch.constant.float 2.500000e-01
// CHECK:         %[[SS:.+]] = torch.aten.mul.Scalar %[[S]], %[[SCALE]] : !torch.vtensor<[1,4,8,8],f32>, !torch.float -> !torch.vtensor<[1,4,8,8],f32>
// CHECK:         %[[DIM:.+]] = torch.constant.int -1
// CHECK:         %[[HALF:.+]] = torch.constant.bool false
// CHECK:         %[[P:.+]] = torch.aten._softmax %[[SS]], %[[DIM]], %[[HALF]] : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[P]], %[[V]] : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
// CHECK-NOT:     kiln.
// CHECK:         return %[[O]]

// FUSED-LABEL: func.func @attention(
// FUSED-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>)
// FUSED-NOT:     kiln.
// FUSED-NOT:     torch.aten._softmax
// FUSED:         %[[NONE:.+]] = torch.constant.none
// FUSED:         %[[DROP:.+]] = torch.constant.float 0.000000e+00
// FUSED:         %[[CAUSAL:.+]] = torch.constant.bool false
// FUSED:         %[[SCALE:.+]] = torch.constant.float 2.500000e-01
// FUSED:         %[[GQA:.+]] = torch.constant.bool false
// FUSED:         %[[O:.+]] = torch.aten.scaled_dot_product_attention %[[Q]], %[[K]], %[[V]], %[[NONE]], %[[DROP]], %[[CAUSAL]], %[[SCALE]], %[[GQA]] : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.none, !torch.float, !torch.bool, !torch.float, !torch.bool -> !torch.vtensor<[1,4,8,16],f32>
// FUSED-NOT:     kiln.
// FUSED:         return %[[O]]
func.func @attention(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %0 = "kiln.attention"(%q, %k, %v) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 2.500000e-01 : f64} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32>
  return %0 : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Causal with Sq = 2, Sk = 3: decomposed adds a top-left-aligned -inf literal mask (key j masked
// for query i when j > i) to the scaled scores; fused passes is_causal = true.
// CHECK-LABEL: func.func @attention_causal(
// CHECK-NOT:     kiln.
// CHECK:         %[[S:.+]] = torch.aten.matmul
// CHECK:         %[[SS:.+]] = torch.aten.mul.Scalar %[[S]], %{{.+}} :
// CHECK:         %[[MASK:.+]] = torch.vtensor.literal(dense<{{\[\[}}0.000000e+00, 0xFF800000, 0xFF800000], [0.000000e+00, 0.000000e+00, 0xFF800000{{\]\]}}> : tensor<2x3xf32>) : !torch.vtensor<[2,3],f32>
// CHECK:         %[[ONE:.+]] = torch.constant.int 1
// CHECK:         %[[MS:.+]] = torch.aten.add.Tensor %[[SS]], %[[MASK]], %[[ONE]] : !torch.vtensor<[1,2,2,3],f32>, !torch.vtensor<[2,3],f32>, !torch.int -> !torch.vtensor<[1,2,2,3],f32>
// CHECK:         %[[P:.+]] = torch.aten._softmax %[[MS]],
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[P]], %{{.+}} :
// CHECK-NOT:     kiln.
// CHECK:         return %[[O]]

// FUSED-LABEL: func.func @attention_causal(
// FUSED-NOT:     torch.vtensor.literal
// FUSED:         %[[CAUSAL:.+]] = torch.constant.bool true
// FUSED:         torch.aten.scaled_dot_product_attention %{{.+}}, %{{.+}}, %{{.+}}, %{{.+}}, %{{.+}}, %[[CAUSAL]], %{{.+}}, %{{.+}} :
func.func @attention_causal(%q: !torch.vtensor<[1,2,2,16],f32>, %k: !torch.vtensor<[1,2,3,16],f32>, %v: !torch.vtensor<[1,2,3,16],f32>) -> !torch.vtensor<[1,2,2,16],f32> {
  %0 = "kiln.attention"(%q, %k, %v) {causal = true, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 2.500000e-01 : f64} : (!torch.vtensor<[1,2,2,16],f32>, !torch.vtensor<[1,2,3,16],f32>, !torch.vtensor<[1,2,3,16],f32>) -> !torch.vtensor<[1,2,2,16],f32>
  return %0 : !torch.vtensor<[1,2,2,16],f32>
}

// -----

// Bool mask (keep = true) with scale 1: decomposed masks with where.ScalarOther(mask, scores,
// -inf) and emits no mul.Scalar; fused hands the mask to SDPA unchanged.
// CHECK-LABEL: func.func @attention_bool_mask(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[M:[^:]+]]: !torch.vtensor<[1,1,8,8],i1>)
// CHECK-NOT:     torch.aten.mul.Scalar
// CHECK:         %[[S:.+]] = torch.aten.matmul %[[Q]], %{{.+}} :
// CHECK-NOT:     torch.aten.mul.Scalar
// CHECK:         %[[NEGINF:.+]] = torch.constant.float 0xFFF0000000000000
// CHECK:         %[[W:.+]] = torch.aten.where.ScalarOther %[[M]], %[[S]], %[[NEGINF]] : !torch.vtensor<[1,1,8,8],i1>, !torch.vtensor<[1,4,8,8],f32>, !torch.float -> !torch.vtensor<[1,4,8,8],f32>
// CHECK:         %[[P:.+]] = torch.aten._softmax %[[W]],
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[P]], %[[V]] :
// CHECK-NOT:     kiln.
// CHECK:         return %[[O]]

// FUSED-LABEL: func.func @attention_bool_mask(
// FUSED-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[M:[^:]+]]: !torch.vtensor<[1,1,8,8],i1>)
// FUSED-NOT:     torch.aten.where
// FUSED:         torch.aten.scaled_dot_product_attention %[[Q]], %[[K]], %[[V]], %[[M]], %{{.+}} : {{.*}}, !torch.vtensor<[1,1,8,8],i1>, !torch.float, !torch.bool, !torch.float, !torch.bool -> !torch.vtensor<[1,4,8,16],f32>
func.func @attention_bool_mask(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %m: !torch.vtensor<[1,1,8,8],i1>) -> !torch.vtensor<[1,4,8,16],f32> {
  %0 = "kiln.attention"(%q, %k, %v, %m) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 1.000000e+00 : f64} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,1,8,8],i1>) -> !torch.vtensor<[1,4,8,16],f32>
  return %0 : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Grouped-query attention, 4 query heads over 2 kv heads. Decomposed: q [1,4,8,16] is viewed
// as [1,2,16,16] (the 2 query heads of kv head h are its rows), K and V are used as they are,
// and the product is viewed back; fused: SDPA on the original k/v with enable_gqa = true.
// CHECK-LABEL: func.func @attention_gqa(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,2,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,2,8,16],f32>)
// CHECK-NOT:     torch.aten.expand
// CHECK:         %[[QG:.+]] = torch.aten.reshape %[[Q]], %{{.+}} : !torch.vtensor<[1,4,8,16],f32>, !torch.list<int> -> !torch.vtensor<[1,2,16,16],f32>
// CHECK:         %[[KT:.+]] = torch.aten.transpose.int %[[K]], %{{.+}}, %{{.+}} :
// CHECK:         torch.aten.matmul %[[QG]], %[[KT]] :
// CHECK:         %[[P:.+]] = torch.aten._softmax
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[P]], %[[V]] : !torch.vtensor<[1,2,16,8],f32>, !torch.vtensor<[1,2,8,16],f32> -> !torch.vtensor<[1,2,16,16],f32>
// CHECK:         %[[Y:.+]] = torch.aten.reshape %[[O]], %{{.+}} -> !torch.vtensor<[1,4,8,16],f32>
// CHECK-NOT:     kiln.
// CHECK:         return %[[Y]]

// FUSED-LABEL: func.func @attention_gqa(
// FUSED-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,2,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,2,8,16],f32>)
// FUSED-NOT:     torch.aten.expand
// FUSED:         %[[GQA:.+]] = torch.constant.bool true
// FUSED:         torch.aten.scaled_dot_product_attention %[[Q]], %[[K]], %[[V]], %{{.+}}, %{{.+}}, %{{.+}}, %{{.+}}, %[[GQA]] :
func.func @attention_gqa(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,2,8,16],f32>, %v: !torch.vtensor<[1,2,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %0 = "kiln.attention"(%q, %k, %v) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 2.500000e-01 : f64} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,2,8,16],f32>, !torch.vtensor<[1,2,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32>
  return %0 : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Grouped-query decode with a mask shared by the heads (a generator's step: one query token
// against a masked cache), 4 query heads over 2 kv heads: q [1,4,1,16] is viewed as
// [1,2,2,16], the mask [1,1,1,8] broadcasts over the grouped rows as it is, and K and V are
// not repeated (before masks were taken, both were expanded to 4 heads every step).
// CHECK-LABEL: func.func @attention_gqa_decode_mask(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,1,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,2,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,2,8,16],f32>, %[[M:[^:]+]]: !torch.vtensor<[1,1,1,8],f32>)
// CHECK-NOT:     torch.aten.expand
// CHECK:         %[[QG:.+]] = torch.aten.reshape %[[Q]], %{{.+}} -> !torch.vtensor<[1,2,2,16],f32>
// CHECK:         torch.aten.matmul %[[QG]], %{{.+}} -> !torch.vtensor<[1,2,2,8],f32>
// CHECK:         torch.aten.add.Tensor %{{.+}}, %[[M]], %{{.+}} : !torch.vtensor<[1,2,2,8],f32>, !torch.vtensor<[1,1,1,8],f32>, !torch.int -> !torch.vtensor<[1,2,2,8],f32>
// CHECK:         torch.aten.matmul %{{.+}}, %[[V]] : !torch.vtensor<[1,2,2,8],f32>, !torch.vtensor<[1,2,8,16],f32> -> !torch.vtensor<[1,2,2,16],f32>
// CHECK-NOT:     torch.aten.expand
func.func @attention_gqa_decode_mask(%q: !torch.vtensor<[1,4,1,16],f32>, %k: !torch.vtensor<[1,2,8,16],f32>, %v: !torch.vtensor<[1,2,8,16],f32>, %m: !torch.vtensor<[1,1,1,8],f32>) -> !torch.vtensor<[1,4,1,16],f32> {
  %0 = "kiln.attention"(%q, %k, %v, %m) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 2.500000e-01 : f64} : (!torch.vtensor<[1,4,1,16],f32>, !torch.vtensor<[1,2,8,16],f32>, !torch.vtensor<[1,2,8,16],f32>, !torch.vtensor<[1,1,1,8],f32>) -> !torch.vtensor<[1,4,1,16],f32>
  return %0 : !torch.vtensor<[1,4,1,16],f32>
}

// -----

// Grouped-query prefill with a mask of every head's own rows [1,1,4,8]: the mask is tiled
// over the 2 query heads of each kv head ([1,1,8,8], row g·4 + s is query s), K and V as they
// are.
// CHECK-LABEL: func.func @attention_gqa_prefill_mask(
// CHECK-NOT:     torch.aten.expand
// CHECK:         torch.aten.repeat %{{.+}}, %{{.+}} : !torch.vtensor<[1,1,4,8],f32>, !torch.list<int> -> !torch.vtensor<[1,1,8,8],f32>
// CHECK:         torch.aten.add.Tensor %{{.+}}, %{{.+}}, %{{.+}} : !torch.vtensor<[1,2,8,8],f32>, !torch.vtensor<[1,1,8,8],f32>, !torch.int -> !torch.vtensor<[1,2,8,8],f32>
// CHECK-NOT:     torch.aten.expand
func.func @attention_gqa_prefill_mask(%q: !torch.vtensor<[1,4,4,16],f32>, %k: !torch.vtensor<[1,2,8,16],f32>, %v: !torch.vtensor<[1,2,8,16],f32>, %m: !torch.vtensor<[1,1,4,8],f32>) -> !torch.vtensor<[1,4,4,16],f32> {
  %0 = "kiln.attention"(%q, %k, %v, %m) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 2.500000e-01 : f64} : (!torch.vtensor<[1,4,4,16],f32>, !torch.vtensor<[1,2,8,16],f32>, !torch.vtensor<[1,2,8,16],f32>, !torch.vtensor<[1,1,4,8],f32>) -> !torch.vtensor<[1,4,4,16],f32>
  return %0 : !torch.vtensor<[1,4,4,16],f32>
}

// -----

// f16 attention: decomposed computes the softmax in f32 — scores cast to f32 (dtype code 6)
// before scale and softmax, probabilities cast back to f16 (code 5) before ·v.
// CHECK-LABEL: func.func @attention_f16(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f16>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f16>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f16>)
// CHECK:         %[[S:.+]] = torch.aten.matmul %[[Q]], %{{.+}} : !torch.vtensor<[1,4,8,16],f16>, !torch.vtensor<[1,4,16,8],f16> -> !torch.vtensor<[1,4,8,8],f16>
// CHECK:         %[[F32:.+]] = torch.constant.int 6
// CHECK:         %[[S32:.+]] = torch.aten.to.dtype %[[S]], %[[F32]], %{{.+}}, %{{.+}}, %{{.+}} : !torch.vtensor<[1,4,8,8],f16>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[1,4,8,8],f32>
// CHECK:         %[[SS:.+]] = torch.aten.mul.Scalar %[[S32]], %{{.+}} : !torch.vtensor<[1,4,8,8],f32>, !torch.float -> !torch.vtensor<[1,4,8,8],f32>
// CHECK:         %[[P:.+]] = torch.aten._softmax %[[SS]], %{{.+}}, %{{.+}} : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
// CHECK:         %[[F16:.+]] = torch.constant.int 5
// CHECK:         %[[P16:.+]] = torch.aten.to.dtype %[[P]], %[[F16]], %{{.+}}, %{{.+}}, %{{.+}} : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[1,4,8,8],f16>
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[P16]], %[[V]] : !torch.vtensor<[1,4,8,8],f16>, !torch.vtensor<[1,4,8,16],f16> -> !torch.vtensor<[1,4,8,16],f16>
// CHECK-NOT:     kiln.
// CHECK:         return %[[O]]

// FUSED-LABEL: func.func @attention_f16(
// FUSED-NOT:     torch.aten.to.dtype
// FUSED:         torch.aten.scaled_dot_product_attention {{.*}} -> !torch.vtensor<[1,4,8,16],f16>
func.func @attention_f16(%q: !torch.vtensor<[1,4,8,16],f16>, %k: !torch.vtensor<[1,4,8,16],f16>, %v: !torch.vtensor<[1,4,8,16],f16>) -> !torch.vtensor<[1,4,8,16],f16> {
  %0 = "kiln.attention"(%q, %k, %v) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 2.500000e-01 : f64} : (!torch.vtensor<[1,4,8,16],f16>, !torch.vtensor<[1,4,8,16],f16>, !torch.vtensor<[1,4,8,16],f16>) -> !torch.vtensor<[1,4,8,16],f16>
  return %0 : !torch.vtensor<[1,4,8,16],f16>
}

// -----

// f16 attention with an f32 additive mask: decomposed adds it in f32 as is; fused casts the mask
// to the query dtype (f16, code 5) for SDPA.
// CHECK-LABEL: func.func @attention_f16_f32_mask(
// CHECK-SAME:    %[[M:[^:]+]]: !torch.vtensor<[1,1,8,8],f32>)
// CHECK:         %[[SS:.+]] = torch.aten.mul.Scalar
// CHECK:         %[[MS:.+]] = torch.aten.add.Tensor %[[SS]], %[[M]], %{{.+}} : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,1,8,8],f32>, !torch.int -> !torch.vtensor<[1,4,8,8],f32>
// CHECK:         torch.aten._softmax %[[MS]],

// FUSED-LABEL: func.func @attention_f16_f32_mask(
// FUSED-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f16>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f16>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f16>, %[[M:[^:]+]]: !torch.vtensor<[1,1,8,8],f32>)
// FUSED:         %[[F16:.+]] = torch.constant.int 5
// FUSED:         %[[M16:.+]] = torch.aten.to.dtype %[[M]], %[[F16]], {{.*}} -> !torch.vtensor<[1,1,8,8],f16>
// FUSED:         torch.aten.scaled_dot_product_attention %[[Q]], %[[K]], %[[V]], %[[M16]],
func.func @attention_f16_f32_mask(%q: !torch.vtensor<[1,4,8,16],f16>, %k: !torch.vtensor<[1,4,8,16],f16>, %v: !torch.vtensor<[1,4,8,16],f16>, %m: !torch.vtensor<[1,1,8,8],f32>) -> !torch.vtensor<[1,4,8,16],f16> {
  %0 = "kiln.attention"(%q, %k, %v, %m) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 2.500000e-01 : f64} : (!torch.vtensor<[1,4,8,16],f16>, !torch.vtensor<[1,4,8,16],f16>, !torch.vtensor<[1,4,8,16],f16>, !torch.vtensor<[1,1,8,8],f32>) -> !torch.vtensor<[1,4,8,16],f16>
  return %0 : !torch.vtensor<[1,4,8,16],f16>
}

// -----

// kiln.linear out_in → torch.aten.linear(x, w, b).
// CHECK-LABEL: func.func @linear_out_in(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,8],f32>, %[[W:[^:]+]]: !torch.vtensor<[4,8],f32>, %[[B:[^:]+]]: !torch.vtensor<[4],f32>)
// CHECK-NOT:     kiln.
// CHECK:         %[[Y:.+]] = torch.aten.linear %[[X]], %[[W]], %[[B]] : !torch.vtensor<[2,8],f32>, !torch.vtensor<[4,8],f32>, !torch.vtensor<[4],f32> -> !torch.vtensor<[2,4],f32>
// CHECK-NEXT:    return %[[Y]]
func.func @linear_out_in(%x: !torch.vtensor<[2,8],f32>, %w: !torch.vtensor<[4,8],f32>, %b: !torch.vtensor<[4],f32>) -> !torch.vtensor<[2,4],f32> {
  %0 = "kiln.linear"(%x, %w, %b) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1>, weight_layout = "out_in"} : (!torch.vtensor<[2,8],f32>, !torch.vtensor<[4,8],f32>, !torch.vtensor<[4],f32>) -> !torch.vtensor<[2,4],f32>
  return %0 : !torch.vtensor<[2,4],f32>
}

// -----

// kiln.linear in_out, 2-D input with a bias → torch.aten.addmm(b, x, w, 1, 1).
// CHECK-LABEL: func.func @linear_in_out_bias(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,8],f32>, %[[W:[^:]+]]: !torch.vtensor<[8,4],f32>, %[[B:[^:]+]]: !torch.vtensor<[4],f32>)
// CHECK-NOT:     kiln.
// CHECK:         %[[ONE:.+]] = torch.constant.int 1
// CHECK-NEXT:    %[[Y:.+]] = torch.aten.addmm %[[B]], %[[X]], %[[W]], %[[ONE]], %[[ONE]] : !torch.vtensor<[4],f32>, !torch.vtensor<[2,8],f32>, !torch.vtensor<[8,4],f32>, !torch.int, !torch.int -> !torch.vtensor<[2,4],f32>
// CHECK-NEXT:    return %[[Y]]
func.func @linear_in_out_bias(%x: !torch.vtensor<[2,8],f32>, %w: !torch.vtensor<[8,4],f32>, %b: !torch.vtensor<[4],f32>) -> !torch.vtensor<[2,4],f32> {
  %0 = "kiln.linear"(%x, %w, %b) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1>, weight_layout = "in_out"} : (!torch.vtensor<[2,8],f32>, !torch.vtensor<[8,4],f32>, !torch.vtensor<[4],f32>) -> !torch.vtensor<[2,4],f32>
  return %0 : !torch.vtensor<[2,4],f32>
}

// -----

// activation = "gelu" → torch.aten.gelu(y, "none") after the linear.
// CHECK-LABEL: func.func @linear_gelu(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,8],f32>, %[[W:[^:]+]]: !torch.vtensor<[4,8],f32>)
// CHECK:         %[[NONE:.+]] = torch.constant.none
// CHECK:         %[[Y:.+]] = torch.aten.linear %[[X]], %[[W]], %[[NONE]] :
// CHECK:         %[[APPROX:.+]] = torch.constant.str "none"
// CHECK:         %[[G:.+]] = torch.aten.gelu %[[Y]], %[[APPROX]] : !torch.vtensor<[2,4],f32>, !torch.str -> !torch.vtensor<[2,4],f32>
// CHECK-NEXT:    return %[[G]]
func.func @linear_gelu(%x: !torch.vtensor<[2,8],f32>, %w: !torch.vtensor<[4,8],f32>) -> !torch.vtensor<[2,4],f32> {
  %0 = "kiln.linear"(%x, %w) {activation = "gelu", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[2,8],f32>, !torch.vtensor<[4,8],f32>) -> !torch.vtensor<[2,4],f32>
  return %0 : !torch.vtensor<[2,4],f32>
}

// -----

// in_out on a rank-3 input with a bias → matmul + add.Tensor (addmm is 2-D only), then
// activation = "gelu_tanh" → the arithmetic tanh GELU (what GPT-2's gelu_new computes; closer to
// eager than IREE's lowering of aten.gelu "tanh").
// CHECK-LABEL: func.func @linear_in_out_rank3_gelu_tanh(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[3,2,8],f32>, %[[W:[^:]+]]: !torch.vtensor<[8,4],f32>, %[[B:[^:]+]]: !torch.vtensor<[4],f32>)
// CHECK-NOT:     torch.aten.addmm
// CHECK:         %[[M:.+]] = torch.aten.matmul %[[X]], %[[W]] : !torch.vtensor<[3,2,8],f32>, !torch.vtensor<[8,4],f32> -> !torch.vtensor<[3,2,4],f32>
// CHECK:         %[[Y:.+]] = torch.aten.add.Tensor %[[M]], %[[B]], %{{.+}} :
// CHECK:         %[[SQ:.+]] = torch.aten.mul.Tensor %[[Y]], %[[Y]] :
// CHECK:         %[[CUBE:.+]] = torch.aten.mul.Tensor %[[SQ]], %[[Y]] :
// CHECK:         torch.constant.float 4.471500e-02
// CHECK:         %[[T:.+]] = torch.aten.tanh %{{.+}} :
// CHECK:         %[[HALF:.+]] = torch.aten.mul.Scalar %[[Y]], %{{.+}} :
// CHECK:         %[[ONE_PLUS:.+]] = torch.aten.add.Scalar %[[T]], %{{.+}}, %{{.+}} :
// CHECK:         %[[G:.+]] = torch.aten.mul.Tensor %[[HALF]], %[[ONE_PLUS]] :
// CHECK-NOT:     torch.aten.gelu
// CHECK:         return %[[G]]
func.func @linear_in_out_rank3_gelu_tanh(%x: !torch.vtensor<[3,2,8],f32>, %w: !torch.vtensor<[8,4],f32>, %b: !torch.vtensor<[4],f32>) -> !torch.vtensor<[3,2,4],f32> {
  %0 = "kiln.linear"(%x, %w, %b) {activation = "gelu_tanh", operandSegmentSizes = array<i32: 1, 1, 1>, weight_layout = "in_out"} : (!torch.vtensor<[3,2,8],f32>, !torch.vtensor<[8,4],f32>, !torch.vtensor<[4],f32>) -> !torch.vtensor<[3,2,4],f32>
  return %0 : !torch.vtensor<[3,2,4],f32>
}

// -----

// in_out without a bias → plain matmul, then activation = "relu" → torch.aten.relu.
// CHECK-LABEL: func.func @linear_in_out_relu(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,8],f32>, %[[W:[^:]+]]: !torch.vtensor<[8,4],f32>)
// CHECK:         %[[M:.+]] = torch.aten.matmul %[[X]], %[[W]] :
// CHECK-NEXT:    %[[R:.+]] = torch.aten.relu %[[M]] : !torch.vtensor<[2,4],f32> -> !torch.vtensor<[2,4],f32>
// CHECK-NEXT:    return %[[R]]
func.func @linear_in_out_relu(%x: !torch.vtensor<[2,8],f32>, %w: !torch.vtensor<[8,4],f32>) -> !torch.vtensor<[2,4],f32> {
  %0 = "kiln.linear"(%x, %w) {activation = "relu", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "in_out"} : (!torch.vtensor<[2,8],f32>, !torch.vtensor<[8,4],f32>) -> !torch.vtensor<[2,4],f32>
  return %0 : !torch.vtensor<[2,4],f32>
}

// -----

// activation = "silu" → torch.aten.silu.
// CHECK-LABEL: func.func @linear_silu(
// CHECK:         %[[Y:.+]] = torch.aten.linear
// CHECK-NEXT:    %[[S:.+]] = torch.aten.silu %[[Y]] : !torch.vtensor<[2,4],f32> -> !torch.vtensor<[2,4],f32>
// CHECK-NEXT:    return %[[S]]
func.func @linear_silu(%x: !torch.vtensor<[2,8],f32>, %w: !torch.vtensor<[4,8],f32>, %b: !torch.vtensor<[4],f32>) -> !torch.vtensor<[2,4],f32> {
  %0 = "kiln.linear"(%x, %w, %b) {activation = "silu", operandSegmentSizes = array<i32: 1, 1, 1>, weight_layout = "out_in"} : (!torch.vtensor<[2,8],f32>, !torch.vtensor<[4,8],f32>, !torch.vtensor<[4],f32>) -> !torch.vtensor<[2,4],f32>
  return %0 : !torch.vtensor<[2,4],f32>
}

// -----

// activation = "swiglu" (gated) on a weight argument [8,4]: its halves are sliced on the
// out-features axis, one linear each, SiLU of the gate times the up projection ([2,4]).
// CHECK-LABEL: func.func @linear_swiglu(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,4],f32>, %[[W:[^:]+]]: !torch.vtensor<[8,4],f32>)
// CHECK:         %[[WG:.+]] = torch.aten.slice.Tensor %[[W]], %int0{{[_0-9]*}}, %int0{{[_0-9]*}}, %int4{{[_0-9]*}}, %int1{{[_0-9]*}} : !torch.vtensor<[8,4],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[4,4],f32>
// CHECK:         %[[WU:.+]] = torch.aten.slice.Tensor %[[W]], %int0{{[_0-9]*}}, %int4{{[_0-9]*}}, %int8{{[_0-9]*}}, %int1{{[_0-9]*}} : !torch.vtensor<[8,4],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[4,4],f32>
// CHECK:         %[[G:.+]] = torch.aten.linear %[[X]], %[[WG]], %{{.+}} : !torch.vtensor<[2,4],f32>, !torch.vtensor<[4,4],f32>, !torch.none -> !torch.vtensor<[2,4],f32>
// CHECK:         %[[S:.+]] = torch.aten.silu %[[G]] : !torch.vtensor<[2,4],f32> -> !torch.vtensor<[2,4],f32>
// CHECK:         %[[U:.+]] = torch.aten.linear %[[X]], %[[WU]], %{{.+}} : !torch.vtensor<[2,4],f32>, !torch.vtensor<[4,4],f32>, !torch.none -> !torch.vtensor<[2,4],f32>
// CHECK:         %[[H:.+]] = torch.aten.mul.Tensor %[[S]], %[[U]] : !torch.vtensor<[2,4],f32>, !torch.vtensor<[2,4],f32> -> !torch.vtensor<[2,4],f32>
// CHECK-NEXT:    return %[[H]]
func.func @linear_swiglu(%x: !torch.vtensor<[2,4],f32>, %w: !torch.vtensor<[8,4],f32>) -> !torch.vtensor<[2,4],f32> {
  %0 = "kiln.linear"(%x, %w) {activation = "swiglu", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[2,4],f32>, !torch.vtensor<[8,4],f32>) -> !torch.vtensor<[2,4],f32>
  return %0 : !torch.vtensor<[2,4],f32>
}

// -----

// swiglu on what kiln-raise-swiglu builds, a cat of the gate and up weights ("in_out", with
// biases): the linears take the cat's parts, no slice; the dead cats are left to canonicalize.
// CHECK-LABEL: func.func @linear_swiglu_of_cat(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[3,2],f32>, %[[WG:[^:]+]]: !torch.vtensor<[2,4],f32>, %[[WU:[^:]+]]: !torch.vtensor<[2,4],f32>, %[[BG:[^:]+]]: !torch.vtensor<[4],f32>, %[[BU:[^:]+]]: !torch.vtensor<[4],f32>)
// CHECK-NOT:     torch.aten.slice.Tensor
// CHECK:         %[[G:.+]] = torch.aten.addmm %[[BG]], %[[X]], %[[WG]], {{.*}} -> !torch.vtensor<[3,4],f32>
// CHECK:         %[[S:.+]] = torch.aten.silu %[[G]]
// CHECK:         %[[U:.+]] = torch.aten.addmm %[[BU]], %[[X]], %[[WU]], {{.*}} -> !torch.vtensor<[3,4],f32>
// CHECK:         %[[H:.+]] = torch.aten.mul.Tensor %[[S]], %[[U]]
// CHECK-NEXT:    return %[[H]]
func.func @linear_swiglu_of_cat(%x: !torch.vtensor<[3,2],f32>, %wg: !torch.vtensor<[2,4],f32>, %wu: !torch.vtensor<[2,4],f32>, %bg: !torch.vtensor<[4],f32>, %bu: !torch.vtensor<[4],f32>) -> !torch.vtensor<[3,4],f32> {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %ws = torch.prim.ListConstruct %wg, %wu : (!torch.vtensor<[2,4],f32>, !torch.vtensor<[2,4],f32>) -> !torch.list<vtensor>
  %w = torch.aten.cat %ws, %int1 : !torch.list<vtensor>, !torch.int -> !torch.vtensor<[2,8],f32>
  %bs = torch.prim.ListConstruct %bg, %bu : (!torch.vtensor<[4],f32>, !torch.vtensor<[4],f32>) -> !torch.list<vtensor>
  %b = torch.aten.cat %bs, %int0 : !torch.list<vtensor>, !torch.int -> !torch.vtensor<[8],f32>
  %0 = "kiln.linear"(%x, %w, %b) {activation = "swiglu", operandSegmentSizes = array<i32: 1, 1, 1>, weight_layout = "in_out"} : (!torch.vtensor<[3,2],f32>, !torch.vtensor<[2,8],f32>, !torch.vtensor<[8],f32>) -> !torch.vtensor<[3,4],f32>
  return %0 : !torch.vtensor<[3,4],f32>
}
