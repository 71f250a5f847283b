// RUN: kiln-opt %s -p 'kiln-select-cpu-kernels{min_macs=0 min_gemv_weights=0}' --split-input-file | filecheck %s
// RUN: kiln-opt %s -p kiln-select-cpu-kernels --split-input-file | filecheck %s --check-prefix=DEFAULT
// RUN: kiln-opt %s -p 'kiln-select-cpu-kernels{min_macs=0 min_gemv_weights=0 lanes=8}' --split-input-file | filecheck %s --check-prefix=AVX2
// RUN: kiln-opt %s -p 'kiln-select-cpu-kernels{min_macs=0 min_gemv_weights=0 fold_epilogues=true}' --split-input-file | filecheck %s --check-prefix=FOLD

// kiln-select-cpu-kernels (target cpu, cpu_kernels="on"): the dense product of an f32 linear
// the kernel takes becomes a call of a private declaration carrying the GEMM's shape, with the
// weight packed in 32- or 48-column panels by torch ops; bias and activation stay torch ops
// (with fold_epilogues, the fourth run, they go into the kernel's store: the bias a third
// operand, the declaration's kiln.cpu_epilogue). The text
// handed to IREE gets the declaration's body, its panel width read from the packed weight's type
// (kiln.cpu_kernels, tests/test_cpu_kernels.py).
// By default products under 4M multiply-adds stay with IREE (the second run: nothing changes).
// For 8-float vectors (AVX2 hosts, the third run) the panels are 16 or 24 columns (4 × 2 and
// 4 × 3 register tiles) and the declaration says its width (kiln.cpu_lanes = 8).

// out_in weight [96, 64] → [2, 48, 64] → permute → [2, 64, 48] (96 columns fill 48-column
// panels: the 8 × 3 register tile); input flattened to [16, 64].
// CHECK-LABEL: module
// CHECK:         func.func private @kiln_cpu_gemm_16x64x96(tensor<16x64xf32>, tensor<2x64x48xf32>) -> tensor<16x96xf32> attributes {kiln.cpu_gemm = "16x64x96"}
// CHECK-LABEL: func.func @linear(
// CHECK:         %[[G:.+]] = torch.aten.view %arg1, %{{.+}} -> !torch.vtensor<[2,48,64],f32>
// CHECK:         %[[P:.+]] = torch.aten.permute %[[G]], %{{.+}} -> !torch.vtensor<[2,64,48],f32>
// CHECK:         %[[X:.+]] = torch.aten.view %arg0, %{{.+}} -> !torch.vtensor<[16,64],f32>
// CHECK:         %[[XB:.+]] = "torch_c.to_builtin_tensor"(%[[X]])
// CHECK:         %[[PB:.+]] = "torch_c.to_builtin_tensor"(%[[P]])
// CHECK:         %[[Y:.+]] = call @kiln_cpu_gemm_16x64x96(%[[XB]], %[[PB]])
// CHECK:         %[[YT:.+]] = "torch_c.from_builtin_tensor"(%[[Y]])
// CHECK:         %[[Y3:.+]] = torch.aten.view %[[YT]], %{{.+}} -> !torch.vtensor<[2,8,96],f32>
// CHECK:         %[[YB:.+]] = torch.aten.add.Tensor %[[Y3]], %arg2
// CHECK:         %[[OUT:.+]] = torch.aten.gelu %[[YB]]
// CHECK-NOT:     kiln.linear
// CHECK:         return %[[OUT]]
// FOLD-LABEL: module
// FOLD:         func.func private @kiln_cpu_gemm_16x64x96_bias_gelu(tensor<16x64xf32>, tensor<2x64x48xf32>, tensor<96xf32>) -> tensor<16x96xf32> attributes {kiln.cpu_epilogue = "bias,gelu", kiln.cpu_gemm = "16x64x96"}
// FOLD-LABEL: func.func @linear(
// FOLD:         %[[BB:.+]] = "torch_c.to_builtin_tensor"(%arg2)
// FOLD:         %[[Y:.+]] = call @kiln_cpu_gemm_16x64x96_bias_gelu(%{{.+}}, %{{.+}}, %[[BB]])
// FOLD:         %[[YT:.+]] = "torch_c.from_builtin_tensor"(%[[Y]])
// FOLD:         %[[OUT:.+]] = torch.aten.view %[[YT]], %{{.+}} -> !torch.vtensor<[2,8,96],f32>
// FOLD-NOT:     torch.aten.add.Tensor
// FOLD-NOT:     torch.aten.gelu
// FOLD:         return %[[OUT]]
// DEFAULT-LABEL: func.func @linear(
// DEFAULT:         kiln.linear
// AVX2-LABEL: module
// AVX2:         func.func private @kiln_cpu_gemm_16x64x96(tensor<16x64xf32>, tensor<4x64x24xf32>) -> tensor<16x96xf32> attributes {kiln.cpu_gemm = "16x64x96", kiln.cpu_lanes = 8 : i64}
// AVX2-LABEL: func.func @linear(
// AVX2:         torch.aten.view %arg1, %{{.+}} -> !torch.vtensor<[4,24,64],f32>
// AVX2:         torch.aten.permute %{{.+}} -> !torch.vtensor<[4,64,24],f32>
func.func @linear(%x: !torch.vtensor<[2,8,64],f32>, %w: !torch.vtensor<[96,64],f32>, %b: !torch.vtensor<[96],f32>) -> !torch.vtensor<[2,8,96],f32> {
  %0 = "kiln.linear"(%x, %w, %b) {activation = "gelu", operandSegmentSizes = array<i32: 1, 1, 1>, weight_layout = "out_in"} : (!torch.vtensor<[2,8,64],f32>, !torch.vtensor<[96,64],f32>, !torch.vtensor<[96],f32>) -> !torch.vtensor<[2,8,96],f32>
  return %0 : !torch.vtensor<[2,8,96],f32>
}

