// RUN: kiln-opt %s -p kiln-raise-activations --split-input-file | filecheck %s

// kiln-raise-activations: GELU (erf and tanh forms) and SiLU written out in arithmetic → one
// torch.aten.gelu / torch.aten.silu. Positive cases first, then patterns the pass must leave
// alone. The rewrite leaves some dead inner ops (e.g. x·0.7071, pow(x, 3)) for canonicalize;
// the CHECK lines only look at the ops that decide the result.

// BERT's erf GELU: (0.5·x) · (1 + erf(x · 0.70710678)) → gelu(x, "none").
// CHECK-LABEL: func.func @gelu_erf(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,8],f32>)
// CHECK-NOT:     torch.aten.erf
// CHECK:         %[[A:.+]] = torch.constant.str "none"
// CHECK-NEXT:    %[[Y:.+]] = torch.aten.gelu %[[X]], %[[A]] : !torch.vtensor<[2,8],f32>, !torch.str -> !torch.vtensor<[2,8],f32>
// CHECK-NEXT:    return %[[Y]]
func.func @gelu_erf(%x: !torch.vtensor<[2,8],f32>) -> !torch.vtensor<[2,8],f32> {
  %half = torch.constant.float 5.000000e-01
  %k = torch.constant.float 0.70710678
  %one = torch.constant.float 1.000000e+00
  %int1 = torch.constant.int 1
  %hx = torch.aten.mul.Scalar %x, %half : !torch.vtensor<[2,8],f32>, !torch.float -> !torch.vtensor<[2,8],f32>
  %s = torch.aten.mul.Scalar %x, %k : !torch.vtensor<[2,8],f32>, !torch.float -> !torch.vtensor<[2,8],f32>
  %e = torch.aten.erf %s : !torch.vtensor<[2,8],f32> -> !torch.vtensor<[2,8],f32>
  %p = torch.aten.add.Scalar %e, %one, %int1 : !torch.vtensor<[2,8],f32>, !torch.float, !torch.int -> !torch.vtensor<[2,8],f32>
  %y = torch.aten.mul.Tensor %hx, %p : !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32> -> !torch.vtensor<[2,8],f32>
  return %y : !torch.vtensor<[2,8],f32>
}

// -----

// x / 1.41421356 inside erf, factors in the other order: ((1 + erf) · x) · 0.5.
// CHECK-LABEL: func.func @gelu_erf_div(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,8],f32>)
// CHECK-NOT:     torch.aten.erf
// CHECK:         %[[A:.+]] = torch.constant.str "none"
// CHECK-NEXT:    %[[Y:.+]] = torch.aten.gelu %[[X]], %[[A]] : !torch.vtensor<[2,8],f32>, !torch.str -> !torch.vtensor<[2,8],f32>
// CHECK-NEXT:    return %[[Y]]
func.func @gelu_erf_div(%x: !torch.vtensor<[2,8],f32>) -> !torch.vtensor<[2,8],f32> {
  %half = torch.constant.float 5.000000e-01
  %sqrt2 = torch.constant.float 1.41421356
  %one = torch.constant.float 1.000000e+00
  %int1 = torch.constant.int 1
  %s = torch.aten.div.Scalar %x, %sqrt2 : !torch.vtensor<[2,8],f32>, !torch.float -> !torch.vtensor<[2,8],f32>
  %e = torch.aten.erf %s : !torch.vtensor<[2,8],f32> -> !torch.vtensor<[2,8],f32>
  %p = torch.aten.add.Scalar %e, %one, %int1 : !torch.vtensor<[2,8],f32>, !torch.float, !torch.int -> !torch.vtensor<[2,8],f32>
  %xp = torch.aten.mul.Tensor %p, %x : !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32> -> !torch.vtensor<[2,8],f32>
  %y = torch.aten.mul.Scalar %xp, %half : !torch.vtensor<[2,8],f32>, !torch.float -> !torch.vtensor<[2,8],f32>
  return %y : !torch.vtensor<[2,8],f32>
}

// -----

