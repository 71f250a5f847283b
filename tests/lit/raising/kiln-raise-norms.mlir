// RUN: kiln-opt %s -p kiln-raise-norms --split-input-file | filecheck %s

// kiln-raise-norms: native_layer_norm / aten.layer_norm over the last axis → kiln.layer_norm, and
// the RMSNorm arithmetic (Llama, T5, x·x forms) → kiln.rms_norm. Positive cases first, then the
// patterns the pass must leave alone. The rewrite leaves dead constants (and a dead up-cast)
// for canonicalize; the CHECK lines do not look at them.

// native_layer_norm with weight and bias, only result 0 used → kiln.layer_norm(x, w, b).
// CHECK-LABEL: func.func @layer_norm_weight_bias(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,4,8],f32>, %[[W:[^:]+]]: !torch.vtensor<[8],f32>, %[[B:[^:]+]]: !torch.vtensor<[8],f32>)
// CHECK-NOT:     torch.aten.native_layer_norm
// CHECK:         %[[Y:.+]] = "kiln.layer_norm"(%[[X]], %[[W]], %[[B]]) {epsilon = 1.000000e-05 : f64, operandSegmentSizes = array<i32: 1, 1, 1>} : (!torch.vtensor<[2,4,8],f32>, !torch.vtensor<[8],f32>, !torch.vtensor<[8],f32>) -> !torch.vtensor<[2,4,8],f32>
// CHECK-NEXT:    return %[[Y]]
func.func @layer_norm_weight_bias(%x: !torch.vtensor<[2,4,8],f32>, %w: !torch.vtensor<[8],f32>, %b: !torch.vtensor<[8],f32>) -> !torch.vtensor<[2,4,8],f32> {
  %int8 = torch.constant.int 8
  %shape = torch.prim.ListConstruct %int8 : (!torch.int) -> !torch.list<int>
  %eps = torch.constant.float 1.000000e-05
  %y, %mean, %rstd = torch.aten.native_layer_norm %x, %shape, %w, %b, %eps : !torch.vtensor<[2,4,8],f32>, !torch.list<int>, !torch.vtensor<[8],f32>, !torch.vtensor<[8],f32>, !torch.float -> !torch.vtensor<[2,4,8],f32>, !torch.vtensor<[2,4,1],f32>, !torch.vtensor<[2,4,1],f32>
  return %y : !torch.vtensor<[2,4,8],f32>
}

// -----

// Weight and bias none (elementwise_affine=False): no weight or bias operand.
// CHECK-LABEL: func.func @layer_norm_no_affine(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,8],f32>)
// CHECK-NOT:     torch.aten.native_layer_norm
// CHECK:         %[[Y:.+]] = "kiln.layer_norm"(%[[X]]) {epsilon = 1.000000e-05 : f64, operandSegmentSizes = array<i32: 1, 0, 0>} : (!torch.vtensor<[2,8],f32>) -> !torch.vtensor<[2,8],f32>
// CHECK-NEXT:    return %[[Y]]
func.func @layer_norm_no_affine(%x: !torch.vtensor<[2,8],f32>) -> !torch.vtensor<[2,8],f32> {
  %int8 = torch.constant.int 8
  %shape = torch.prim.ListConstruct %int8 : (!torch.int) -> !torch.list<int>
  %none = torch.constant.none
  %eps = torch.constant.float 1.000000e-05
  %y, %mean, %rstd = torch.aten.native_layer_norm %x, %shape, %none, %none, %eps : !torch.vtensor<[2,8],f32>, !torch.list<int>, !torch.none, !torch.none, !torch.float -> !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,1],f32>, !torch.vtensor<[2,1],f32>
  return %y : !torch.vtensor<[2,8],f32>
}

// -----

