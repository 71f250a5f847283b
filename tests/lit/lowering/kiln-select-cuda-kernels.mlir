// RUN: kiln-opt %s -p 'kiln-select-cuda-kernels{min_linear_weight_elements=0}' --split-input-file | filecheck %s
// RUN: kiln-opt %s -p kiln-select-cuda-kernels --split-input-file | filecheck %s --check-prefix=DEFAULT

// kiln-select-cuda-kernels (target cuda): a kiln op a library kernel supports becomes torch_c
// casts around a call of a private declaration that carries the kernel spec; the text handed to
// IREE gets the declaration's body (kiln.cuda_kernels, tests/test_cuda_kernel_calls.py).
// Unsupported ops (dtype, dynamic shapes, mixed dtypes, head dim) are left as they are.

// A linear of rank-3 input: flattened to [m, k], called, viewed back. Equal specs share one
// declaration.
// CHECK-LABEL: module
// CHECK:         func.func private @kiln_kernel_0(tensor<6x96xf16>, tensor<200x96xf16>, tensor<200xf16>) -> tensor<6x200xf16> attributes {kiln.kernel = "linear(m=6, n=200, k=96, dtype='f16', weight_layout='out_in', has_bias=True, activation='gelu', arch='sm_90a', split_k=False)"}
// CHECK-NOT:     func.func private @kiln_kernel_1
// CHECK-LABEL: func.func @linear(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,3,96],f16>, %[[W:[^:]+]]: !torch.vtensor<[200,96],f16>, %[[B:[^:]+]]: !torch.vtensor<[200],f16>)
// CHECK:         %[[X2:.+]] = torch.aten.view %[[X]], %{{.+}} -> !torch.vtensor<[6,96],f16>
// CHECK:         %[[XB:.+]] = "torch_c.to_builtin_tensor"(%[[X2]]) : (!torch.vtensor<[6,96],f16>) -> tensor<6x96xf16>
// CHECK:         %[[WB:.+]] = "torch_c.to_builtin_tensor"(%[[W]])
// CHECK:         %[[BB:.+]] = "torch_c.to_builtin_tensor"(%[[B]])
// CHECK:         %[[Y:.+]] = call @kiln_kernel_0(%[[XB]], %[[WB]], %[[BB]]) : (tensor<6x96xf16>, tensor<200x96xf16>, tensor<200xf16>) -> tensor<6x200xf16>
// CHECK:         %[[YT:.+]] = "torch_c.from_builtin_tensor"(%[[Y]]) : (tensor<6x200xf16>) -> !torch.vtensor<[6,200],f16>
// CHECK:         %[[OUT:.+]] = torch.aten.view %[[YT]], %{{.+}} -> !torch.vtensor<[2,3,200],f16>
// CHECK:         %[[Y2:.+]] = call @kiln_kernel_0(
// CHECK-NOT:     kiln.linear
// CHECK:         return %[[OUT]]
func.func @linear(%x: !torch.vtensor<[2,3,96],f16>, %w: !torch.vtensor<[200,96],f16>, %b: !torch.vtensor<[200],f16>) -> !torch.vtensor<[2,3,200],f16> {
  %0 = "kiln.linear"(%x, %w, %b) {activation = "gelu", operandSegmentSizes = array<i32: 1, 1, 1>, weight_layout = "out_in"} : (!torch.vtensor<[2,3,96],f16>, !torch.vtensor<[200,96],f16>, !torch.vtensor<[200],f16>) -> !torch.vtensor<[2,3,200],f16>
  %1 = "kiln.linear"(%x, %w, %b) {activation = "gelu", operandSegmentSizes = array<i32: 1, 1, 1>, weight_layout = "out_in"} : (!torch.vtensor<[2,3,96],f16>, !torch.vtensor<[200,96],f16>, !torch.vtensor<[200],f16>) -> !torch.vtensor<[2,3,200],f16>
  return %0 : !torch.vtensor<[2,3,200],f16>
}

// -----

