// RUN: kiln-opt %s -p kiln-raise-linear --split-input-file | filecheck %s

// kiln-raise-linear: linear / addmm / matmul(x, W) + B, and a single-use activation after them,
// → one kiln.linear. Positive cases first, then the patterns the pass must leave alone.
// Fixed pass bugs are guarded by regression-*.mlir beside it.

// aten.linear with a bias → weight_layout "out_in".
// CHECK-LABEL: func.func @linear_bias(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,8],f32>, %[[W:[^:]+]]: !torch.vtensor<[4,8],f32>, %[[B:[^:]+]]: !torch.vtensor<[4],f32>)
// CHECK-NOT:     torch.aten.linear
// CHECK:         %[[Y:.+]] = "kiln.linear"(%[[X]], %[[W]], %[[B]]) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1>, weight_layout = "out_in"} : (!torch.vtensor<[2,8],f32>, !torch.vtensor<[4,8],f32>, !torch.vtensor<[4],f32>) -> !torch.vtensor<[2,4],f32>
// CHECK-NEXT:    return %[[Y]]
func.func @linear_bias(%x: !torch.vtensor<[2,8],f32>, %w: !torch.vtensor<[4,8],f32>, %b: !torch.vtensor<[4],f32>) -> !torch.vtensor<[2,4],f32> {
  %y = torch.aten.linear %x, %w, %b : !torch.vtensor<[2,8],f32>, !torch.vtensor<[4,8],f32>, !torch.vtensor<[4],f32> -> !torch.vtensor<[2,4],f32>
  return %y : !torch.vtensor<[2,4],f32>
}

// -----

// aten.linear without a bias (none) on a rank-3 input: no bias operand.
// CHECK-LABEL: func.func @linear_no_bias(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[3,2,8],f32>, %[[W:[^:]+]]: !torch.vtensor<[4,8],f32>)
// CHECK-NOT:     torch.aten.linear
// CHECK:         %[[Y:.+]] = "kiln.linear"(%[[X]], %[[W]]) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[3,2,8],f32>, !torch.vtensor<[4,8],f32>) -> !torch.vtensor<[3,2,4],f32>
// CHECK-NEXT:    return %[[Y]]
func.func @linear_no_bias(%x: !torch.vtensor<[3,2,8],f32>, %w: !torch.vtensor<[4,8],f32>) -> !torch.vtensor<[3,2,4],f32> {
  %none = torch.constant.none
  %y = torch.aten.linear %x, %w, %none : !torch.vtensor<[3,2,8],f32>, !torch.vtensor<[4,8],f32>, !torch.none -> !torch.vtensor<[3,2,4],f32>
  return %y : !torch.vtensor<[3,2,4],f32>
}

// -----

// aten.addmm(b, x, w, beta=1, alpha=1) → weight_layout "in_out", operands reordered to (x, w, b).
// CHECK-LABEL: func.func @addmm(
// CHECK-SAME:    %[[B:[^:]+]]: !torch.vtensor<[4],f32>, %[[X:[^:]+]]: !torch.vtensor<[2,8],f32>, %[[W:[^:]+]]: !torch.vtensor<[8,4],f32>)
// CHECK-NOT:     torch.aten.addmm
// CHECK:         %[[Y:.+]] = "kiln.linear"(%[[X]], %[[W]], %[[B]]) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1>, weight_layout = "in_out"} : (!torch.vtensor<[2,8],f32>, !torch.vtensor<[8,4],f32>, !torch.vtensor<[4],f32>) -> !torch.vtensor<[2,4],f32>
// CHECK-NEXT:    return %[[Y]]
func.func @addmm(%b: !torch.vtensor<[4],f32>, %x: !torch.vtensor<[2,8],f32>, %w: !torch.vtensor<[8,4],f32>) -> !torch.vtensor<[2,4],f32> {
  %int1 = torch.constant.int 1
  %a = torch.aten.addmm %b, %x, %w, %int1, %int1 : !torch.vtensor<[4],f32>, !torch.vtensor<[2,8],f32>, !torch.vtensor<[8,4],f32>, !torch.int, !torch.int -> !torch.vtensor<[2,4],f32>
  return %a : !torch.vtensor<[2,4],f32>
}

