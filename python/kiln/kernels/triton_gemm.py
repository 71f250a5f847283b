"""Triton source of Kiln's GEMM kernels: Y = act(X·Wᵀ + b) [+ residual], f32 accumulation.

Every size is a compile-time constant (`tl.constexpr`), so the compiled entry takes pointers
only. Optional operands (bias, residual) are passed as constexpr `None` when absent and then do
not appear in the entry's parameter list. Plans are built in `kiln.kernels.linear`.
"""

import triton
import triton.language as tl

# Activation codes (constexpr ACT); names as in kiln.linear.
ACT_CODES = {"none": 0, "gelu": 1, "gelu_tanh": 2, "relu": 3, "silu": 4}


@triton.jit
def apply_activation(x, ACT: tl.constexpr):
    """`x` (f32) through the activation with code ACT."""
    if ACT == 1:  # gelu (erf)
        x = 0.5 * x * (1.0 + tl.math.erf(x * 0.7071067811865476))
    elif ACT == 2:  # gelu (tanh approximation); tanh(u) = 1 - 2 / (1 + e^{2u}), overflow-safe
        u = 0.7978845608028654 * (x + 0.044715 * x * x * x)
        x = 0.5 * x * (2.0 - 2.0 / (1.0 + tl.exp(2.0 * u)))
    elif ACT == 3:  # relu
        x = tl.maximum(x, 0.0)
    elif ACT == 4:  # silu
        x = x / (1.0 + tl.exp(-x))
    return x


@triton.jit
def linear_kernel(x_ptr, w_ptr, b_ptr, r_ptr, y_ptr,
                  M: tl.constexpr, N: tl.constexpr, K: tl.constexpr,
                  W_IN_OUT: tl.constexpr, ACT: tl.constexpr,
                  SPLIT_K: tl.constexpr, K_SPLIT: tl.constexpr, EVEN_K: tl.constexpr,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                  GROUP_M: tl.constexpr):
    """One BLOCK_M×BLOCK_N tile of X[M,K]·W (W [N,K] "out_in" or [K,N] "in_out").

    SPLIT_K == 1: the full epilogue (bias, activation, residual) and Y in X's dtype.
    SPLIT_K > 1: program (tile, s) sums K range [s·K_SPLIT, (s+1)·K_SPLIT) and writes the f32
    partial to y_ptr[s, M, N]; `splitk_reduce_kernel` finishes. Grid: (tiles, SPLIT_K, 1).
    """
    pid = tl.program_id(0)
    pid_k = tl.program_id(1)
    num_pid_m: tl.constexpr = (M + BLOCK_M - 1) // BLOCK_M
    num_pid_n: tl.constexpr = (N + BLOCK_N - 1) // BLOCK_N
    num_pid_in_group: tl.constexpr = GROUP_M * num_pid_n
    group_id = pid // num_pid_in_group
    first_pid_m = group_id * GROUP_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + ((pid % num_pid_in_group) % group_size_m)
    pid_n = (pid % num_pid_in_group) // group_size_m

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    # Rows/columns past the edge wrap around: loads stay in bounds without masks; the store
    # is masked.
    if M % BLOCK_M == 0:
        offs_xm = offs_m
    else:
        offs_xm = offs_m % M
    if N % BLOCK_N == 0:
        offs_wn = offs_n
    else:
        offs_wn = offs_n % N
    k0 = pid_k * K_SPLIT
    offs_k = tl.arange(0, BLOCK_K)
    x_ptrs = x_ptr + offs_xm[:, None] * K + (k0 + offs_k)[None, :]
    if W_IN_OUT:
        w_ptrs = w_ptr + (k0 + offs_k)[:, None] * N + offs_wn[None, :]
        w_step: tl.constexpr = BLOCK_K * N
    else:
        w_ptrs = w_ptr + offs_wn[None, :] * K + (k0 + offs_k)[:, None]
        w_step: tl.constexpr = BLOCK_K
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kk in range(0, K_SPLIT // BLOCK_K):
        if EVEN_K:
            a = tl.load(x_ptrs)
            b = tl.load(w_ptrs)
        else:
            k_left = K - k0 - kk * BLOCK_K
            a = tl.load(x_ptrs, mask=offs_k[None, :] < k_left, other=0.0)
            b = tl.load(w_ptrs, mask=offs_k[:, None] < k_left, other=0.0)
        acc = tl.dot(a, b, acc)
        x_ptrs += BLOCK_K
        w_ptrs += w_step

    y_mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    y_offs = offs_m[:, None] * N + offs_n[None, :]
    if SPLIT_K == 1:
        if b_ptr is not None:
            acc += tl.load(b_ptr + offs_wn)[None, :].to(tl.float32)
        acc = apply_activation(acc, ACT)
        if r_ptr is not None:
            acc += tl.load(r_ptr + y_offs, mask=y_mask, other=0.0).to(tl.float32)
        tl.store(y_ptr + y_offs, acc.to(y_ptr.dtype.element_ty), mask=y_mask)
    else:
        tl.store(y_ptr + pid_k * (M * N) + y_offs, acc, mask=y_mask)


@triton.jit
def splitk_reduce_kernel(p_ptr, b_ptr, r_ptr, y_ptr,
                         M: tl.constexpr, N: tl.constexpr, SPLIT_K: tl.constexpr,
                         ACT: tl.constexpr, BLOCK: tl.constexpr):
    """Y = act(Σ_s P[s] + b) [+ residual] over BLOCK elements of the flat [M, N]."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M * N
    acc = tl.load(p_ptr + offs, mask=mask, other=0.0)
    for s in tl.static_range(1, SPLIT_K):
        acc += tl.load(p_ptr + s * (M * N) + offs, mask=mask, other=0.0)
    if b_ptr is not None:
        acc += tl.load(b_ptr + offs % N, mask=mask, other=0.0).to(tl.float32)
    acc = apply_activation(acc, ACT)
    if r_ptr is not None:
        acc += tl.load(r_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(y_ptr + offs, acc.to(y_ptr.dtype.element_ty), mask=mask)