// GPT-2's Conv1D layout ([in, out] weight) and bf16, no bias.
// CHECK-LABEL: module
// CHECK:         func.func private @kiln_kernel_0(tensor<4x64xbf16>, tensor<64x192xbf16>) -> tensor<4x192xbf16> attributes {kiln.kernel = "linear(m=4, n=192, k=64, dtype='bf16', weight_layout='in_out', has_bias=False, activation='gelu_tanh', arch='sm_90a', split_k=False)"}
// CHECK-LABEL: func.func @conv1d_layout(
// CHECK:         call @kiln_kernel_0
func.func @conv1d_layout(%x: !torch.vtensor<[4,64],bf16>, %w: !torch.vtensor<[64,192],bf16>) -> !torch.vtensor<[4,192],bf16> {
  %0 = "kiln.linear"(%x, %w) {activation = "gelu_tanh", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "in_out"} : (!torch.vtensor<[4,64],bf16>, !torch.vtensor<[64,192],bf16>) -> !torch.vtensor<[4,192],bf16>
  return %0 : !torch.vtensor<[4,192],bf16>
}

// -----

// Attention of rank 3 gets a leading 1; a bool mask travels as si8 (true = keep), broadcast
// dims kept for the kernel's zero strides.
// CHECK-LABEL: module
// CHECK:         func.func private @kiln_kernel_0(tensor<1x4x77x64xf16>, tensor<1x4x77x64xf16>, tensor<1x4x77x64xf16>, tensor<1x1x77x77xi8>) -> tensor<1x4x77x64xf16> attributes {kiln.kernel = "attention(b=1, hq=4, hkv=4, sq=77, sk=77, d=64, dtype='f16', scale=0.125, causal=False, mask_shape=(1, 1, 77, 77), mask_kind='bool', mask_dtype='i8', arch='sm_90a')"}
// CHECK-LABEL: func.func @attention_bool_mask(
// CHECK:         %[[M4:.+]] = torch.aten.view %{{.+}} : !torch.vtensor<[77,77],i1>, !torch.list<int> -> !torch.vtensor<[1,1,77,77],i1>
// CHECK:         %[[M8:.+]] = torch.aten.to.dtype %[[M4]], {{.+}} -> !torch.vtensor<[1,1,77,77],si8>
// CHECK:         %[[MB:.+]] = "torch_c.to_builtin_tensor"(%[[M8]]) : (!torch.vtensor<[1,1,77,77],si8>) -> tensor<1x1x77x77xi8>
// CHECK:         call @kiln_kernel_0({{.+}}, %[[MB]])
// CHECK-NOT:     kiln.attention
func.func @attention_bool_mask(%q: !torch.vtensor<[4,77,64],f16>, %k: !torch.vtensor<[4,77,64],f16>, %v: !torch.vtensor<[4,77,64],f16>, %m: !torch.vtensor<[77,77],i1>) -> !torch.vtensor<[4,77,64],f16> {
  %0 = "kiln.attention"(%q, %k, %v, %m) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 1.250000e-01 : f64} : (!torch.vtensor<[4,77,64],f16>, !torch.vtensor<[4,77,64],f16>, !torch.vtensor<[4,77,64],f16>, !torch.vtensor<[77,77],i1>) -> !torch.vtensor<[4,77,64],f16>
  return %0 : !torch.vtensor<[4,77,64],f16>
}

// -----

// Grouped kv heads, causal, single-token decode: one spec with hq != hkv and sq = 1.
// CHECK-LABEL: module
// CHECK:         attributes {kiln.kernel = "attention(b=2, hq=8, hkv=2, sq=1, sk=300, d=64, dtype='bf16', scale=0.125, causal=True, arch='sm_90a')"}
// CHECK-LABEL: func.func @attention_gqa_decode(
// CHECK:         call @kiln_kernel_0
func.func @attention_gqa_decode(%q: !torch.vtensor<[2,8,1,64],bf16>, %k: !torch.vtensor<[2,2,300,64],bf16>, %v: !torch.vtensor<[2,2,300,64],bf16>) -> !torch.vtensor<[2,8,1,64],bf16> {
  %0 = "kiln.attention"(%q, %k, %v) {causal = true, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 1.250000e-01 : f64} : (!torch.vtensor<[2,8,1,64],bf16>, !torch.vtensor<[2,2,300,64],bf16>, !torch.vtensor<[2,2,300,64],bf16>) -> !torch.vtensor<[2,8,1,64],bf16>
  return %0 : !torch.vtensor<[2,8,1,64],bf16>
}

// -----

// With the default threshold (2^18 weight elements, measured) the small linears above stay
// kiln ops and only attentions get kernels.
// DEFAULT-NOT:   linear(m=
// DEFAULT:       attention(b=1, hq=4, hkv=4, sq=77