// -----

// matmul(x, W) + B with W a 2-D literal and B a 1-D literal → "in_out" with the literals as
// weight and bias; matmul and add are erased.
// CHECK-LABEL: func.func @matmul_literal_bias(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,3,8],f32>)
// CHECK-DAG:     %[[W:.+]] = torch.vtensor.literal(dense<1.000000e+00> : tensor<8x4xf32>) : !torch.vtensor<[8,4],f32>
// CHECK-DAG:     %[[B:.+]] = torch.vtensor.literal(dense<5.000000e-01> : tensor<4xf32>) : !torch.vtensor<[4],f32>
// CHECK-NOT:     torch.aten.matmul
// CHECK-NOT:     torch.aten.add.Tensor
// CHECK:         %[[Y:.+]] = "kiln.linear"(%[[X]], %[[W]], %[[B]]) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1>, weight_layout = "in_out"} : (!torch.vtensor<[2,3,8],f32>, !torch.vtensor<[8,4],f32>, !torch.vtensor<[4],f32>) -> !torch.vtensor<[2,3,4],f32>
// CHECK-NEXT:    return %[[Y]]
func.func @matmul_literal_bias(%x: !torch.vtensor<[2,3,8],f32>) -> !torch.vtensor<[2,3,4],f32> {
  %int1 = torch.constant.int 1
  %w = torch.vtensor.literal(dense<1.0> : tensor<8x4xf32>) : !torch.vtensor<[8,4],f32>
  %b = torch.vtensor.literal(dense<0.5> : tensor<4xf32>) : !torch.vtensor<[4],f32>
  %m = torch.aten.matmul %x, %w : !torch.vtensor<[2,3,8],f32>, !torch.vtensor<[8,4],f32> -> !torch.vtensor<[2,3,4],f32>
  %y = torch.aten.add.Tensor %m, %b, %int1 : !torch.vtensor<[2,3,4],f32>, !torch.vtensor<[4],f32>, !torch.int -> !torch.vtensor<[2,3,4],f32>
  return %y : !torch.vtensor<[2,3,4],f32>
}

// -----

// Bias literal on the left of the add: still matched.
// CHECK-LABEL: func.func @matmul_literal_bias_lhs(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,8],f32>)
// CHECK-DAG:     %[[W:.+]] = torch.vtensor.literal({{.*}}) : !torch.vtensor<[8,4],f32>
// CHECK-DAG:     %[[B:.+]] = torch.vtensor.literal({{.*}}) : !torch.vtensor<[4],f32>
// CHECK:         %[[Y:.+]] = "kiln.linear"(%[[X]], %[[W]], %[[B]]) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1>, weight_layout = "in_out"}
// CHECK-NEXT:    return %[[Y]]
func.func @matmul_literal_bias_lhs(%x: !torch.vtensor<[2,8],f32>) -> !torch.vtensor<[2,4],f32> {
  %int1 = torch.constant.int 1
  %w = torch.vtensor.literal(dense<1.0> : tensor<8x4xf32>) : !torch.vtensor<[8,4],f32>
  %b = torch.vtensor.literal(dense<0.5> : tensor<4xf32>) : !torch.vtensor<[4],f32>
  %m = torch.aten.matmul %x, %w : !torch.vtensor<[2,8],f32>, !torch.vtensor<[8,4],f32> -> !torch.vtensor<[2,4],f32>
  %y = torch.aten.add.Tensor %b, %m, %int1 : !torch.vtensor<[4],f32>, !torch.vtensor<[2,4],f32>, !torch.int -> !torch.vtensor<[2,4],f32>
  return %y : !torch.vtensor<[2,4],f32>
}

