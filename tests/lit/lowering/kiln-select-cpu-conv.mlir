// RUN: kiln-opt %s -p 'kiln-select-cpu-kernels{lanes=8 convolutions=true min_conv_macs=0}' --split-input-file | filecheck %s
// RUN: kiln-opt %s -p 'kiln-select-cpu-kernels{lanes=8 min_conv_macs=0}' --split-input-file | filecheck %s --check-prefix=OFF
// RUN: kiln-opt %s -p 'kiln-select-cpu-kernels{lanes=8 convolutions=true}' --split-input-file | filecheck %s --check-prefix=SMALL

// kiln-select-cpu-kernels with option convolutions (kiln.targets.HOST_CPU_CONVOLUTIONS): an f32
// 2-D convolution becomes a call of Kiln's implicit-GEMM kernel (kiln.cpu_conv) on the input
// padded in NHWC (spatially by the convolution's padding; channels 3 -> 4 so that a
// receptive-field row, 3 pixels x 4 channels, is whole reduction steps of 4) and the weight
// [F, C, KH, KW] padded (20 -> 32 output channels: two 16-column panels of the AVX2 6 x 2 tile),
// laid out [KH, KW, C, F] and packed in panels [2, 36, 16]. The result's rows are the 25 output
// pixels padded to whole 6-pixel tiles (30); the padding rows and columns are sliced off, the
// result goes back to NCHW and the bias is added after. Without the option (the second run)
// or below MIN_MACS (the third) the convolution stays with IREE.

// CHECK-LABEL: module
// CHECK:         func.func private @kiln_cpu_conv_1x4x11x11_k3x3_s2x2_o5x5_f32_t6x2x4_l8(tensor<484xf32>, tensor<2x36x16xf32>) -> tensor<30x32xf32> attributes {kiln.cpu_conv = "1x4x11x11_k3x3_s2x2_o5x5_f32_t6x2x4_l8"}
// CHECK-LABEL: func.func @conv(
// CHECK:         %[[NHWC:.+]] = torch.aten.permute %arg0, %{{.+}} -> !torch.vtensor<[1,9,9,3],f32>
// CHECK:         %[[PAD:.+]] = torch.aten.constant_pad_nd %[[NHWC]], {{.+}} -> !torch.vtensor<[1,11,11,4],f32>
// CHECK:         %[[FLAT:.+]] = torch.aten.view %[[PAD]], {{.+}} -> !torch.vtensor<[484],f32>
// CHECK:         %[[WPAD:.+]] = torch.aten.constant_pad_nd %arg1, {{.+}} -> !torch.vtensor<[32,4,3,3],f32>
// CHECK:         %[[HWCF:.+]] = torch.aten.permute %[[WPAD]], {{.+}} -> !torch.vtensor<[3,3,4,32],f32>
// CHECK:         %[[GROUPED:.+]] = torch.aten.view %[[HWCF]], {{.+}} -> !torch.vtensor<[36,2,16],f32>
// CHECK:         %[[PACKED:.+]] = torch.aten.permute %[[GROUPED]], {{.+}} -> !torch.vtensor<[2,36,16],f32>
// CHECK:         %[[XB:.+]] = "torch_c.to_builtin_tensor"(%[[FLAT]])
// CHECK:         %[[WB:.+]] = "torch_c.to_builtin_tensor"(%[[PACKED]])
// CHECK:         %[[Y:.+]] = call @kiln_cpu_conv_1x4x11x11_k3x3_s2x2_o5x5_f32_t6x2x4_l8(%[[XB]], %[[WB]])
// CHECK:         %[[YT:.+]] = "torch_c.from_builtin_tensor"(%[[Y]])
// CHECK:         %[[ROWS:.+]] = torch.aten.slice.Tensor %[[YT]], {{.+}} -> !torch.vtensor<[25,32],f32>
// CHECK:         %[[COLS:.+]] = torch.aten.slice.Tensor %[[ROWS]], {{.+}} -> !torch.vtensor<[25,20],f32>
// CHECK:         %[[IMAGE:.+]] = torch.aten.view %[[COLS]], {{.+}} -> !torch.vtensor<[1,5,5,20],f32>
// CHECK:         %[[NCHW:.+]] = torch.aten.permute %[[IMAGE]], {{.+}} -> !torch.vtensor<[1,20,5,5],f32>
// CHECK:         %[[BIAS:.+]] = torch.aten.view %arg2, {{.+}} -> !torch.vtensor<[20,1,1],f32>
// CHECK:         %[[OUT:.+]] = torch.aten.add.Tensor %[[NCHW]], %[[BIAS]]
// CHECK-NOT:     torch.aten.convolution
// CHECK:         return %[[OUT]]
// OFF-LABEL: func.func @conv(
// OFF:         torch.aten.convolution
// SMALL-LABEL: func.func @conv(
// SMALL:         torch.aten.convolution
func.func @conv(%x: !torch.vtensor<[1,3,9,9],f32>, %w: !torch.vtensor<[20,3,3,3],f32>, %b: !torch.vtensor<[20],f32>) -> !torch.vtensor<[1,20,5,5],f32> {
  %false = torch.constant.bool false
  %int1 = torch.constant.int 1
  %int0 = torch.constant.int 0
  %int2 = torch.constant.int 2
  %stride = torch.prim.ListConstruct %int2, %int2 : (!torch.int, !torch.int) -> !torch.list<int>
  %pad = torch.prim.ListConstruct %int1, %int1 : (!torch.int, !torch.int) -> !torch.list<int>
  %dil = torch.prim.ListConstruct %int1, %int1 : (!torch.int, !torch.int) -> !torch.list<int>
  %outpad = torch.prim.ListConstruct %int0, %int0 : (!torch.int, !torch.int) -> !torch.list<int>
  %0 = torch.aten.convolution %x, %w, %b, %stride, %pad, %dil, %false, %outpad, %int1 : !torch.vtensor<[1,3,9,9],f32>, !torch.vtensor<[20,3,3,3],f32>, !torch.vtensor<[20],f32>, !torch.list<int>, !torch.list<int>, !torch.list<int>, !torch.bool, !torch.list<int>, !torch.int -> !torch.vtensor<[1,20,5,5],f32>
  return %0 : !torch.vtensor<[1,20,5,5],f32>
}