// Negative cases stay kiln ops for convert-kiln-to-torch: f32, a dynamic dim, an attention
// head dim over the kernels' limit (256).
// CHECK-LABEL: module
// CHECK-NOT:     kiln_kernel
// CHECK-LABEL: func.func @unsupported(
// CHECK:         "kiln.linear"(%{{.+}}) {{.+}} -> !torch.vtensor<[4,32],f32>
// CHECK:         "kiln.linear"(%{{.+}}) {{.+}} -> !torch.vtensor<[?,32],f16>
// CHECK:         "kiln.attention"(%{{.+}}) {{.+}} -> !torch.vtensor<[1,2,8,512],f16>
// CHECK-NOT:     call @kiln_kernel
func.func @unsupported(%x32: !torch.vtensor<[4,16],f32>, %w32: !torch.vtensor<[32,16],f32>, %xd: !torch.vtensor<[?,16],f16>, %w: !torch.vtensor<[32,16],f16>, %q: !torch.vtensor<[1,2,8,512],f16>) -> (!torch.vtensor<[4,32],f32>, !torch.vtensor<[?,32],f16>, !torch.vtensor<[1,2,8,512],f16>) {
  %0 = "kiln.linear"(%x32, %w32) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[4,16],f32>, !torch.vtensor<[32,16],f32>) -> !torch.vtensor<[4,32],f32>
  %1 = "kiln.linear"(%xd, %w) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[?,16],f16>, !torch.vtensor<[32,16],f16>) -> !torch.vtensor<[?,32],f16>
  %3 = "kiln.attention"(%q, %q, %q) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 1.250000e-01 : f64} : (!torch.vtensor<[1,2,8,512],f16>, !torch.vtensor<[1,2,8,512],f16>, !torch.vtensor<[1,2,8,512],f16>) -> !torch.vtensor<[1,2,8,512],f16>
  return %0, %1, %3 : !torch.vtensor<[4,32],f32>, !torch.vtensor<[?,32],f16>, !torch.vtensor<[1,2,8,512],f16>
}

// -----

// linear(x) + r with the linear's only use: the kernel's residual epilogue takes r; the add goes.
// A linear whose result is used twice keeps its add.
// CHECK-LABEL: module
// CHECK-DAG:     @kiln_kernel_0({{.+}} attributes {kiln.kernel = "linear(m=4, n=64, k=64, dtype='f16', weight_layout='out_in', has_bias=False, activation='none', arch='sm_90a', split_k=False, has_residual=True)"}
// CHECK-DAG:     @kiln_kernel_1({{.+}} attributes {kiln.kernel = "linear(m=4, n=64, k=64, dtype='f16', weight_layout='out_in', has_bias=False, activation='none', arch='sm_90a', split_k=False)"}
// CHECK-LABEL: func.func @residual(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[4,64],f16>, %[[W:[^:]+]]: !torch.vtensor<[64,64],f16>, %[[R:[^:]+]]: !torch.vtensor<[4,64],f16>)
// CHECK:         %[[RB:.+]] = "torch_c.to_builtin_tensor"(%[[R]])
// CHECK:         call @kiln_kernel_0(%{{.+}}, %{{.+}}, %[[RB]])
// CHECK:         call @kiln_kernel_1(
// CHECK:         torch.aten.add.Tensor
// CHECK-NOT:     torch.aten.add.Tensor
func.func @residual(%x: !torch.vtensor<[4,64],f16>, %w: !torch.vtensor<[64,64],f16>, %r: !torch.vtensor<[4,64],f16>) -> (!torch.vtensor<[4,64],f16>, !torch.vtensor<[4,64],f16>, !torch.vtensor<[4,64],f16>) {
  %int1 = torch.constant.int 1
  %0 = "kiln.linear"(%x, %w) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[4,64],f16>, !torch.vtensor<[64,64],f16>) -> !torch.vtensor<[4,64],f16>
  %1 = torch.aten.add.Tensor %r, %0, %int1 : !torch.vtensor<[4,64],f16>, !torch.vtensor<[4,64],f16>, !torch.int -> !torch.vtensor<[4,64],f16>
  %2 = "kiln.linear"(%r, %w) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[4,64],f16>, !torch.vtensor<[64,64],f16>) -> !torch.vtensor<[4,64],f16>
  %3 = torch.aten.add.Tensor %2, %x, %int1 : !torch.vtensor<[4,64],f16>, !torch.vtensor<[4,64],f16>, !torch.int -> !torch.vtensor<[4,64],f16>
  return %1, %3, %2 : !torch.vtensor<[4,64],f16>, !torch.vtensor<[4,64],f16>, !torch.vtensor<[4,64],f16>
}

