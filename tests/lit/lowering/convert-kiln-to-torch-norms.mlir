// RUN: kiln-opt %s -p convert-kiln-to-torch --split-input-file | filecheck %s

// convert-kiln-to-torch for kiln.layer_norm / kiln.rms_norm (f32 mean/rsqrt arithmetic over the
// last axis, weight and bias applied in f32, result cast back), and for grouped-query attention:
// q is regrouped instead of repeating K/V (decode, and prefill of static lengths); a causal
// prefill of dynamic length repeats K/V.

// f16 layer norm with weight and bias: x → f32, mean, x − mean, mean of squares, + eps, rsqrt,
// ·, w → f32 and ·, b → f32 and +, back to f16.
// CHECK-LABEL: func.func @layer_norm_f16(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,8],f16>, %[[W:[^:]+]]: !torch.vtensor<[8],f16>, %[[B:[^:]+]]: !torch.vtensor<[8],f16>)
// CHECK-NOT:     kiln.
// CHECK:         %[[XF:.+]] = torch.aten.to.dtype %[[X]], %{{.+}} : !torch.vtensor<[2,8],f16>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[2,8],f32>
// CHECK:         %[[LAST:.+]] = torch.prim.ListConstruct %{{.+}} : (!torch.int) -> !torch.list<int>
// CHECK:         %[[MEAN:.+]] = torch.aten.mean.dim %[[XF]], %[[LAST]], %{{.+}} -> !torch.vtensor<[2,1],f32>
// CHECK:         %[[C:.+]] = torch.aten.sub.Tensor %[[XF]], %[[MEAN]], %{{.+}} -> !torch.vtensor<[2,8],f32>
// CHECK:         %[[SQ:.+]] = torch.aten.mul.Tensor %[[C]], %[[C]]
// CHECK:         %[[VAR:.+]] = torch.aten.mean.dim %[[SQ]], %[[LAST]], %{{.+}} -> !torch.vtensor<[2,1],f32>
// CHECK:         %[[EPS:.+]] = torch.constant.float 1.000000e-05
// CHECK:         %[[VE:.+]] = torch.aten.add.Scalar %[[VAR]], %[[EPS]], %{{.+}} -> !torch.vtensor<[2,1],f32>
// CHECK:         %[[R:.+]] = torch.aten.rsqrt %[[VE]] : !torch.vtensor<[2,1],f32> -> !torch.vtensor<[2,1],f32>
// CHECK:         %[[N:.+]] = torch.aten.mul.Tensor %[[C]], %[[R]] : !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,1],f32> -> !torch.vtensor<[2,8],f32>
// CHECK:         %[[WF:.+]] = torch.aten.to.dtype %[[W]], %{{.+}} -> !torch.vtensor<[8],f32>
// CHECK:         %[[NW:.+]] = torch.aten.mul.Tensor %[[N]], %[[WF]] : !torch.vtensor<[2,8],f32>, !torch.vtensor<[8],f32> -> !torch.vtensor<[2,8],f32>
// CHECK:         %[[BF:.+]] = torch.aten.to.dtype %[[B]], %{{.+}} -> !torch.vtensor<[8],f32>
// CHECK:         %[[NB:.+]] = torch.aten.add.Tensor %[[NW]], %[[BF]], %{{.+}} : !torch.vtensor<[2,8],f32>, !torch.vtensor<[8],f32>, !torch.int -> !torch.vtensor<[2,8],f32>
// CHECK:         %[[Y:.+]] = torch.aten.to.dtype %[[NB]], %{{.+}} -> !torch.vtensor<[2,8],f16>
// CHECK-NOT:     kiln.
// CHECK:         return %[[Y]]
func.func @layer_norm_f16(%x: !torch.vtensor<[2,8],f16>, %w: !torch.vtensor<[8],f16>, %b: !torch.vtensor<[8],f16>) -> !torch.vtensor<[2,8],f16> {
  %0 = "kiln.layer_norm"(%x, %w, %b) {epsilon = 1.000000e-05 : f64, operandSegmentSizes = array<i32: 1, 1, 1>} : (!torch.vtensor<[2,8],f16>, !torch.vtensor<[8],f16>, !torch.vtensor<[8],f16>) -> !torch.vtensor<[2,8],f16>
  return %0 : !torch.vtensor<[2,8],f16>
}

