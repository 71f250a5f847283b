"""Comparing compiled outputs with eager PyTorch, shared by the test files.

The models the tests compile are in `kiln.examples.tiny` (tiny sizes) and `kiln.examples.zoo`
(the benchmark sizes).
"""

from __future__ import annotations

import numpy as np
import torch

# Tolerance relative to the largest magnitude of the eager output: dtype-aware.
TOLERANCE = {
    torch.float32: 1e-4,
    torch.float16: 2e-2,
    torch.bfloat16: 5e-2,
}


def as_tuple(outputs) -> tuple:
    return outputs if isinstance(outputs, tuple) else (outputs,)


def to_float64(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().to(torch.float64).cpu().numpy()
    array = np.asarray(value)
    return array.astype(np.float64)


def assert_close(actual, expected, dtype=torch.float32, what: str = "output") -> None:
    """|actual − expected| ≤ tol · max(1, max|expected|), tol from the dtype."""
    tol = TOLERANCE[dtype]
    a, e = to_float64(actual), to_float64(expected)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != eager {e.shape}"
    assert np.all(np.isfinite(a)), f"{what}: compiled output has non-finite values"
    scale = max(1.0, float(np.max(np.abs(e))))
    error = float(np.max(np.abs(a - e)))
    assert error <= tol * scale, (f"{what}: max abs error {error:.3g} exceeds {tol:g} x "
                                  f"{scale:.3g} ({dtype})")


def eager(model, *args):
    with torch.no_grad():
        return model(*args)
