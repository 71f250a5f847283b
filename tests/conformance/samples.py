"""Which OpInfo samples run, each wrapped as an `nn.Module`, and how results are compared.

A sample is named `op[.variant][:inplace]|dtype|index`: the OpInfo name (and variant test
name), the dtype its inputs were made for, and its position in `op.sample_inputs(...)` drawn
after `torch.manual_seed(SEED)`, so any process rebuilds the same tensors from the name.
`:inplace` samples call the op's in-place variant (`add_`, `fill_`, `index_put_`, ...) on the
sample's first tensor: the module mutates its input, as a model updating a cache does.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Sequence

import torch
from torch.utils import _pytree

SEED = 0
# Dtypes a sample may be made for, in the order the full run tries them.
DTYPES = {"float32": torch.float32, "float64": torch.float64, "int64": torch.int64,
          "bool": torch.bool, "float16": torch.float16, "bfloat16": torch.bfloat16,
          "complex64": torch.complex64}
# (rtol, atol) per result dtype; integers and booleans must match exactly.
TOLERANCES = {torch.float16: (1e-2, 1e-2), torch.bfloat16: (3e-2, 3e-2),
              torch.float32: (1e-4, 1e-4), torch.float64: (1e-7, 1e-7),
              torch.complex64: (1e-4, 1e-4), torch.complex128: (1e-7, 1e-7)}
# Ops whose results are uninitialized memory or random draws (some OpInfo wrappers seed torch
# themselves, so eager repeats itself but a compiled generator draws other numbers): only
# shape and dtype are compared. Other random ops are found by running eager twice.
UNCOMPARABLE = ("empty", "empty_like", "new_empty", "new_empty_strided", "empty_strided",
                "empty_permuted", "bernoulli", "normal", "uniform", "exponential", "geometric",
                "log_normal", "cauchy", "multinomial", "rand_like", "randn_like",
                "randint_like", "randint", "randn", "rand", "randperm",
                "nn.functional.dropout", "nn.functional.alpha_dropout",
                "nn.functional.feature_alpha_dropout", "nn.functional.dropout2d",
                "nn.functional.dropout3d", "nn.functional.rrelu")


@functools.lru_cache(maxsize=None)
def op_table() -> dict[str, Any]:
    """OpInfo key (name or name.variant) → OpInfo."""
    from torch.testing._internal.common_methods_invocations import op_db

    return {op.name + (f".{op.variant_test_name}" if op.variant_test_name else ""): op
            for op in op_db}


@dataclass(frozen=True)
class SampleId:
    op: str  # OpInfo key
    dtype: str
    index: int
    inplace: bool = False

    def __str__(self) -> str:
        return f"{self.op}{':inplace' if self.inplace else ''}|{self.dtype}|{self.index}"

    @classmethod
    def parse(cls, text: str) -> "SampleId":
        op, dtype, index = text.rsplit("|", 2)
        inplace = op.endswith(":inplace")
        return cls(op.removesuffix(":inplace"), dtype, int(index), inplace)

    @property
    def family(self) -> str:
        """The op family docs/conformance.md groups counts by."""
        return family_of(self.op)


def _sample_list(op, dtype: torch.dtype) -> list:
    torch.manual_seed(SEED)
    return list(op.sample_inputs("cpu", dtype, requires_grad=False))


def supported_dtypes(op) -> list[str]:
    supported = op.supported_dtypes("cpu")
    return [name for name, dtype in DTYPES.items() if dtype in supported]


def enumerate_samples(per_op: dict[str, int], ops: Optional[Sequence[str]] = None,
                      inplace_per_op: int = 1) -> Iterator[SampleId]:
    """Sample ids: up to `per_op[dtype]` samples of each op for each dtype it supports, and
    up to `inplace_per_op` float32 samples of each in-place variant."""
    table = op_table()
    for key in ops or table:
        op = table[key]
        for dtype in supported_dtypes(op):
            count = per_op.get(dtype, 0)
            if not count:
                continue
            try:
                n = len(_sample_list(op, DTYPES[dtype]))
            except Exception:  # noqa: BLE001 - a sample generator that fails on CPU
                continue
            for index in range(min(count, n)):
                yield SampleId(key, dtype, index)
            if dtype == "float32" and inplace_per_op and op.inplace_variant is not None:
                for index in range(min(inplace_per_op, n)):
                    yield SampleId(key, dtype, index, inplace=True)


@dataclass
class Sample:
    """One sample as a module and its inputs (contiguous tensors)."""

    id: SampleId
    module: torch.nn.Module
    inputs: tuple
    compare_values: bool  # False for random and uninitialized results


class SampleModule(torch.nn.Module):
    """`fn(input, *args, **kwargs)` with the sample's tensors as the module's inputs and its
    other arguments (numbers, shapes, dtypes) as constants."""

    def __init__(self, fn: Callable, spec, constants: list, name: str):
        super().__init__()
        self.fn, self.spec, self.constants, self.name = fn, spec, constants, name

    def forward(self, *tensors):
        leaves = list(self.constants)
        it = iter(tensors)
        leaves = [next(it) if leaf is _TENSOR else leaf for leaf in leaves]
        sample_input, args, kwargs = _pytree.tree_unflatten(leaves, self.spec)
        return self.fn(sample_input, *args, **kwargs)

    def extra_repr(self) -> str:
        return self.name


_TENSOR = object()


def build(sample_id: SampleId) -> Sample:
    op = op_table()[sample_id.op]
    sample = _sample_list(op, DTYPES[sample_id.dtype])[sample_id.index]
    leaves, spec = _pytree.tree_flatten((sample.input, tuple(sample.args), dict(sample.kwargs)))
    tensors = tuple(leaf.detach().clone().contiguous() for leaf in leaves
                    if isinstance(leaf, torch.Tensor))
    constants = [_TENSOR if isinstance(leaf, torch.Tensor) else leaf for leaf in leaves]
    fn = op.inplace_variant if sample_id.inplace else op.op
    module = SampleModule(fn, spec, constants, str(sample_id))
    base = sample_id.op if sample_id.op.startswith("nn.") else sample_id.op.split(".")[0]
    compare = base not in UNCOMPARABLE and sample_id.op not in UNCOMPARABLE
    if compare:
        first, second = (_eager(module, tensors, seed) for seed in (1, 2))
        compare = first is None or second is None or equal(first[0], second[0]) is None
    return Sample(sample_id, module, tensors, compare)


def _eager(module, tensors, seed: int):
    torch.manual_seed(seed)
    copies = tuple(t.clone() for t in tensors)
    try:
        with torch.no_grad():
            return module(*copies), copies
    except Exception:  # noqa: BLE001
        return None


def eager(sample: Sample):
    """(result, inputs after the call) of eager PyTorch on copies of the inputs."""
    copies = tuple(t.clone() for t in sample.inputs)
    torch.manual_seed(1)
    with torch.no_grad():
        result = sample.module(*copies)
    return result, copies


def equal(got: Any, want: Any, compare_values: bool = True,
          check_structure: bool = True) -> Optional[str]:
    """None when `got` matches `want` (same structure, dtypes, shapes and values within the
    tolerance of want's dtype), else what differs."""
    got_leaves, got_spec = _pytree.tree_flatten(got)
    want_leaves, want_spec = _pytree.tree_flatten(want)
    if check_structure and got_spec != want_spec:
        return f"output structure {_describe(got_spec)} instead of {_describe(want_spec)}"
    if len(got_leaves) != len(want_leaves):
        return f"{len(got_leaves)} outputs instead of {len(want_leaves)}"
    for index, (g, w) in enumerate(zip(got_leaves, want_leaves)):
        problem = _leaf_problem(g, w, compare_values)
        if problem:
            return f"output #{index}: {problem}"
    return None


def _describe(spec) -> str:
    text = str(spec)
    return text if len(text) < 120 else text[:117] + "..."


def _leaf_problem(got: Any, want: Any, compare_values: bool) -> Optional[str]:
    if not isinstance(want, torch.Tensor):
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if want is None or got is None:
            return None if got is want else f"{got!r} instead of {want!r}"
        if type(got) is not type(want) and not (isinstance(want, float) and
                                                isinstance(got, (int, float))):
            return f"{type(got).__name__} {got!r} instead of {type(want).__name__} {want!r}"
        if isinstance(want, float) and not (math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-6)
                                            or (math.isnan(got) and math.isnan(want))):
            return f"{got!r} instead of {want!r}"
        if not isinstance(want, float) and got != want:
            return f"{got!r} instead of {want!r}"
        return None
    if not isinstance(got, torch.Tensor):
        try:
            got = torch.as_tensor(got)
        except Exception:  # noqa: BLE001
            return f"{type(got).__name__} instead of a tensor"
    if got.dtype != want.dtype:
        return f"dtype {got.dtype} instead of {want.dtype}"
    if tuple(got.shape) != tuple(want.shape):
        return f"shape {tuple(got.shape)} instead of {tuple(want.shape)}"
    if not compare_values or want.numel() == 0:
        return None
    if want.dtype in TOLERANCES:
        rtol, atol = TOLERANCES[want.dtype]
        if want.is_complex():
            g, w = torch.view_as_real(got.resolve_conj()), torch.view_as_real(want.resolve_conj())
        else:
            g, w = got.double(), want.double()
        close = torch.isclose(g, w, rtol=rtol, atol=atol, equal_nan=True)
        if not bool(close.all()):
            bad = (~close).nonzero()[0].tolist()
            return (f"{int((~close).sum())}/{close.numel()} values differ, e.g. at {bad}: "
                    f"{g[tuple(bad)].item():.6g} instead of {w[tuple(bad)].item():.6g}")
        return None
    if not torch.equal(got, want):
        differ = got != want
        bad = differ.nonzero()[0].tolist() if differ.dim() else []
        return (f"{int(differ.sum())}/{differ.numel()} values differ, e.g. at {bad}: "
                f"{got[tuple(bad)].item()} instead of {want[tuple(bad)].item()}")
    return None


