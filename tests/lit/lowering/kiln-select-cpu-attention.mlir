// RUN: kiln-opt %s -p 'kiln-select-cpu-kernels{attention=cpu_kernel}' --split-input-file | filecheck %s
// RUN: kiln-opt %s -p 'kiln-select-cpu-kernels{attention=decomposed}' --split-input-file | filecheck %s --check-prefix=OFF

// kiln-select-cpu-kernels (target cpu, cpu_kernels on, attention="cpu_kernel"): an f32
// kiln.attention the CPU attention kernel takes (kiln.cpu_attention) becomes a call of a private
// declaration carrying the problem (batch, heads, kv heads, lengths, head dim, causal, mask
// shape, scale); K is handed over transposed ([B, Hkv, D, Sk]) and the result, written
// [B, Sq, Hq, D], is permuted back. The text handed to IREE gets the declaration's body
// (tests/test_cpu_attention.py). With another attention lowering nothing changes.

// Causal, grouped kv heads (4 query heads over 2).
// CHECK-LABEL: module
// CHECK:         func.func private @[[NAME:kiln_cpu_attention_[0-9a-f]+]](tensor<1x4x32x64xf32>, tensor<1x2x64x32xf32>, tensor<1x2x32x64xf32>) -> tensor<1x32x4x64xf32> attributes {kiln.cpu_attention = "b1_h4_kv2_q32_k32_d64_c1_mnone_s0.125"}
// CHECK-LABEL: func.func @causal_gqa(
// CHECK:         %[[KT:.+]] = torch.aten.transpose.int %arg1, %{{.+}}, %{{.+}} -> !torch.vtensor<[1,2,64,32],f32>
// CHECK-DAG:     %[[QB:.+]] = "torch_c.to_builtin_tensor"(%arg0)
// CHECK-DAG:     %[[KB:.+]] = "torch_c.to_builtin_tensor"(%[[KT]])
// CHECK-DAG:     %[[VB:.+]] = "torch_c.to_builtin_tensor"(%arg2)
// CHECK:         %[[O:.+]] = call @[[NAME]](%[[QB]], %[[KB]], %[[VB]])
// CHECK:         %[[OT:.+]] = "torch_c.from_builtin_tensor"(%[[O]]) {{.+}} -> !torch.vtensor<[1,32,4,64],f32>
// CHECK:         %[[P:.+]] = torch.aten.permute %[[OT]], %{{.+}} -> !torch.vtensor<[1,4,32,64],f32>
// CHECK-NOT:     kiln.attention
// CHECK:         return %[[P]]
// OFF-LABEL: func.func @causal_gqa(
// OFF:         kiln.attention
func.func @causal_gqa(%q: !torch.vtensor<[1,4,32,64],f32>, %k: !torch.vtensor<[1,2,32,64],f32>, %v: !torch.vtensor<[1,2,32,64],f32>) -> !torch.vtensor<[1,4,32,64],f32> {
  %0 = "kiln.attention"(%q, %k, %v) {causal = true, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 1.250000e-01 : f64} : (!torch.vtensor<[1,4,32,64],f32>, !torch.vtensor<[1,2,32,64],f32>, !torch.vtensor<[1,2,32,64],f32>) -> !torch.vtensor<[1,4,32,64],f32>
  return %0 : !torch.vtensor<[1,4,32,64],f32>
}

// -----

// An additive f32 padding mask [B, 1, 1, Sk] (BERT) is a fourth operand, read with its
// broadcasts; a 2-D mask [Sq, Sk] is viewed as [1, 1, Sq, Sk].
// CHECK-LABEL: module
// CHECK-DAG:     func.func private @{{kiln_cpu_attention_[0-9a-f]+}}({{.+}}, tensor<2x1x1x32xf32>) -> tensor<2x32x2x64xf32> attributes {kiln.cpu_attention = "b2_h2_kv2_q32_k32_d64_c0_m2x1x1x32_s0.125"}
// CHECK-DAG:     func.func private @{{kiln_cpu_attention_[0-9a-f]+}}({{.+}}, tensor<1x1x32x32xf32>) -> tensor<2x32x2x64xf32> attributes {kiln.cpu_attention = "b2_h2_kv2_q32_k32_d64_c0_m1x1x32x32_s1.0"}
// CHECK-LABEL: func.func @masked(
// CHECK:         %[[MB:.+]] = "torch_c.to_builtin_tensor"(%arg3)
// CHECK:         call @{{kiln_cpu_attention_[0-9a-f]+}}(%{{.+}}, %{{.+}}, %{{.+}}, %[[MB]])
// CHECK:         %[[M2:.+]] = torch.aten.view %arg4, %{{.+}} -> !torch.vtensor<[1,1,32,32],f32>
// CHECK:         %[[M2B:.+]] = "torch_c.to_builtin_tensor"(%[[M2]])
// CHECK:         call @{{kiln_cpu_attention_[0-9a-f]+}}(%{{.+}}, %{{.+}}, %{{.+}}, %[[M2B]])
// CHECK-NOT:     kiln.attention
func.func @masked(%q: !torch.vtensor<[2,2,32,64],f32>, %k: !torch.vtensor<[2,2,32,64],f32>, %v: !torch.vtensor<[2,2,32,64],f32>, %m: !torch.vtensor<[2,1,1,32],f32>, %m2: !torch.vtensor<[32,32],f32>) -> (!torch.vtensor<[2,2,32,64],f32>, !torch.vtensor<[2,2,32,64],f32>) {
  %0 = "kiln.attention"(%q, %k, %v, %m) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 1.250000e-01 : f64} : (!torch.vtensor<[2,2,32,64],f32>, !torch.vtensor<[2,2,32,64],f32>, !torch.vtensor<[2,2,32,64],f32>, !torch.vtensor<[2,1,1,32],f32>) -> !torch.vtensor<[2,2,32,64],f32>
  %1 = "kiln.attention"(%q, %k, %v, %m2) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 1.000000e+00 : f64} : (!torch.vtensor<[2,2,32,64],f32>, !torch.vtensor<[2,2,32,64],f32>, !torch.vtensor<[2,2,32,64],f32>, !torch.vtensor<[32,32],f32>) -> !torch.vtensor<[2,2,32,64],f32>
  return %0, %1 : !torch.vtensor<[2,2,32,64],f32>, !torch.vtensor<[2,2,32,64],f32>
}