// -----

// The pre-norm residual step (issue 14): kiln.add_rms_norm(r, linear(x)) is split; the residual
// add goes to the first GEMM's epilogue and the RMSNorm into the prologue of the GEMM that reads
// it (here a SwiGLU linear: one GEMM over gate and up). No norm, add or multiply is left.
// CHECK-LABEL: module
// CHECK-DAG:     @kiln_kernel_0({{.+}} attributes {kiln.kernel = "linear(m=4, n=64, k=64, dtype='f16', weight_layout='out_in', has_bias=False, activation='none', arch='sm_90a', split_k=False, has_residual=True)"}
// CHECK-DAG:     @kiln_kernel_1(tensor<4x64xf16>, tensor<256x64xf16>, tensor<64xf16>) -> tensor<4x128xf16> attributes {kiln.kernel = "linear(m=4, n=128, k=64, dtype='f16', weight_layout='out_in', has_bias=False, activation='swiglu', arch='sm_90a', split_k=False, norm='rms', norm_eps=1e-06, has_norm_weight=True, has_norm_bias=False, norm_dtype='f16')"}
// CHECK-LABEL: func.func @residual_norm(
// CHECK:         %[[S:.+]] = call @kiln_kernel_0(
// CHECK:         %[[ST:.+]] = "torch_c.from_builtin_tensor"(%[[S]])
// CHECK:         %[[SB:.+]] = "torch_c.to_builtin_tensor"(%[[ST]])
// CHECK:         call @kiln_kernel_1(%[[SB]],
// CHECK-NOT:     kiln.
// CHECK-NOT:     torch.aten.add
// CHECK:         return
func.func @residual_norm(%x: !torch.vtensor<[4,64],f16>, %w: !torch.vtensor<[64,64],f16>, %r: !torch.vtensor<[4,64],f16>, %g: !torch.vtensor<[64],f16>, %w2: !torch.vtensor<[256,64],f16>) -> (!torch.vtensor<[4,128],f16>, !torch.vtensor<[4,64],f16>) {
  %0 = "kiln.linear"(%x, %w) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[4,64],f16>, !torch.vtensor<[64,64],f16>) -> !torch.vtensor<[4,64],f16>
  %1:2 = "kiln.add_rms_norm"(%r, %0, %g) {epsilon = 1.0e-06 : f64, operandSegmentSizes = array<i32: 1, 1, 1>} : (!torch.vtensor<[4,64],f16>, !torch.vtensor<[4,64],f16>, !torch.vtensor<[64],f16>) -> (!torch.vtensor<[4,64],f16>, !torch.vtensor<[4,64],f16>)
  %2 = "kiln.linear"(%1#0, %w2) {activation = "swiglu", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[4,64],f16>, !torch.vtensor<[256,64],f16>) -> !torch.vtensor<[4,128],f16>
  return %2, %1#1 : !torch.vtensor<[4,128],f16>, !torch.vtensor<[4,64],f16>
}

// -----