// -----

// f32 layer norm without weight or bias: no casts (the f32 cast of an f32 input is folded away),
// no weight mul, no bias add.
// CHECK-LABEL: func.func @layer_norm_f32_no_affine(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,8],f32>)
// CHECK-NOT:     torch.aten.to.dtype
// CHECK:         %[[MEAN:.+]] = torch.aten.mean.dim %[[X]],
// CHECK:         %[[C:.+]] = torch.aten.sub.Tensor %[[X]], %[[MEAN]],
// CHECK:         %[[R:.+]] = torch.aten.rsqrt
// CHECK:         %[[N:.+]] = torch.aten.mul.Tensor %[[C]], %[[R]]
// CHECK-NOT:     torch.aten.add.Tensor
// CHECK-NOT:     torch.aten.to.dtype
// CHECK-NOT:     kiln.
// CHECK:         return %[[N]]
func.func @layer_norm_f32_no_affine(%x: !torch.vtensor<[2,8],f32>) -> !torch.vtensor<[2,8],f32> {
  %0 = "kiln.layer_norm"(%x) {epsilon = 1.000000e-05 : f64, operandSegmentSizes = array<i32: 1, 0, 0>} : (!torch.vtensor<[2,8],f32>) -> !torch.vtensor<[2,8],f32>
  return %0 : !torch.vtensor<[2,8],f32>
}

// -----

// f16 RMS norm as Llama computes it: x → f32, mean of squares (no centring), + eps, rsqrt, ·,
// back to f16, then · the f16 weight.
// CHECK-LABEL: func.func @rms_norm_f16(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,8],f16>, %[[W:[^:]+]]: !torch.vtensor<[8],f16>)
// CHECK-NOT:     kiln.
// CHECK-NOT:     torch.aten.sub.Tensor
// CHECK:         %[[XF:.+]] = torch.aten.to.dtype %[[X]], %{{.+}} -> !torch.vtensor<[2,8],f32>
// CHECK:         %[[SQ:.+]] = torch.aten.mul.Tensor %[[XF]], %[[XF]]
// CHECK:         %[[MS:.+]] = torch.aten.mean.dim %[[SQ]], %{{.+}} -> !torch.vtensor<[2,1],f32>
// CHECK:         %[[EPS:.+]] = torch.constant.float 9.9999999999999995E-7
// CHECK:         %[[ME:.+]] = torch.aten.add.Scalar %[[MS]], %[[EPS]], %{{.+}} -> !torch.vtensor<[2,1],f32>
// CHECK:         %[[R:.+]] = torch.aten.rsqrt %[[ME]]
// CHECK:         %[[N:.+]] = torch.aten.mul.Tensor %[[XF]], %[[R]] : !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,1],f32> -> !torch.vtensor<[2,8],f32>
// CHECK:         %[[NH:.+]] = torch.aten.to.dtype %[[N]], %{{.+}} -> !torch.vtensor<[2,8],f16>
// CHECK:         %[[Y:.+]] = torch.aten.mul.Tensor %[[NH]], %[[W]] : !torch.vtensor<[2,8],f16>, !torch.vtensor<[8],f16> -> !torch.vtensor<[2,8],f16>
// CHECK-NOT:     kiln.
// CHECK:         return %[[Y]]
func.func @rms_norm_f16(%x: !torch.vtensor<[2,8],f16>, %w: !torch.vtensor<[8],f16>) -> !torch.vtensor<[2,8],f16> {
  %0 = "kiln.rms_norm"(%x, %w) {epsilon = 1.000000e-06 : f64, operandSegmentSizes = array<i32: 1, 1>} : (!torch.vtensor<[2,8],f16>, !torch.vtensor<[8],f16>) -> !torch.vtensor<[2,8],f16>
  return %0 : !torch.vtensor<[2,8],f16>
}

