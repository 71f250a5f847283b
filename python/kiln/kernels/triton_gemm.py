"""Triton source of Kiln's GEMM kernels: Y = act(norm(X)·Wᵀ + b) [+ residual], f32 accumulation.

Every size is a compile-time constant (`tl.constexpr`), so the compiled entry takes pointers
only. Optional operands (bias, residual, norm weight and bias) are passed as constexpr `None`
when absent and then do not appear in the entry's parameter list. Plans are built in
`kiln.kernels.linear`.

* NORM (prologue): the RMSNorm (1) or LayerNorm (2) of each row of X over K, times the norm
  weight g (and + the norm bias β), is what multiplies W: the statistics come from a first pass
  over the row (f32; LayerNorm's variance merged chunk by chunk, Chan et al., so a large mean
  does not cancel), then every loaded X tile is normalized before the dot; RMSNorm without
  split-K multiplies the tiles by g only, sums their squares on the way and scales the
  accumulator at the end (no first pass). The normalized activations never go to memory: the
  norm costs no dispatch of its own.
* GATED (SwiGLU epilogue): W holds 2N output features (gate, then up); each program keeps two
  accumulators for the same N-tile of both halves and writes silu(gate + b) · (up + b) [N].
* PARTS (2 or 3, "out_in" weights): W is given as the separate weights whose concatenation
  along the output features it is (w_ptr, w1_ptr, w2_ptr: q, k and v projections, or gate and
  up), N0 and N1 the widths of the first two; no tile straddles a boundary (the plan picks
  BLOCK_N dividing them), so a program reads one part. Likewise BIAS_PARTS for the bias. The
  concatenated weight never exists (no copy at load; external weights stay as they are).
"""

import triton
import triton.language as tl

# Activation codes (constexpr ACT); names as in kiln.linear.
ACT_CODES = {"none": 0, "gelu": 1, "gelu_tanh": 2, "relu": 3, "silu": 4}
NORM_CODES = {None: 0, "rms": 1, "layer": 2}


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
def row_statistics(x_ptr, rows, K: tl.constexpr, NORM: tl.constexpr, EPS: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, CACHE: tl.constexpr):
    """(mean, 1/σ) of each row of X[:, :K] in f32; RMSNorm (NORM 1): mean 0, 1/rms. X is loaded
    with cache modifier CACHE."""
    offs_k = tl.arange(0, BLOCK_K)
    mean = tl.zeros((BLOCK_M,), tl.float32)
    m2 = tl.zeros((BLOCK_M,), tl.float32)
    for k0 in range(0, K, BLOCK_K):
        ok = (k0 + offs_k) < K
        x = tl.load(x_ptr + rows[:, None] * K + (k0 + offs_k)[None, :], mask=ok[None, :],
                    other=0.0, cache_modifier=CACHE).to(tl.float32)
        if NORM == 1:
            m2 += tl.sum(x * x, 1)
        else:
            count = tl.minimum(K - k0, BLOCK_K).to(tl.float32)
            chunk_mean = tl.sum(x, 1) / count
            centered = tl.where(ok[None, :], x - chunk_mean[:, None], 0.0)
            chunk_m2 = tl.sum(centered * centered, 1)
            seen = k0 * 1.0  # every earlier chunk was full
            total = seen + count
            delta = chunk_mean - mean
            mean += delta * (count / total)
            m2 += chunk_m2 + delta * delta * (seen * count / total)
    rstd = 1.0 / tl.sqrt(m2 / K + EPS)
    return mean, rstd


