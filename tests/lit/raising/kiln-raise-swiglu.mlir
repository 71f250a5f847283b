// RUN: kiln-opt %s -p kiln-raise-swiglu --split-input-file | filecheck %s

// kiln-raise-swiglu: SiLU(gate(x)) · up(x) → kiln.linear {activation = "swiglu"} over the gate
// and up weights concatenated (two-linear form), or over a projection split in halves (Phi-3
// form). Positive cases first, then the patterns the pass must leave alone.

// Llama after kiln-raise-linear: gate carries the SiLU, up none; weights concatenated on the
// out-features axis (gate first), the mul is replaced.
// CHECK-LABEL: func.func @gate_up(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[1,3,8],f32>)
// CHECK-DAG:     %[[WG:.+]] = torch.vtensor.literal(dense<1.000000e+00> : tensor<16x8xf32>)
// CHECK-DAG:     %[[WU:.+]] = torch.vtensor.literal(dense<2.000000e+00> : tensor<16x8xf32>)
// CHECK:         %[[WS:.+]] = torch.prim.ListConstruct %[[WG]], %[[WU]] :
// CHECK:         %[[W:.+]] = torch.aten.cat %[[WS]], %{{.+}} : !torch.list<vtensor>, !torch.int -> !torch.vtensor<[32,8],f32>
// CHECK:         %[[H:.+]] = "kiln.linear"(%[[X]], %[[W]]) {activation = "swiglu", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[32,8],f32>) -> !torch.vtensor<[1,3,16],f32>
// CHECK-NOT:     torch.aten.mul.Tensor
// CHECK-NOT:     "kiln.linear"
// CHECK:         return %[[H]]
func.func @gate_up(%x: !torch.vtensor<[1,3,8],f32>) -> !torch.vtensor<[1,3,16],f32> {
  %wg = torch.vtensor.literal(dense<1.0> : tensor<16x8xf32>) : !torch.vtensor<[16,8],f32>
  %wu = torch.vtensor.literal(dense<2.0> : tensor<16x8xf32>) : !torch.vtensor<[16,8],f32>
  %g = "kiln.linear"(%x, %wg) {activation = "silu", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[16,8],f32>) -> !torch.vtensor<[1,3,16],f32>
  %u = "kiln.linear"(%x, %wu) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[16,8],f32>) -> !torch.vtensor<[1,3,16],f32>
  %h = torch.aten.mul.Tensor %g, %u : !torch.vtensor<[1,3,16],f32>, !torch.vtensor<[1,3,16],f32> -> !torch.vtensor<[1,3,16],f32>
  return %h : !torch.vtensor<[1,3,16],f32>
}

// -----

// up · gate (product commuted), biases and the "in_out" layout: weights concatenated on axis 1,
// biases on axis 0, gate still first.
// CHECK-LABEL: func.func @up_times_gate_in_out_bias(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[3,8],f32>)
// CHECK-DAG:     %[[WG:.+]] = torch.vtensor.literal(dense<1.000000e+00> : tensor<8x4xf32>)
// CHECK-DAG:     %[[BG:.+]] = torch.vtensor.literal(dense<5.000000e-01> : tensor<4xf32>)
// CHECK:         torch.prim.ListConstruct %[[WG]], %{{.+}} :
// CHECK:         %[[W:.+]] = torch.aten.cat {{.*}} -> !torch.vtensor<[8,8],f32>
// CHECK:         torch.prim.ListConstruct %[[BG]], %{{.+}} :
// CHECK:         %[[B:.+]] = torch.aten.cat {{.*}} -> !torch.vtensor<[8],f32>
// CHECK:         "kiln.linear"(%[[X]], %[[W]], %[[B]]) {activation = "swiglu", operandSegmentSizes = array<i32: 1, 1, 1>, weight_layout = "in_out"} : (!torch.vtensor<[3,8],f32>, !torch.vtensor<[8,8],f32>, !torch.vtensor<[8],f32>) -> !torch.vtensor<[3,4],f32>
func.func @up_times_gate_in_out_bias(%x: !torch.vtensor<[3,8],f32>) -> !torch.vtensor<[3,4],f32> {
  %wg = torch.vtensor.literal(dense<1.0> : tensor<8x4xf32>) : !torch.vtensor<[8,4],f32>
  %wu = torch.vtensor.literal(dense<2.0> : tensor<8x4xf32>) : !torch.vtensor<[8,4],f32>
  %bg = torch.vtensor.literal(dense<0.5> : tensor<4xf32>) : !torch.vtensor<[4],f32>
  %bu = torch.vtensor.literal(dense<0.25> : tensor<4xf32>) : !torch.vtensor<[4],f32>
  %u = "kiln.linear"(%x, %wu, %bu) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1>, weight_layout = "in_out"} : (!torch.vtensor<[3,8],f32>, !torch.vtensor<[8,4],f32>, !torch.vtensor<[4],f32>) -> !torch.vtensor<[3,4],f32>
  %g = "kiln.linear"(%x, %wg, %bg) {activation = "silu", operandSegmentSizes = array<i32: 1, 1, 1>, weight_layout = "in_out"} : (!torch.vtensor<[3,8],f32>, !torch.vtensor<[8,4],f32>, !torch.vtensor<[4],f32>) -> !torch.vtensor<[3,4],f32>
  %h = torch.aten.mul.Tensor %u, %g : !torch.vtensor<[3,4],f32>, !torch.vtensor<[3,4],f32> -> !torch.vtensor<[3,4],f32>
  return %h : !torch.vtensor<[3,4],f32>
}