// 0.5 and 1 as 0-d tensor literals, 1 on the left of the add, (1 + erf) · (0.5 · x).
// CHECK-LABEL: func.func @gelu_erf_literal_half(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,8],f32>)
// CHECK-NOT:     torch.aten.erf
// CHECK:         %[[A:.+]] = torch.constant.str "none"
// CHECK-NEXT:    %[[Y:.+]] = torch.aten.gelu %[[X]], %[[A]] : !torch.vtensor<[2,8],f32>, !torch.str -> !torch.vtensor<[2,8],f32>
// CHECK-NEXT:    return %[[Y]]
func.func @gelu_erf_literal_half(%x: !torch.vtensor<[2,8],f32>) -> !torch.vtensor<[2,8],f32> {
  %half = torch.vtensor.literal(dense<5.000000e-01> : tensor<f32>) : !torch.vtensor<[],f32>
  %onet = torch.vtensor.literal(dense<1.000000e+00> : tensor<f32>) : !torch.vtensor<[],f32>
  %k = torch.constant.float 0.70710678118654757
  %int1 = torch.constant.int 1
  %s = torch.aten.mul.Scalar %x, %k : !torch.vtensor<[2,8],f32>, !torch.float -> !torch.vtensor<[2,8],f32>
  %e = torch.aten.erf %s : !torch.vtensor<[2,8],f32> -> !torch.vtensor<[2,8],f32>
  %p = torch.aten.add.Tensor %onet, %e, %int1 : !torch.vtensor<[],f32>, !torch.vtensor<[2,8],f32>, !torch.int -> !torch.vtensor<[2,8],f32>
  %hx = torch.aten.mul.Tensor %half, %x : !torch.vtensor<[],f32>, !torch.vtensor<[2,8],f32> -> !torch.vtensor<[2,8],f32>
  %y = torch.aten.mul.Tensor %p, %hx : !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32> -> !torch.vtensor<[2,8],f32>
  return %y : !torch.vtensor<[2,8],f32>
}

// -----

// GPT-2's gelu_new as exported: 0.5·x · (1 + tanh(0.7978845608 · (x + 0.044715 · pow(x, 3)))).
// CHECK-LABEL: func.func @gelu_tanh(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,8],f32>)
// CHECK-NOT:     torch.aten.tanh
// CHECK:         %[[A:.+]] = torch.constant.str "tanh"
// CHECK-NEXT:    %[[Y:.+]] = torch.aten.gelu %[[X]], %[[A]] : !torch.vtensor<[2,8],f32>, !torch.str -> !torch.vtensor<[2,8],f32>
// CHECK-NEXT:    return %[[Y]]
func.func @gelu_tanh(%x: !torch.vtensor<[2,8],f32>) -> !torch.vtensor<[2,8],f32> {
  %float5.000000e-01 = torch.constant.float 5.000000e-01
  %0 = torch.aten.mul.Scalar %x, %float5.000000e-01 : !torch.vtensor<[2,8],f32>, !torch.float -> !torch.vtensor<[2,8],f32>
  %float3.000000e00 = torch.constant.float 3.000000e+00
  %1 = torch.aten.pow.Tensor_Scalar %x, %float3.000000e00 : !torch.vtensor<[2,8],f32>, !torch.float -> !torch.vtensor<[2,8],f32>
  %float4.471500e-02 = torch.constant.float 4.471500e-02
  %2 = torch.aten.mul.Scalar %1, %float4.471500e-02 : !torch.vtensor<[2,8],f32>, !torch.float -> !torch.vtensor<[2,8],f32>
  %int1 = torch.constant.int 1
  %3 = torch.aten.add.Tensor %x, %2, %int1 : !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32>, !torch.int -> !torch.vtensor<[2,8],f32>
  %float7.978850e-01 = torch.constant.float 0.79788456080286541
  %4 = torch.aten.mul.Scalar %3, %float7.978850e-01 : !torch.vtensor<[2,8],f32>, !torch.float -> !torch.vtensor<[2,8],f32>
  %5 = torch.aten.tanh %4 : !torch.vtensor<[2,8],f32> -> !torch.vtensor<[2,8],f32>
  %float1.000000e00 = torch.constant.float 1.000000e+00
  %6 = torch.aten.add.Scalar %5, %float1.000000e00, %int1 : !torch.vtensor<[2,8],f32>, !torch.float, !torch.int -> !torch.vtensor<[2,8],f32>
  %7 = torch.aten.mul.Tensor %0, %6 : !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32> -> !torch.vtensor<[2,8],f32>
  return %7 : !torch.vtensor<[2,8],f32>
}

// -----

// x · sigmoid(x) → silu(x).
// CHECK-LABEL: func.func @silu(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,8],f32>)
// CHECK-NOT:     torch.aten.sigmoid
// CHECK:         %[[Y:.+]] = torch.aten.silu %[[X]] : !torch.vtensor<[2,8],f32> -> !torch.vtensor<[2,8],f32>
// CHECK-NEXT:    return %[[Y]]
func.func @silu(%x: !torch.vtensor<[2,8],f32>) -> !torch.vtensor<[2,8],f32> {
  %s = torch.aten.sigmoid %x : !torch.vtensor<[2,8],f32> -> !torch.vtensor<[2,8],f32>
  %y = torch.aten.mul.Tensor %x, %s : !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32> -> !torch.vtensor<[2,8],f32>
  return %y : !torch.vtensor<[2,8],f32>
}

// -----

