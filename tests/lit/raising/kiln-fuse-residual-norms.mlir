// RUN: kiln-opt %s -p kiln-fuse-residual-norms --split-input-file | filecheck %s

// kiln-fuse-residual-norms: kiln.layer_norm / kiln.rms_norm of x + r (one type: the residual
// stream) → kiln.add_layer_norm / kiln.add_rms_norm returning the norm and the sum, which
// replaces the add's other uses. Positive cases first, then what must stay.

// Llama's pre-norm step: the sum feeds the RMSNorm and the next residual add.
// CHECK-LABEL: func.func @add_rms_norm(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[1,3,8],f32>, %[[R:[^:]+]]: !torch.vtensor<[1,3,8],f32>, %[[W:[^:]+]]: !torch.vtensor<[8],f32>, %[[M:[^:]+]]: !torch.vtensor<[1,3,8],f32>)
// CHECK-NOT:     torch.aten.add.Tensor %[[X]]
// CHECK:         %[[Y:.+]]:2 = "kiln.add_rms_norm"(%[[X]], %[[R]], %[[W]]) {epsilon = 9.9999999999999995E-7 : f64, operandSegmentSizes = array<i32: 1, 1, 1>} : (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[1,3,8],f32>, !torch.vtensor<[8],f32>) -> (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[1,3,8],f32>)
// CHECK-NOT:     "kiln.rms_norm"
// CHECK:         %[[NEXT:.+]] = torch.aten.add.Tensor %[[Y]]#1, %[[M]], %{{.+}}
// CHECK:         return %[[Y]]#0, %[[NEXT]]
func.func @add_rms_norm(%x: !torch.vtensor<[1,3,8],f32>, %r: !torch.vtensor<[1,3,8],f32>, %w: !torch.vtensor<[8],f32>, %mlp: !torch.vtensor<[1,3,8],f32>) -> (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[1,3,8],f32>) {
  %int1 = torch.constant.int 1
  %s = torch.aten.add.Tensor %x, %r, %int1 : !torch.vtensor<[1,3,8],f32>, !torch.vtensor<[1,3,8],f32>, !torch.int -> !torch.vtensor<[1,3,8],f32>
  %y = "kiln.rms_norm"(%s, %w) {epsilon = 1.000000e-06 : f64, operandSegmentSizes = array<i32: 1, 1>} : (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[8],f32>) -> !torch.vtensor<[1,3,8],f32>
  %next = torch.aten.add.Tensor %s, %mlp, %int1 : !torch.vtensor<[1,3,8],f32>, !torch.vtensor<[1,3,8],f32>, !torch.int -> !torch.vtensor<[1,3,8],f32>
  return %y, %next : !torch.vtensor<[1,3,8],f32>, !torch.vtensor<[1,3,8],f32>
}

// -----

// Layer norm with weight and bias; the sum is used before the norm too (it is returned first
// and read by an op between the add and the norm): the fused op takes the add's place, so every
// use stays dominated; a weight literal defined after the add moves above it.
// CHECK-LABEL: func.func @add_layer_norm_sum_used_before_norm(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,8],f32>, %[[R:[^:]+]]: !torch.vtensor<[2,8],f32>, %[[B:[^:]+]]: !torch.vtensor<[8],f32>)
// CHECK:         %[[W:.+]] = torch.vtensor.literal(dense<1.000000e+00> : tensor<8xf32>)
// CHECK:         %[[Y:.+]]:2 = "kiln.add_layer_norm"(%[[X]], %[[R]], %[[W]], %[[B]]) {epsilon = 9.9999999999999998E-13 : f64, operandSegmentSizes = array<i32: 1, 1, 1, 1>}
// CHECK:         %[[T:.+]] = torch.aten.tanh %[[Y]]#1
// CHECK:         return %[[Y]]#1, %[[T]], %[[Y]]#0
func.func @add_layer_norm_sum_used_before_norm(%x: !torch.vtensor<[2,8],f32>, %r: !torch.vtensor<[2,8],f32>, %b: !torch.vtensor<[8],f32>) -> (!torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32>) {
  %int1 = torch.constant.int 1
  %s = torch.aten.add.Tensor %x, %r, %int1 : !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32>, !torch.int -> !torch.vtensor<[2,8],f32>
  %t = torch.aten.tanh %s : !torch.vtensor<[2,8],f32> -> !torch.vtensor<[2,8],f32>
  %w = torch.vtensor.literal(dense<1.0> : tensor<8xf32>) : !torch.vtensor<[8],f32>
  %y = "kiln.layer_norm"(%s, %w, %b) {epsilon = 1.000000e-12 : f64, operandSegmentSizes = array<i32: 1, 1, 1>} : (!torch.vtensor<[2,8],f32>, !torch.vtensor<[8],f32>, !torch.vtensor<[8],f32>) -> !torch.vtensor<[2,8],f32>
  return %s, %t, %y : !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32>
}