// -----

// Left with IREE: a grouped convolution, a dilated one, and an f16 one.
// CHECK-LABEL: func.func @refused(
// CHECK-NOT:     call @kiln_cpu_conv
// CHECK-COUNT-3: torch.aten.convolution
func.func @refused(%x: !torch.vtensor<[1,8,9,9],f32>, %wg: !torch.vtensor<[16,4,3,3],f32>, %w: !torch.vtensor<[16,8,3,3],f32>, %xh: !torch.vtensor<[1,8,9,9],f16>, %wh: !torch.vtensor<[16,8,3,3],f16>) -> (!torch.vtensor<[1,16,7,7],f32>, !torch.vtensor<[1,16,5,5],f32>, !torch.vtensor<[1,16,7,7],f16>) {
  %false = torch.constant.bool false
  %none = torch.constant.none
  %int1 = torch.constant.int 1
  %int0 = torch.constant.int 0
  %int2 = torch.constant.int 2
  %one = torch.prim.ListConstruct %int1, %int1 : (!torch.int, !torch.int) -> !torch.list<int>
  %zero = torch.prim.ListConstruct %int0, %int0 : (!torch.int, !torch.int) -> !torch.list<int>
  %two = torch.prim.ListConstruct %int2, %int2 : (!torch.int, !torch.int) -> !torch.list<int>
  %0 = torch.aten.convolution %x, %wg, %none, %one, %zero, %one, %false, %zero, %int2 : !torch.vtensor<[1,8,9,9],f32>, !torch.vtensor<[16,4,3,3],f32>, !torch.none, !torch.list<int>, !torch.list<int>, !torch.list<int>, !torch.bool, !torch.list<int>, !torch.int -> !torch.vtensor<[1,16,7,7],f32>
  %1 = torch.aten.convolution %x, %w, %none, %one, %zero, %two, %false, %zero, %int1 : !torch.vtensor<[1,8,9,9],f32>, !torch.vtensor<[16,8,3,3],f32>, !torch.none, !torch.list<int>, !torch.list<int>, !torch.list<int>, !torch.bool, !torch.list<int>, !torch.int -> !torch.vtensor<[1,16,5,5],f32>
  %2 = torch.aten.convolution %xh, %wh, %none, %one, %zero, %one, %false, %zero, %int1 : !torch.vtensor<[1,8,9,9],f16>, !torch.vtensor<[16,8,3,3],f16>, !torch.none, !torch.list<int>, !torch.list<int>, !torch.list<int>, !torch.bool, !torch.list<int>, !torch.int -> !torch.vtensor<[1,16,7,7],f16>
  return %0, %1, %2 : !torch.vtensor<[1,16,7,7],f32>, !torch.vtensor<[1,16,5,5],f32>, !torch.vtensor<[1,16,7,7],f16>
}