# Op families for the report: first matching prefix or name list wins.
_FAMILIES = (
    ("linalg", ("linalg.", "cholesky", "lu", "qr", "svd", "slogdet", "det", "inverse",
                "pinverse", "matrix_exp", "logdet", "triangular_solve", "ormqr", "geqrf",
                "cholesky_inverse", "cholesky_solve", "lu_solve", "lu_unpack", "symeig",
                "eig")),
    ("fft", ("fft.",)),
    ("special", ("special.",)),
    ("nn.functional", ("nn.functional.", "_softmax_backward", "_log_softmax_backward",
                       "softmax", "log_softmax", "batch_norm", "layer_norm", "group_norm",
                       "instance_norm", "native_batch_norm", "native_layer_norm",
                       "_native_batch_norm_legit")),
    ("reduction", ("sum", "mean", "prod", "amax", "amin", "max", "min", "argmax", "argmin",
                   "var", "std", "norm", "nansum", "nanmean", "logsumexp", "all", "any",
                   "count_nonzero", "cumsum", "cumprod", "cummax", "cummin", "logcumsumexp",
                   "median", "nanmedian", "mode", "kthvalue", "aminmax", "var_mean",
                   "std_mean", "renorm", "dist", "histc", "bincount", "sort", "argsort",
                   "topk", "msort", "unique", "unique_consecutive", "searchsorted",
                   "bucketize", "quantile", "nanquantile")),
    ("matmul", ("mm", "bmm", "addmm", "addbmm", "baddbmm", "addmv", "addr", "matmul", "mv",
                "dot", "vdot", "inner", "outer", "ger", "einsum", "tensordot", "kron",
                "chain_matmul", "__rmatmul__", "tril", "triu", "trace", "diag", "diagonal",
                "diag_embed", "diagflat", "cross", "cdist", "block_diag", "cov", "corrcoef")),
    ("indexing", ("index_", "gather", "scatter", "take", "put", "masked_", "where",
                  "nonzero", "argwhere", "select", "narrow", "__getitem__", "embedding",
                  "_unsafe_index", "index_put", "index_select", "take_along_dim",
                  "masked_select", "masked_scatter", "masked_fill", "slice", "select_scatter",
                  "slice_scatter", "diagonal_scatter", "as_strided", "as_strided_scatter")),
    ("shape", ("view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze", "permute",
               "transpose", "t", "T", "mT", "mH", "H", "movedim", "moveaxis", "swapaxes",
               "swapdims", "expand", "expand_as", "broadcast_", "repeat", "tile", "flip",
               "fliplr", "flipud", "roll", "rot90", "cat", "concat", "concatenate", "stack",
               "hstack", "vstack", "dstack", "column_stack", "row_stack", "split", "chunk",
               "tensor_split", "hsplit", "vsplit", "dsplit", "unbind", "unfold", "ravel",
               "atleast_", "contiguous", "clone", "resize_", "resize_as_", "view_as",
               "reshape_as", "meshgrid", "split_with_sizes", "narrow_copy", "alias_copy",
               "unsafe_", "_unsafe_view", "view_copy", "permute_copy", "squeeze_copy",
               "expand_copy", "repeat_interleave", "combinations", "cartesian_prod")),
    ("creation", ("zeros", "ones", "full", "empty", "new_", "arange", "linspace", "logspace",
                  "eye", "randn", "rand", "randint", "normal", "bernoulli", "multinomial",
                  "uniform", "tril_indices", "triu_indices", "scalar_tensor", "fill",
                  "zero_", "copysign", "like")),
    ("conversion", ("to", "double", "float", "half", "bfloat16", "int", "long", "short",
                    "char", "byte", "bool", "type_as", "view_as_real", "view_as_complex",
                    "real", "imag", "conj", "conj_physical", "resolve_conj", "resolve_neg",
                    "complex", "polar", "angle", "abs", "_to_copy", "item", "to_sparse")),
    ("comparison", ("eq", "ne", "lt", "le", "gt", "ge", "equal", "isclose", "allclose",
                    "maximum", "minimum", "fmax", "fmin", "clamp", "clamp_min", "clamp_max",
                    "clip", "isnan", "isinf", "isfinite", "isposinf", "isneginf", "isreal",
                    "signbit", "sign", "sgn", "logical_", "bitwise_", "isin", "heaviside",
                    "nan_to_num")),
)


def family_of(op_key: str) -> str:
    name = op_key.split(".")[0] if not op_key.startswith(("nn.", "linalg.", "fft.",
                                                          "special.")) else op_key
    for family, prefixes in _FAMILIES:
        for prefix in prefixes:
            if prefix.endswith((".", "_")) and prefix != "zero_" and name.startswith(prefix):
                return family
            if name == prefix or op_key == prefix:
                return family
    return "pointwise & other"