// -----

// Layer norm with a bias but no weight: the bias keeps its place among the optional operands.
// CHECK-LABEL: func.func @add_layer_norm_bias_only(
// CHECK:         "kiln.add_layer_norm"(%arg0, %arg1, %arg2) {epsilon = {{.+}}, operandSegmentSizes = array<i32: 1, 1, 0, 1>}
func.func @add_layer_norm_bias_only(%x: !torch.vtensor<[2,8],f32>, %r: !torch.vtensor<[2,8],f32>, %b: !torch.vtensor<[8],f32>) -> !torch.vtensor<[2,8],f32> {
  %int1 = torch.constant.int 1
  %s = torch.aten.add.Tensor %x, %r, %int1 : !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32>, !torch.int -> !torch.vtensor<[2,8],f32>
  %y = "kiln.layer_norm"(%s, %b) {epsilon = 1.000000e-05 : f64, operandSegmentSizes = array<i32: 1, 0, 1>} : (!torch.vtensor<[2,8],f32>, !torch.vtensor<[8],f32>) -> !torch.vtensor<[2,8],f32>
  return %y : !torch.vtensor<[2,8],f32>
}

// -----

// Negative: an add that broadcasts (a bias of [8] onto [2,8]) and an add with alpha 2 are not
// a residual step; a norm of something else stays a plain norm.
// CHECK-LABEL: func.func @not_a_residual(
// CHECK-NOT:     kiln.add_
// CHECK-COUNT-3: "kiln.layer_norm"
// CHECK-NOT:     kiln.add_
func.func @not_a_residual(%x: !torch.vtensor<[2,8],f32>, %bias: !torch.vtensor<[8],f32>, %r: !torch.vtensor<[2,8],f32>) -> (!torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32>) {
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %a = torch.aten.add.Tensor %x, %bias, %int1 : !torch.vtensor<[2,8],f32>, !torch.vtensor<[8],f32>, !torch.int -> !torch.vtensor<[2,8],f32>
  %ya = "kiln.layer_norm"(%a) {epsilon = 1.000000e-05 : f64, operandSegmentSizes = array<i32: 1, 0, 0>} : (!torch.vtensor<[2,8],f32>) -> !torch.vtensor<[2,8],f32>
  %c = torch.aten.add.Tensor %x, %r, %int2 : !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32>, !torch.int -> !torch.vtensor<[2,8],f32>
  %yc = "kiln.layer_norm"(%c) {epsilon = 1.000000e-05 : f64, operandSegmentSizes = array<i32: 1, 0, 0>} : (!torch.vtensor<[2,8],f32>) -> !torch.vtensor<[2,8],f32>
  %t = torch.aten.tanh %x : !torch.vtensor<[2,8],f32> -> !torch.vtensor<[2,8],f32>
  %yt = "kiln.layer_norm"(%t) {epsilon = 1.000000e-05 : f64, operandSegmentSizes = array<i32: 1, 0, 0>} : (!torch.vtensor<[2,8],f32>) -> !torch.vtensor<[2,8],f32>
  return %ya, %yc, %yt : !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32>
}
