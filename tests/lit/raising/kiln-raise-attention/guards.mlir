// RUN: kiln-opt %s -p kiln-raise-attention --split-input-file | filecheck %s

// kiln-raise-attention guards: regression cases of four bugs found by this suite and fixed
// (masks under a scale, mask dtypes kiln.attention cannot take, shapes torch broadcasts but
// kiln.attention rejects, K and V unwrapped to different head counts). Each must be left alone.

// WAS BUG 1 (miscompile): an additive term UNDER a scale. _peel_scores multiplies every scale it
// meets into `scale` and collects add.Tensor terms as if they were added after all scaling, so
//   softmax((q·kᵀ + bias) / 4) · v   becomes   kiln.attention(q, k, v, bias) {scale = 0.25},
// i.e. softmax(q·kᵀ/4 + bias) · v: the bias is not divided by 4.
// Suggested fix: in _peel_scores, remember the scale accumulated above the current op; an
// additive term found under a scale s != 1 must be either refused (NoMatch("additive term under
// a scale")) or emitted as mul.Scalar(term, s).
// CHECK-LABEL: func.func @bias_added_before_scale(
// CHECK-SAME:    %{{[^:]+}}: !torch.vtensor<[1,4,8,16],f32>, %{{[^:]+}}: !torch.vtensor<[1,4,8,16],f32>, %{{[^:]+}}: !torch.vtensor<[1,4,8,16],f32>, %[[B:[^:]+]]: !torch.vtensor<[1,4,8,8],f32>)
// CHECK-NOT:     "kiln.attention"({{.*}}, %[[B]]) {{.*}} scale = 2.500000e-01
// CHECK:         return
func.func @bias_added_before_scale(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %bias: !torch.vtensor<[1,4,8,8],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %int1 = torch.constant.int 1
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %f4 = torch.constant.float 4.000000e+00
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %a = torch.aten.add.Tensor %s, %bias, %int1 : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,8],f32>, !torch.int -> !torch.vtensor<[1,4,8,8],f32>
  %d = torch.aten.div.Scalar %a, %f4 : !torch.vtensor<[1,4,8,8],f32>, !torch.float -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %d, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// WAS BUG 1, boolean variant: the fill is checked before the scale that follows it. Here