// aten.layer_norm (the undecomposed op, cudnn flag ignored), BERT's eps 1e-12.
// CHECK-LABEL: func.func @aten_layer_norm(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,8],f32>, %[[W:[^:]+]]: !torch.vtensor<[8],f32>, %[[B:[^:]+]]: !torch.vtensor<[8],f32>)
// CHECK-NOT:     torch.aten.layer_norm
// CHECK:         %[[Y:.+]] = "kiln.layer_norm"(%[[X]], %[[W]], %[[B]]) {epsilon = 9.9999999999999998E-13 : f64, operandSegmentSizes = array<i32: 1, 1, 1>} : (!torch.vtensor<[2,8],f32>, !torch.vtensor<[8],f32>, !torch.vtensor<[8],f32>) -> !torch.vtensor<[2,8],f32>
// CHECK-NEXT:    return %[[Y]]
func.func @aten_layer_norm(%x: !torch.vtensor<[2,8],f32>, %w: !torch.vtensor<[8],f32>, %b: !torch.vtensor<[8],f32>) -> !torch.vtensor<[2,8],f32> {
  %int8 = torch.constant.int 8
  %shape = torch.prim.ListConstruct %int8 : (!torch.int) -> !torch.list<int>
  %eps = torch.constant.float 1.000000e-12
  %false = torch.constant.bool false
  %y = torch.aten.layer_norm %x, %shape, %w, %b, %eps, %false : !torch.vtensor<[2,8],f32>, !torch.list<int>, !torch.vtensor<[8],f32>, !torch.vtensor<[8],f32>, !torch.float, !torch.bool -> !torch.vtensor<[2,8],f32>
  return %y : !torch.vtensor<[2,8],f32>
}

// -----

// Llama's RMSNorm in f16: x → f32 → pow 2 → mean(-1, keepdim) → + eps → rsqrt → xf·r → f16 →
// w·(…) with a 1-D weight literal → kiln.rms_norm(x, w) on the f16 input, f16 result.
// CHECK-LABEL: func.func @rms_norm_llama(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,8],f16>)
// CHECK:         %[[W:.+]] = torch.vtensor.literal(dense<2.000000e+00> : tensor<8xf16>) : !torch.vtensor<[8],f16>
// CHECK-NOT:     torch.aten.pow.Tensor_Scalar
// CHECK-NOT:     torch.aten.mean.dim
// CHECK-NOT:     torch.aten.rsqrt
// CHECK-NOT:     torch.aten.mul.Tensor
// CHECK:         %[[Y:.+]] = "kiln.rms_norm"(%[[X]], %[[W]]) {epsilon = 9.9999999999999995E-7 : f64, operandSegmentSizes = array<i32: 1, 1>} : (!torch.vtensor<[2,8],f16>, !torch.vtensor<[8],f16>) -> !torch.vtensor<[2,8],f16>
// CHECK-NEXT:    return %[[Y]]
func.func @rms_norm_llama(%x: !torch.vtensor<[2,8],f16>) -> !torch.vtensor<[2,8],f16> {
  %int6 = torch.constant.int 6
  %int5 = torch.constant.int 5
  %int2 = torch.constant.int 2
  %int1 = torch.constant.int 1
  %int-1 = torch.constant.int -1
  %false = torch.constant.bool false
  %true = torch.constant.bool true
  %none = torch.constant.none
  %eps = torch.constant.float 9.9999999999999995E-7
  %w = torch.vtensor.literal(dense<2.0> : tensor<8xf16>) : !torch.vtensor<[8],f16>
  %xf = torch.aten.to.dtype %x, %int6, %false, %false, %none : !torch.vtensor<[2,8],f16>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[2,8],f32>
  %sq = torch.aten.pow.Tensor_Scalar %xf, %int2 : !torch.vtensor<[2,8],f32>, !torch.int -> !torch.vtensor<[2,8],f32>
  %dims = torch.prim.ListConstruct %int-1 : (!torch.int) -> !torch.list<int>
  %ms = torch.aten.mean.dim %sq, %dims, %true, %none : !torch.vtensor<[2,8],f32>, !torch.list<int>, !torch.bool, !torch.none -> !torch.vtensor<[2,1],f32>
  %add = torch.aten.add.Scalar %ms, %eps, %int1 : !torch.vtensor<[2,1],f32>, !torch.float, !torch.int -> !torch.vtensor<[2,1],f32>
  %r = torch.aten.rsqrt %add : !torch.vtensor<[2,1],f32> -> !torch.vtensor<[2,1],f32>
  %n = torch.aten.mul.Tensor %xf, %r : !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,1],f32> -> !torch.vtensor<[2,8],f32>
  %nh = torch.aten.to.dtype %n, %int5, %false, %false, %none : !torch.vtensor<[2,8],f32>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[2,8],f16>
  %y = torch.aten.mul.Tensor %w, %nh : !torch.vtensor<[8],f16>, !torch.vtensor<[2,8],f16> -> !torch.vtensor<[2,8],f16>
  return %y : !torch.vtensor<[2,8],f16>
}

// -----

