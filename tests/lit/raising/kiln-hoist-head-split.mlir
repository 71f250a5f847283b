// RUN: kiln-opt %s -p kiln-hoist-head-split --split-input-file | filecheck %s

// kiln-hoist-head-split: last-axis pieces of a fused projection, each split into heads (view
// [..., H, D] → permute heads-first), → one view + permute of the whole projection and a slice
// of whole heads per piece. Positive cases first, then what must stay.

// GPT-2's c_attn: split_with_sizes [8, 8, 8] + ListUnpack on [1, 3, 24], heads of 4 → one
// view [1, 3, 6, 4], one permute, slices of heads [0, 2), [2, 4), [4, 6) on axis 1.
// CHECK-LABEL: func.func @gpt2_split_with_sizes(
// CHECK-SAME:    %[[QKV:[^:]+]]: !torch.vtensor<[1,3,24],f32>)
// CHECK-NOT:     torch.aten.split_with_sizes
// CHECK:         %[[SIZES:.+]] = torch.prim.ListConstruct %int1, %int3, %int6, %int4{{[_0-9]*}} :
// CHECK-NEXT:    %[[HEADS:.+]] = torch.aten.view %[[QKV]], %[[SIZES]] : !torch.vtensor<[1,3,24],f32>, !torch.list<int> -> !torch.vtensor<[1,3,6,4],f32>
// CHECK:         %[[FIRST:.+]] = torch.aten.permute %[[HEADS]], %{{.+}} : !torch.vtensor<[1,3,6,4],f32>, !torch.list<int> -> !torch.vtensor<[1,6,3,4],f32>
// CHECK:         %[[Q:.+]] = torch.aten.slice.Tensor %[[FIRST]], %int1{{[_0-9]*}}, %int0{{[_0-9]*}}, %int2{{[_0-9]*}}, %int1{{[_0-9]*}} : !torch.vtensor<[1,6,3,4],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,2,3,4],f32>
// CHECK:         %[[K:.+]] = torch.aten.slice.Tensor %[[FIRST]], %int1{{[_0-9]*}}, %int2{{[_0-9]*}}, %int4{{[_0-9]*}}, {{.*}} -> !torch.vtensor<[1,2,3,4],f32>
// CHECK:         %[[V:.+]] = torch.aten.slice.Tensor %[[FIRST]], %int1{{[_0-9]*}}, %int4{{[_0-9]*}}, %int6{{[_0-9]*}}, {{.*}} -> !torch.vtensor<[1,2,3,4],f32>
// CHECK-NOT:     torch.aten.view
// CHECK:         return %[[Q]], %[[K]], %[[V]]
func.func @gpt2_split_with_sizes(%qkv: !torch.vtensor<[1,3,24],f32>) -> (!torch.vtensor<[1,2,3,4],f32>, !torch.vtensor<[1,2,3,4],f32>, !torch.vtensor<[1,2,3,4],f32>) {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %int8 = torch.constant.int 8
  %int-1 = torch.constant.int -1
  %int4 = torch.constant.int 4
  %sizes = torch.prim.ListConstruct %int8, %int8, %int8 : (!torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %split = torch.aten.split_with_sizes %qkv, %sizes, %int2 : !torch.vtensor<[1,3,24],f32>, !torch.list<int>, !torch.int -> !torch.list<vtensor>
  %q, %k, %v = torch.prim.ListUnpack %split : !torch.list<vtensor> -> !torch.vtensor<[1,3,8],f32>, !torch.vtensor<[1,3,8],f32>, !torch.vtensor<[1,3,8],f32>
  %s = torch.prim.ListConstruct %int1, %int3, %int-1, %int4 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %perm = torch.prim.ListConstruct %int0, %int2, %int1, %int3 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %q4 = torch.aten.view %q, %s : !torch.vtensor<[1,3,8],f32>, !torch.list<int> -> !torch.vtensor<[1,3,2,4],f32>
  %qh = torch.aten.permute %q4, %perm : !torch.vtensor<[1,3,2,4],f32>, !torch.list<int> -> !torch.vtensor<[1,2,3,4],f32>
  %k4 = torch.aten.view %k, %s : !torch.vtensor<[1,3,8],f32>, !torch.list<int> -> !torch.vtensor<[1,3,2,4],f32>
  %kh = torch.aten.permute %k4, %perm : !torch.vtensor<[1,3,2,4],f32>, !torch.list<int> -> !torch.vtensor<[1,2,3,4],f32>
  %v4 = torch.aten.view %v, %s : !torch.vtensor<[1,3,8],f32>, !torch.list<int> -> !torch.vtensor<[1,3,2,4],f32>
  %vh = torch.aten.permute %v4, %perm : !torch.vtensor<[1,3,2,4],f32>, !torch.list<int> -> !torch.vtensor<[1,2,3,4],f32>
  return %qh, %kh, %vh : !torch.vtensor<[1,2,3,4],f32>, !torch.vtensor<[1,2,3,4],f32>, !torch.vtensor<[1,2,3,4],f32>
}

// -----

// Negative: the slices kiln-merge-linears would leave (grouped-query sizes 16/8/8, heads of 4,
// transpose.int for one of them) with a dynamic sequence length stay: IREE 3.13's CPU backend
// fails to compile q·kᵀ on whole-head slices of a dynamic-length projection.
// CHECK-LABEL: func.func @merged_slices_dynamic_sequence(
// CHECK-SAME:    %[[QKV:[^:]+]]: !torch.vtensor<[1,?,32],f32>, %[[LEN:[^:]+]]: !torch.int)
// CHECK-COUNT-3: torch.aten.slice.Tensor %[[QKV]]
// CHECK-NOT:     -> !torch.vtensor<[1,?,8,4],f32>
func.func @merged_slices_dynamic_sequence(%qkv: !torch.vtensor<[1,?,32],f32>, %len: !torch.int) -> (!torch.vtensor<[1,4,?,4],f32>, !torch.vtensor<[1,2,?,4],f32>, !torch.vtensor<[1,2,?,4],f32>) {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %int4 = torch.constant.int 4
  %int16 = torch.constant.int 16
  %int24 = torch.constant.int 24
  %int32 = torch.constant.int 32
  %int-1 = torch.constant.int -1
  %q = torch.aten.slice.Tensor %qkv, %int-1, %int0, %int16, %int1 : !torch.vtensor<[1,?,32],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,?,16],f32>
  %k = torch.aten.slice.Tensor %qkv, %int-1, %int16, %int24, %int1 : !torch.vtensor<[1,?,32],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,?,8],f32>
  %v = torch.aten.slice.Tensor %qkv, %int2, %int24, %int32, %int1 : !torch.vtensor<[1,?,32],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,?,8],f32>
  %perm = torch.prim.ListConstruct %int0, %int2, %int1, %int3 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %qs = torch.prim.ListConstruct %int1, %len, %int4, %int4 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %q4 = torch.aten.view %q, %qs : !torch.vtensor<[1,?,16],f32>, !torch.list<int> -> !torch.vtensor<[1,?,4,4],f32>
  %qh = torch.aten.permute %q4, %perm : !torch.vtensor<[1,?,4,4],f32>, !torch.list<int> -> !torch.vtensor<[1,4,?,4],f32>
  %ks = torch.prim.ListConstruct %int1, %len, %int2, %int4 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %k4 = torch.aten.view %k, %ks : !torch.vtensor<[1,?,8],f32>, !torch.list<int> -> !torch.vtensor<[1,?,2,4],f32>
  %kh = torch.aten.transpose.int %k4, %int1, %int2 : !torch.vtensor<[1,?,2,4],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,2,?,4],f32>
  %v4 = torch.aten.view %v, %ks : !torch.vtensor<[1,?,8],f32>, !torch.list<int> -> !torch.vtensor<[1,?,2,4],f32>
  %vh = torch.aten.permute %v4, %perm : !torch.vtensor<[1,?,2,4],f32>, !torch.list<int> -> !torch.vtensor<[1,2,?,4],f32>
  return %qh, %kh, %vh : !torch.vtensor<[1,4,?,4],f32>, !torch.vtensor<[1,2,?,4],f32>, !torch.vtensor<[1,2,?,4],f32>
}