// where(keep, q·kᵀ, -1e4) * 1e-4 leaves the "masked" logits at -1.0 (not masked: the same as the
// fill = -1.0 case the pass correctly refuses), yet it is raised as a keep-mask. A negative scale
// would even turn a -inf fill into +inf. Same fix: check fill * (scale above it) <= -1e4.
// CHECK-LABEL: func.func @fill_scaled_out_of_masking_range(
// CHECK-NOT:     "kiln.attention"
// CHECK:         torch.aten.where.self
// CHECK:         torch.aten._softmax
// CHECK:         return
func.func @fill_scaled_out_of_masking_range(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %m: !torch.vtensor<[8,8],i1>) -> !torch.vtensor<[1,4,8,16],f32> {
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %fill = torch.vtensor.literal(dense<-1.000000e+04> : tensor<f32>) : !torch.vtensor<[],f32>
  %c = torch.constant.float 1.000000e-04
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %w = torch.aten.where.self %m, %s, %fill : !torch.vtensor<[8,8],i1>, !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %d = torch.aten.mul.Scalar %w, %c : !torch.vtensor<[1,4,8,8],f32>, !torch.float -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %d, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// WAS BUG 2 (pipeline failure on valid input): an f16 additive mask added to f32 scores (torch
// promotes the sum to f32) is passed on as kiln.attention's mask, which the verifier rejects:
// "'kiln.attention' mask dtype f16 must be i1 (keep = true) or additive f32". The same happens
// when several f16 terms are summed for an f32 query.
// Suggested fix: in _peel_scores (or _combined_mask), refuse an additive term whose dtype is not
// the query's or f32 (NoMatch), or insert a to.dtype(term, f32); also make _combined_mask's sum
// dtype the promoted dtype of all terms and the scores.
// CHECK-LABEL: func.func @f16_mask_on_f32_scores(
// CHECK:         return
func.func @f16_mask_on_f32_scores(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %mask: !torch.vtensor<[1,1,8,8],f16>) -> !torch.vtensor<[1,4,8,16],f32> {
  %int1 = torch.constant.int 1
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %a = torch.aten.add.Tensor %s, %mask, %int1 : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,1,8,8],f16>, !torch.int -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %a, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// WAS BUG 3 (pipeline failure on valid input): broadcasting shapes. match_softmax_attention checks
// no shapes, so matmul / add broadcasting that torch accepts yields a kiln.attention its verifier
// rejects. Three forms:
//  (a) a [2, 1, 8, 8] mask broadcasts the [1, 4, 8, 8] scores up to batch 2: the raised op keeps
//      the root's [2, 4, 8, 16] result type for a batch-1 query ("result 2x4x8x16xf32 should be
//      1x4x8x16xf32");
//  (b) a batch-2 query against batch-1 k / v ("key batch dim 0 is 1; it must equal query's 2");
//  (c) a rank-2 v [8, 16] shared by every batch and head ("query, key, value and result must
//      share one rank").
// Suggested fix: before rewriting, check what the verifier checks (equal ranks; k / v batch
// dims equal to q's, heads dividing q's; result type == q.shape[:-1] + [v.shape[-1]]; mask
// broadcastable to the scores) and return NoMatch("operand shapes broadcast") otherwise.
// CHECK-LABEL: func.func @mask_broadcasts_batch(
// CHECK:         return
func.func @mask_broadcasts_batch(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %mask: !torch.vtensor<[2,1,8,8],f32>) -> !torch.vtensor<[2,4,8,16],f32> {
  %int1 = torch.constant.int 1
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %a = torch.aten.add.Tensor %s, %mask, %int1 : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[2,1,8,8],f32>, !torch.int -> !torch.vtensor<[2,4,8,8],f32>
  %sm = torch.aten._softmax %a, %intm1, %false : !torch.vtensor<[2,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[2,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[2,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[2,4,8,16],f32>
  return %o : !torch.vtensor<[2,4,8,16],f32>
}

// -----

// CHECK-LABEL: func.func @query_batch_broadcasts_kv(
// CHECK:         return
func.func @query_batch_broadcasts_kv(%q: !torch.vtensor<[2,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[2,4,8,16],f32> {
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[2,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[2,4,8,8],f32>
  %sm = torch.aten._softmax %s, %intm1, %false : !torch.vtensor<[2,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[2,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[2,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[2,4,8,16],f32>
  return %o : !torch.vtensor<[2,4,8,16],f32>
}

// -----

// CHECK-LABEL: func.func @rank2_value(
// CHECK:         return
func.func @rank2_value(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %kt = torch.aten.transpose.int %k, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %s, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// WAS BUG 4 (pipeline failure on valid input): k and v are unwrapped independently. Here k is
// repeat_kv'd from 2 to 4 heads while v already has 4 heads; only k is unwrapped and the
// verifier rejects the op ("key and value differ in batch dim 1: 1x2x8x16xf32 vs 1x4x8x16xf32").
// Suggested fix: in match_softmax_attention / match_sdpa, unwrap k and v only when both unwrap
// to the same head count (else keep both repeated).
// CHECK-LABEL: func.func @repeat_kv_on_key_only(
// CHECK:         return
func.func @repeat_kv_on_key_only(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,2,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int4 = torch.constant.int 4
  %int8 = torch.constant.int 8
  %int16 = torch.constant.int 16
  %intm2 = torch.constant.int -2
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %ku = torch.aten.unsqueeze %k, %int2 : !torch.vtensor<[1,2,8,16],f32>, !torch.int -> !torch.vtensor<[1,2,1,8,16],f32>
  %sz = torch.prim.ListConstruct %int1, %int2, %int2, %int8, %int16 : (!torch.int, !torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %ke = torch.aten.expand %ku, %sz, %false : !torch.vtensor<[1,2,1,8,16],f32>, !torch.list<int>, !torch.bool -> !torch.vtensor<[1,2,2,8,16],f32>
  %sh = torch.prim.ListConstruct %int1, %int4, %int8, %int16 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %kr = torch.aten.reshape %ke, %sh : !torch.vtensor<[1,2,2,8,16],f32>, !torch.list<int> -> !torch.vtensor<[1,4,8,16],f32>
  %kt = torch.aten.transpose.int %kr, %intm2, %intm1 : !torch.vtensor<[1,4,8,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,4,16,8],f32>
  %s = torch.aten.matmul %q, %kt : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,16,8],f32> -> !torch.vtensor<[1,4,8,8],f32>
  %sm = torch.aten._softmax %s, %intm1, %false : !torch.vtensor<[1,4,8,8],f32>, !torch.int, !torch.bool -> !torch.vtensor<[1,4,8,8],f32>
  %o = torch.aten.matmul %sm, %v : !torch.vtensor<[1,4,8,8],f32>, !torch.vtensor<[1,4,8,16],f32> -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}