// -----

// gelu(approximate = "none") after a single-use linear → activation = "gelu", gelu erased.
// CHECK-LABEL: func.func @linear_gelu(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,8],f32>, %[[W:[^:]+]]: !torch.vtensor<[4,8],f32>, %[[B:[^:]+]]: !torch.vtensor<[4],f32>)
// CHECK-NOT:     torch.aten.gelu
// CHECK:         %[[Y:.+]] = "kiln.linear"(%[[X]], %[[W]], %[[B]]) {activation = "gelu", operandSegmentSizes = array<i32: 1, 1, 1>, weight_layout = "out_in"}
// CHECK-NEXT:    return %[[Y]]
func.func @linear_gelu(%x: !torch.vtensor<[2,8],f32>, %w: !torch.vtensor<[4,8],f32>, %b: !torch.vtensor<[4],f32>) -> !torch.vtensor<[2,4],f32> {
  %str = torch.constant.str "none"
  %y = torch.aten.linear %x, %w, %b : !torch.vtensor<[2,8],f32>, !torch.vtensor<[4,8],f32>, !torch.vtensor<[4],f32> -> !torch.vtensor<[2,4],f32>
  %g = torch.aten.gelu %y, %str : !torch.vtensor<[2,4],f32>, !torch.str -> !torch.vtensor<[2,4],f32>
  return %g : !torch.vtensor<[2,4],f32>
}

// -----

// gelu(approximate = "tanh") → activation = "gelu_tanh".
// CHECK-LABEL: func.func @linear_gelu_tanh(
// CHECK-NOT:     torch.aten.gelu
// CHECK:         %[[Y:.+]] = "kiln.linear"({{.*}}) {activation = "gelu_tanh", operandSegmentSizes = array<i32: 1, 1, 1>, weight_layout = "out_in"}
// CHECK-NEXT:    return %[[Y]]
func.func @linear_gelu_tanh(%x: !torch.vtensor<[2,8],f32>, %w: !torch.vtensor<[4,8],f32>, %b: !torch.vtensor<[4],f32>) -> !torch.vtensor<[2,4],f32> {
  %str = torch.constant.str "tanh"
  %y = torch.aten.linear %x, %w, %b : !torch.vtensor<[2,8],f32>, !torch.vtensor<[4,8],f32>, !torch.vtensor<[4],f32> -> !torch.vtensor<[2,4],f32>
  %g = torch.aten.gelu %y, %str : !torch.vtensor<[2,4],f32>, !torch.str -> !torch.vtensor<[2,4],f32>
  return %g : !torch.vtensor<[2,4],f32>
}

// -----

// relu after addmm → activation = "relu" on the in_out linear.
// CHECK-LABEL: func.func @addmm_relu(
// CHECK-SAME:    %[[B:[^:]+]]: !torch.vtensor<[4],f32>, %[[X:[^:]+]]: !torch.vtensor<[2,8],f32>, %[[W:[^:]+]]: !torch.vtensor<[8,4],f32>)
// CHECK-NOT:     torch.aten.relu
// CHECK:         %[[Y:.+]] = "kiln.linear"(%[[X]], %[[W]], %[[B]]) {activation = "relu", operandSegmentSizes = array<i32: 1, 1, 1>, weight_layout = "in_out"}
// CHECK-NEXT:    return %[[Y]]
func.func @addmm_relu(%b: !torch.vtensor<[4],f32>, %x: !torch.vtensor<[2,8],f32>, %w: !torch.vtensor<[8,4],f32>) -> !torch.vtensor<[2,4],f32> {
  %int1 = torch.constant.int 1
  %a = torch.aten.addmm %b, %x, %w, %int1, %int1 : !torch.vtensor<[4],f32>, !torch.vtensor<[2,8],f32>, !torch.vtensor<[8,4],f32>, !torch.int, !torch.int -> !torch.vtensor<[2,4],f32>
  %r = torch.aten.relu %a : !torch.vtensor<[2,4],f32> -> !torch.vtensor<[2,4],f32>
  return %r : !torch.vtensor<[2,4],f32>
}