// -----

// Grouped-query decode: 8 query heads, 2 kv heads, one query token. q [1,8,1,16] is reshaped to
// [1,2,4,16] (the 4 query heads of a kv head become 4 rows), K and V are used as they are (no
// expand), and the [1,2,4,16] product is reshaped back to [1,8,1,16].
// CHECK-LABEL: func.func @gqa_decode(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,8,1,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,2,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,2,8,16],f32>)
// CHECK-NOT:     torch.aten.expand
// CHECK:         %[[QG:.+]] = torch.aten.reshape %[[Q]], %{{.+}} : !torch.vtensor<[1,8,1,16],f32>, !torch.list<int> -> !torch.vtensor<[1,2,4,16],f32>
// CHECK-NOT:     torch.aten.expand
// CHECK:         %[[KT:.+]] = torch.aten.transpose.int %[[K]], %{{.+}}, %{{.+}} : !torch.vtensor<[1,2,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,2,16,8],f32>
// CHECK:         %[[S:.+]] = torch.aten.matmul %[[QG]], %[[KT]] : !torch.vtensor<[1,2,4,16],f32>, !torch.vtensor<[1,2,16,8],f32> -> !torch.vtensor<[1,2,4,8],f32>
// CHECK:         %[[P:.+]] = torch.aten._softmax
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[P]], %[[V]] : !torch.vtensor<[1,2,4,8],f32>, !torch.vtensor<[1,2,8,16],f32> -> !torch.vtensor<[1,2,4,16],f32>
// CHECK:         %[[Y:.+]] = torch.aten.reshape %[[O]], %{{.+}} : !torch.vtensor<[1,2,4,16],f32>, !torch.list<int> -> !torch.vtensor<[1,8,1,16],f32>
// CHECK-NOT:     torch.aten.expand
// CHECK-NOT:     kiln.
// CHECK:         return %[[Y]]
func.func @gqa_decode(%q: !torch.vtensor<[1,8,1,16],f32>, %k: !torch.vtensor<[1,2,8,16],f32>, %v: !torch.vtensor<[1,2,8,16],f32>) -> !torch.vtensor<[1,8,1,16],f32> {
  %0 = "kiln.attention"(%q, %k, %v) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 2.500000e-01 : f64} : (!torch.vtensor<[1,8,1,16],f32>, !torch.vtensor<[1,2,8,16],f32>, !torch.vtensor<[1,2,8,16],f32>) -> !torch.vtensor<[1,8,1,16],f32>
  return %0 : !torch.vtensor<[1,8,1,16],f32>
}

// -----

