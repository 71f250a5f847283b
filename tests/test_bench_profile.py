"""The GPU profile's reading of host driver calls (bench.generate.driver_calls)."""

from __future__ import annotations

from bench.generate import driver_calls


def test_driver_calls_per_token_and_during_long_gaps():
    gpu = [(0, 10, "gemm"), (12, 20, "attention"), (120, 130, "gemm"), (131, 140, "argmax")]
    api = [(1, 3, "cuLaunchKernel"), (4, 6, "cuLaunchKernel"),  # before the gap
           (25, 95, "cuMemFree_v2"), (96, 118, "cuLaunchKernel")]  # inside the 100 µs gap
    calls, in_gaps = driver_calls(api, gpu, steps=2)
    assert calls[0] == ["cuMemFree_v2", 0.5, 35.0, 70.0]
    assert calls[1] == ["cuLaunchKernel", 1.5, 13.0, 22.0]
    # only the gap 20 -> 120 µs is over 50 µs; the 2 µs and 1 µs gaps are not counted
    assert in_gaps == [["cuMemFree_v2", 35.0], ["cuLaunchKernel", 11.0]]
