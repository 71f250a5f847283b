"""Small helpers over torch-dialect IR: tensor types, constants, and op building.

torch-mlir's Python bindings expose torch types only as opaque `ir.Type`s, so shapes and dtypes
are read from the type's text (`!torch.vtensor<[2,?,64],f32>`). Matchers and verifiers use these
helpers so that every pass reads IR the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Sequence

from kiln.bindings import ir
from kiln.dtypes import DTYPES, FLOAT_ELEMENTS

_VTENSOR = re.compile(r"^!torch\.vtensor<\[(?P<dims>[^\]]*)\],(?P<dtype>[^>]+>?)>$")  # complex<f32>

# torch ScalarType codes used by aten ops that take a dtype integer, for the real dtypes.
TORCH_DTYPE_CODE = {d.mlir: d.scalar_type for d in DTYPES if d.kind != "complex"}
FLOAT_DTYPES = FLOAT_ELEMENTS


@dataclass(frozen=True)
class TensorInfo:
    """Shape and element type of a `!torch.vtensor`; a dynamic dimension is None."""

    shape: tuple[Optional[int], ...]
    dtype: str

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES

    def __str__(self) -> str:
        dims = "x".join("?" if d is None else str(d) for d in self.shape)
        return f"{dims}x{self.dtype}" if dims else self.dtype


def tensor_info(type_or_value) -> Optional[TensorInfo]:
    """TensorInfo of a value-semantics torch tensor type (or of a value), else None."""
    type_ = type_or_value.type if isinstance(type_or_value, ir.Value) else type_or_value
    match = _VTENSOR.match(str(type_))
    if not match:
        return None
    dims = match.group("dims").strip()
    shape = tuple(
        None if d.strip() == "?" else int(d) for d in dims.split(",")
    ) if dims else ()
    return TensorInfo(shape, match.group("dtype"))


def broadcast_shapes(a: Sequence[Optional[int]], b: Sequence[Optional[int]]) -> tuple:
    """numpy-style broadcast of two shapes; a dynamic dim broadcast with 1 stays dynamic."""
    rank = max(len(a), len(b))
    a = (1,) * (rank - len(a)) + tuple(a)
    b = (1,) * (rank - len(b)) + tuple(b)
    return tuple(y if x == 1 else x if y == 1 else (x if x is not None else y)
                 for x, y in zip(a, b))


def vtensor_type(shape: Sequence[Optional[int]], dtype: str) -> ir.Type:
    dims = ",".join("?" if d is None else str(d) for d in shape)
    return ir.Type.parse(f"!torch.vtensor<[{dims}],{dtype}>")


def defining_op(value: ir.Value) -> Optional[ir.Operation]:
    """The op producing `value`, or None for a block argument."""
    if not isinstance(value, ir.OpResult):
        return None
    return value.owner.operation


def op_name(value: ir.Value) -> Optional[str]:
    op = defining_op(value)
    return op.name if op is not None else None


def constant_value(value: ir.Value):
    """The Python value of a torch constant (int, float, bool, None, str), or raise LookupError."""
    op = defining_op(value)
    if op is None:
        raise LookupError("not a constant")
    name = op.name
    if name == "torch.constant.none":
        return None
    if name in ("torch.constant.int", "torch.constant.float", "torch.constant.bool",
                "torch.constant.str"):
        attr = op.attributes["value"]
        if name == "torch.constant.int":
            return ir.IntegerAttr(attr).value
        if name == "torch.constant.float":
            return ir.FloatAttr(attr).value
        if name == "torch.constant.bool":
            return ir.BoolAttr(attr).value
        return ir.StringAttr(attr).value
    if name == "torch.prim.ListConstruct":
        return [constant_value(operand) for operand in op.operands]
    raise LookupError(f"{name} is not a constant")


def constant_or(value: ir.Value, default=LookupError):
    """constant_value(value), or `default` when it is not a constant."""
    try:
        return constant_value(value)
    except LookupError:
        return default


def single_use(value: ir.Value) -> bool:
    uses = list(value.uses)
    return len(uses) == 1


def users(value: ir.Value) -> list[ir.Operation]:
    return [use.owner for use in value.uses]


class TorchBuilder:
    """Builds torch-dialect ops at the current insertion point, one aten op per method.

    Constants are created on demand; `canonicalize` and `cse` merge duplicates later.
    """

    def __init__(self, location: ir.Location):
        self.location = location

    def _op(self, name: str, result_types, operands) -> ir.Operation:
        return ir.Operation.create(name, results=result_types, operands=list(operands),
                                   loc=self.location)

    def int(self, v: int) -> ir.Value:
        i64 = ir.IntegerType.get_signless(64)
        return ir.Operation.create(
            "torch.constant.int", results=[ir.Type.parse("!torch.int")],
            attributes={"value": ir.IntegerAttr.get(i64, int(v))}, loc=self.location).result

    def float(self, v: float) -> ir.Value:
        return ir.Operation.create(
            "torch.constant.float", results=[ir.Type.parse("!torch.float")],
            attributes={"value": ir.FloatAttr.get_f64(float(v))}, loc=self.location).result

    def bool(self, v: bool) -> ir.Value:
        return ir.Operation.create(
            "torch.constant.bool", results=[ir.Type.parse("!torch.bool")],
            attributes={"value": ir.BoolAttr.get(bool(v))}, loc=self.location).result

    def none(self) -> ir.Value:
        return ir.Operation.create("torch.constant.none", results=[ir.Type.parse("!torch.none")],
                                   loc=self.location).result

    def str(self, v: str) -> ir.Value:
        return ir.Operation.create(
            "torch.constant.str", results=[ir.Type.parse("!torch.str")],
            attributes={"value": ir.StringAttr.get(v)}, loc=self.location).result

    def int_list(self, values: Sequence[int]) -> ir.Value:
        items = [self.int(v) for v in values]
        return self._op("torch.prim.ListConstruct", [ir.Type.parse("!torch.list<int>")],
                        items).result

    def size_list(self, entries: Sequence) -> ir.Value:
        """A `!torch.list<int>` of sizes for reshape/view: an int is a constant, a
        `(value, axis)` pair is that value's size read at run time (`aten.size.int`). A reshape
        may hold -1 once only; with two dynamic dims each must come from a real size."""
        items = [self.int(e) if isinstance(e, int) else
                 self.aten_scalar("size.int", "!torch.int", e[0], self.int(e[1]))
                 for e in entries]
        return self.list_of(items)

    def aten(self, name: str, result: TensorInfo | ir.Type, *operands) -> ir.Value:
        type_ = result if isinstance(result, ir.Type) else vtensor_type(result.shape, result.dtype)
        return self._op(f"torch.aten.{name}", [type_], operands).result

    def cat(self, values: Sequence[ir.Value], dim: int, result: TensorInfo) -> ir.Value:
        """aten.cat of `values` along `dim` (a `!torch.list<vtensor>` built here)."""
        return self.aten("cat", result, self.list_of(values, "vtensor"), self.int(dim))

    def list_of(self, values: Sequence[ir.Value], element: str = "int") -> ir.Value:
        """A `!torch.list<element>` of existing values (e.g. sizes that are not constants)."""
        return self._op("torch.prim.ListConstruct", [ir.Type.parse(f"!torch.list<{element}>")],
                        values).result

    def slice(self, value: ir.Value, dim: int, start: int, end: int, result: TensorInfo,
              step: int = 1) -> ir.Value:
        """aten.slice.Tensor: value[..., start:end:step, ...] along `dim`."""
        return self.aten("slice.Tensor", result, value, self.int(dim), self.int(start),
                         self.int(end), self.int(step))

    def aten_scalar(self, name: str, result_type: str, *operands) -> ir.Value:
        """An aten op with a scalar result (`size.int` → !torch.int)."""
        return self._op(f"torch.aten.{name}", [ir.Type.parse(result_type)], operands).result

    def f32_literal(self, array) -> ir.Value:
        """A `torch.vtensor.literal` holding a small f32 numpy array (compile-time masks)."""
        import numpy as np

        array = np.ascontiguousarray(array, dtype=np.float32)
        tensor_type = ir.RankedTensorType.get(list(array.shape), ir.F32Type.get())
        dense = ir.DenseElementsAttr.get(array, type=tensor_type)
        return ir.Operation.create(
            "torch.vtensor.literal", results=[vtensor_type(array.shape, "f32")],
            attributes={"value": dense}, loc=self.location).result

    def si64_literal(self, array) -> ir.Value:
        """A `torch.vtensor.literal` holding a small int64 numpy array (gather indices)."""
        import numpy as np

        array = np.ascontiguousarray(array, dtype=np.int64)
        tensor_type = ir.RankedTensorType.get(list(array.shape),
                                              ir.IntegerType.get_signed(64))
        dense = ir.DenseElementsAttr.get(array, type=tensor_type)
        return ir.Operation.create(
            "torch.vtensor.literal", results=[vtensor_type(array.shape, "si64")],
            attributes={"value": dense}, loc=self.location).result

    def view(self, value: ir.Value, shape: Sequence[int]) -> ir.Value:
        """aten.view to a static `shape`, or `value` itself when it already has that shape."""
        info = tensor_info(value)
        if tuple(info.shape) == tuple(shape):
            return value
        return self.aten("view", TensorInfo(tuple(shape), info.dtype), value,
                         self.int_list(list(shape)))

    def cast(self, value: ir.Value, dtype: str) -> ir.Value:
        """aten.to.dtype to `dtype`, or `value` itself when it already has that dtype."""
        info = tensor_info(value)
        if info.dtype == dtype:
            return value
        false = self.bool(False)
        return self.aten("to.dtype", TensorInfo(info.shape, dtype), value,
                         self.int(TORCH_DTYPE_CODE[dtype]), false, false, self.none())
