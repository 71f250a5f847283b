// RUN: kiln-opt %s -p kiln-unstride-pointwise-conv --split-input-file | filecheck %s

// kiln-unstride-pointwise-conv: a strided 1x1 convolution reads only every s-th pixel, so it
// becomes a strided slice of the input and a stride-1 1x1 convolution (IREE 3.13's CUDA code
// for the strided form is wrong in f16; docs/decisions.md).

// CHECK-LABEL: func.func @downsample(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[1,8,7,7],f16>
// CHECK:         %[[H:.+]] = torch.aten.slice.Tensor %[[X]], %{{.+}}, %{{.+}}, %{{.+}}, %{{.+}} : !torch.vtensor<[1,8,7,7],f16>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,8,4,7],f16>
// CHECK:         %[[HW:.+]] = torch.aten.slice.Tensor %[[H]], {{.+}} -> !torch.vtensor<[1,8,4,4],f16>
// CHECK:         %[[ONES:.+]] = torch.prim.ListConstruct %{{.+}}, %{{.+}} : (!torch.int, !torch.int) -> !torch.list<int>
// CHECK:         %[[Y:.+]] = torch.aten.convolution %[[HW]], %{{.+}}, %{{.+}}, %[[ONES]], {{.+}} -> !torch.vtensor<[1,16,4,4],f16>
// CHECK:         return %[[Y]]
func.func @downsample(%x: !torch.vtensor<[1,8,7,7],f16>, %w: !torch.vtensor<[16,8,1,1],f16>) -> !torch.vtensor<[1,16,4,4],f16> {
  %false = torch.constant.bool false
  %int1 = torch.constant.int 1
  %int0 = torch.constant.int 0
  %int2 = torch.constant.int 2
  %none = torch.constant.none
  %stride = torch.prim.ListConstruct %int2, %int2 : (!torch.int, !torch.int) -> !torch.list<int>
  %pad = torch.prim.ListConstruct %int0, %int0 : (!torch.int, !torch.int) -> !torch.list<int>
  %dil = torch.prim.ListConstruct %int1, %int1 : (!torch.int, !torch.int) -> !torch.list<int>
  %0 = torch.aten.convolution %x, %w, %none, %stride, %pad, %dil, %false, %pad, %int1 : !torch.vtensor<[1,8,7,7],f16>, !torch.vtensor<[16,8,1,1],f16>, !torch.none, !torch.list<int>, !torch.list<int>, !torch.list<int>, !torch.bool, !torch.list<int>, !torch.int -> !torch.vtensor<[1,16,4,4],f16>
  return %0 : !torch.vtensor<[1,16,4,4],f16>
}

// -----

// Left alone: a 3x3 kernel at stride 2, a 1x1 kernel at stride 1, and a padded 1x1.
// CHECK-LABEL: func.func @unchanged(
// CHECK-NOT:     torch.aten.slice.Tensor
// CHECK-COUNT-3: torch.aten.convolution
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