// -----

// split.Tensor (equal chunks) is read the same way; the piece that is returned as it is keeps
// its slice (ListUnpack stays for it), the head-split ones are rewritten.
// CHECK-LABEL: func.func @split_tensor_one_piece_used_otherwise(
// CHECK-SAME:    %[[QKV:[^:]+]]: !torch.vtensor<[1,3,24],f32>)
// CHECK:         %[[SPLIT:.+]] = torch.aten.split.Tensor %[[QKV]]
// CHECK:         %[[PIECES:.+]]:3 = torch.prim.ListUnpack %[[SPLIT]]
// CHECK:         torch.aten.view %[[QKV]], {{.*}} -> !torch.vtensor<[1,3,6,4],f32>
// CHECK:         %[[Q:.+]] = torch.aten.slice.Tensor {{.*}} -> !torch.vtensor<[1,2,3,4],f32>
// CHECK:         %[[K:.+]] = torch.aten.slice.Tensor {{.*}} -> !torch.vtensor<[1,2,3,4],f32>
// CHECK:         return %[[Q]], %[[K]], %[[PIECES]]#2
func.func @split_tensor_one_piece_used_otherwise(%qkv: !torch.vtensor<[1,3,24],f32>) -> (!torch.vtensor<[1,2,3,4],f32>, !torch.vtensor<[1,2,3,4],f32>, !torch.vtensor<[1,3,8],f32>) {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %int4 = torch.constant.int 4
  %int8 = torch.constant.int 8
  %int-1 = torch.constant.int -1
  %split = torch.aten.split.Tensor %qkv, %int8, %int-1 : !torch.vtensor<[1,3,24],f32>, !torch.int, !torch.int -> !torch.list<vtensor>
  %q, %k, %v = torch.prim.ListUnpack %split : !torch.list<vtensor> -> !torch.vtensor<[1,3,8],f32>, !torch.vtensor<[1,3,8],f32>, !torch.vtensor<[1,3,8],f32>
  %s = torch.prim.ListConstruct %int1, %int3, %int2, %int4 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %perm = torch.prim.ListConstruct %int0, %int2, %int1, %int3 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %q4 = torch.aten.view %q, %s : !torch.vtensor<[1,3,8],f32>, !torch.list<int> -> !torch.vtensor<[1,3,2,4],f32>
  %qh = torch.aten.permute %q4, %perm : !torch.vtensor<[1,3,2,4],f32>, !torch.list<int> -> !torch.vtensor<[1,2,3,4],f32>
  %k4 = torch.aten.view %k, %s : !torch.vtensor<[1,3,8],f32>, !torch.list<int> -> !torch.vtensor<[1,3,2,4],f32>
  %kh = torch.aten.permute %k4, %perm : !torch.vtensor<[1,3,2,4],f32>, !torch.list<int> -> !torch.vtensor<[1,2,3,4],f32>
  return %qh, %kh, %v : !torch.vtensor<[1,2,3,4],f32>, !torch.vtensor<[1,2,3,4],f32>, !torch.vtensor<[1,3,8],f32>
}