// -----

// A boolean mask (true = attend) becomes the additive f32 mask 0 / -inf, as SDPA reads it.
// CHECK-LABEL: func.func @boolean_mask(
// CHECK:         %[[ADD:.+]] = torch.aten.where.Scalar %arg3, %{{.+}}, %{{.+}} -> !torch.vtensor<[1,1,32,32],f32>
// CHECK:         %[[ADDB:.+]] = "torch_c.to_builtin_tensor"(%[[ADD]])
// CHECK:         call @{{kiln_cpu_attention_[0-9a-f]+}}(%{{.+}}, %{{.+}}, %{{.+}}, %[[ADDB]])
// CHECK-NOT:     kiln.attention
func.func @boolean_mask(%q: !torch.vtensor<[1,2,32,64],f32>, %k: !torch.vtensor<[1,2,32,64],f32>, %v: !torch.vtensor<[1,2,32,64],f32>, %b: !torch.vtensor<[1,1,32,32],i1>) -> !torch.vtensor<[1,2,32,64],f32> {
  %0 = "kiln.attention"(%q, %k, %v, %b) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 1.250000e-01 : f64} : (!torch.vtensor<[1,2,32,64],f32>, !torch.vtensor<[1,2,32,64],f32>, !torch.vtensor<[1,2,32,64],f32>, !torch.vtensor<[1,1,32,32],i1>) -> !torch.vtensor<[1,2,32,64],f32>
  return %0 : !torch.vtensor<[1,2,32,64],f32>
}

// -----

// Refused, left for convert-kiln-to-torch's decomposition: head dim 16, a mask broadcast along
// the keys, f16, 40 keys (not whole 32-key blocks), a dynamic length.
// CHECK-LABEL: func.func @refused(
// CHECK-NOT:     call @kiln_cpu_attention
// CHECK-COUNT-5: kiln.attention
func.func @refused(%q: !torch.vtensor<[1,2,32,16],f32>, %q64: !torch.vtensor<[1,2,32,64],f32>, %k64: !torch.vtensor<[1,2,32,64],f32>, %b: !torch.vtensor<[1,1,32,1],f32>, %h: !torch.vtensor<[1,2,32,64],f16>, %k40: !torch.vtensor<[1,2,40,64],f32>, %qd: !torch.vtensor<[1,2,?,64],f32>) -> (!torch.vtensor<[1,2,32,16],f32>, !torch.vtensor<[1,2,32,64],f32>, !torch.vtensor<[1,2,32,64],f16>, !torch.vtensor<[1,2,32,64],f32>, !torch.vtensor<[1,2,?,64],f32>) {
  %0 = "kiln.attention"(%q, %q, %q) {causal = true, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 2.500000e-01 : f64} : (!torch.vtensor<[1,2,32,16],f32>, !torch.vtensor<[1,2,32,16],f32>, !torch.vtensor<[1,2,32,16],f32>) -> !torch.vtensor<[1,2,32,16],f32>
  %1 = "kiln.attention"(%q64, %k64, %k64, %b) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 1.250000e-01 : f64} : (!torch.vtensor<[1,2,32,64],f32>, !torch.vtensor<[1,2,32,64],f32>, !torch.vtensor<[1,2,32,64],f32>, !torch.vtensor<[1,1,32,1],f32>) -> !torch.vtensor<[1,2,32,64],f32>
  %2 = "kiln.attention"(%h, %h, %h) {causal = true, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 1.250000e-01 : f64} : (!torch.vtensor<[1,2,32,64],f16>, !torch.vtensor<[1,2,32,64],f16>, !torch.vtensor<[1,2,32,64],f16>) -> !torch.vtensor<[1,2,32,64],f16>
  %3 = "kiln.attention"(%q64, %k40, %k40) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 1.250000e-01 : f64} : (!torch.vtensor<[1,2,32,64],f32>, !torch.vtensor<[1,2,40,64],f32>, !torch.vtensor<[1,2,40,64],f32>) -> !torch.vtensor<[1,2,32,64],f32>
  %4 = "kiln.attention"(%qd, %qd, %qd) {causal = true, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 1.250000e-01 : f64} : (!torch.vtensor<[1,2,?,64],f32>, !torch.vtensor<[1,2,?,64],f32>, !torch.vtensor<[1,2,?,64],f32>) -> !torch.vtensor<[1,2,?,64],f32>
  return %0, %1, %2, %3, %4 : !torch.vtensor<[1,2,32,16],f32>, !torch.vtensor<[1,2,32,64],f32>, !torch.vtensor<[1,2,32,64],f16>, !torch.vtensor<[1,2,32,64],f32>, !torch.vtensor<[1,2,?,64],f32>
}
