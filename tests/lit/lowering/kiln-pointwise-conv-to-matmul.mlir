// RUN: kiln-opt %s -p kiln-pointwise-conv-to-matmul --split-input-file | filecheck %s

// kiln-pointwise-conv-to-matmul: a 1x1 convolution is a matmul over channels; a stride keeps
// every s-th pixel, so it becomes strided slices first (IREE 3.13's CUDA code for 1x1
// convolutions is wrong in f16; docs/decisions.md).

// CHECK-LABEL: func.func @downsample(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[1,8,7,7],f16>, %[[W:[^:]+]]: !torch.vtensor<[16,8,1,1],f16>, %[[B:[^:]+]]: !torch.vtensor<[16],f16>
// CHECK:         %[[H:.+]] = torch.aten.slice.Tensor %[[X]], %{{.+}}, %{{.+}}, %{{.+}}, %{{.+}} : !torch.vtensor<[1,8,7,7],f16>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,8,4,7],f16>
// CHECK:         %[[HW:.+]] = torch.aten.slice.Tensor %[[H]], {{.+}} -> !torch.vtensor<[1,8,4,4],f16>
// CHECK:         %[[FLAT:.+]] = torch.aten.view %[[HW]], {{.+}} -> !torch.vtensor<[1,8,16],f16>
// CHECK:         %[[W2:.+]] = torch.aten.view %[[W]], {{.+}} -> !torch.vtensor<[16,8],f16>
// CHECK:         %[[MM:.+]] = torch.aten.matmul %[[W2]], %[[FLAT]] : !torch.vtensor<[16,8],f16>, !torch.vtensor<[1,8,16],f16> -> !torch.vtensor<[1,16,16],f16>
// CHECK:         %[[B2:.+]] = torch.aten.view %[[B]], {{.+}} -> !torch.vtensor<[16,1],f16>
// CHECK:         %[[SUM:.+]] = torch.aten.add.Tensor %[[MM]], %[[B2]]
// CHECK:         %[[Y:.+]] = torch.aten.view %[[SUM]], {{.+}} -> !torch.vtensor<[1,16,4,4],f16>
// CHECK-NOT:     torch.aten.convolution
// CHECK:         return %[[Y]]
func.func @downsample(%x: !torch.vtensor<[1,8,7,7],f16>, %w: !torch.vtensor<[16,8,1,1],f16>, %b: !torch.vtensor<[16],f16>) -> !torch.vtensor<[1,16,4,4],f16> {
  %false = torch.constant.bool false
  %int1 = torch.constant.int 1
  %int0 = torch.constant.int 0
  %int2 = torch.constant.int 2
  %stride = torch.prim.ListConstruct %int2, %int2 : (!torch.int, !torch.int) -> !torch.list<int>
  %pad = torch.prim.ListConstruct %int0, %int0 : (!torch.int, !torch.int) -> !torch.list<int>
  %dil = torch.prim.ListConstruct %int1, %int1 : (!torch.int, !torch.int) -> !torch.list<int>
  %0 = torch.aten.convolution %x, %w, %b, %stride, %pad, %dil, %false, %pad, %int1 : !torch.vtensor<[1,8,7,7],f16>, !torch.vtensor<[16,8,1,1],f16>, !torch.vtensor<[16],f16>, !torch.list<int>, !torch.list<int>, !torch.list<int>, !torch.bool, !torch.list<int>, !torch.int -> !torch.vtensor<[1,16,4,4],f16>
  return %0 : !torch.vtensor<[1,16,4,4],f16>
}

// -----

// Left alone: a 3x3 kernel at stride 2 and a padded 1x1; a 1x1 at stride 1 is a matmul.
// CHECK-LABEL: func.func @unchanged(
// CHECK-NOT:     torch.aten.slice.Tensor
// CHECK:         torch.aten.convolution {{.+}} -> !torch.vtensor<[1,16,3,3],f16>
// CHECK:         torch.aten.matmul
// CHECK:         torch.aten.convolution {{.+}} -> !torch.vtensor<[1,16,5,5],f16>
func.func @unchanged(%x: !torch.vtensor<[1,8,7,7],f16>, %w3: !torch.vtensor<[16,8,3,3],f16>, %w1: !torch.vtensor<[16,8,1,1],f16>) -> (!torch.vtensor<[1,16,3,3],f16>, !torch.vtensor<[1,16,7,7],f16>, !torch.vtensor<[1,16,5,5],f16>) {
  %false = torch.constant.bool false
  %int1 = torch.constant.int 1
  %int0 = torch.constant.int 0
  %int2 = torch.constant.int 2
  %none = torch.constant.none
  %s2 = torch.prim.ListConstruct %int2, %int2 : (!torch.int, !torch.int) -> !torch.list<int>
  %s1 = torch.prim.ListConstruct %int1, %int1 : (!torch.int, !torch.int) -> !torch.list<int>
  %p0 = torch.prim.ListConstruct %int0, %int0 : (!torch.int, !torch.int) -> !torch.list<int>
  %p1 = torch.prim.ListConstruct %int1, %int1 : (!torch.int, !torch.int) -> !torch.list<int>
  %0 = torch.aten.convolution %x, %w3, %none, %s2, %p0, %s1, %false, %p0, %int1 : !torch.vtensor<[1,8,7,7],f16>, !torch.vtensor<[16,8,3,3],f16>, !torch.none, !torch.list<int>, !torch.list<int>, !torch.list<int>, !torch.bool, !torch.list<int>, !torch.int -> !torch.vtensor<[1,16,3,3],f16>
  %1 = torch.aten.convolution %x, %w1, %none, %s1, %p0, %s1, %false, %p0, %int1 : !torch.vtensor<[1,8,7,7],f16>, !torch.vtensor<[16,8,1,1],f16>, !torch.none, !torch.list<int>, !torch.list<int>, !torch.list<int>, !torch.bool, !torch.list<int>, !torch.int -> !torch.vtensor<[1,16,7,7],f16>
  %2 = torch.aten.convolution %x, %w1, %none, %s2, %p1, %s1, %false, %p0, %int1 : !torch.vtensor<[1,8,7,7],f16>, !torch.vtensor<[16,8,1,1],f16>, !torch.none, !torch.list<int>, !torch.list<int>, !torch.list<int>, !torch.bool, !torch.list<int>, !torch.int -> !torch.vtensor<[1,16,5,5],f16>
  return %0, %1, %2 : !torch.vtensor<[1,16,3,3],f16>, !torch.vtensor<[1,16,7,7],f16>, !torch.vtensor<[1,16,5,5],f16>
}