// -----

// silu after a bias-free linear → activation = "silu".
// CHECK-LABEL: func.func @linear_silu(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,8],f32>, %[[W:[^:]+]]: !torch.vtensor<[4,8],f32>)
// CHECK-NOT:     torch.aten.silu
// CHECK:         %[[Y:.+]] = "kiln.linear"(%[[X]], %[[W]]) {activation = "silu", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"}
// CHECK-NEXT:    return %[[Y]]
func.func @linear_silu(%x: !torch.vtensor<[2,8],f32>, %w: !torch.vtensor<[4,8],f32>) -> !torch.vtensor<[2,4],f32> {
  %none = torch.constant.none
  %y = torch.aten.linear %x, %w, %none : !torch.vtensor<[2,8],f32>, !torch.vtensor<[4,8],f32>, !torch.none -> !torch.vtensor<[2,4],f32>
  %s = torch.aten.silu %y : !torch.vtensor<[2,4],f32> -> !torch.vtensor<[2,4],f32>
  return %s : !torch.vtensor<[2,4],f32>
}

// -----

// Only one activation folds: silu goes into the linear, the relu after it stays.
// CHECK-LABEL: func.func @two_activations(
// CHECK:         %[[Y:.+]] = "kiln.linear"({{.*}}) {activation = "silu", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"}
// CHECK-NEXT:    %[[R:.+]] = torch.aten.relu %[[Y]]
// CHECK-NEXT:    return %[[R]]
func.func @two_activations(%x: !torch.vtensor<[2,8],f32>, %w: !torch.vtensor<[4,8],f32>) -> !torch.vtensor<[2,4],f32> {
  %none = torch.constant.none
  %y = torch.aten.linear %x, %w, %none : !torch.vtensor<[2,8],f32>, !torch.vtensor<[4,8],f32>, !torch.none -> !torch.vtensor<[2,4],f32>
  %s = torch.aten.silu %y : !torch.vtensor<[2,4],f32> -> !torch.vtensor<[2,4],f32>
  %r = torch.aten.relu %s : !torch.vtensor<[2,4],f32> -> !torch.vtensor<[2,4],f32>
  return %r : !torch.vtensor<[2,4],f32>
}

// -----

// Negative: addmm with beta = 2 is not a plain linear layer.
// CHECK-LABEL: func.func @addmm_beta2(
// CHECK-SAME:    %[[B:[^:]+]]: !torch.vtensor<[4],f32>, %[[X:[^:]+]]: !torch.vtensor<[2,8],f32>, %[[W:[^:]+]]: !torch.vtensor<[8,4],f32>)
// CHECK-NOT:     kiln.linear
// CHECK:         %[[A:.+]] = torch.aten.addmm %[[B]], %[[X]], %[[W]], %{{.+}}, %{{.+}} :
// CHECK-NOT:     kiln.linear
// CHECK:         return %[[A]]
func.func @addmm_beta2(%b: !torch.vtensor<[4],f32>, %x: !torch.vtensor<[2,8],f32>, %w: !torch.vtensor<[8,4],f32>) -> !torch.vtensor<[2,4],f32> {
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %a = torch.aten.addmm %b, %x, %w, %int2, %int1 : !torch.vtensor<[4],f32>, !torch.vtensor<[2,8],f32>, !torch.vtensor<[8,4],f32>, !torch.int, !torch.int -> !torch.vtensor<[2,4],f32>
  return %a : !torch.vtensor<[2,4],f32>
}

// -----