// Attention on slices of a fused QKV output (Llama's form after Kiln's raising: view to heads,
// one permute, q and k rotated by one kiln.rope, v a slice): the kernel reads q, k and v in
// place from the QKV buffer with strides, rotates q and k while loading and writes [B, S, H, D]
// for the output projection. No permute, slice or rope is left.
// CHECK-LABEL: module
// CHECK:         func.func private @kiln_kernel_0(tensor<1x16x768xf16>, tensor<1x16x64xf16>, tensor<1x16x64xf16>) -> tensor<1x16x8x64xf16> attributes {kiln.kernel = "attention(b=1, hq=8, hkv=2, sq=16, sk=16, d=64, dtype='f16', scale=0.125, causal=True, arch='sm_90a', buffers=((1, 16, 768),), q_view=(0, 0, 12288, 64, 768), k_view=(0, 512, 12288, 64, 768), v_view=(0, 640, 12288, 64, 768), rope=(True, True, (1, 16, 64), 'f16'), out_layout='bshd')"}
// CHECK-LABEL: func.func @qkv_in_place(
// CHECK:         call @kiln_kernel_0(
// CHECK-NOT:     torch.aten.permute
// CHECK-NOT:     torch.aten.slice
// CHECK-NOT:     kiln.
// CHECK:         return
func.func @qkv_in_place(%qkv: !torch.vtensor<[1,16,768],f16>, %cos: !torch.vtensor<[1,1,16,64],f16>, %sin: !torch.vtensor<[1,1,16,64],f16>) -> !torch.vtensor<[1,16,512],f16> {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %int8 = torch.constant.int 8
  %int10 = torch.constant.int 10
  %int12 = torch.constant.int 12
  %int16 = torch.constant.int 16
  %int64 = torch.constant.int 64
  %int512 = torch.constant.int 512
  %shape = torch.prim.ListConstruct %int1, %int16, %int12, %int64 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %heads = torch.aten.view %qkv, %shape : !torch.vtensor<[1,16,768],f16>, !torch.list<int> -> !torch.vtensor<[1,16,12,64],f16>
  %perm = torch.prim.ListConstruct %int0, %int2, %int1, %int3 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %bhsd = torch.aten.permute %heads, %perm : !torch.vtensor<[1,16,12,64],f16>, !torch.list<int> -> !torch.vtensor<[1,12,16,64],f16>
  %v = torch.aten.slice.Tensor %bhsd, %int1, %int10, %int12, %int1 : !torch.vtensor<[1,12,16,64],f16>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,2,16,64],f16>
  %qk = torch.aten.slice.Tensor %bhsd, %int1, %int0, %int10, %int1 : !torch.vtensor<[1,12,16,64],f16>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,10,16,64],f16>
  %rot = "kiln.rope"(%qk, %cos, %sin) {interleaved = false} : (!torch.vtensor<[1,10,16,64],f16>, !torch.vtensor<[1,1,16,64],f16>, !torch.vtensor<[1,1,16,64],f16>) -> !torch.vtensor<[1,10,16,64],f16>
  %q = torch.aten.slice.Tensor %rot, %int1, %int0, %int8, %int1 : !torch.vtensor<[1,10,16,64],f16>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,8,16,64],f16>
  %k = torch.aten.slice.Tensor %rot, %int1, %int8, %int10, %int1 : !torch.vtensor<[1,10,16,64],f16>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,2,16,64],f16>
  %o = "kiln.attention"(%q, %k, %v) {causal = true, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 1.250000e-01 : f64} : (!torch.vtensor<[1,8,16,64],f16>, !torch.vtensor<[1,2,16,64],f16>, !torch.vtensor<[1,2,16,64],f16>) -> !torch.vtensor<[1,8,16,64],f16>
  %back = torch.aten.permute %o, %perm : !torch.vtensor<[1,8,16,64],f16>, !torch.list<int> -> !torch.vtensor<[1,16,8,64],f16>
  %flat = torch.prim.ListConstruct %int1, %int16, %int512 : (!torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %out = torch.aten.view %back, %flat : !torch.vtensor<[1,16,8,64],f16>, !torch.list<int> -> !torch.vtensor<[1,16,512],f16>
  return %out : !torch.vtensor<[1,16,512],f16>
}

// -----

