// RUN: kiln-opt %s -p convert-kiln-to-torch --split-input-file | filecheck %s

// convert-kiln-to-torch for kiln.rope: x·cos + rotate(x)·(sin·signs), no cat of slices (one
// elementwise dispatch in IREE). The half rotation swaps the halves as a flip of a [..., 2, D/2]
// view (contiguous loads in IREE's CPU code); pairs (interleaved) are a gather with constant
// indices.

// Rotate-half, D = 8: x, cos and sin·signs viewed as [..., 2, 4], x's halves swapped by a flip of
// dim 3, the result viewed back as [..., 8]; signs [-1 ×4, +1 ×4].
// CHECK-LABEL: func.func @rotate_half(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[1,2,3,8],f32>, %[[COS:[^:]+]]: !torch.vtensor<[1,1,3,8],f32>, %[[SIN:[^:]+]]: !torch.vtensor<[1,1,3,8],f32>)
// CHECK-NOT:     kiln.rope
// CHECK-NOT:     index_select
// CHECK:         %[[SIGNS:.+]] = torch.vtensor.literal(dense<[-1.000000e+00, -1.000000e+00, -1.000000e+00, -1.000000e+00, 1.000000e+00, 1.000000e+00, 1.000000e+00, 1.000000e+00]> : tensor<8xf32>)
// CHECK:         %[[SS:.+]] = torch.aten.mul.Tensor %[[SIN]], %[[SIGNS]] : !torch.vtensor<[1,1,3,8],f32>, !torch.vtensor<[8],f32> -> !torch.vtensor<[1,1,3,8],f32>
// CHECK:         %[[X2:.+]] = torch.aten.reshape %[[X]], %{{.+}} : !torch.vtensor<[1,2,3,8],f32>, !torch.list<int> -> !torch.vtensor<[1,2,3,2,4],f32>
// CHECK:         %[[COS2:.+]] = torch.aten.reshape %[[COS]], %{{.+}} -> !torch.vtensor<[1,1,3,2,4],f32>
// CHECK:         %[[SS2:.+]] = torch.aten.reshape %[[SS]], %{{.+}} -> !torch.vtensor<[1,1,3,2,4],f32>
// CHECK:         %[[THREE:.+]] = torch.constant.int 3
// CHECK:         %[[DIMS:.+]] = torch.prim.ListConstruct %[[THREE]] : (!torch.int) -> !torch.list<int>
// CHECK:         %[[FLIP:.+]] = torch.aten.flip %[[X2]], %[[DIMS]] : !torch.vtensor<[1,2,3,2,4],f32>, !torch.list<int> -> !torch.vtensor<[1,2,3,2,4],f32>
// CHECK:         %[[XC:.+]] = torch.aten.mul.Tensor %[[X2]], %[[COS2]]
// CHECK:         %[[RS:.+]] = torch.aten.mul.Tensor %[[FLIP]], %[[SS2]]
// CHECK:         %[[Y2:.+]] = torch.aten.add.Tensor %[[XC]], %[[RS]], %{{.+}} : !torch.vtensor<[1,2,3,2,4],f32>, !torch.vtensor<[1,2,3,2,4],f32>, !torch.int -> !torch.vtensor<[1,2,3,2,4],f32>
// CHECK:         %[[Y:.+]] = torch.aten.reshape %[[Y2]], %{{.+}} : !torch.vtensor<[1,2,3,2,4],f32>, !torch.list<int> -> !torch.vtensor<[1,2,3,8],f32>
// CHECK:         return %[[Y]]
func.func @rotate_half(%x: !torch.vtensor<[1,2,3,8],f32>, %cos: !torch.vtensor<[1,1,3,8],f32>, %sin: !torch.vtensor<[1,1,3,8],f32>) -> !torch.vtensor<[1,2,3,8],f32> {
  %0 = "kiln.rope"(%x, %cos, %sin) {interleaved = false} : (!torch.vtensor<[1,2,3,8],f32>, !torch.vtensor<[1,1,3,8],f32>, !torch.vtensor<[1,1,3,8],f32>) -> !torch.vtensor<[1,2,3,8],f32>
  return %0 : !torch.vtensor<[1,2,3,8],f32>
}