// Negative (for the activation): the linear result is also returned, so the gelu is not folded;
// the linear itself is still raised, with activation = "none".
// CHECK-LABEL: func.func @linear_two_users(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,8],f32>, %[[W:[^:]+]]: !torch.vtensor<[4,8],f32>, %[[B:[^:]+]]: !torch.vtensor<[4],f32>)
// CHECK:         %[[Y:.+]] = "kiln.linear"(%[[X]], %[[W]], %[[B]]) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1>, weight_layout = "out_in"}
// CHECK-NEXT:    %[[G:.+]] = torch.aten.gelu %[[Y]], %{{.+}} :
// CHECK-NEXT:    return %[[G]], %[[Y]]
func.func @linear_two_users(%x: !torch.vtensor<[2,8],f32>, %w: !torch.vtensor<[4,8],f32>, %b: !torch.vtensor<[4],f32>) -> (!torch.vtensor<[2,4],f32>, !torch.vtensor<[2,4],f32>) {
  %str = torch.constant.str "none"
  %y = torch.aten.linear %x, %w, %b : !torch.vtensor<[2,8],f32>, !torch.vtensor<[4,8],f32>, !torch.vtensor<[4],f32> -> !torch.vtensor<[2,4],f32>
  %g = torch.aten.gelu %y, %str : !torch.vtensor<[2,4],f32>, !torch.str -> !torch.vtensor<[2,4],f32>
  return %g, %y : !torch.vtensor<[2,4],f32>, !torch.vtensor<[2,4],f32>
}

// -----

// Negative: matmul of two function arguments (+ a bias argument) has no literal weight: it could
// be an activation·activation product, so no kiln.linear.
// CHECK-LABEL: func.func @matmul_two_args(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,8],f32>, %[[W:[^:]+]]: !torch.vtensor<[8,4],f32>, %[[B:[^:]+]]: !torch.vtensor<[4],f32>)
// CHECK-NOT:     kiln.linear
// CHECK:         %[[M:.+]] = torch.aten.matmul %[[X]], %[[W]]
// CHECK:         %[[Y:.+]] = torch.aten.add.Tensor %[[M]], %[[B]], %{{.+}} :
// CHECK-NOT:     kiln.linear
// CHECK:         return %[[Y]]
func.func @matmul_two_args(%x: !torch.vtensor<[2,8],f32>, %w: !torch.vtensor<[8,4],f32>, %b: !torch.vtensor<[4],f32>) -> !torch.vtensor<[2,4],f32> {
  %int1 = torch.constant.int 1
  %m = torch.aten.matmul %x, %w : !torch.vtensor<[2,8],f32>, !torch.vtensor<[8,4],f32> -> !torch.vtensor<[2,4],f32>
  %y = torch.aten.add.Tensor %m, %b, %int1 : !torch.vtensor<[2,4],f32>, !torch.vtensor<[4],f32>, !torch.int -> !torch.vtensor<[2,4],f32>
  return %y : !torch.vtensor<[2,4],f32>
}

// -----

// Negative: a literal weight but a bias that is an argument, not a literal.
// CHECK-LABEL: func.func @matmul_literal_weight_arg_bias(
// CHECK-NOT:     kiln.linear
// CHECK:         torch.aten.matmul
// CHECK:         torch.aten.add.Tensor
// CHECK-NOT:     kiln.linear
// CHECK:         return
func.func @matmul_literal_weight_arg_bias(%x: !torch.vtensor<[2,8],f32>, %b: !torch.vtensor<[4],f32>) -> !torch.vtensor<[2,4],f32> {
  %int1 = torch.constant.int 1
  %w = torch.vtensor.literal(dense<1.0> : tensor<8x4xf32>) : !torch.vtensor<[8,4],f32>
  %m = torch.aten.matmul %x, %w : !torch.vtensor<[2,8],f32>, !torch.vtensor<[8,4],f32> -> !torch.vtensor<[2,4],f32>
  %y = torch.aten.add.Tensor %m, %b, %int1 : !torch.vtensor<[2,4],f32>, !torch.vtensor<[4],f32>, !torch.int -> !torch.vtensor<[2,4],f32>
  return %y : !torch.vtensor<[2,4],f32>
}