// -----

// Phi-3's gate_up_proj split by chunk (split.Tensor + ListUnpack): the projection itself takes
// the gated activation; no concatenation.
// CHECK-LABEL: func.func @halves_split(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[1,3,8],f32>, %[[W:[^:]+]]: !torch.vtensor<[32,8],f32>)
// CHECK-NOT:     torch.aten.split.Tensor
// CHECK:         %[[H:.+]] = "kiln.linear"(%[[X]], %[[W]]) {activation = "swiglu", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[32,8],f32>) -> !torch.vtensor<[1,3,16],f32>
// CHECK-NEXT:    return %[[H]]
func.func @halves_split(%x: !torch.vtensor<[1,3,8],f32>, %w: !torch.vtensor<[32,8],f32>) -> !torch.vtensor<[1,3,16],f32> {
  %int16 = torch.constant.int 16
  %int-1 = torch.constant.int -1
  %y = "kiln.linear"(%x, %w) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[32,8],f32>) -> !torch.vtensor<[1,3,32],f32>
  %parts = torch.aten.split.Tensor %y, %int16, %int-1 : !torch.vtensor<[1,3,32],f32>, !torch.int, !torch.int -> !torch.list<vtensor>
  %gate, %up = torch.prim.ListUnpack %parts : !torch.list<vtensor> -> !torch.vtensor<[1,3,16],f32>, !torch.vtensor<[1,3,16],f32>
  %a = torch.aten.silu %gate : !torch.vtensor<[1,3,16],f32> -> !torch.vtensor<[1,3,16],f32>
  %h = torch.aten.mul.Tensor %up, %a : !torch.vtensor<[1,3,16],f32>, !torch.vtensor<[1,3,16],f32> -> !torch.vtensor<[1,3,16],f32>
  return %h : !torch.vtensor<[1,3,16],f32>
}

// -----