// -----

// Dynamic batch and sequence: the reshapes read those sizes from x at run time.
// CHECK-LABEL: func.func @rotate_half_dynamic(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[?,4,?,8],f32>
// CHECK:         %[[ZERO:.+]] = torch.constant.int 0
// CHECK:         %[[B:.+]] = torch.aten.size.int %[[X]], %[[ZERO]] : !torch.vtensor<[?,4,?,8],f32>, !torch.int -> !torch.int
// CHECK:         %[[TWO:.+]] = torch.constant.int 2
// CHECK:         %[[S:.+]] = torch.aten.size.int %[[X]], %[[TWO]] : !torch.vtensor<[?,4,?,8],f32>, !torch.int -> !torch.int
// CHECK:         torch.prim.ListConstruct %[[B]], %{{.+}}, %[[S]], %{{.+}}, %{{.+}} :
// CHECK:         torch.aten.reshape %[[X]], %{{.+}} : !torch.vtensor<[?,4,?,8],f32>, !torch.list<int> -> !torch.vtensor<[?,4,?,2,4],f32>
// CHECK:         torch.aten.flip
// CHECK:         %[[B2:.+]] = torch.aten.size.int %[[X]], %{{.+}} :
// CHECK:         %[[S2:.+]] = torch.aten.size.int %[[X]], %{{.+}} :
// CHECK:         torch.prim.ListConstruct %[[B2]], %{{.+}}, %[[S2]], %{{.+}} :
// CHECK:         torch.aten.reshape %{{.+}}, %{{.+}} : !torch.vtensor<[?,4,?,2,4],f32>, !torch.list<int> -> !torch.vtensor<[?,4,?,8],f32>
func.func @rotate_half_dynamic(%x: !torch.vtensor<[?,4,?,8],f32>, %cos: !torch.vtensor<[1,1,?,8],f32>, %sin: !torch.vtensor<[1,1,?,8],f32>) -> !torch.vtensor<[?,4,?,8],f32> {
  %0 = "kiln.rope"(%x, %cos, %sin) {interleaved = false} : (!torch.vtensor<[?,4,?,8],f32>, !torch.vtensor<[1,1,?,8],f32>, !torch.vtensor<[1,1,?,8],f32>) -> !torch.vtensor<[?,4,?,8],f32>
  return %0 : !torch.vtensor<[?,4,?,8],f32>
}

// -----

// Interleaved, D = 4, f16: indices [1, 0, 3, 2], signs [-1, +1, -1, +1] cast to f16.
// CHECK-LABEL: func.func @interleaved_f16(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[5,4],f16>, %[[COS:[^:]+]]: !torch.vtensor<[5,4],f16>, %[[SIN:[^:]+]]: !torch.vtensor<[5,4],f16>)
// CHECK:         %[[SIGNS:.+]] = torch.vtensor.literal(dense<[-1.000000e+00, 1.000000e+00, -1.000000e+00, 1.000000e+00]> : tensor<4xf32>)
// CHECK:         %[[SIGNS16:.+]] = torch.aten.to.dtype %[[SIGNS]], {{.*}} -> !torch.vtensor<[4],f16>
// CHECK:         torch.aten.mul.Tensor %[[SIN]], %[[SIGNS16]] : !torch.vtensor<[5,4],f16>, !torch.vtensor<[4],f16> -> !torch.vtensor<[5,4],f16>
// CHECK:         %[[IDX:.+]] = torch.vtensor.literal(dense<[1, 0, 3, 2]> : tensor<4xsi64>)
// CHECK:         torch.aten.index_select %[[X]], %{{.+}}, %[[IDX]]
func.func @interleaved_f16(%x: !torch.vtensor<[5,4],f16>, %cos: !torch.vtensor<[5,4],f16>, %sin: !torch.vtensor<[5,4],f16>) -> !torch.vtensor<[5,4],f16> {
  %0 = "kiln.rope"(%x, %cos, %sin) {interleaved = true} : (!torch.vtensor<[5,4],f16>, !torch.vtensor<[5,4],f16>, !torch.vtensor<[5,4],f16>) -> !torch.vtensor<[5,4],f16>
  return %0 : !torch.vtensor<[5,4],f16>
}