@triton.jit
def normalize_tile(a, mean, rstd, g_ptr, nb_ptr, offs_k, k_ok, NORM: tl.constexpr,
                   EVEN_K: tl.constexpr):
    """An X tile [BLOCK_M, BLOCK_K] normalized (statistics per row), · g (+ β), in X's dtype."""
    x = a.to(tl.float32)
    if NORM == 2:
        x = (x - mean[:, None]) * rstd[:, None]
    else:
        x = x * rstd[:, None]
    if g_ptr is not None:
        if EVEN_K:
            g = tl.load(g_ptr + offs_k)
        else:
            g = tl.load(g_ptr + offs_k, mask=k_ok, other=0.0)
        x = x * g.to(tl.float32)[None, :]
    if nb_ptr is not None:
        if EVEN_K:
            beta = tl.load(nb_ptr + offs_k)
        else:
            beta = tl.load(nb_ptr + offs_k, mask=k_ok, other=0.0)
        x = x + beta.to(tl.float32)[None, :]
    return x.to(a.dtype)


@triton.jit
def select_part(n, a, b, c, N0: tl.constexpr, N1: tl.constexpr, PARTS: tl.constexpr):
    """a, b or c for output feature n (scalar or tensor) of a weight given in PARTS parts."""
    if PARTS == 1:
        return a
    elif PARTS == 2:
        return tl.where(n < N0, a, b)
    else:
        return tl.where(n < N0, a, tl.where(n < N0 + N1, b, c))


@triton.jit
def linear_kernel(x_ptr, w_ptr, w1_ptr, w2_ptr, b_ptr, b1_ptr, b2_ptr, r_ptr, g_ptr, nb_ptr,
                  y_ptr, p_ptr, sem_ptr,
                  M: tl.constexpr, N: tl.constexpr, K: tl.constexpr,
                  W_IN_OUT: tl.constexpr, ACT: tl.constexpr, GATED: tl.constexpr,
                  PARTS: tl.constexpr, BIAS_PARTS: tl.constexpr, N0: tl.constexpr,
                  N1: tl.constexpr,
                  NORM: tl.constexpr, EPS: tl.constexpr,
                  SPLIT_K: tl.constexpr, K_SPLIT: tl.constexpr, EVEN_K: tl.constexpr,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                  GROUP_M: tl.constexpr):
    """`linear_program` as a launch of its own: grid (tiles, SPLIT_K, 1)."""
    linear_program(tl.program_id(0), tl.program_id(1), x_ptr, w_ptr, w1_ptr, w2_ptr, b_ptr,
                   b1_ptr, b2_ptr, r_ptr, g_ptr, nb_ptr, y_ptr, p_ptr, sem_ptr, M, N, K,
                   W_IN_OUT, ACT, GATED, PARTS, BIAS_PARTS, N0, N1, NORM, EPS, SPLIT_K, K_SPLIT,
                   EVEN_K, BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M, False)