// sigmoid(x) · x, f16 → silu(x).
// CHECK-LABEL: func.func @silu_sigmoid_first(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,8],f16>)
// CHECK-NOT:     torch.aten.sigmoid
// CHECK:         %[[Y:.+]] = torch.aten.silu %[[X]] : !torch.vtensor<[2,8],f16> -> !torch.vtensor<[2,8],f16>
// CHECK-NEXT:    return %[[Y]]
func.func @silu_sigmoid_first(%x: !torch.vtensor<[2,8],f16>) -> !torch.vtensor<[2,8],f16> {
  %s = torch.aten.sigmoid %x : !torch.vtensor<[2,8],f16> -> !torch.vtensor<[2,8],f16>
  %y = torch.aten.mul.Tensor %s, %x : !torch.vtensor<[2,8],f16>, !torch.vtensor<[2,8],f16> -> !torch.vtensor<[2,8],f16>
  return %y : !torch.vtensor<[2,8],f16>
}

// -----

// Negative: 0.6 instead of 0.5.
// CHECK-LABEL: func.func @gelu_erf_wrong_half(
// CHECK-NOT:     torch.aten.gelu
// CHECK:         %[[E:.+]] = torch.aten.erf
// CHECK:         %[[P:.+]] = torch.aten.add.Scalar %[[E]],
// CHECK:         %[[Y:.+]] = torch.aten.mul.Tensor %{{.+}}, %[[P]]
// CHECK-NEXT:    return %[[Y]]
func.func @gelu_erf_wrong_half(%x: !torch.vtensor<[2,8],f32>) -> !torch.vtensor<[2,8],f32> {
  %half = torch.constant.float 6.000000e-01
  %k = torch.constant.float 0.70710678118654757
  %one = torch.constant.float 1.000000e+00
  %int1 = torch.constant.int 1
  %hx = torch.aten.mul.Scalar %x, %half : !torch.vtensor<[2,8],f32>, !torch.float -> !torch.vtensor<[2,8],f32>
  %s = torch.aten.mul.Scalar %x, %k : !torch.vtensor<[2,8],f32>, !torch.float -> !torch.vtensor<[2,8],f32>
  %e = torch.aten.erf %s : !torch.vtensor<[2,8],f32> -> !torch.vtensor<[2,8],f32>
  %p = torch.aten.add.Scalar %e, %one, %int1 : !torch.vtensor<[2,8],f32>, !torch.float, !torch.int -> !torch.vtensor<[2,8],f32>
  %y = torch.aten.mul.Tensor %hx, %p : !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32> -> !torch.vtensor<[2,8],f32>
  return %y : !torch.vtensor<[2,8],f32>
}

// -----

// Negative: 0.05 instead of 0.044715 in the cubic term.
// CHECK-LABEL: func.func @gelu_tanh_wrong_cubic(
// CHECK-NOT:     torch.aten.gelu
// CHECK:         %[[T:.+]] = torch.aten.tanh
// CHECK:         %[[P:.+]] = torch.aten.add.Scalar %[[T]],
// CHECK:         %[[Y:.+]] = torch.aten.mul.Tensor %{{.+}}, %[[P]]
// CHECK-NEXT:    return %[[Y]]
func.func @gelu_tanh_wrong_cubic(%x: !torch.vtensor<[2,8],f32>) -> !torch.vtensor<[2,8],f32> {
  %half = torch.constant.float 5.000000e-01
  %three = torch.constant.float 3.000000e+00
  %c = torch.constant.float 5.000000e-02
  %k = torch.constant.float 0.79788456080286541
  %one = torch.constant.float 1.000000e+00
  %int1 = torch.constant.int 1
  %hx = torch.aten.mul.Scalar %x, %half : !torch.vtensor<[2,8],f32>, !torch.float -> !torch.vtensor<[2,8],f32>
  %x3 = torch.aten.pow.Tensor_Scalar %x, %three : !torch.vtensor<[2,8],f32>, !torch.float -> !torch.vtensor<[2,8],f32>
  %cx3 = torch.aten.mul.Scalar %x3, %c : !torch.vtensor<[2,8],f32>, !torch.float -> !torch.vtensor<[2,8],f32>
  %in = torch.aten.add.Tensor %x, %cx3, %int1 : !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32>, !torch.int -> !torch.vtensor<[2,8],f32>
  %arg = torch.aten.mul.Scalar %in, %k : !torch.vtensor<[2,8],f32>, !torch.float -> !torch.vtensor<[2,8],f32>
  %t = torch.aten.tanh %arg : !torch.vtensor<[2,8],f32> -> !torch.vtensor<[2,8],f32>
  %p = torch.aten.add.Scalar %t, %one, %int1 : !torch.vtensor<[2,8],f32>, !torch.float, !torch.int -> !torch.vtensor<[2,8],f32>
  %y = torch.aten.mul.Tensor %hx, %p : !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32> -> !torch.vtensor<[2,8],f32>
  return %y : !torch.vtensor<[2,8],f32>
}