// Decode over a KV cache written by `where(slot == position, new row, cache)` (kiln.kv_cache's
// decode step for CUDA): the attention kernel reads q and the new k/v rows in place from the
// QKV buffer (rotating q and k), writes the rows into the caches at the position and attends
// over them. The call returns the output and both caches (tied to the cache operands when
// rendered for IREE), which replace the selects' results; no select or slot compare is left.
// CHECK-LABEL: module
// CHECK:         func.func private @kiln_kernel_0(tensor<1x1x768xf16>, tensor<1x2x8x64xf16>, tensor<1x2x8x64xf16>, tensor<1x1x1x8xf16>, tensor<1x1x64xf16>, tensor<1x1x64xf16>, tensor<1xi64>) -> (tensor<1x8x1x64xf16>, tensor<1x2x8x64xf16>, tensor<1x2x8x64xf16>) attributes {kiln.kernel = "attention(b=1, hq=8, hkv=2, sq=1, sk=8, d=64, dtype='f16', scale=0.125, causal=False, mask_shape=(1, 1, 1, 8), mask_kind='additive', mask_dtype='f16', arch='sm_90a', buffers=((1, 1, 768), (1, 2, 8, 64), (1, 2, 8, 64)), q_view=(0, 0, 768, 64, 768), k_view=(1, 0, 1024, 512, 64), v_view=(2, 0, 1024, 512, 64), new_kv=((0, 512, 768, 64, 768), (0, 640, 768, 64, 768)), rope=(True, True, (1, 1, 64), 'f16'), out_layout='bhsd')"}
// CHECK-LABEL: func.func @decode_cache_write(
// CHECK-SAME:    %[[QKV:[^:]+]]: !torch.vtensor<[1,1,768],f16>, %[[KC:[^:]+]]: !torch.vtensor<[1,2,8,64],f16>, %[[VC:[^:]+]]: !torch.vtensor<[1,2,8,64],f16>, %[[POS:[^:]+]]: !torch.vtensor<[1],si64>
// CHECK:         %[[POSB:.+]] = "torch_c.to_builtin_tensor"(%[[POS]]) : (!torch.vtensor<[1],si64>) -> tensor<1xi64>
// CHECK:         %[[CALL:.+]]:3 = call @kiln_kernel_0({{.*}}, %[[POSB]])
// CHECK-DAG:     %[[K:.+]] = "torch_c.from_builtin_tensor"(%[[CALL]]#1)
// CHECK-DAG:     %[[V:.+]] = "torch_c.from_builtin_tensor"(%[[CALL]]#2)
// CHECK-NOT:     torch.aten.where.self
// CHECK-NOT:     torch.aten.eq.Tensor
// CHECK-NOT:     kiln.
// CHECK:         return %{{.+}}, %[[K]], %[[V]]
func.func @decode_cache_write(%qkv: !torch.vtensor<[1,1,768],f16>, %kc: !torch.vtensor<[1,2,8,64],f16>, %vc: !torch.vtensor<[1,2,8,64],f16>, %pos: !torch.vtensor<[1],si64>, %mask: !torch.vtensor<[1,1,1,8],f16>, %cos: !torch.vtensor<[1,1,1,64],f16>, %sin: !torch.vtensor<[1,1,1,64],f16>) -> (!torch.vtensor<[1,8,1,64],f16>, !torch.vtensor<[1,2,8,64],f16>, !torch.vtensor<[1,2,8,64],f16>) {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %int8 = torch.constant.int 8
  %int10 = torch.constant.int 10
  %int12 = torch.constant.int 12
  %int64 = torch.constant.int 64
  %shape = torch.prim.ListConstruct %int1, %int1, %int12, %int64 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %heads = torch.aten.view %qkv, %shape : !torch.vtensor<[1,1,768],f16>, !torch.list<int> -> !torch.vtensor<[1,1,12,64],f16>
  %perm = torch.prim.ListConstruct %int0, %int2, %int1, %int3 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %bhsd = torch.aten.permute %heads, %perm : !torch.vtensor<[1,1,12,64],f16>, !torch.list<int> -> !torch.vtensor<[1,12,1,64],f16>
  %vnew = torch.aten.slice.Tensor %bhsd, %int1, %int10, %int12, %int1 : !torch.vtensor<[1,12,1,64],f16>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,2,1,64],f16>
  %qk = torch.aten.slice.Tensor %bhsd, %int1, %int0, %int10, %int1 : !torch.vtensor<[1,12,1,64],f16>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,10,1,64],f16>
  %rot = "kiln.rope"(%qk, %cos, %sin) {interleaved = false} : (!torch.vtensor<[1,10,1,64],f16>, !torch.vtensor<[1,1,1,64],f16>, !torch.vtensor<[1,1,1,64],f16>) -> !torch.vtensor<[1,10,1,64],f16>
  %q = torch.aten.slice.Tensor %rot, %int1, %int0, %int8, %int1 : !torch.vtensor<[1,10,1,64],f16>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,8,1,64],f16>
  %knew = torch.aten.slice.Tensor %rot, %int1, %int8, %int10, %int1 : !torch.vtensor<[1,10,1,64],f16>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,2,1,64],f16>
  %slots = torch.vtensor.literal(dense<[0, 1, 2, 3, 4, 5, 6, 7]> : tensor<8xsi64>) : !torch.vtensor<[8],si64>
  %eq = torch.aten.eq.Tensor %slots, %pos : !torch.vtensor<[8],si64>, !torch.vtensor<[1],si64> -> !torch.vtensor<[8],i1>
  %c0 = torch.aten.unsqueeze %eq, %int0 : !torch.vtensor<[8],i1>, !torch.int -> !torch.vtensor<[1,8],i1>
  %c1 = torch.aten.unsqueeze %c0, %int1 : !torch.vtensor<[1,8],i1>, !torch.int -> !torch.vtensor<[1,1,8],i1>
  %cond = torch.aten.unsqueeze %c1, %int3 : !torch.vtensor<[1,1,8],i1>, !torch.int -> !torch.vtensor<[1,1,8,1],i1>
  %k = torch.aten.where.self %cond, %knew, %kc : !torch.vtensor<[1,1,8,1],i1>, !torch.vtensor<[1,2,1,64],f16>, !torch.vtensor<[1,2,8,64],f16> -> !torch.vtensor<[1,2,8,64],f16>
  %v = torch.aten.where.self %cond, %vnew, %vc : !torch.vtensor<[1,1,8,1],i1>, !torch.vtensor<[1,2,1,64],f16>, !torch.vtensor<[1,2,8,64],f16> -> !torch.vtensor<[1,2,8,64],f16>
  %o = "kiln.attention"(%q, %k, %v, %mask) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 1.250000e-01 : f64} : (!torch.vtensor<[1,8,1,64],f16>, !torch.vtensor<[1,2,8,64],f16>, !torch.vtensor<[1,2,8,64],f16>, !torch.vtensor<[1,1,1,8],f16>) -> !torch.vtensor<[1,8,1,64],f16>
  return %o, %k, %v : !torch.vtensor<[1,8,1,64],f16>, !torch.vtensor<[1,2,8,64],f16>, !torch.vtensor<[1,2,8,64],f16>
}

