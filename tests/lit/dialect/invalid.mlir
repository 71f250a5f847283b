// RUN: not kiln-opt %s --split-input-file 2>&1 | filecheck %s

// One invalid kiln op per chunk; each must be rejected by its verifier at parse time with
// a message naming the op and the offending operand. Messages are checked in chunk order.
// The last chunks check missing / wrongly typed attributes (these used to crash the verifier
// with a Python KeyError / ValueError).

// Key head dim (last axis) must match the query's.
// CHECK: error: {{.*}}'kiln.attention' key head dim 32 does not match query head dim 16 (query 1x4x8x16xf32, key 1x4x8x32xf32)
func.func @key_head_dim(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,32],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %0 = "kiln.attention"(%q, %k, %v) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 2.500000e-01 : f64} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,32],f32>, !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32>
  return %0 : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Key and value must have the same length (axis -2).
// CHECK: error: {{.*}}'kiln.attention' value length 6 does not match key length 8 (key 1x4x8x16xf32, value 1x4x6x16xf32)
func.func @kv_length(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,6,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %0 = "kiln.attention"(%q, %k, %v) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 2.500000e-01 : f64} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,6,16],f32>) -> !torch.vtensor<[1,4,8,16],f32>
  return %0 : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Key, value and result share the query's dtype.
// CHECK: error: {{.*}}'kiln.attention' key dtype f16 differs from query dtype f32
func.func @dtype(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f16>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %0 = "kiln.attention"(%q, %k, %v) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 2.500000e-01 : f64} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f16>, !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32>
  return %0 : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Attention is over float tensors only.
// CHECK: error: {{.*}}'kiln.attention' query must be a float tensor, got si32
func.func @int_query(%q: !torch.vtensor<[1,4,8,16],si32>, %k: !torch.vtensor<[1,4,8,16],si32>, %v: !torch.vtensor<[1,4,8,16],si32>) -> !torch.vtensor<[1,4,8,16],si32> {
  %0 = "kiln.attention"(%q, %k, %v) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 2.500000e-01 : f64} : (!torch.vtensor<[1,4,8,16],si32>, !torch.vtensor<[1,4,8,16],si32>, !torch.vtensor<[1,4,8,16],si32>) -> !torch.vtensor<[1,4,8,16],si32>
  return %0 : !torch.vtensor<[1,4,8,16],si32>
}

// -----

// All four tensors have one rank.
// CHECK: error: {{.*}}'kiln.attention' query, key, value and result must share one rank >= 2, got query 1x4x8x16xf32, key 4x8x16xf32, value 4x8x16xf32, result 1x4x8x16xf32
func.func @rank(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[4,8,16],f32>, %v: !torch.vtensor<[4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %0 = "kiln.attention"(%q, %k, %v) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 2.500000e-01 : f64} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[4,8,16],f32>, !torch.vtensor<[4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32>
  return %0 : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Operands need a known rank.
// CHECK: error: {{.*}}'kiln.attention' query must be a !torch.vtensor with known rank, got !torch.vtensor<*,f32>
func.func @unranked(%q: !torch.vtensor<*,f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %0 = "kiln.attention"(%q, %k, %v) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 2.500000e-01 : f64} : (!torch.vtensor<*,f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32>
  return %0 : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Query heads (axis -3) must equal the kv heads or be a multiple of them (GQA).
// CHECK: error: {{.*}}'kiln.attention' key batch dim 1 is 3; it must equal query's 4 (or divide it, for the heads dim)
func.func @gqa_bad(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,3,8,16],f32>, %v: !torch.vtensor<[1,3,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %0 = "kiln.attention"(%q, %k, %v) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 2.500000e-01 : f64} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,3,8,16],f32>, !torch.vtensor<[1,3,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32>
  return %0 : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// A mask is bool (keep = true) or an additive float of the query dtype / f32.
// CHECK: error: {{.*}}'kiln.attention' mask dtype si64 must be i1 (keep = true) or additive f32
func.func @mask_dtype(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %m: !torch.vtensor<[8,8],si64>) -> !torch.vtensor<[1,4,8,16],f32> {
  %0 = "kiln.attention"(%q, %k, %v, %m) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 2.500000e-01 : f64} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[8,8],si64>) -> !torch.vtensor<[1,4,8,16],f32>
  return %0 : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// The mask must broadcast to the scores [..., Sq, Sk].
// CHECK: error: {{.*}}'kiln.attention' mask 8x5xf32 does not broadcast to the scores shape 1x4x8x8xf32
func.func @mask_bcast(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %m: !torch.vtensor<[8,5],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %0 = "kiln.attention"(%q, %k, %v, %m) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 2.500000e-01 : f64} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[8,5],f32>) -> !torch.vtensor<[1,4,8,16],f32>
  return %0 : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Result is [..., Sq, Dv] (here Dv = 32).
// CHECK: error: {{.*}}'kiln.attention' result 1x4x8x16xf32 should be 1x4x8x32xf32
func.func @result_shape(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,32],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %0 = "kiln.attention"(%q, %k, %v) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 2.500000e-01 : f64} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,32],f32>) -> !torch.vtensor<[1,4,8,16],f32>
  return %0 : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Scale must be finite.