// Negative: the halves swapped (SiLU of the second half), and, separately, an up projection that
// reads another input.
// CHECK-LABEL: func.func @wrong_half_or_other_input(
// CHECK-NOT:     "swiglu"
func.func @wrong_half_or_other_input(%x: !torch.vtensor<[1,3,8],f32>, %x2: !torch.vtensor<[1,3,8],f32>, %w: !torch.vtensor<[32,8],f32>) -> (!torch.vtensor<[1,3,16],f32>, !torch.vtensor<[1,3,16],f32>) {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int16 = torch.constant.int 16
  %int32 = torch.constant.int 32
  %int-1 = torch.constant.int -1
  %y = "kiln.linear"(%x, %w) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[32,8],f32>) -> !torch.vtensor<[1,3,32],f32>
  %first = torch.aten.slice.Tensor %y, %int-1, %int0, %int16, %int1 : !torch.vtensor<[1,3,32],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,3,16],f32>
  %second = torch.aten.slice.Tensor %y, %int-1, %int16, %int32, %int1 : !torch.vtensor<[1,3,32],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,3,16],f32>
  %a = torch.aten.silu %second : !torch.vtensor<[1,3,16],f32> -> !torch.vtensor<[1,3,16],f32>
  %h = torch.aten.mul.Tensor %a, %first : !torch.vtensor<[1,3,16],f32>, !torch.vtensor<[1,3,16],f32> -> !torch.vtensor<[1,3,16],f32>
  %wg = torch.vtensor.literal(dense<1.0> : tensor<16x8xf32>) : !torch.vtensor<[16,8],f32>
  %g = "kiln.linear"(%x, %wg) {activation = "silu", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[16,8],f32>) -> !torch.vtensor<[1,3,16],f32>
  %u = "kiln.linear"(%x2, %wg) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[16,8],f32>) -> !torch.vtensor<[1,3,16],f32>
  %h2 = torch.aten.mul.Tensor %g, %u : !torch.vtensor<[1,3,16],f32>, !torch.vtensor<[1,3,16],f32> -> !torch.vtensor<[1,3,16],f32>
  return %h, %h2 : !torch.vtensor<[1,3,16],f32>, !torch.vtensor<[1,3,16],f32>
}

// -----

// Negative: the gate's result has another use (it is returned), a GELU-gated MLP (GeGLU: not
// SiLU), and weights that are function arguments (no compile-time concatenation).
// CHECK-LABEL: func.func @extra_use_gelu_or_argument_weights(
// CHECK-NOT:     "swiglu"
func.func @extra_use_gelu_or_argument_weights(%x: !torch.vtensor<[1,3,8],f32>, %wa: !torch.vtensor<[16,8],f32>, %wb: !torch.vtensor<[16,8],f32>) -> (!torch.vtensor<[1,3,16],f32>, !torch.vtensor<[1,3,16],f32>, !torch.vtensor<[1,3,16],f32>, !torch.vtensor<[1,3,16],f32>) {
  %wg = torch.vtensor.literal(dense<1.0> : tensor<16x8xf32>) : !torch.vtensor<[16,8],f32>
  %wu = torch.vtensor.literal(dense<2.0> : tensor<16x8xf32>) : !torch.vtensor<[16,8],f32>
  %g = "kiln.linear"(%x, %wg) {activation = "silu", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[16,8],f32>) -> !torch.vtensor<[1,3,16],f32>
  %u = "kiln.linear"(%x, %wu) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[16,8],f32>) -> !torch.vtensor<[1,3,16],f32>
  %h = torch.aten.mul.Tensor %g, %u : !torch.vtensor<[1,3,16],f32>, !torch.vtensor<[1,3,16],f32> -> !torch.vtensor<[1,3,16],f32>
  %gg = "kiln.linear"(%x, %wg) {activation = "gelu", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[16,8],f32>) -> !torch.vtensor<[1,3,16],f32>
  %gu = "kiln.linear"(%x, %wu) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[16,8],f32>) -> !torch.vtensor<[1,3,16],f32>
  %gh = torch.aten.mul.Tensor %gg, %gu : !torch.vtensor<[1,3,16],f32>, !torch.vtensor<[1,3,16],f32> -> !torch.vtensor<[1,3,16],f32>
  %ag = "kiln.linear"(%x, %wa) {activation = "silu", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[16,8],f32>) -> !torch.vtensor<[1,3,16],f32>
  %au = "kiln.linear"(%x, %wb) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[1,3,8],f32>, !torch.vtensor<[16,8],f32>) -> !torch.vtensor<[1,3,16],f32>
  %ah = torch.aten.mul.Tensor %ag, %au : !torch.vtensor<[1,3,16],f32>, !torch.vtensor<[1,3,16],f32> -> !torch.vtensor<[1,3,16],f32>
  return %h, %g, %gh, %ah : !torch.vtensor<[1,3,16],f32>, !torch.vtensor<[1,3,16],f32>, !torch.vtensor<[1,3,16],f32>, !torch.vtensor<[1,3,16],f32>
}