@triton.jit
def linear_program(pid, pid_k, x_ptr, w_ptr, w1_ptr, w2_ptr, b_ptr, b1_ptr, b2_ptr, r_ptr,
                   g_ptr, nb_ptr, y_ptr, p_ptr, sem_ptr,
                   M: tl.constexpr, N: tl.constexpr, K: tl.constexpr,
                   W_IN_OUT: tl.constexpr, ACT: tl.constexpr, GATED: tl.constexpr,
                   PARTS: tl.constexpr, BIAS_PARTS: tl.constexpr, N0: tl.constexpr,
                   N1: tl.constexpr,
                   NORM: tl.constexpr, EPS: tl.constexpr,
                   SPLIT_K: tl.constexpr, K_SPLIT: tl.constexpr, EVEN_K: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                   GROUP_M: tl.constexpr, LOAD_CG: tl.constexpr):
    """Program (pid, pid_k) = (tile, split): one BLOCK_M×BLOCK_N tile of norm(X)[M,K]·W
    (W [N·(1+GATED), K] "out_in" or [K, N·(1+GATED)] "in_out", possibly in PARTS parts).

    SPLIT_K == 1: the full epilogue (bias, activation or SwiGLU, residual) and Y [M, N] in X's
    dtype. SPLIT_K > 1: program (tile, s) sums K range [s·K_SPLIT, (s+1)·K_SPLIT).
    * Without sem_ptr (never GATED: the plan runs the partials over all 2N columns) it writes
      the f32 partial to y_ptr[s, M, N]; `splitk_reduce_kernel` finishes in a second launch.
    * With sem_ptr (the split-K reduce in the kernel): the partial goes to p_ptr[s, M, P] (P =
      2N when GATED: gate, then up), then the program counts itself in at its tile's semaphore
      (i32, acquire-release at GPU scope); the last of the SPLIT_K programs to arrive sums the
      partials in split order (the order `splitk_reduce_kernel` sums in, whichever program
      arrives last), applies the epilogue, writes Y and sets the semaphore back to 0. The
      semaphores are zero before the first launch and after every launch (a persistent buffer:
      no fill per call).

    LOAD_CG: X and the residual (what an earlier stage of the same launch may have written,
    kiln.kernels.sequence) are read from L2 (`.cg`): L1 is not coherent across SMs.
    """
    ACTIVATION_CACHE: tl.constexpr = ".cg" if LOAD_CG else ""
    pid_m, pid_n = tile_position(pid, M, N, BLOCK_M, BLOCK_N, GROUP_M)
    W_COLS: tl.constexpr = N * 2 if GATED else N  # leading dim of an "in_out" weight
    SPLIT_PARTS: tl.constexpr = PARTS if not GATED else 1  # gated parts are gate and up

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
    # The weight part this tile reads and its columns there (parts never straddle a tile).
    n_start = pid_n * BLOCK_N
    w_base = select_part(n_start, w_ptr, w1_ptr, w2_ptr, N0, N1, SPLIT_PARTS)
    part_start = select_part(n_start, 0, N0, N0 + N1, N0, N1, SPLIT_PARTS)
    cols = offs_wn - part_start
    # RMSNorm without split-K needs no first pass: rms(x)·(x·g)·W = (Σ x_k² / K + ε)^-½ ·
    # ((x∘g)·W), so the sum of squares is taken from the tiles the main loop loads anyway and the
    # scale is applied to the accumulator. LayerNorm's mean cannot be factored out that way
    # without cancelling in f16, and a split only sees part of K: those read the row first.
    RMS_IN_LOOP: tl.constexpr = NORM == 1 and SPLIT_K == 1
    if NORM != 0 and not RMS_IN_LOOP:
        mean, rstd = row_statistics(x_ptr, offs_xm, K, NORM, EPS, BLOCK_M, BLOCK_K,
                                    ACTIVATION_CACHE)
    else:
        mean = tl.zeros((BLOCK_M,), tl.float32)
        rstd = mean
    squares = tl.zeros((BLOCK_M,), tl.float32)
    k0 = pid_k * K_SPLIT
    offs_k = tl.arange(0, BLOCK_K)
    x_ptrs = x_ptr + offs_xm[:, None] * K + (k0 + offs_k)[None, :]
    if W_IN_OUT:
        w_offs = (k0 + offs_k)[:, None] * W_COLS + cols[None, :]
        w_step: tl.constexpr = BLOCK_K * W_COLS
        up_offset: tl.constexpr = N
    else:
        w_offs = cols[None, :] * K + (k0 + offs_k)[:, None]
        w_step: tl.constexpr = BLOCK_K
        up_offset: tl.constexpr = N * K
    w_ptrs = w_base + w_offs
    if GATED:
        if PARTS == 2:
            up_ptrs = w1_ptr + w_offs
        else:
            up_ptrs = w_ptr + up_offset + w_offs
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc_up = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for kk in range(0, K_SPLIT // BLOCK_K):
        k_here = k0 + kk * BLOCK_K + offs_k
        k_ok = k_here < K
        if EVEN_K:
            a = tl.load(x_ptrs, cache_modifier=ACTIVATION_CACHE)
            b = tl.load(w_ptrs)
        else:
            a = tl.load(x_ptrs, mask=k_ok[None, :], other=0.0, cache_modifier=ACTIVATION_CACHE)
            b = tl.load(w_ptrs, mask=k_ok[:, None], other=0.0)
        if RMS_IN_LOOP:
            x = a.to(tl.float32)
            squares += tl.sum(x * x, 1)
            if g_ptr is not None:
                if EVEN_K:
                    g = tl.load(g_ptr + k_here)
                else:
                    g = tl.load(g_ptr + k_here, mask=k_ok, other=0.0)
                a = (x * g.to(tl.float32)[None, :]).to(a.dtype)
        elif NORM != 0:
            a = normalize_tile(a, mean, rstd, g_ptr, nb_ptr, k_here, k_ok, NORM, EVEN_K)
        acc = tl.dot(a, b, acc)
        if GATED:
            if EVEN_K:
                b_up = tl.load(up_ptrs)
            else:
                b_up = tl.load(up_ptrs, mask=k_ok[:, None], other=0.0)
            acc_up = tl.dot(a, b_up, acc_up)
            up_ptrs += w_step
        x_ptrs += BLOCK_K
        w_ptrs += w_step

    y_mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    y_offs = offs_m[:, None] * N + offs_n[None, :]
    if RMS_IN_LOOP:
        scale = 1.0 / tl.sqrt(squares / K + EPS)
        acc = acc * scale[:, None]
        if GATED:
            acc_up = acc_up * scale[:, None]
    if SPLIT_K == 1:
        linear_epilogue(acc, acc_up, b_ptr, b1_ptr, b2_ptr, r_ptr, y_ptr, y_offs, y_mask,
                        offs_wn, n_start, cols, N, ACT, GATED, BIAS_PARTS, N0, N1,
                        ACTIVATION_CACHE)
    elif sem_ptr is None:
        tl.store(y_ptr + pid_k * (M * N) + y_offs, acc, mask=y_mask)
    else:
        P_COLS: tl.constexpr = N * 2 if GATED else N
        p_offs = offs_m[:, None] * P_COLS + offs_n[None, :]
        tl.store(p_ptr + pid_k * (M * P_COLS) + p_offs, acc, mask=y_mask)
        if GATED:
            tl.store(p_ptr + pid_k * (M * P_COLS) + p_offs + N, acc_up, mask=y_mask)
        # Every thread's partial is stored before one thread counts the program in (release);
        # the last program's loads follow its acquire, and skip L1 (not coherent across SMs).
        tl.debug_barrier()
        arrived = tl.atomic_add(sem_ptr + pid, 1, sem="acq_rel", scope="gpu")
        if arrived == SPLIT_K - 1:
            acc = sum_partials(p_ptr + p_offs, y_mask, SPLIT_K, M * P_COLS)
            if GATED:
                acc_up = sum_partials(p_ptr + p_offs + N, y_mask, SPLIT_K, M * P_COLS)
            linear_epilogue(acc, acc_up, b_ptr, b1_ptr, b2_ptr, r_ptr, y_ptr, y_offs, y_mask,
                            offs_wn, n_start, cols, N, ACT, GATED, BIAS_PARTS, N0, N1,
                            ACTIVATION_CACHE)
            tl.atomic_xchg(sem_ptr + pid, 0, sem="relaxed", scope="gpu")


@triton.jit
def tile_position(pid, M: tl.constexpr, N: tl.constexpr, BLOCK_M: tl.constexpr,
                  BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):
    """(pid_m, pid_n) of tile `pid`: GROUP_M row tiles per column sweep (L2 reuse of W)."""
    num_pid_m: tl.constexpr = (M + BLOCK_M - 1) // BLOCK_M
    num_pid_n: tl.constexpr = (N + BLOCK_N - 1) // BLOCK_N
    num_pid_in_group: tl.constexpr = GROUP_M * num_pid_n
    group_id = pid // num_pid_in_group
    first_pid_m = group_id * GROUP_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + ((pid % num_pid_in_group) % group_size_m)
    pid_n = (pid % num_pid_in_group) // group_size_m
    return pid_m, pid_n


@triton.jit
def linear_prefetch(pid, pid_k, w_ptr, w1_ptr, w2_ptr, M: tl.constexpr, N: tl.constexpr,
                    K: tl.constexpr, W_IN_OUT: tl.constexpr, GATED: tl.constexpr,
                    PARTS: tl.constexpr, N0: tl.constexpr, N1: tl.constexpr,
                    K_SPLIT: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                    BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr):
    """Ask L2 for the weight lines program (pid, pid_k) of `linear_program` will read (its
    arguments of these names; kiln.kernels.sequence calls it before a stage waits for the
    previous one, so the weights stream in while that stage runs). One prefetch per 128-byte line of
    16-bit weights: 64 elements along the weight's contiguous dimension; rows and columns
    past the edge wrap around as the program's loads do."""
    LINE: tl.constexpr = 64
    _, pid_n = tile_position(pid, M, N, BLOCK_M, BLOCK_N, GROUP_M)
    W_COLS: tl.constexpr = N * 2 if GATED else N
    SPLIT_PARTS: tl.constexpr = PARTS if not GATED else 1
    n_start = pid_n * BLOCK_N
    w_base = select_part(n_start, w_ptr, w1_ptr, w2_ptr, N0, N1, SPLIT_PARTS)
    part_start = select_part(n_start, 0, N0, N0 + N1, N0, N1, SPLIT_PARTS)
    k0 = pid_k * K_SPLIT
    for kk in range(0, K_SPLIT // BLOCK_K):
        if W_IN_OUT:  # rows k, BLOCK_N contiguous columns each
            N_LINES: tl.constexpr = BLOCK_N // LINE if BLOCK_N > LINE else 1
            rows = (k0 + kk * BLOCK_K + tl.arange(0, BLOCK_K)) % K
            cols = (n_start + tl.arange(0, N_LINES) * LINE) % N - part_start
            offs = rows[:, None] * W_COLS + cols[None, :]
            up_offset: tl.constexpr = N
        else:  # rows n, K contiguous each
            K_LINES: tl.constexpr = BLOCK_K // LINE if BLOCK_K > LINE else 1
            cols = (n_start + tl.arange(0, BLOCK_N)) % N - part_start
            ks = (k0 + kk * BLOCK_K + tl.arange(0, K_LINES) * LINE) % K
            offs = cols[:, None] * K + ks[None, :]
            up_offset: tl.constexpr = N * K
        prefetch_l2(w_base + offs)
        if GATED:
            if PARTS == 2:
                prefetch_l2(w1_ptr + offs)
            else:
                prefetch_l2(w_ptr + up_offset + offs)


@triton.jit
def prefetch_l2(ptrs):
    """One `prefetch.global.L2` per element of `ptrs` (a hint: no value, no fault)."""
    tl.inline_asm_elementwise("prefetch.global.L2 [$1];\n\tmov.u32 $0, 0;", "=r,l", [ptrs],
                              dtype=tl.int32, is_pure=False, pack=1)


@triton.jit
def sum_partials(ptrs, mask, SPLIT_K: tl.constexpr, STRIDE: tl.constexpr):
    """Σ_s ptrs[s·STRIDE] in split order (f32), read from L2 (`.cg`: other SMs wrote them)."""
    total = tl.load(ptrs, mask=mask, other=0.0, cache_modifier=".cg")
    for s in tl.static_range(1, SPLIT_K):
        total += tl.load(ptrs + s * STRIDE, mask=mask, other=0.0, cache_modifier=".cg")
    return total


@triton.jit
def linear_epilogue(acc, acc_up, b_ptr, b1_ptr, b2_ptr, r_ptr, y_ptr, y_offs, y_mask, offs_wn,
                    n_start, cols, N: tl.constexpr, ACT: tl.constexpr, GATED: tl.constexpr,
                    BIAS_PARTS: tl.constexpr, N0: tl.constexpr, N1: tl.constexpr,
                    R_CACHE: tl.constexpr):
    """Y = act(acc + b) or silu(acc + b_gate) · (acc_up + b_up), [+ residual (loaded with cache
    modifier R_CACHE)], in Y's dtype."""
    if b_ptr is not None:
        if GATED:
            acc += tl.load(b_ptr + offs_wn)[None, :].to(tl.float32)
            if BIAS_PARTS == 2:
                acc_up += tl.load(b1_ptr + offs_wn)[None, :].to(tl.float32)
            else:
                acc_up += tl.load(b_ptr + N + offs_wn)[None, :].to(tl.float32)
        elif BIAS_PARTS == 1:
            acc += tl.load(b_ptr + offs_wn)[None, :].to(tl.float32)
        else:
            b_base = select_part(n_start, b_ptr, b1_ptr, b2_ptr, N0, N1, BIAS_PARTS)
            acc += tl.load(b_base + cols)[None, :].to(tl.float32)
    if GATED:
        acc = apply_activation(acc, 4) * acc_up
    else:
        acc = apply_activation(acc, ACT)
    if r_ptr is not None:
        acc += tl.load(r_ptr + y_offs, mask=y_mask, other=0.0,
                       cache_modifier=R_CACHE).to(tl.float32)
    tl.store(y_ptr + y_offs, acc.to(y_ptr.dtype.element_ty), mask=y_mask)


@triton.jit
def splitk_reduce_kernel(p_ptr, b_ptr, b1_ptr, b2_ptr, r_ptr, y_ptr,
                         M: tl.constexpr, N: tl.constexpr, SPLIT_K: tl.constexpr,
                         ACT: tl.constexpr, GATED: tl.constexpr, BIAS_PARTS: tl.constexpr,
                         N0: tl.constexpr, N1: tl.constexpr, BLOCK: tl.constexpr):
    """Y = act(Σ_s P[s] + b) [+ residual] over BLOCK elements of the flat [M, N]; GATED: P is
    [SPLIT_K, M, 2N] and Y = silu(Σ P[.., :N] + b[:N]) · (Σ P[.., N:] + b[N:]). A bias in
    BIAS_PARTS parts (widths N0, N1, rest) is read from its parts."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M * N
    P_COLS: tl.constexpr = N * 2 if GATED else N
    row = offs // N
    col = offs % N
    p_offs = row * P_COLS + col
    acc = tl.load(p_ptr + p_offs, mask=mask, other=0.0)
    for s in tl.static_range(1, SPLIT_K):
        acc += tl.load(p_ptr + s * (M * P_COLS) + p_offs, mask=mask, other=0.0)
    if b_ptr is not None:
        if GATED or BIAS_PARTS == 1:
            b_ptrs = b_ptr + col
        elif BIAS_PARTS == 2:
            b_ptrs = tl.where(col < N0, b_ptr + col, b1_ptr + (col - N0))
        else:
            b_ptrs = tl.where(col < N0, b_ptr + col,
                              tl.where(col < N0 + N1, b1_ptr + (col - N0),
                                       b2_ptr + (col - N0 - N1)))
        acc += tl.load(b_ptrs, mask=mask, other=0.0).to(tl.float32)
    if GATED:
        up = tl.load(p_ptr + p_offs + N, mask=mask, other=0.0)
        for s in tl.static_range(1, SPLIT_K):
            up += tl.load(p_ptr + s * (M * P_COLS) + p_offs + N, mask=mask, other=0.0)
        if b_ptr is not None:
            if BIAS_PARTS == 2:
                up += tl.load(b1_ptr + col, mask=mask, other=0.0).to(tl.float32)
            else:
                up += tl.load(b_ptr + N + col, mask=mask, other=0.0).to(tl.float32)
        acc = apply_activation(acc, 4) * up
    else:
        acc = apply_activation(acc, ACT)
    if r_ptr is not None:
        acc += tl.load(r_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(y_ptr + offs, acc.to(y_ptr.dtype.element_ty), mask=mask)
