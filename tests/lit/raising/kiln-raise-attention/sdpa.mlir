// RUN: kiln-opt %s -p kiln-raise-attention --split-input-file | filecheck %s

// kiln-raise-attention, SDPA family: torch.aten.scaled_dot_product_attention → kiln.attention.
// Positive cases first (is_causal, bool mask, additive mask, default and explicit scale,
// enable_gqa), then the SDPA calls the pass must leave alone (dropout, non-constant flags,
// is_causal together with a mask).

// is_causal = true, no mask, default scale 1/sqrt(16) = 0.25.
// CHECK-LABEL: func.func @sdpa_is_causal(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>)
// CHECK-NOT:     torch.aten.scaled_dot_product_attention
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = true, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 2.500000e-01 : f64} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32>
// CHECK-NEXT:    return %[[O]] : !torch.vtensor<[1,4,8,16],f32>
func.func @sdpa_is_causal(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %none = torch.constant.none
  %float0 = torch.constant.float 0.000000e+00
  %true = torch.constant.bool true
  %false = torch.constant.bool false
  %o = torch.aten.scaled_dot_product_attention %q, %k, %v, %none, %float0, %true, %none, %false : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.none, !torch.float, !torch.bool, !torch.none, !torch.bool -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// A bool (true = attend) mask argument becomes kiln.attention's fourth operand unchanged.
// CHECK-LABEL: func.func @sdpa_bool_mask(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[M:[^:]+]]: !torch.vtensor<[1,1,8,8],i1>)
// CHECK-NOT:     torch.aten.scaled_dot_product_attention
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]], %[[M]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 2.500000e-01 : f64} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,1,8,8],i1>) -> !torch.vtensor<[1,4,8,16],f32>
// CHECK-NEXT:    return %[[O]]
func.func @sdpa_bool_mask(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %mask: !torch.vtensor<[1,1,8,8],i1>) -> !torch.vtensor<[1,4,8,16],f32> {
  %none = torch.constant.none
  %float0 = torch.constant.float 0.000000e+00
  %false = torch.constant.bool false
  %o = torch.aten.scaled_dot_product_attention %q, %k, %v, %mask, %float0, %false, %none, %false : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,1,8,8],i1>, !torch.float, !torch.bool, !torch.none, !torch.bool -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// An additive f32 mask argument becomes the mask operand unchanged.
// CHECK-LABEL: func.func @sdpa_additive_mask(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[M:[^:]+]]: !torch.vtensor<[1,1,8,8],f32>)
// CHECK-NOT:     torch.aten.scaled_dot_product_attention
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]], %[[M]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 1>, scale = 2.500000e-01 : f64} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,1,8,8],f32>) -> !torch.vtensor<[1,4,8,16],f32>
// CHECK-NEXT:    return %[[O]]
func.func @sdpa_additive_mask(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %mask: !torch.vtensor<[1,1,8,8],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %none = torch.constant.none
  %float0 = torch.constant.float 0.000000e+00
  %false = torch.constant.bool false
  %o = torch.aten.scaled_dot_product_attention %q, %k, %v, %mask, %float0, %false, %none, %false : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,1,8,8],f32>, !torch.float, !torch.bool, !torch.none, !torch.bool -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// scale = None: 1/sqrt(D) from q's head dim (64 → 0.125); Sq != Sk and Dv != D are kept.
// CHECK-LABEL: func.func @sdpa_default_scale(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[2,8,5,64],f32>, %[[K:[^:]+]]: !torch.vtensor<[2,8,7,64],f32>, %[[V:[^:]+]]: !torch.vtensor<[2,8,7,32],f32>)
// CHECK-NOT:     torch.aten.scaled_dot_product_attention
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 1.250000e-01 : f64} : (!torch.vtensor<[2,8,5,64],f32>, !torch.vtensor<[2,8,7,64],f32>, !torch.vtensor<[2,8,7,32],f32>) -> !torch.vtensor<[2,8,5,32],f32>
// CHECK-NEXT:    return %[[O]]
func.func @sdpa_default_scale(%q: !torch.vtensor<[2,8,5,64],f32>, %k: !torch.vtensor<[2,8,7,64],f32>, %v: !torch.vtensor<[2,8,7,32],f32>) -> !torch.vtensor<[2,8,5,32],f32> {
  %none = torch.constant.none
  %float0 = torch.constant.float 0.000000e+00
  %false = torch.constant.bool false
  %o = torch.aten.scaled_dot_product_attention %q, %k, %v, %none, %float0, %false, %none, %false : !torch.vtensor<[2,8,5,64],f32>, !torch.vtensor<[2,8,7,64],f32>, !torch.vtensor<[2,8,7,32],f32>, !torch.none, !torch.float, !torch.bool, !torch.none, !torch.bool -> !torch.vtensor<[2,8,5,32],f32>
  return %o : !torch.vtensor<[2,8,5,32],f32>
}