// CHECK: error: {{.*}}'kiln.attention' scale must be finite, got nan
func.func @nan_scale(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %0 = "kiln.attention"(%q, %k, %v) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 0x7FF8000000000000 : f64} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32>
  return %0 : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// causal is an i1 attribute.
// CHECK: error: {{.*}}'kiln.attention' causal must be a bool attribute (true/false)
func.func @causal_int(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %0 = "kiln.attention"(%q, %k, %v) {causal = 1 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 2.500000e-01 : f64} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32>
  return %0 : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// kiln.linear: unknown activation.
// CHECK: error: {{.*}}'kiln.linear' activation 'tanh' is not one of ('none', 'gelu', 'gelu_tanh', 'relu', 'silu', 'swiglu')
func.func @activation(%x: !torch.vtensor<[2,8],f32>, %w: !torch.vtensor<[4,8],f32>) -> !torch.vtensor<[2,4],f32> {
  %0 = "kiln.linear"(%x, %w) {activation = "tanh", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[2,8],f32>, !torch.vtensor<[4,8],f32>) -> !torch.vtensor<[2,4],f32>
  return %0 : !torch.vtensor<[2,4],f32>
}

// -----

// kiln.linear: unknown weight_layout.
// CHECK: error: {{.*}}'kiln.linear' weight_layout 'transposed' is not one of ('out_in', 'in_out')
func.func @layout(%x: !torch.vtensor<[2,8],f32>, %w: !torch.vtensor<[4,8],f32>) -> !torch.vtensor<[2,4],f32> {
  %0 = "kiln.linear"(%x, %w) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "transposed"} : (!torch.vtensor<[2,8],f32>, !torch.vtensor<[4,8],f32>) -> !torch.vtensor<[2,4],f32>
  return %0 : !torch.vtensor<[2,4],f32>
}

// -----

// in_out weight [K, N] = [4, 8]: in_features 4 does not match the input's 8.
// CHECK: error: {{.*}}'kiln.linear' input features 8 do not match weight 4x8xf32 (in_out: in_features 4)
func.func @in_features(%x: !torch.vtensor<[2,8],f32>, %w: !torch.vtensor<[4,8],f32>) -> !torch.vtensor<[2,8],f32> {
  %0 = "kiln.linear"(%x, %w) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "in_out"} : (!torch.vtensor<[2,8],f32>, !torch.vtensor<[4,8],f32>) -> !torch.vtensor<[2,8],f32>
  return %0 : !torch.vtensor<[2,8],f32>
}

// -----