// Same heads, 8 query tokens (prefill), causal: q is regrouped the same way ([1,2,32,16]: the
// 4 query heads of a kv head stacked as rows), K and V are not repeated, and the [8, 8] causal
// bias is tiled 4 times down the rows.
// CHECK-LABEL: func.func @gqa_prefill(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,8,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,2,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,2,8,16],f32>)
// CHECK-NOT:     torch.aten.expand
// CHECK:         %[[QG:.+]] = torch.aten.reshape %[[Q]], %{{.+}} : !torch.vtensor<[1,8,8,16],f32>, !torch.list<int> -> !torch.vtensor<[1,2,32,16],f32>
// CHECK:         %[[KT:.+]] = torch.aten.transpose.int %[[K]], %{{.+}}, %{{.+}} : !torch.vtensor<[1,2,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,2,16,8],f32>
// CHECK:         torch.aten.matmul %[[QG]], %[[KT]] : !torch.vtensor<[1,2,32,16],f32>, !torch.vtensor<[1,2,16,8],f32> -> !torch.vtensor<[1,2,32,8],f32>
// CHECK:         %[[BIAS:.+]] = torch.vtensor.literal(dense<{{.+}}> : tensor<32x8xf32>)
// CHECK:         torch.aten.add.Tensor %{{.+}}, %[[BIAS]], %{{.+}} : !torch.vtensor<[1,2,32,8],f32>, !torch.vtensor<[32,8],f32>, !torch.int -> !torch.vtensor<[1,2,32,8],f32>
// CHECK:         %[[P:.+]] = torch.aten._softmax
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[P]], %[[V]] : !torch.vtensor<[1,2,32,8],f32>, !torch.vtensor<[1,2,8,16],f32> -> !torch.vtensor<[1,2,32,16],f32>
// CHECK:         %[[Y:.+]] = torch.aten.reshape %[[O]], %{{.+}} -> !torch.vtensor<[1,8,8,16],f32>
// CHECK-NOT:     torch.aten.expand
// CHECK-NOT:     kiln.
// CHECK:         return %[[Y]]
func.func @gqa_prefill(%q: !torch.vtensor<[1,8,8,16],f32>, %k: !torch.vtensor<[1,2,8,16],f32>, %v: !torch.vtensor<[1,2,8,16],f32>) -> !torch.vtensor<[1,8,8,16],f32> {
  %0 = "kiln.attention"(%q, %k, %v) {causal = true, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 2.500000e-01 : f64} : (!torch.vtensor<[1,8,8,16],f32>, !torch.vtensor<[1,2,8,16],f32>, !torch.vtensor<[1,2,8,16],f32>) -> !torch.vtensor<[1,8,8,16],f32>
  return %0 : !torch.vtensor<[1,8,8,16],f32>
}

// -----

// Causal prefill of a dynamic length: the tiled bias needs static lengths, so K and V are
// repeated to the 8 query heads (unsqueeze, expand [1,2,4,?,16], reshape) instead.
// CHECK-LABEL: func.func @gqa_prefill_dynamic_causal(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,8,?,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,2,?,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,2,?,16],f32>)
// CHECK:         %[[KU:.+]] = torch.aten.unsqueeze %[[K]], %{{.+}} -> !torch.vtensor<[1,2,1,?,16],f32>
// CHECK:         %[[KE:.+]] = torch.aten.expand %[[KU]], %{{.+}} -> !torch.vtensor<[1,2,4,?,16],f32>
// CHECK:         %[[KR:.+]] = torch.aten.reshape %[[KE]], %{{.+}} -> !torch.vtensor<[1,8,?,16],f32>
// CHECK:         %[[VU:.+]] = torch.aten.unsqueeze %[[V]], %{{.+}} -> !torch.vtensor<[1,2,1,?,16],f32>
// CHECK:         %[[VE:.+]] = torch.aten.expand %[[VU]], %{{.+}} -> !torch.vtensor<[1,2,4,?,16],f32>
// CHECK:         %[[VR:.+]] = torch.aten.reshape %[[VE]], %{{.+}} -> !torch.vtensor<[1,8,?,16],f32>
// CHECK:         %[[KT:.+]] = torch.aten.transpose.int %[[KR]],
// CHECK:         torch.aten.matmul %[[Q]], %[[KT]] : !torch.vtensor<[1,8,?,16],f32>, !torch.vtensor<[1,8,16,?],f32> -> !torch.vtensor<[1,8,?,?],f32>
// CHECK:         %[[P:.+]] = torch.aten._softmax
// CHECK:         %[[O:.+]] = torch.aten.matmul %[[P]], %[[VR]] : !torch.vtensor<[1,8,?,?],f32>, !torch.vtensor<[1,8,?,16],f32> -> !torch.vtensor<[1,8,?,16],f32>
// CHECK-NOT:     kiln.
// CHECK:         return %[[O]]
func.func @gqa_prefill_dynamic_causal(%q: !torch.vtensor<[1,8,?,16],f32>, %k: !torch.vtensor<[1,2,?,16],f32>, %v: !torch.vtensor<[1,2,?,16],f32>) -> !torch.vtensor<[1,8,?,16],f32> {
  %0 = "kiln.attention"(%q, %k, %v) {causal = true, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 2.500000e-01 : f64} : (!torch.vtensor<[1,8,?,16],f32>, !torch.vtensor<[1,2,?,16],f32>, !torch.vtensor<[1,2,?,16],f32>) -> !torch.vtensor<[1,8,?,16],f32>
  return %0 : !torch.vtensor<[1,8,?,16],f32>
}