// -----

// An explicit constant scale (0.3) is taken as it is, not 1/sqrt(16).
// CHECK-LABEL: func.func @sdpa_explicit_scale(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>)
// CHECK-NOT:     torch.aten.scaled_dot_product_attention
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 3.000000e-01 : f64}
// CHECK-NEXT:    return %[[O]]
func.func @sdpa_explicit_scale(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %none = torch.constant.none
  %float0 = torch.constant.float 0.000000e+00
  %scale = torch.constant.float 3.000000e-01
  %false = torch.constant.bool false
  %o = torch.aten.scaled_dot_product_attention %q, %k, %v, %none, %float0, %false, %scale, %false : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.none, !torch.float, !torch.bool, !torch.float, !torch.bool -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// enable_gqa = true with 4 query heads over 2 kv heads: kiln.attention takes the kv heads as
// they are (the op itself allows Hq a multiple of Hkv).
// CHECK-LABEL: func.func @sdpa_enable_gqa(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,2,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,2,8,16],f32>)
// CHECK-NOT:     torch.aten.scaled_dot_product_attention
// CHECK:         %[[O:.+]] = "kiln.attention"(%[[Q]], %[[K]], %[[V]]) {causal = false, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 2.500000e-01 : f64} : (!torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,2,8,16],f32>, !torch.vtensor<[1,2,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32>
// CHECK-NEXT:    return %[[O]]
func.func @sdpa_enable_gqa(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,2,8,16],f32>, %v: !torch.vtensor<[1,2,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %none = torch.constant.none
  %float0 = torch.constant.float 0.000000e+00
  %true = torch.constant.bool true
  %false = torch.constant.bool false
  %o = torch.aten.scaled_dot_product_attention %q, %k, %v, %none, %float0, %false, %none, %true : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,2,8,16],f32>, !torch.vtensor<[1,2,8,16],f32>, !torch.none, !torch.float, !torch.bool, !torch.none, !torch.bool -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Negative: dropout_p = 0.1 (training-mode attention) is left alone.
// CHECK-LABEL: func.func @sdpa_dropout(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>)
// CHECK-NOT:     "kiln.attention"
// CHECK:         %[[P:.+]] = torch.constant.float 1.000000e-01
// CHECK:         %[[O:.+]] = torch.aten.scaled_dot_product_attention %[[Q]], %[[K]], %[[V]], %{{.+}}, %[[P]],
// CHECK-NOT:     "kiln.attention"
// CHECK:         return %[[O]]
func.func @sdpa_dropout(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>) -> !torch.vtensor<[1,4,8,16],f32> {
  %none = torch.constant.none
  %dropout = torch.constant.float 1.000000e-01
  %false = torch.constant.bool false
  %o = torch.aten.scaled_dot_product_attention %q, %k, %v, %none, %dropout, %false, %none, %false : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.none, !torch.float, !torch.bool, !torch.none, !torch.bool -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Negative: dropout_p is a function argument, so it may be non-zero at run time.
// CHECK-LABEL: func.func @sdpa_dynamic_dropout(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[P:[^:]+]]: !torch.float)
// CHECK-NOT:     "kiln.attention"
// CHECK:         %[[O:.+]] = torch.aten.scaled_dot_product_attention %[[Q]], %[[K]], %[[V]], %{{.+}}, %[[P]],
// CHECK-NOT:     "kiln.attention"
// CHECK:         return %[[O]]
func.func @sdpa_dynamic_dropout(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %p: !torch.float) -> !torch.vtensor<[1,4,8,16],f32> {
  %none = torch.constant.none
  %false = torch.constant.bool false
  %o = torch.aten.scaled_dot_product_attention %q, %k, %v, %none, %p, %false, %none, %false : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.none, !torch.float, !torch.bool, !torch.none, !torch.bool -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Negative: is_causal is a function argument (!torch.bool), unknown at compile time.
// CHECK-LABEL: func.func @sdpa_dynamic_is_causal(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[C:[^:]+]]: !torch.bool)
// CHECK-NOT:     "kiln.attention"
// CHECK:         %[[O:.+]] = torch.aten.scaled_dot_product_attention %[[Q]], %[[K]], %[[V]], %{{.+}}, %{{.+}}, %[[C]],
// CHECK-NOT:     "kiln.attention"
// CHECK:         return %[[O]]
func.func @sdpa_dynamic_is_causal(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %causal: !torch.bool) -> !torch.vtensor<[1,4,8,16],f32> {
  %none = torch.constant.none
  %float0 = torch.constant.float 0.000000e+00
  %false = torch.constant.bool false
  %o = torch.aten.scaled_dot_product_attention %q, %k, %v, %none, %float0, %causal, %none, %false : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.none, !torch.float, !torch.bool, !torch.none, !torch.bool -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Negative: is_causal = true together with an attn_mask (torch rejects the combination).
// CHECK-LABEL: func.func @sdpa_causal_and_mask(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[M:[^:]+]]: !torch.vtensor<[8,8],i1>)
// CHECK-NOT:     "kiln.attention"
// CHECK:         %[[O:.+]] = torch.aten.scaled_dot_product_attention %[[Q]], %[[K]], %[[V]], %[[M]],
// CHECK-NOT:     "kiln.attention"
// CHECK:         return %[[O]]
func.func @sdpa_causal_and_mask(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %mask: !torch.vtensor<[8,8],i1>) -> !torch.vtensor<[1,4,8,16],f32> {
  %none = torch.constant.none
  %float0 = torch.constant.float 0.000000e+00
  %true = torch.constant.bool true
  %false = torch.constant.bool false
  %o = torch.aten.scaled_dot_product_attention %q, %k, %v, %mask, %float0, %true, %none, %false : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[8,8],i1>, !torch.float, !torch.bool, !torch.none, !torch.bool -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Negative: the scale is a function argument (!torch.float), not a constant.
// CHECK-LABEL: func.func @sdpa_dynamic_scale(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,16],f32>, %[[S:[^:]+]]: !torch.float)
// CHECK-NOT:     "kiln.attention"
// CHECK:         %[[O:.+]] = torch.aten.scaled_dot_product_attention %[[Q]], %[[K]], %[[V]], %{{.+}}, %{{.+}}, %{{.+}}, %[[S]],
// CHECK-NOT:     "kiln.attention"
// CHECK:         return %[[O]]
func.func @sdpa_dynamic_scale(%q: !torch.vtensor<[1,4,8,16],f32>, %k: !torch.vtensor<[1,4,8,16],f32>, %v: !torch.vtensor<[1,4,8,16],f32>, %scale: !torch.float) -> !torch.vtensor<[1,4,8,16],f32> {
  %none = torch.constant.none
  %float0 = torch.constant.float 0.000000e+00
  %false = torch.constant.bool false
  %o = torch.aten.scaled_dot_product_attention %q, %k, %v, %none, %float0, %false, %scale, %false : !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.vtensor<[1,4,8,16],f32>, !torch.none, !torch.float, !torch.bool, !torch.float, !torch.bool -> !torch.vtensor<[1,4,8,16],f32>
  return %o : !torch.vtensor<[1,4,8,16],f32>
}

// -----

// Negative: default scale with a dynamic head dim (1/sqrt(D) is unknown at compile time).
// CHECK-LABEL: func.func @sdpa_default_scale_dynamic_head_dim(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[1,4,8,?],f32>, %[[K:[^:]+]]: !torch.vtensor<[1,4,8,?],f32>, %[[V:[^:]+]]: !torch.vtensor<[1,4,8,?],f32>)
// CHECK-NOT:     "kiln.attention"
// CHECK:         %[[O:.+]] = torch.aten.scaled_dot_product_attention %[[Q]], %[[K]], %[[V]],
// CHECK-NOT:     "kiln.attention"
// CHECK:         return %[[O]]
func.func @sdpa_default_scale_dynamic_head_dim(%q: !torch.vtensor<[1,4,8,?],f32>, %k: !torch.vtensor<[1,4,8,?],f32>, %v: !torch.vtensor<[1,4,8,?],f32>) -> !torch.vtensor<[1,4,8,?],f32> {
  %none = torch.constant.none
  %float0 = torch.constant.float 0.000000e+00
  %false = torch.constant.bool false
  %o = torch.aten.scaled_dot_product_attention %q, %k, %v, %none, %float0, %false, %none, %false : !torch.vtensor<[1,4,8,?],f32>, !torch.vtensor<[1,4,8,?],f32>, !torch.vtensor<[1,4,8,?],f32>, !torch.none, !torch.float, !torch.bool, !torch.none, !torch.bool -> !torch.vtensor<[1,4,8,?],f32>
  return %o : !torch.vtensor<[1,4,8,?],f32>
}
