// Regression test (kiln-raise-activations): this was a bug, fixed since.
// RUN: kiln-opt %s -p kiln-raise-activations | filecheck %s
//
// The module docstring promises the tanh GELU with the cube written as x·x·x ("pow 3 or
// x·x·x"), but it is never matched: match_gelu reads the cubic term with
// `factors(cubic, ...)`, which already flattens the single-use mul chain (x·x)·x into the
// tensor list [x, x, x]; the code then requires `len(cube) == 1 and _is_cube(cube[0], ...)`,
// so the x·x·x branch of _is_cube is unreachable. Only pow(x, 3) works.
// Suggested fix (kiln_raise_activations.py, match_gelu): accept the flattened form too,
//     if lin == x and _close(c, CUBIC) and (cube == [x, x, x] or
//             (len(cube) == 1 and _is_cube(cube[0], x, cubic_ops))):

// CHECK-LABEL: func.func @gelu_tanh_cube_by_muls(
// CHECK-SAME:    %[[X:[^:]+]]: !torch.vtensor<[2,8],f32>)
// CHECK-NOT:     torch.aten.tanh
// CHECK:         %[[A:.+]] = torch.constant.str "tanh"
// CHECK-NEXT:    %[[Y:.+]] = torch.aten.gelu %[[X]], %[[A]] : !torch.vtensor<[2,8],f32>, !torch.str -> !torch.vtensor<[2,8],f32>
// CHECK-NEXT:    return %[[Y]]
func.func @gelu_tanh_cube_by_muls(%x: !torch.vtensor<[2,8],f32>) -> !torch.vtensor<[2,8],f32> {
  %half = torch.constant.float 5.000000e-01
  %c = torch.constant.float 4.471500e-02
  %k = torch.constant.float 0.79788456080286541
  %one = torch.constant.float 1.000000e+00
  %int1 = torch.constant.int 1
  %xx = torch.aten.mul.Tensor %x, %x : !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32> -> !torch.vtensor<[2,8],f32>
  %xxx = torch.aten.mul.Tensor %xx, %x : !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32> -> !torch.vtensor<[2,8],f32>
  %cx3 = torch.aten.mul.Scalar %xxx, %c : !torch.vtensor<[2,8],f32>, !torch.float -> !torch.vtensor<[2,8],f32>
  %in = torch.aten.add.Tensor %cx3, %x, %int1 : !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32>, !torch.int -> !torch.vtensor<[2,8],f32>
  %arg = torch.aten.mul.Scalar %in, %k : !torch.vtensor<[2,8],f32>, !torch.float -> !torch.vtensor<[2,8],f32>
  %t = torch.aten.tanh %arg : !torch.vtensor<[2,8],f32> -> !torch.vtensor<[2,8],f32>
  %p = torch.aten.add.Scalar %t, %one, %int1 : !torch.vtensor<[2,8],f32>, !torch.float, !torch.int -> !torch.vtensor<[2,8],f32>
  %xp = torch.aten.mul.Tensor %x, %p : !torch.vtensor<[2,8],f32>, !torch.vtensor<[2,8],f32> -> !torch.vtensor<[2,8],f32>
  %y = torch.aten.mul.Scalar %xp, %half : !torch.vtensor<[2,8],f32>, !torch.float -> !torch.vtensor<[2,8],f32>
  return %y : !torch.vtensor<[2,8],f32>
}
