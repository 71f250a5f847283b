// RUN: kiln-opt %s -p kiln-raise-linear | filecheck %s

// kiln.linear takes float tensors only: an integer linear raised to it failed the verifier
// ("'kiln.linear' input must be a float tensor, got si64"; OpInfo nn.functional.linear on
// int64, tests/conformance). It stays an aten op.
// CHECK-LABEL: func.func @integer_linear(
// CHECK-NOT:     kiln.linear
// CHECK:         torch.aten.linear
// CHECK-NOT:     kiln.linear
// CHECK:         return
func.func @integer_linear(%x: !torch.vtensor<[2,8],si64>, %w: !torch.vtensor<[4,8],si64>, %b: !torch.vtensor<[4],si64>) -> !torch.vtensor<[2,4],si64> {
  %y = torch.aten.linear %x, %w, %b : !torch.vtensor<[2,8],si64>, !torch.vtensor<[4,8],si64>, !torch.vtensor<[4],si64> -> !torch.vtensor<[2,4],si64>
  return %y : !torch.vtensor<[2,4],si64>
}