// -----

// Negative: an offset that is not a whole number of heads (slice [2, 10) of heads of 4), a
// slice with step 2, and a slice of another axis stay as they are.
// CHECK-LABEL: func.func @not_whole_heads(
// CHECK-COUNT-3: torch.aten.slice.Tensor %arg0
// CHECK-NOT:     -> !torch.vtensor<[1,3,6,4],f32>
func.func @not_whole_heads(%qkv: !torch.vtensor<[1,3,24],f32>) -> (!torch.vtensor<[1,2,3,4],f32>, !torch.vtensor<[1,2,3,4],f32>, !torch.vtensor<[1,2,3,4],f32>) {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %int4 = torch.constant.int 4
  %int10 = torch.constant.int 10
  %int16 = torch.constant.int 16
  %int24 = torch.constant.int 24
  %int-1 = torch.constant.int -1
  %perm = torch.prim.ListConstruct %int0, %int2, %int1, %int3 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %s = torch.prim.ListConstruct %int1, %int3, %int2, %int4 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %a = torch.aten.slice.Tensor %qkv, %int-1, %int2, %int10, %int1 : !torch.vtensor<[1,3,24],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,3,8],f32>
  %a4 = torch.aten.view %a, %s : !torch.vtensor<[1,3,8],f32>, !torch.list<int> -> !torch.vtensor<[1,3,2,4],f32>
  %ah = torch.aten.permute %a4, %perm : !torch.vtensor<[1,3,2,4],f32>, !torch.list<int> -> !torch.vtensor<[1,2,3,4],f32>
  %b = torch.aten.slice.Tensor %qkv, %int-1, %int0, %int16, %int2 : !torch.vtensor<[1,3,24],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,3,8],f32>
  %b4 = torch.aten.view %b, %s : !torch.vtensor<[1,3,8],f32>, !torch.list<int> -> !torch.vtensor<[1,3,2,4],f32>
  %bh = torch.aten.permute %b4, %perm : !torch.vtensor<[1,3,2,4],f32>, !torch.list<int> -> !torch.vtensor<[1,2,3,4],f32>
  %c = torch.aten.slice.Tensor %qkv, %int1, %int0, %int1, %int1 : !torch.vtensor<[1,3,24],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,1,24],f32>
  %cs = torch.prim.ListConstruct %int1, %int2, %int3, %int4 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %c4 = torch.aten.view %c, %cs : !torch.vtensor<[1,1,24],f32>, !torch.list<int> -> !torch.vtensor<[1,2,3,4],f32>
  return %ah, %bh, %c4 : !torch.vtensor<[1,2,3,4],f32>, !torch.vtensor<[1,2,3,4],f32>, !torch.vtensor<[1,2,3,4],f32>
}