// Bias must be [out_features].
// CHECK: error: {{.*}}'kiln.linear' bias 8xf32 should be 4xf32
func.func @bias(%x: !torch.vtensor<[2,8],f32>, %w: !torch.vtensor<[4,8],f32>, %b: !torch.vtensor<[8],f32>) -> !torch.vtensor<[2,4],f32> {
  %0 = "kiln.linear"(%x, %w, %b) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1>, weight_layout = "out_in"} : (!torch.vtensor<[2,8],f32>, !torch.vtensor<[4,8],f32>, !torch.vtensor<[8],f32>) -> !torch.vtensor<[2,4],f32>
  return %0 : !torch.vtensor<[2,4],f32>
}

// -----

// Bias dtype must match the input.
// CHECK: error: {{.*}}'kiln.linear' bias 4xf16 should be 4xf32
func.func @bias_dtype(%x: !torch.vtensor<[2,8],f32>, %w: !torch.vtensor<[4,8],f32>, %b: !torch.vtensor<[4],f16>) -> !torch.vtensor<[2,4],f32> {
  %0 = "kiln.linear"(%x, %w, %b) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1>, weight_layout = "out_in"} : (!torch.vtensor<[2,8],f32>, !torch.vtensor<[4,8],f32>, !torch.vtensor<[4],f16>) -> !torch.vtensor<[2,4],f32>
  return %0 : !torch.vtensor<[2,4],f32>
}

// -----

// The weight is 2-D.
// CHECK: error: {{.*}}'kiln.linear' needs input rank >= 1 and a 2-D weight, got input 2x8xf32, weight 8xf32
func.func @weight_rank(%x: !torch.vtensor<[2,8],f32>, %w: !torch.vtensor<[8],f32>) -> !torch.vtensor<[2],f32> {
  %0 = "kiln.linear"(%x, %w) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[2,8],f32>, !torch.vtensor<[8],f32>) -> !torch.vtensor<[2],f32>
  return %0 : !torch.vtensor<[2],f32>
}

// -----

// Result is [..., out_features].
// CHECK: error: {{.*}}'kiln.linear' result 2x8xf32 should be 2x4xf32
func.func @linear_result(%x: !torch.vtensor<[2,8],f32>, %w: !torch.vtensor<[4,8],f32>) -> !torch.vtensor<[2,8],f32> {
  %0 = "kiln.linear"(%x, %w) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[2,8],f32>, !torch.vtensor<[4,8],f32>) -> !torch.vtensor<[2,8],f32>
  return %0 : !torch.vtensor<[2,8],f32>
}

// -----

// Weight dtype must match the input.
// CHECK: error: {{.*}}'kiln.linear' weight dtype f32 differs from input dtype f16
func.func @linear_dtype(%x: !torch.vtensor<[2,8],f16>, %w: !torch.vtensor<[4,8],f32>) -> !torch.vtensor<[2,4],f16> {
  %0 = "kiln.linear"(%x, %w) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[2,8],f16>, !torch.vtensor<[4,8],f32>) -> !torch.vtensor<[2,4],f16>
  return %0 : !torch.vtensor<[2,4],f16>
}

// -----

// A missing attribute is reported by name.
// CHECK: error: {{.*}}'kiln.linear' needs attribute 'activation'
func.func @linear_missing_activation(%x: !torch.vtensor<[2,8],f32>, %w: !torch.vtensor<[4,8],f32>) -> !torch.vtensor<[2,4],f32> {
  %0 = "kiln.linear"(%x, %w) {operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[2,8],f32>, !torch.vtensor<[4,8],f32>) -> !torch.vtensor<[2,4],f32>
  return %0 : !torch.vtensor<[2,4],f32>
}

// -----