// T5 form: the f16 input itself (not its f32 copy) times the f32 rsqrt, then cast and weight.
// CHECK-LABEL: func.func @rms_norm_t5(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,8],f16>)
// CHECK:         %[[W:.+]] = torch.vtensor.literal(dense<2.000000e+00> : tensor<8xf16>) : !torch.vtensor<[8],f16>
// CHECK-NOT:     torch.aten.rsqrt
// CHECK:         %[[Y:.+]] = "kiln.rms_norm"(%[[X]], %[[W]]) {epsilon = 9.9999999999999995E-7 : f64, operandSegmentSizes = array<i32: 1, 1>} : (!torch.vtensor<[2,8],f16>, !torch.vtensor<[8],f16>) -> !torch.vtensor<[2,8],f16>
// CHECK-NEXT:    return %[[Y]]
func.func @rms_norm_t5(%x: !torch.vtensor<[2,8],f16>) -> !torch.vtensor<[2,8],f16> {
  %int6 = torch.constant.int 6
  %int5 = torch.constant.int 5
  %int2 = torch.constant.int 2
  %int1 = torch.constant.int 1
  %int-1 = torch.constant.int -1
  %false = torch.constant.bool false
  %true = torch.constant.bool true
  %none = torch.constant.none
  %eps = torch.constant.float 9.9999999999999995E-7
  %w = torch.vtensor.literal(dense<2.0> : tensor<8xf16>) : !torch.vtensor<[8],f16>
  %xf = torch.aten.to.dtype %x, %int6, %false, %false, %none : !torch.vtensor<[2,8],f16>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[2,8],f32>
  %sq = torch.aten.pow.Tensor_Scalar %xf, %int2 : !torch.vtensor<[2,8],f32>, !torch.int -> !torch.vtensor<[2,8],f32>
  %dims = torch.prim.ListConstruct %int-1 : (!torch.int) -> !torch.list<int>
  %ms = torch.aten.mean.dim %sq, %dims, %true, %none : !torch.vtensor<[2,8],f32>, !torch.list<int>, !torch.bool, !torch.none -> !torch.vtensor<[2,1],f32>
  %add = torch.aten.add.Scalar %ms, %eps, %int1 : !torch.vtensor<[2,1],f32>, !torch.float, !torch.int -> !torch.vtensor<[2,1],f32>
  %r = torch.aten.rsqrt %add : !torch.vtensor<[2,1],f32> -> !torch.vtensor<[2,1],f32>
  %n = torch.aten.mul.Tensor %x, %r : !torch.vtensor<[2,8],f16>, !torch.vtensor<[2,1],f32> -> !torch.vtensor<[2,8],f32>
  %nh = torch.aten.to.dtype %n, %int5, %false, %false, %none : !torch.vtensor<[2,8],f32>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[2,8],f16>
  %y = torch.aten.mul.Tensor %w, %nh : !torch.vtensor<[8],f16>, !torch.vtensor<[2,8],f16> -> !torch.vtensor<[2,8],f16>
  return %y : !torch.vtensor<[2,8],f16>
}

// -----

// x·x instead of pow(x, 2), f32, no cast and no weight → kiln.rms_norm(x).
// CHECK-LABEL: func.func @rms_norm_self_mul(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,8],f32>)
// CHECK-NOT:     torch.aten.mul.Tensor
// CHECK-NOT:     torch.aten.rsqrt
// CHECK:         %[[Y:.+]] = "kiln.rms_norm"(%[[X]]) {epsilon = 1.000000e-05 : f64, operandSegmentSizes = array<i32: 1, 0>} : (!torch.vtensor<[2,8],f32>) -> !torch.vtensor<[2,8],f32>
// CHECK-NEXT:    return %[[Y]]
func.func @rms_norm_self_mul(%x: !torch.vtensor<[2,8],f32>) -> !torch.vtensor<[2,8],f32> {
  %int1 = torch.constant.int 1
  %int-1 = torch.constant.int -1
  %true = torch.constant.bool true
  %none = torch.constant.none
  %eps = torch.constant.float 1.000000e-05
  %sq = torch.aten.mul.Tensor %x, %x : !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32> -> !torch.vtensor<[2,8],f32>
  %dims = torch.prim.ListConstruct %int-1 : (!torch.int) -> !torch.list<int>
  %ms = torch.aten.mean.dim %sq, %dims, %true, %none : !torch.vtensor<[2,8],f32>, !torch.list<int>, !torch.bool, !torch.none -> !torch.vtensor<[2,1],f32>
  %add = torch.aten.add.Scalar %ms, %eps, %int1 : !torch.vtensor<[2,1],f32>, !torch.float, !torch.int -> !torch.vtensor<[2,1],f32>
  %r = torch.aten.rsqrt %add : !torch.vtensor<[2,1],f32> -> !torch.vtensor<[2,1],f32>
  %n = torch.aten.mul.Tensor %x, %r : !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,1],f32> -> !torch.vtensor<[2,8],f32>
  return %n : !torch.vtensor<[2,8],f32>
}