// -----

// in_out weight [64, 32] → [64, 1, 32] → permute → [1, 64, 32] (32 columns: 32-column panels);
// a 2-D input is not viewed.
// CHECK-LABEL: func.func @in_out(
// CHECK:         %[[G:.+]] = torch.aten.view %arg1, %{{.+}} -> !torch.vtensor<[64,1,32],f32>
// CHECK:         %[[P:.+]] = torch.aten.permute %[[G]], %{{.+}} -> !torch.vtensor<[1,64,32],f32>
// CHECK:         call @kiln_cpu_gemm_16x64x32(
// CHECK-NOT:     kiln.linear
func.func @in_out(%x: !torch.vtensor<[16,64],f32>, %w: !torch.vtensor<[64,32],f32>) -> !torch.vtensor<[16,32],f32> {
  %0 = "kiln.linear"(%x, %w) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "in_out"} : (!torch.vtensor<[16,64],f32>, !torch.vtensor<[64,32],f32>) -> !torch.vtensor<[16,32],f32>
  return %0 : !torch.vtensor<[16,32],f32>
}

// -----

// 100 columns (not a multiple of 32): the weight padded to 4 whole panels, the padding's
// results sliced off; f16: left for convert-kiln-to-torch.
// CHECK-LABEL: func.func @unsupported(
// CHECK:         %[[PAD:.+]] = torch.aten.constant_pad_nd %arg1, %{{.+}}, %{{.+}} -> !torch.vtensor<[128,64],f32>
// CHECK:         torch.aten.view %[[PAD]], %{{.+}} -> !torch.vtensor<[4,32,64],f32>
// CHECK:         %[[Y:.+]] = call @kiln_cpu_gemm_16x64x128(
// CHECK:         %[[YT:.+]] = "torch_c.from_builtin_tensor"(%[[Y]])
// CHECK:         torch.aten.slice.Tensor %[[YT]], %{{.+}} -> !torch.vtensor<[16,100],f32>
// CHECK-NOT:     call @kiln_cpu_gemm
// CHECK:         kiln.linear
// CHECK-NOT:     kiln.linear
func.func @unsupported(%x: !torch.vtensor<[16,64],f32>, %w: !torch.vtensor<[100,64],f32>, %h: !torch.vtensor<[16,64],f16>, %wh: !torch.vtensor<[96,64],f16>) -> (!torch.vtensor<[16,100],f32>, !torch.vtensor<[16,96],f16>) {
  %0 = "kiln.linear"(%x, %w) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[16,64],f32>, !torch.vtensor<[100,64],f32>) -> !torch.vtensor<[16,100],f32>
  %1 = "kiln.linear"(%h, %wh) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[16,64],f16>, !torch.vtensor<[96,64],f16>) -> !torch.vtensor<[16,96],f16>
  return %0, %1 : !torch.vtensor<[16,100],f32>, !torch.vtensor<[16,96],f16>
}

// -----

// Decode rows (M = 1): an out_in weight goes to the matrix-vector kernel as it is (no panel
// permute; 100 outputs need no multiple of 32), an in_out weight to the GEMM with a one-row
// tile. By default decode rows under 2^18 weights stay with IREE (the second run).
// CHECK-LABEL: module
// CHECK-DAG:     func.func private @kiln_cpu_gemv_1x64x100(tensor<1x64xf32>, tensor<100x64xf32>) -> tensor<1x100xf32> attributes {kiln.cpu_gemv = "1x64x100"}
// CHECK-DAG:     func.func private @kiln_cpu_gemm_1x64x32(tensor<1x64xf32>, tensor<1x64x32xf32>) -> tensor<1x32xf32> attributes {kiln.cpu_gemm = "1x64x32"}
// CHECK-LABEL: func.func @decode(
// CHECK-NOT:     torch.aten.permute
// CHECK:         %[[WB:.+]] = "torch_c.to_builtin_tensor"(%arg1)
// CHECK:         call @kiln_cpu_gemv_1x64x100(%{{.+}}, %[[WB]])
// CHECK:         torch.aten.permute
// CHECK:         call @kiln_cpu_gemm_1x64x32(
// CHECK-NOT:     kiln.linear
// DEFAULT-LABEL: func.func @decode(
// DEFAULT-NOT:     call @kiln_cpu
// DEFAULT:         kiln.linear
// DEFAULT:         kiln.linear
func.func @decode(%x: !torch.vtensor<[1,1,64],f32>, %w: !torch.vtensor<[100,64],f32>, %v: !torch.vtensor<[64,32],f32>) -> (!torch.vtensor<[1,1,100],f32>, !torch.vtensor<[1,1,32],f32>) {
  %0 = "kiln.linear"(%x, %w) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[1,1,64],f32>, !torch.vtensor<[100,64],f32>) -> !torch.vtensor<[1,1,100],f32>
  %1 = "kiln.linear"(%x, %v) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "in_out"} : (!torch.vtensor<[1,1,64],f32>, !torch.vtensor<[64,32],f32>) -> !torch.vtensor<[1,1,32],f32>
  return %0, %1 : !torch.vtensor<[1,1,100],f32>, !torch.vtensor<[1,1,32],f32>
}