// -----

// kiln.add_rms_norm: the residual sum (second result) and the RMS norm of it (first result),
// same arithmetic as kiln.rms_norm on the sum.
// CHECK-LABEL: func.func @add_rms_norm(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,8],f32>, %[[R:[^:]+]]: !torch.vtensor<[2,8],f32>, %[[W:[^:]+]]: !torch.vtensor<[8],f32>)
// CHECK:         %[[S:.+]] = torch.aten.add.Tensor %[[X]], %[[R]], %{{.+}} : !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32>, !torch.int -> !torch.vtensor<[2,8],f32>
// CHECK:         %[[SQ:.+]] = torch.aten.mul.Tensor %[[S]], %[[S]]
// CHECK:         torch.aten.rsqrt
// CHECK:         %[[N:.+]] = torch.aten.mul.Tensor %[[S]], %{{.+}} : !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,1],f32> -> !torch.vtensor<[2,8],f32>
// CHECK:         %[[Y:.+]] = torch.aten.mul.Tensor %[[N]], %[[W]]
// CHECK-NOT:     kiln.
// CHECK:         return %[[Y]], %[[S]]
func.func @add_rms_norm(%x: !torch.vtensor<[2,8],f32>, %r: !torch.vtensor<[2,8],f32>, %w: !torch.vtensor<[8],f32>) -> (!torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32>) {
  %y:2 = "kiln.add_rms_norm"(%x, %r, %w) {epsilon = 1.000000e-06 : f64, operandSegmentSizes = array<i32: 1, 1, 1>} : (!torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32>, !torch.vtensor<[8],f32>) -> (!torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32>)
  return %y#0, %y#1 : !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32>
}

// -----

// kiln.add_layer_norm with a bias and no weight (segments 1, 1, 0, 1): the bias is added, no
// weight multiply.
// CHECK-LABEL: func.func @add_layer_norm_bias_only(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,8],f32>, %[[R:[^:]+]]: !torch.vtensor<[2,8],f32>, %[[B:[^:]+]]: !torch.vtensor<[8],f32>)
// CHECK:         %[[S:.+]] = torch.aten.add.Tensor %[[X]], %[[R]]
// CHECK:         torch.aten.sub.Tensor %[[S]]
// CHECK:         %[[N:.+]] = torch.aten.mul.Tensor %{{.+}}, %{{.+}} : !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,1],f32> -> !torch.vtensor<[2,8],f32>
// CHECK-NOT:     torch.aten.mul.Tensor
// CHECK:         %[[Y:.+]] = torch.aten.add.Tensor %[[N]], %[[B]], %{{.+}} : !torch.vtensor<[2,8],f32>, !torch.vtensor<[8],f32>, !torch.int -> !torch.vtensor<[2,8],f32>
// CHECK:         return %[[Y]], %[[S]]
func.func @add_layer_norm_bias_only(%x: !torch.vtensor<[2,8],f32>, %r: !torch.vtensor<[2,8],f32>, %b: !torch.vtensor<[8],f32>) -> (!torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32>) {
  %y:2 = "kiln.add_layer_norm"(%x, %r, %b) {epsilon = 1.000000e-05 : f64, operandSegmentSizes = array<i32: 1, 1, 0, 1>} : (!torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32>, !torch.vtensor<[8],f32>) -> (!torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32>)
  return %y#0, %y#1 : !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32>
}
