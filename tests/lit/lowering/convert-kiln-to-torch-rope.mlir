// RUN: kiln-opt %s -p convert-kiln-to-torch --split-input-file | filecheck %s

// convert-kiln-to-torch for kiln.rope: x·cos + x[..., indices]·(sin·signs), the rotation as a
// gather with constant indices and signs (one elementwise dispatch in IREE, no cat of slices).

// Rotate-half, D = 8: indices [4..7, 0..3], signs [-1 ×4, +1 ×4].
// CHECK-LABEL: func.func @rotate_half(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[1,2,3,8],f32>, %[[COS:[^:]+]]: !torch.vtensor<[1,1,3,8],f32>, %[[SIN:[^:]+]]: !torch.vtensor<[1,1,3,8],f32>)
// CHECK-NOT:     kiln.rope
// CHECK:         %[[IDX:.+]] = torch.vtensor.literal(dense<[4, 5, 6, 7, 0, 1, 2, 3]> : tensor<8xsi64>) : !torch.vtensor<[8],si64>
// CHECK:         %[[ROT:.+]] = torch.aten.index_select %[[X]], %{{.+}}, %[[IDX]] : !torch.vtensor<[1,2,3,8],f32>, !torch.int, !torch.vtensor<[8],si64> -> !torch.vtensor<[1,2,3,8],f32>
// CHECK:         %[[SIGNS:.+]] = torch.vtensor.literal(dense<[-1.000000e+00, -1.000000e+00, -1.000000e+00, -1.000000e+00, 1.000000e+00, 1.000000e+00, 1.000000e+00, 1.000000e+00]> : tensor<8xf32>)
// CHECK:         %[[SS:.+]] = torch.aten.mul.Tensor %[[SIN]], %[[SIGNS]] : !torch.vtensor<[1,1,3,8],f32>, !torch.vtensor<[8],f32> -> !torch.vtensor<[1,1,3,8],f32>
// CHECK:         %[[XC:.+]] = torch.aten.mul.Tensor %[[X]], %[[COS]]
// CHECK:         %[[RS:.+]] = torch.aten.mul.Tensor %[[ROT]], %[[SS]]
// CHECK:         %[[Y:.+]] = torch.aten.add.Tensor %[[XC]], %[[RS]], %{{.+}} : !torch.vtensor<[1,2,3,8],f32>, !torch.vtensor<[1,2,3,8],f32>, !torch.int -> !torch.vtensor<[1,2,3,8],f32>
// CHECK:         return %[[Y]]
func.func @rotate_half(%x: !torch.vtensor<[1,2,3,8],f32>, %cos: !torch.vtensor<[1,1,3,8],f32>, %sin: !torch.vtensor<[1,1,3,8],f32>) -> !torch.vtensor<[1,2,3,8],f32> {
  %0 = "kiln.rope"(%x, %cos, %sin) {interleaved = false} : (!torch.vtensor<[1,2,3,8],f32>, !torch.vtensor<[1,1,3,8],f32>, !torch.vtensor<[1,1,3,8],f32>) -> !torch.vtensor<[1,2,3,8],f32>
  return %0 : !torch.vtensor<[1,2,3,8],f32>
}

// -----

// Interleaved, D = 4, f16: indices [1, 0, 3, 2], signs [-1, +1, -1, +1] cast to f16.
// CHECK-LABEL: func.func @interleaved_f16(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[5,4],f16>, %[[COS:[^:]+]]: !torch.vtensor<[5,4],f16>, %[[SIN:[^:]+]]: !torch.vtensor<[5,4],f16>)
// CHECK:         %[[IDX:.+]] = torch.vtensor.literal(dense<[1, 0, 3, 2]> : tensor<4xsi64>)
// CHECK:         torch.aten.index_select %[[X]], %{{.+}}, %[[IDX]]
// CHECK:         %[[SIGNS:.+]] = torch.vtensor.literal(dense<[-1.000000e+00, 1.000000e+00, -1.000000e+00, 1.000000e+00]> : tensor<4xf32>)
// CHECK:         %[[SIGNS16:.+]] = torch.aten.to.dtype %[[SIGNS]], {{.*}} -> !torch.vtensor<[4],f16>
// CHECK:         torch.aten.mul.Tensor %[[SIN]], %[[SIGNS16]] : !torch.vtensor<[5,4],f16>, !torch.vtensor<[4],f16> -> !torch.vtensor<[5,4],f16>
func.func @interleaved_f16(%x: !torch.vtensor<[5,4],f16>, %cos: !torch.vtensor<[5,4],f16>, %sin: !torch.vtensor<[5,4],f16>) -> !torch.vtensor<[5,4],f16> {
  %0 = "kiln.rope"(%x, %cos, %sin) {interleaved = true} : (!torch.vtensor<[5,4],f16>, !torch.vtensor<[5,4],f16>, !torch.vtensor<[5,4],f16>) -> !torch.vtensor<[5,4],f16>
  return %0 : !torch.vtensor<[5,4],f16>
}
