// RUN: kiln-opt %s --split-input-file | filecheck %s
// Printing and parsing again gives the same IR (the printed generic form is valid input):
// RUN: kiln-opt %s --split-input-file | kiln-opt - --split-input-file | filecheck %s

// kiln ops parse, verify and print back in the generic form with their attribute dict
// (attributes sorted, scale printed as an f64 literal).

// CHECK-LABEL: func.func @attention(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>)
// CHECK-NEXT:    %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = true, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 2.500000e-01 : f64} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32>
// CHECK-NEXT:    return %[[O]] : !torch.vtensor<[1,4,8,16],f32>
func.func @attention(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %0 = "kiln.attention"(%q, %k, %v) {causal = true, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 2.500000e-01 : f64} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32>
  return %0 : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Dynamic dims, bf16, grouped-query heads (8 over 2) and a bool mask; attributes given out of
// order and scale written as 0.125 come back sorted and normalised.
// CHECK-LABEL: func.func @attention_dynamic_gqa_mask(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[?,8,?,64],bf16>, %[[K:[^:]+]]: !torch.vtensor<[?,2,?,64],bf16>, %[[V:[^:]+]]: !torch.vtensor<[?,2,?,64],bf16>, %[[M:[^:]+]]: !torch.vtensor<[?,?],i1>)
// CHECK-NEXT:    %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]], %[[M]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 1.250000e-01 : f64} : (!torch.vtensor<[?,8,?,64],bf16>, !torch.vtensor<[?,2,?,64],bf16>, !torch.vtensor<[?,2,?,64],bf16>, !torch.vtensor<[?,?],i1>) -> !torch.vtensor<[?,8,?,64],bf16>
// CHECK-NEXT:    return %[[O]]
func.func @attention_dynamic_gqa_mask(%q: !torch.vtensor<[?,8,?,64],bf16>, %k: !torch.vtensor<[?,2,?,64],bf16>, %v: !torch.vtensor<[?,2,?,64],bf16>, %m: !torch.vtensor<[?,?],i1>) -> !torch.vtensor<[?,8,?,64],bf16> {
  %0 = "kiln.attention"(%q, %k, %v, %m) {scale = 0.125 : f64, causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>} : (!torch.vtensor<[?,8,?,64],bf16>, !torch.vtensor<[?,2,?,64],bf16>, !torch.vtensor<[?,2,?,64],bf16>, !torch.vtensor<[?,?],i1>) -> !torch.vtensor<[?,8,?,64],bf16>
  return %0 : !torch.vtensor<[?,8,?,64],bf16>
}

// -----

// kiln.linear, in_out layout with a bias and an activation, dynamic input dim, f16.
// CHECK-LABEL: func.func @linear(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,?,8],f16>, %[[W:[^:]+]]: !torch.vtensor<[8,4],f16>, %[[B:[^:]+]]: !torch.vtensor<[4],f16>)
// CHECK-NEXT:    %[[Y:.+]] = "kiln.linear"(%[[X]], %[[W]], %[[B]]) {activation = "gelu_tanh", operandSegmentSizes = array<i32: 1, 1, 1>, weight_layout = "in_out"} : (!torch.vtensor<[2,?,8],f16>, !torch.vtensor<[8,4],f16>, !torch.vtensor<[4],f16>) -> !torch.vtensor<[2,?,4],f16>
// CHECK-NEXT:    return %[[Y]]
func.func @linear(%x: !torch.vtensor<[2,?,8],f16>, %w: !torch.vtensor<[8,4],f16>, %b: !torch.vtensor<[4],f16>) -> !torch.vtensor<[2,?,4],f16> {
  %0 = "kiln.linear"(%x, %w, %b) {activation = "gelu_tanh", operandSegmentSizes = array<i32: 1, 1, 1>, weight_layout = "in_out"} : (!torch.vtensor<[2,?,8],f16>, !torch.vtensor<[8,4],f16>, !torch.vtensor<[4],f16>) -> !torch.vtensor<[2,?,4],f16>
  return %0 : !torch.vtensor<[2,?,4],f16>
}

// -----

// kiln.linear, out_in layout, no bias, rank-1 input.
// CHECK-LABEL: func.func @linear_no_bias(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[8],f32>, %[[W:[^:]+]]: !torch.vtensor<[4,8],f32>)
// CHECK-NEXT:    %[[Y:.+]] = "kiln.linear"(%[[X]], %[[W]]) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[8],f32>, !torch.vtensor<[4,8],f32>) -> !torch.vtensor<[4],f32>
// CHECK-NEXT:    return %[[Y]]
func.func @linear_no_bias(%x: !torch.vtensor<[8],f32>, %w: !torch.vtensor<[4,8],f32>) -> !torch.vtensor<[4],f32> {
  %0 = "kiln.linear"(%x, %w) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[8],f32>, !torch.vtensor<[4,8],f32>) -> !torch.vtensor<[4],f32>
  return %0 : !torch.vtensor<[4],f32>
}

// -----

// kiln.rope, rotate-half, tables broadcast over batch and heads.
// CHECK-LABEL: func.func @rope(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[1,4,?,8],f16>, %[[C:[^:]+]]: !torch.vtensor<[1,1,?,8],f16>, %[[S:[^:]+]]: !torch.vtensor<[1,1,?,8],f16>)
// CHECK-NEXT:    %[[Y:.+]] = "kiln.rope"(%[[X]], %[[C]], %[[S]]) {interleaved = false} : (!torch.vtensor<[1,4,?,8],f16>, !torch.vtensor<[1,1,?,8],f16>, !torch.vtensor<[1,1,?,8],f16>) -> !torch.vtensor<[1,4,?,8],f16>
// CHECK-NEXT:    return %[[Y]]
func.func @rope(%x: !torch.vtensor<[1,4,?,8],f16>, %c: !torch.vtensor<[1,1,?,8],f16>, %s: !torch.vtensor<[1,1,?,8],f16>) -> !torch.vtensor<[1,4,?,8],f16> {
  %0 = "kiln.rope"(%x, %c, %s) {interleaved = false} : (!torch.vtensor<[1,4,?,8],f16>, !torch.vtensor<[1,1,?,8],f16>, !torch.vtensor<[1,1,?,8],f16>) -> !torch.vtensor<[1,4,?,8],f16>
  return %0 : !torch.vtensor<[1,4,?,8],f16>
}