// -----

// Not a decode cache write: the slots compared with `<=` select every slot up to the position
// (a select over many rows). The caches are read from the selects' results; no new_kv.
// CHECK-LABEL: module
// CHECK-NOT:     new_kv
// CHECK-LABEL: func.func @not_a_cache_write(
// CHECK:         torch.aten.where.self
// CHECK:         call @kiln_kernel_0(
func.func @not_a_cache_write(%q: !torch.vtensor<[1,8,1,64],f16>, %knew: !torch.vtensor<[1,2,1,64],f16>, %vnew: !torch.vtensor<[1,2,1,64],f16>, %kc: !torch.vtensor<[1,2,8,64],f16>, %vc: !torch.vtensor<[1,2,8,64],f16>, %pos: !torch.vtensor<[1],si64>) -> !torch.vtensor<[1,8,1,64],f16> {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int3 = torch.constant.int 3
  %slots = torch.vtensor.literal(dense<[0, 1, 2, 3, 4, 5, 6, 7]> : tensor<8xsi64>) : !torch.vtensor<[8],si64>
  %le = torch.aten.le.Tensor %slots, %pos : !torch.vtensor<[8],si64>, !torch.vtensor<[1],si64> -> !torch.vtensor<[8],i1>
  %c0 = torch.aten.unsqueeze %le, %int0 : !torch.vtensor<[8],i1>, !torch.int -> !torch.vtensor<[1,8],i1>
  %c1 = torch.aten.unsqueeze %c0, %int1 : !torch.vtensor<[1,8],i1>, !torch.int -> !torch.vtensor<[1,1,8],i1>
  %cond = torch.aten.unsqueeze %c1, %int3 : !torch.vtensor<[1,1,8],i1>, !torch.int -> !torch.vtensor<[1,1,8,1],i1>
  %k = torch.aten.where.self %cond, %knew, %kc : !torch.vtensor<[1,1,8,1],i1>, !torch.vtensor<[1,2,1,64],f16>, !torch.vtensor<[1,2,8,64],f16> -> !torch.vtensor<[1,2,8,64],f16>
  %v = torch.aten.where.self %cond, %vnew, %vc : !torch.vtensor<[1,1,8,1],i1>, !torch.vtensor<[1,2,1,64],f16>, !torch.vtensor<[1,2,8,64],f16> -> !torch.vtensor<[1,2,8,64],f16>
  %o = "kiln.attention"(%q, %k, %v) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 1.250000e-01 : f64} : (!torch.vtensor<[1,8,1,64],f16>, !torch.vtensor<[1,2,8,64],f16>, !torch.vtensor<[1,2,8,64],f16>) -> !torch.vtensor<[1,8,1,64],f16>
  return %o : !torch.vtensor<[1,8,1,64],f16>
}