// -----

// Negative: a permute that keeps the heads after the sequence ([0, 1, 3, 2]: D before S) is
// not a head split.
// CHECK-LABEL: func.func @permute_not_heads_first(
// CHECK:         torch.aten.slice.Tensor %arg0
// CHECK-NOT:     -> !torch.vtensor<[1,3,6,4],f32>
func.func @permute_not_heads_first(%qkv: !torch.vtensor<[1,3,24],f32>) -> !torch.vtensor<[1,3,4,2],f32> {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int3 = torch.constant.int 3
  %int4 = torch.constant.int 4
  %int8 = torch.constant.int 8
  %int-1 = torch.constant.int -1
  %a = torch.aten.slice.Tensor %qkv, %int-1, %int0, %int8, %int1 : !torch.vtensor<[1,3,24],f32>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,3,8],f32>
  %s = torch.prim.ListConstruct %int1, %int3, %int2, %int4 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %a4 = torch.aten.view %a, %s : !torch.vtensor<[1,3,8],f32>, !torch.list<int> -> !torch.vtensor<[1,3,2,4],f32>
  %perm = torch.prim.ListConstruct %int0, %int1, %int3, %int2 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %ah = torch.aten.permute %a4, %perm : !torch.vtensor<[1,3,2,4],f32>, !torch.list<int> -> !torch.vtensor<[1,3,4,2],f32>
  return %ah : !torch.vtensor<[1,3,4,2],f32>
}
