// RUN: kiln-opt %s -p 'kiln-select-cuda-kernels{min_linear_weight_elements=0},kiln-chain-cuda-kernels' --split-input-file | filecheck %s
// RUN: kiln-opt %s -p 'kiln-select-cuda-kernels{min_linear_weight_elements=0},kiln-chain-cuda-kernels{prefetch=true}' --split-input-file | filecheck %s --check-prefix=PREFETCH

// kiln-chain-cuda-kernels: kernel calls that feed each other, with only views and tensor
// conversions (or pure ops reading nothing they computed) between them, become one call of a
// `sequence` declaration: one launch of ticketed stages (kiln.kernels.sequence). The member
// declarations go away; what the chain reads from outside becomes the new call's operands.

// Two linears, the second reading the first's output through a view: one call.
// CHECK-LABEL: module
// CHECK:         func.func private @[[SEQ:kiln_kernel_[0-9]+]](tensor<2x64xf16>, tensor<128x64xf16>, tensor<64x128xf16>) -> tensor<2x64xf16> attributes {kiln.kernel = "sequence(stages=(('linear', {{.+}}), ('linear', {{.+}})), sources=((0, 1), (('stage', 0), 2)))"}
// CHECK-NOT:     kiln.kernel = "linear
// With prefetch (compile option cuda_chain_prefetch), the sequence's spec says so: its later
// GEMM stages ask L2 for their weights before they wait.
// PREFETCH:      kiln.kernel = "sequence(stages=(('linear', {{.+}}), ('linear', {{.+}})), sources=((0, 1), (('stage', 0), 2)), prefetch=True)"
// CHECK-LABEL: func.func @mlp(
// CHECK:         %[[Y:.+]] = call @[[SEQ]](%{{.+}}, %{{.+}}, %{{.+}}) : (tensor<2x64xf16>, tensor<128x64xf16>, tensor<64x128xf16>) -> tensor<2x64xf16>
// CHECK-NOT:     call @
// CHECK:         return
func.func @mlp(%x: !torch.vtensor<[1,2,64],f16>, %w1: !torch.vtensor<[128,64],f16>, %w2: !torch.vtensor<[64,128],f16>) -> !torch.vtensor<[1,2,64],f16> {
  %0 = "kiln.linear"(%x, %w1) {activation = "gelu", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[1,2,64],f16>, !torch.vtensor<[128,64],f16>) -> !torch.vtensor<[1,2,128],f16>
  %1 = "kiln.linear"(%0, %w2) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[1,2,128],f16>, !torch.vtensor<[64,128],f16>) -> !torch.vtensor<[1,2,64],f16>
  return %1 : !torch.vtensor<[1,2,64],f16>
}

// -----

// The first output is also returned: the plan has one output, so the calls stay separate.
// CHECK-LABEL: func.func @first_output_used(
// CHECK:         call @kiln_kernel_0(
// CHECK:         call @kiln_kernel_1(
func.func @first_output_used(%x: !torch.vtensor<[2,64],f16>, %w1: !torch.vtensor<[128,64],f16>, %w2: !torch.vtensor<[64,128],f16>) -> (!torch.vtensor<[2,128],f16>, !torch.vtensor<[2,64],f16>) {
  %0 = "kiln.linear"(%x, %w1) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[2,64],f16>, !torch.vtensor<[128,64],f16>) -> !torch.vtensor<[2,128],f16>
  %1 = "kiln.linear"(%0, %w2) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[2,128],f16>, !torch.vtensor<[64,128],f16>) -> !torch.vtensor<[2,64],f16>
  return %0, %1 : !torch.vtensor<[2,128],f16>, !torch.vtensor<[2,64],f16>
}

// -----

// An op computing from the first output sits between the calls: no chain.
// CHECK-LABEL: func.func @op_between(
// CHECK:         call @kiln_kernel_0(
// CHECK:         torch.aten.mul.Tensor
// CHECK:         call @kiln_kernel_1(
func.func @op_between(%x: !torch.vtensor<[2,64],f16>, %w1: !torch.vtensor<[128,64],f16>, %w2: !torch.vtensor<[64,128],f16>) -> !torch.vtensor<[2,64],f16> {
  %0 = "kiln.linear"(%x, %w1) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[2,64],f16>, !torch.vtensor<[128,64],f16>) -> !torch.vtensor<[2,128],f16>
  %1 = torch.aten.mul.Tensor %0, %0 : !torch.vtensor<[2,128],f16>, !torch.vtensor<[2,128],f16> -> !torch.vtensor<[2,128],f16>
  %2 = "kiln.linear"(%1, %w2) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[2,128],f16>, !torch.vtensor<[64,128],f16>) -> !torch.vtensor<[2,64],f16>
  return %2 : !torch.vtensor<[2,64],f16>
}

// -----

// An op between the calls that reads nothing they computed moves above them; the chain holds.
// CHECK:         func.func private @[[SEQ2:kiln_kernel_[0-9]+]]({{.+}} attributes {kiln.kernel = "sequence(
// CHECK-LABEL: func.func @independent_op_between(
// CHECK:         %[[R:.+]] = torch.aten.relu %{{.+}}
// CHECK:         call @[[SEQ2]](
// CHECK-NOT:     call @
// CHECK:         return
func.func @independent_op_between(%x: !torch.vtensor<[2,64],f16>, %w1: !torch.vtensor<[128,64],f16>, %w2: !torch.vtensor<[64,128],f16>, %r: !torch.vtensor<[2,64],f16>) -> !torch.vtensor<[2,64],f16> {
  %0 = "kiln.linear"(%x, %w1) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[2,64],f16>, !torch.vtensor<[128,64],f16>) -> !torch.vtensor<[2,128],f16>
  %1 = torch.aten.relu %r : !torch.vtensor<[2,64],f16> -> !torch.vtensor<[2,64],f16>
  %2 = "kiln.linear"(%0, %w2) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[2,128],f16>, !torch.vtensor<[64,128],f16>) -> !torch.vtensor<[2,64],f16>
  %int1 = torch.constant.int 1
  %3 = torch.aten.add.Tensor %2, %1, %int1 : !torch.vtensor<[2,64],f16>, !torch.vtensor<[2,64],f16>, !torch.int -> !torch.vtensor<[2,64],f16>
  return %3 : !torch.vtensor<[2,64],f16>
}