// -----

// Negative: native_layer_norm whose mean and rstd results are used (training-style): left alone.
// CHECK-LABEL: func.func @layer_norm_stats_used(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,8],f32>, %[[W:[^:]+]]: !torch.vtensor<[8],f32>, %[[B:[^:]+]]: !torch.vtensor<[8],f32>)
// CHECK-NOT:     kiln.layer_norm
// CHECK:         %[[Y:.+]], %[[MEAN:.+]], %[[RSTD:.+]] = torch.aten.native_layer_norm %[[X]], %{{.+}}, %[[W]], %[[B]], %{{.+}} :
// CHECK-NEXT:    return %[[Y]], %[[MEAN]], %[[RSTD]]
func.func @layer_norm_stats_used(%x: !torch.vtensor<[2,8],f32>, %w: !torch.vtensor<[8],f32>, %b: !torch.vtensor<[8],f32>) -> (!torch.vtensor<[2,8],f32>, !torch.vtensor<[2,1],f32>, !torch.vtensor<[2,1],f32>) {
  %int8 = torch.constant.int 8
  %shape = torch.prim.ListConstruct %int8 : (!torch.int) -> !torch.list<int>
  %eps = torch.constant.float 1.000000e-05
  %y, %mean, %rstd = torch.aten.native_layer_norm %x, %shape, %w, %b, %eps : !torch.vtensor<[2,8],f32>, !torch.list<int>, !torch.vtensor<[8],f32>, !torch.vtensor<[8],f32>, !torch.float -> !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,1],f32>, !torch.vtensor<[2,1],f32>
  return %y, %mean, %rstd : !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,1],f32>, !torch.vtensor<[2,1],f32>
}

// -----

// Negative: normalized over the last two axes ([4, 8]): kiln.layer_norm is last-axis only.
// CHECK-LABEL: func.func @layer_norm_two_axes(
// CHECK-NOT:     kiln.layer_norm
// CHECK:         %[[Y:.+]], %{{.+}}, %{{.+}} = torch.aten.native_layer_norm
// CHECK-NEXT:    return %[[Y]]
func.func @layer_norm_two_axes(%x: !torch.vtensor<[2,4,8],f32>) -> !torch.vtensor<[2,4,8],f32> {
  %int4 = torch.constant.int 4
  %int8 = torch.constant.int 8
  %shape = torch.prim.ListConstruct %int4, %int8 : (!torch.int, !torch.int) -> !torch.list<int>
  %none = torch.constant.none
  %eps = torch.constant.float 1.000000e-05
  %y, %mean, %rstd = torch.aten.native_layer_norm %x, %shape, %none, %none, %eps : !torch.vtensor<[2,4,8],f32>, !torch.list<int>, !torch.none, !torch.none, !torch.float -> !torch.vtensor<[2,4,8],f32>, !torch.vtensor<[2,1,1],f32>, !torch.vtensor<[2,1,1],f32>
  return %y : !torch.vtensor<[2,4,8],f32>
}

// -----

// Negative: eps 0.1 is outside (0, 1e-3]: not a numerical guard but part of the model's math.
// CHECK-LABEL: func.func @layer_norm_large_eps(
// CHECK-NOT:     kiln.layer_norm
// CHECK:         %[[EPS:.+]] = torch.constant.float 1.000000e-01
// CHECK:         %[[Y:.+]], %{{.+}}, %{{.+}} = torch.aten.native_layer_norm %{{.+}}, %{{.+}}, %{{.+}}, %{{.+}}, %[[EPS]] :
// CHECK-NEXT:    return %[[Y]]
func.func @layer_norm_large_eps(%x: !torch.vtensor<[2,8],f32>) -> !torch.vtensor<[2,8],f32> {
  %int8 = torch.constant.int 8
  %shape = torch.prim.ListConstruct %int8 : (!torch.int) -> !torch.list<int>
  %none = torch.constant.none
  %eps = torch.constant.float 1.000000e-01
  %y, %mean, %rstd = torch.aten.native_layer_norm %x, %shape, %none, %none, %eps : !torch.vtensor<[2,8],f32>, !torch.list<int>, !torch.none, !torch.none, !torch.float -> !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,1],f32>, !torch.vtensor<[2,1],f32>
  return %y : !torch.vtensor<[2,8],f32>
}

