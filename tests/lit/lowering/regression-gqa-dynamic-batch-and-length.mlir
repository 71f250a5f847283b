// Regression test (convert-kiln-to-torch, decomposed attention) for a fixed bug.
// RUN: kiln-opt %s -p convert-kiln-to-torch | filecheck %s
//
// Guards against: repeating kv heads for grouped-query attention with a dynamic batch AND a
// dynamic length reshaped to [-1, Hq, -1, D]. A reshape may hold -1 once; torch-mlir lowered the
// ambiguous one to a wrong layout and a Llama/Qwen2/Mistral artifact compiled with dynamic batch
// and sequence returned NaN or wrong values for every batch > 1 (batch 1 was right). Each dynamic
// size must be read from the kv tensor itself.

// CHECK-LABEL: func.func @gqa_dynamic_batch_and_length(
// CHECK-SAME:    %[[Q:[^:]+]]: !torch.vtensor<[?,4,?,16],f32>, %[[K:[^:]+]]: !torch.vtensor<[?,2,?,16],f32>
// CHECK-DAG:     %[[I0:.+]] = torch.constant.int 0
// CHECK-DAG:     %[[I2:.+]] = torch.constant.int 2
// CHECK-DAG:     %[[B:.+]] = torch.aten.size.int %[[K]], %[[I0]]
// CHECK-DAG:     %[[S:.+]] = torch.aten.size.int %[[K]], %[[I2]]
// CHECK:         %[[SIZES:.+]] = torch.prim.ListConstruct %[[B]], %{{.+}}, %[[S]], %{{.+}} :
// CHECK:         torch.aten.reshape %{{.+}}, %[[SIZES]] : !torch.vtensor<[?,2,2,?,16],f32>, !torch.list<int> -> !torch.vtensor<[?,4,?,16],f32>
func.func @gqa_dynamic_batch_and_length(%q: !torch.vtensor<[?,4,?,16],f32>, %k: !torch.vtensor<[?,2,?,16],f32>, %v: !torch.vtensor<[?,2,?,16],f32>) -> !torch.vtensor<[?,4,?,16],f32> {
  %0 = "kiln.attention"(%q, %k, %v) {causal = true, operandSegmentSizes = array<i32: 1, 1, 1, 0>, scale = 2.500000e-01 : f64} : (!torch.vtensor<[?,4,?,16],f32>, !torch.vtensor<[?,2,?,16],f32>, !torch.vtensor<[?,2,?,16],f32>) -> !torch.vtensor<[?,4,?,16],f32>
  return %0 : !torch.vtensor<[?,4,?,16],f32>
}