// CHECK: error: {{.*}}'kiln.attention' needs attribute 'scale'
func.func @attention_missing_scale(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %0 = "kiln.attention"(%q, %k, %v) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32>
  return %0 : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// An attribute of the wrong kind is reported with what it got.
// CHECK: error: {{.*}}'kiln.linear' attribute 'activation' must be a StringAttr, got 1 : i64
// CHECK-NOT: Traceback
func.func @linear_integer_activation(%x: !torch.vtensor<[2,8],f32>, %w: !torch.vtensor<[4,8],f32>) -> !torch.vtensor<[2,4],f32> {
  %0 = "kiln.linear"(%x, %w) {activation = 1 : i64, operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[2,8],f32>, !torch.vtensor<[4,8],f32>) -> !torch.vtensor<[2,4],f32>
  return %0 : !torch.vtensor<[2,4],f32>
}

// -----

// kiln.rope needs an even last dim (the rotation pairs its halves or neighbours).
// CHECK: error: {{.*}}'kiln.rope' input's last dim must be static and even, got 2x7xf32
func.func @rope_odd_depth(%x: !torch.vtensor<[2,7],f32>, %c: !torch.vtensor<[2,7],f32>) -> !torch.vtensor<[2,7],f32> {
  %0 = "kiln.rope"(%x, %c, %c) {interleaved = false} : (!torch.vtensor<[2,7],f32>, !torch.vtensor<[2,7],f32>, !torch.vtensor<[2,7],f32>) -> !torch.vtensor<[2,7],f32>
  return %0 : !torch.vtensor<[2,7],f32>
}

// -----

// kiln.rope tables must broadcast to the input and end in its last dim.
// CHECK: error: {{.*}}'kiln.rope' sin 3x4xf32 must have the input's dtype and last dim and broadcast to the input 2x3x8xf32
func.func @rope_table_shape(%x: !torch.vtensor<[2,3,8],f32>, %c: !torch.vtensor<[3,8],f32>, %s: !torch.vtensor<[3,4],f32>) -> !torch.vtensor<[2,3,8],f32> {
  %0 = "kiln.rope"(%x, %c, %s) {interleaved = true} : (!torch.vtensor<[2,3,8],f32>, !torch.vtensor<[3,8],f32>, !torch.vtensor<[3,4],f32>) -> !torch.vtensor<[2,3,8],f32>
  return %0 : !torch.vtensor<[2,3,8],f32>
}

// -----

// The gated activation swiglu needs an even number of out-features and returns half of them.
// CHECK: error: {{.*}}'kiln.linear' activation 'swiglu' needs an even, static number of out-features (gate and up halves), got weight 7x8xf32
func.func @linear_swiglu_odd(%x: !torch.vtensor<[2,8],f32>, %w: !torch.vtensor<[7,8],f32>) -> !torch.vtensor<[2,3],f32> {
  %0 = "kiln.linear"(%x, %w) {activation = "swiglu", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[2,8],f32>, !torch.vtensor<[7,8],f32>) -> !torch.vtensor<[2,3],f32>
  return %0 : !torch.vtensor<[2,3],f32>
}

// -----

// A swiglu linear's result has half the out-features, not all of them.
// CHECK: error: {{.*}}'kiln.linear' result 2x8xf32 should be 2x4xf32
func.func @linear_swiglu_full_width(%x: !torch.vtensor<[2,8],f32>, %w: !torch.vtensor<[8,8],f32>) -> !torch.vtensor<[2,8],f32> {
  %0 = "kiln.linear"(%x, %w) {activation = "swiglu", operandSegmentSizes = array<i32: 1, 1, 0>, weight_layout = "out_in"} : (!torch.vtensor<[2,8],f32>, !torch.vtensor<[8,8],f32>) -> !torch.vtensor<[2,8],f32>
  return %0 : !torch.vtensor<[2,8],f32>
}

// -----

// kiln.add_rms_norm's residual must have the input's type (no broadcasting: it is the stream).
// CHECK: error: {{.*}}'kiln.add_rms_norm' residual 8xf32 must have the input's type 2x8xf32
func.func @add_rms_norm_broadcast_residual(%x: !torch.vtensor<[2,8],f32>, %r: !torch.vtensor<[8],f32>) -> !torch.vtensor<[2,8],f32> {
  %y:2 = "kiln.add_rms_norm"(%x, %r) {epsilon = 1.000000e-06 : f64, operandSegmentSizes = array<i32: 1, 1, 0>} : (!torch.vtensor<[2,8],f32>, !torch.vtensor<[8],f32>) -> (!torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32>)
  return %y#0 : !torch.vtensor<[2,8],f32>
}