// -----

// Negative: the mean of squares is over dim 1, not the last axis.
// CHECK-LABEL: func.func @rms_norm_not_last_axis(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,4,8],f32>)
// CHECK-NOT:     kiln.rms_norm
// CHECK:         %[[SQ:.+]] = torch.aten.pow.Tensor_Scalar %[[X]], %{{.+}} :
// CHECK:         %[[MS:.+]] = torch.aten.mean.dim %[[SQ]],
// CHECK:         %[[A:.+]] = torch.aten.add.Scalar %[[MS]],
// CHECK:         %[[R:.+]] = torch.aten.rsqrt %[[A]]
// CHECK:         %[[N:.+]] = torch.aten.mul.Tensor %[[X]], %[[R]]
// CHECK-NOT:     kiln.rms_norm
// CHECK:         return %[[N]]
func.func @rms_norm_not_last_axis(%x: !torch.vtensor<[2,4,8],f32>) -> !torch.vtensor<[2,4,8],f32> {
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %true = torch.constant.bool true
  %none = torch.constant.none
  %eps = torch.constant.float 1.000000e-05
  %sq = torch.aten.pow.Tensor_Scalar %x, %int2 : !torch.vtensor<[2,4,8],f32>, !torch.int -> !torch.vtensor<[2,4,8],f32>
  %dims = torch.prim.ListConstruct %int1 : (!torch.int) -> !torch.list<int>
  %ms = torch.aten.mean.dim %sq, %dims, %true, %none : !torch.vtensor<[2,4,8],f32>, !torch.list<int>, !torch.bool, !torch.none -> !torch.vtensor<[2,1,8],f32>
  %add = torch.aten.add.Scalar %ms, %eps, %int1 : !torch.vtensor<[2,1,8],f32>, !torch.float, !torch.int -> !torch.vtensor<[2,1,8],f32>
  %r = torch.aten.rsqrt %add : !torch.vtensor<[2,1,8],f32> -> !torch.vtensor<[2,1,8],f32>
  %n = torch.aten.mul.Tensor %x, %r : !torch.vtensor<[2,4,8],f32>, !torch.vtensor<[2,1,8],f32> -> !torch.vtensor<[2,4,8],f32>
  return %n : !torch.vtensor<[2,4,8],f32>
}

// -----

// Negative: the mean of squares is also returned: rewriting would have to keep it anyway.
// CHECK-LABEL: func.func @rms_norm_mean_second_use(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,8],f32>)
// CHECK-NOT:     kiln.rms_norm
// CHECK:         %[[MS:.+]] = torch.aten.mean.dim
// CHECK:         %[[R:.+]] = torch.aten.rsqrt
// CHECK:         %[[N:.+]] = torch.aten.mul.Tensor %[[X]], %[[R]]
// CHECK-NOT:     kiln.rms_norm
// CHECK:         return %[[N]], %[[MS]]
func.func @rms_norm_mean_second_use(%x: !torch.vtensor<[2,8],f32>) -> (!torch.vtensor<[2,8],f32>, !torch.vtensor<[2,1],f32>) {
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int-1 = torch.constant.int -1
  %true = torch.constant.bool true
  %none = torch.constant.none
  %eps = torch.constant.float 1.000000e-05
  %sq = torch.aten.pow.Tensor_Scalar %x, %int2 : !torch.vtensor<[2,8],f32>, !torch.int -> !torch.vtensor<[2,8],f32>
  %dims = torch.prim.ListConstruct %int-1 : (!torch.int) -> !torch.list<int>
  %ms = torch.aten.mean.dim %sq, %dims, %true, %none : !torch.vtensor<[2,8],f32>, !torch.list<int>, !torch.bool, !torch.none -> !torch.vtensor<[2,1],f32>
  %add = torch.aten.add.Scalar %ms, %eps, %int1 : !torch.vtensor<[2,1],f32>, !torch.float, !torch.int -> !torch.vtensor<[2,1],f32>
  %r = torch.aten.rsqrt %add : !torch.vtensor<[2,1],f32> -> !torch.vtensor<[2,1],f32>
  %n = torch.aten.mul.Tensor %x, %r : !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,1],f32> -> !torch.vtensor<[2,8],f32>
  return %n, %ms : !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,1],f32>
}