// -----

// Negative: 0.5·x · (1 + erf(z · 0.70710678)) with z another tensor.
// CHECK-LABEL: func.func @gelu_erf_other_tensor(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,8],f32>, %[[Z:[^:]+]]: !torch.vtensor<[2,8],f32>)
// CHECK-NOT:     torch.aten.gelu
// CHECK:         %[[S:.+]] = torch.aten.mul.Scalar %[[Z]],
// CHECK:         %[[E:.+]] = torch.aten.erf %[[S]]
// CHECK:         %[[Y:.+]] = torch.aten.mul.Tensor
// CHECK-NEXT:    return %[[Y]]
func.func @gelu_erf_other_tensor(%x: !torch.vtensor<[2,8],f32>, %z: !torch.vtensor<[2,8],f32>) -> !torch.vtensor<[2,8],f32> {
  %half = torch.constant.float 5.000000e-01
  %k = torch.constant.float 0.70710678118654757
  %one = torch.constant.float 1.000000e+00
  %int1 = torch.constant.int 1
  %hx = torch.aten.mul.Scalar %x, %half : !torch.vtensor<[2,8],f32>, !torch.float -> !torch.vtensor<[2,8],f32>
  %s = torch.aten.mul.Scalar %z, %k : !torch.vtensor<[2,8],f32>, !torch.float -> !torch.vtensor<[2,8],f32>
  %e = torch.aten.erf %s : !torch.vtensor<[2,8],f32> -> !torch.vtensor<[2,8],f32>
  %p = torch.aten.add.Scalar %e, %one, %int1 : !torch.vtensor<[2,8],f32>, !torch.float, !torch.int -> !torch.vtensor<[2,8],f32>
  %y = torch.aten.mul.Tensor %hx, %p : !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32> -> !torch.vtensor<[2,8],f32>
  return %y : !torch.vtensor<[2,8],f32>
}

// -----

// Negative: the erf result is also returned, so the arithmetic must stay.
// CHECK-LABEL: func.func @gelu_erf_intermediate_used(
// CHECK-NOT:     torch.aten.gelu
// CHECK:         %[[E:.+]] = torch.aten.erf
// CHECK:         %[[Y:.+]] = torch.aten.mul.Tensor
// CHECK-NEXT:    return %[[Y]], %[[E]]
func.func @gelu_erf_intermediate_used(%x: !torch.vtensor<[2,8],f32>) -> (!torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32>) {
  %half = torch.constant.float 5.000000e-01
  %k = torch.constant.float 0.70710678118654757
  %one = torch.constant.float 1.000000e+00
  %int1 = torch.constant.int 1
  %hx = torch.aten.mul.Scalar %x, %half : !torch.vtensor<[2,8],f32>, !torch.float -> !torch.vtensor<[2,8],f32>
  %s = torch.aten.mul.Scalar %x, %k : !torch.vtensor<[2,8],f32>, !torch.float -> !torch.vtensor<[2,8],f32>
  %e = torch.aten.erf %s : !torch.vtensor<[2,8],f32> -> !torch.vtensor<[2,8],f32>
  %p = torch.aten.add.Scalar %e, %one, %int1 : !torch.vtensor<[2,8],f32>, !torch.float, !torch.int -> !torch.vtensor<[2,8],f32>
  %y = torch.aten.mul.Tensor %hx, %p : !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32> -> !torch.vtensor<[2,8],f32>
  return %y, %e : !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32>
}

// -----

// Negative: x · sigmoid(z).
// CHECK-LABEL: func.func @silu_other_tensor(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,8],f32>, %[[Z:[^:]+]]: !torch.vtensor<[2,8],f32>)
// CHECK-NOT:     torch.aten.silu
// CHECK:         %[[S:.+]] = torch.aten.sigmoid %[[Z]]
// CHECK-NEXT:    %[[Y:.+]] = torch.aten.mul.Tensor %[[X]], %[[S]]
// CHECK-NEXT:    return %[[Y]]
func.func @silu_other_tensor(%x: !torch.vtensor<[2,8],f32>, %z: !torch.vtensor<[2,8],f32>) -> !torch.vtensor<[2,8],f32> {
  %s = torch.aten.sigmoid %z : !torch.vtensor<[2,8],f32> -> !torch.vtensor<[2,8],f32>
  %y = torch.aten.mul.Tensor %x, %s : !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32> -> !torch.vtensor<[2,8],f32>
  return %y : !torch.vtensor<[2,8],f32>
}
