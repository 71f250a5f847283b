"""Triton source of Kiln's attention kernels (flash-attention forward, split-KV decode).

softmax(scale · q·kᵀ + mask, causal-masked) · v with q: [B, HQ, SQ, D], k/v: [B, HKV, SK, D]
(HKV divides HQ: grouped-query attention), out: [B, HQ, SQ, D] in q's dtype.

* q, k and v are read through strides: element (b, h, s, d) of q is
  q_ptr[Q_OFF + b·Q_SB + h·Q_SH + s·Q_SS + d] (likewise K_*, V_*), so all three can be slices
  of the fused QKV projection's output [B, S, (HQ + 2·HKV)·D] read in place, with no copy or
  head transpose. The output is written through O_SB, O_SH, O_SS: [B, HQ, SQ, D] or [B, SQ, HQ,
  D] (= [B, SQ, HQ·D], what the output projection reads).
* ROPE_Q / ROPE_K: rotary position embedding (rotate-half, HF Llama) applied while loading:
  x·cos + rotate(x)·sin with cos/sin [·, S, D] read at cos_ptr[b·C_SB + position·C_SS + d]
  (position = the query's or key's index on its sequence axis), computed in f32.
* causal: key j is masked for query i when j > i (top-left aligned, as torch's SDPA), also
  for SQ != SK.
* mask (MASK_KIND 1 additive float / 2 bool as int8, nonzero = keep) is read through the
  strides MS_B, MS_H, MS_Q, MS_K of its broadcast to [B, HQ, SQ, SK] (0 on size-1 dims).
* A query row whose keys are all masked gets 0 (torch's SDPA math path does the same since
  torch 2.5: "safe softmax").
* Decode over a KV cache (attention_decode_kernel, WRITE_KV): the new key/value rows are read
  through their own offsets and strides (slices of the QKV output, the key rotated), written
  into the k and v caches at the slot read from pos_ptr, and attended to from registers.

The softmax runs in base 2 on f32 scores (QK_SCALE = scale·log2 e); every size, stride and the
scale are compile-time constants, so the compiled entries take pointers only. Plans are built
in `kiln.kernels.attention`.
"""

import triton
import triton.language as tl

LOG2E = 1.4426950408889634
MASK_KINDS = {None: 0, "additive": 1, "bool": 2}


@triton.jit
def load_rows(base, positions, ROW_STRIDE: tl.constexpr, offs_d, d_ok, D: tl.constexpr,
              D_MASK: tl.constexpr, ROPE: tl.constexpr, cos_base, sin_base,
              C_SS: tl.constexpr, CACHE: tl.constexpr):
    """Rows base[position·ROW_STRIDE + d] (a [rows, BLOCK_D] tile, loaded with cache modifier
    CACHE), rotated when ROPE."""
    ptrs = base + positions[:, None] * ROW_STRIDE + offs_d[None, :]
    if D_MASK:
        x = tl.load(ptrs, mask=d_ok[None, :], other=0.0, cache_modifier=CACHE)
    else:
        x = tl.load(ptrs, cache_modifier=CACHE)
    if ROPE:
        HALF: tl.constexpr = D // 2
        partner = tl.where(offs_d < HALF, offs_d + HALF, offs_d - HALF)
        sign = tl.where(offs_d < HALF, -1.0, 1.0)
        table = positions[:, None] * C_SS + offs_d[None, :]
        if D_MASK:
            x2 = tl.load(base + positions[:, None] * ROW_STRIDE + partner[None, :],
                         mask=d_ok[None, :], other=0.0, cache_modifier=CACHE)
            c = tl.load(cos_base + table, mask=d_ok[None, :], other=0.0)
            s = tl.load(sin_base + table, mask=d_ok[None, :], other=0.0)
        else:
            x2 = tl.load(base + positions[:, None] * ROW_STRIDE + partner[None, :],
                         cache_modifier=CACHE)
            c = tl.load(cos_base + table)
            s = tl.load(sin_base + table)
        rotated = x.to(tl.float32) * c.to(tl.float32) + \
            sign[None, :] * x2.to(tl.float32) * s.to(tl.float32)
        x = rotated.to(x.dtype)
    return x


@triton.jit
def _online_softmax_step(acc, l_i, m_i, q, k_base, v_base, keys, mask_rows, mask_cols, rows,
                         cols, cols_limit, QK_SCALE: tl.constexpr, MASK_KIND: tl.constexpr,
                         MS_K: tl.constexpr, CAUSAL: tl.constexpr, BOUNDED: tl.constexpr,
                         offs_d, d_ok, D: tl.constexpr, D_MASK: tl.constexpr,
                         K_SS: tl.constexpr, V_SS: tl.constexpr, ROPE_K: tl.constexpr,
                         cos_base, sin_base, C_SS: tl.constexpr, NEW_ROW: tl.constexpr,
                         new_pos, k_new, v_new, KV_CACHE: tl.constexpr):
    """One block of keys (row positions `keys`, in bounds; k and v loaded with cache modifier
    KV_CACHE): scores, masks, online-softmax update of (acc, l_i, m_i). NEW_ROW: the row at
    slot `new_pos` is (k_new, v_new) from registers, whatever the cache held when it was loaded
    (the decode's cache write, see attention_decode_program)."""
    k = load_rows(k_base, keys, K_SS, offs_d, d_ok, D, D_MASK, ROPE_K, cos_base, sin_base,
                  C_SS, KV_CACHE)
    if NEW_ROW:
        k = tl.where((keys == new_pos)[:, None], k_new[None, :].to(k.dtype), k)
    qk = tl.dot(q, tl.trans(k)) * QK_SCALE
    if MASK_KIND == 1:
        qk += tl.load(mask_rows + mask_cols[None, :] * MS_K).to(tl.float32) * 1.4426950408889634
    elif MASK_KIND == 2:
        qk = tl.where(tl.load(mask_rows + mask_cols[None, :] * MS_K) != 0, qk, float("-inf"))
    if BOUNDED:
        keep = cols[None, :] < cols_limit
        if CAUSAL:
            keep = keep & (cols[None, :] <= rows[:, None])
        qk = tl.where(keep, qk, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(qk, 1))
    # A row with every score so far at -inf keeps m = -inf; subtract 0 instead (p = 0).
    m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
    p = tl.math.exp2(qk - m_use[:, None])
    alpha = tl.math.exp2(m_i - m_use)
    l_i = l_i * alpha + tl.sum(p, 1)
    v = load_rows(v_base, keys, V_SS, offs_d, d_ok, D, D_MASK, False, cos_base, sin_base,
                  C_SS, KV_CACHE)
    if NEW_ROW:
        v = tl.where((keys == new_pos)[:, None], v_new[None, :].to(v.dtype), v)
    acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None])
    return acc, l_i, m_new


@triton.jit
def attention_fwd_kernel(q_ptr, k_ptr, v_ptr, mask_ptr, cos_ptr, sin_ptr, o_ptr,
                         B: tl.constexpr, HQ: tl.constexpr, HKV: tl.constexpr,
                         SQ: tl.constexpr, SK: tl.constexpr, D: tl.constexpr,
                         QK_SCALE: tl.constexpr, CAUSAL: tl.constexpr, MASK_KIND: tl.constexpr,
                         MS_B: tl.constexpr, MS_H: tl.constexpr, MS_Q: tl.constexpr,
                         MS_K: tl.constexpr,
                         Q_OFF: tl.constexpr, Q_SB: tl.constexpr, Q_SH: tl.constexpr,
                         Q_SS: tl.constexpr, K_OFF: tl.constexpr, K_SB: tl.constexpr,
                         K_SH: tl.constexpr, K_SS: tl.constexpr, V_OFF: tl.constexpr,
                         V_SB: tl.constexpr, V_SH: tl.constexpr, V_SS: tl.constexpr,
                         O_SB: tl.constexpr, O_SH: tl.constexpr, O_SS: tl.constexpr,
                         ROPE_Q: tl.constexpr, ROPE_K: tl.constexpr, C_SB: tl.constexpr,
                         C_SS: tl.constexpr,
                         BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """`attention_fwd_program` as a launch of its own: grid (cdiv(SQ, BLOCK_M), B·HQ, 1)."""
    attention_fwd_program(tl.program_id(0), tl.program_id(1), q_ptr, k_ptr, v_ptr, mask_ptr,
                          cos_ptr, sin_ptr, o_ptr, B, HQ, HKV, SQ, SK, D, QK_SCALE, CAUSAL,
                          MASK_KIND, MS_B, MS_H, MS_Q, MS_K, Q_OFF, Q_SB, Q_SH, Q_SS, K_OFF,
                          K_SB, K_SH, K_SS, V_OFF, V_SB, V_SH, V_SS, O_SB, O_SH, O_SS, ROPE_Q,
                          ROPE_K, C_SB, C_SS, BLOCK_M, BLOCK_N, BLOCK_D, False)


@triton.jit
def attention_fwd_program(pid_m, bh, q_ptr, k_ptr, v_ptr, mask_ptr, cos_ptr, sin_ptr, o_ptr,
                          B: tl.constexpr, HQ: tl.constexpr, HKV: tl.constexpr,
                          SQ: tl.constexpr, SK: tl.constexpr, D: tl.constexpr,
                          QK_SCALE: tl.constexpr, CAUSAL: tl.constexpr, MASK_KIND: tl.constexpr,
                          MS_B: tl.constexpr, MS_H: tl.constexpr, MS_Q: tl.constexpr,
                          MS_K: tl.constexpr,
                          Q_OFF: tl.constexpr, Q_SB: tl.constexpr, Q_SH: tl.constexpr,
                          Q_SS: tl.constexpr, K_OFF: tl.constexpr, K_SB: tl.constexpr,
                          K_SH: tl.constexpr, K_SS: tl.constexpr, V_OFF: tl.constexpr,
                          V_SB: tl.constexpr, V_SH: tl.constexpr, V_SS: tl.constexpr,
                          O_SB: tl.constexpr, O_SH: tl.constexpr, O_SS: tl.constexpr,
                          ROPE_Q: tl.constexpr, ROPE_K: tl.constexpr, C_SB: tl.constexpr,
                          C_SS: tl.constexpr,
                          BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                          LOAD_CG: tl.constexpr):
    """Flash-attention forward, program (pid_m, bh) = (query block, b·HQ + h). LOAD_CG: q, k
    and v (what an earlier stage of the same launch may have written, kiln.kernels.sequence)
    are read from L2 (`.cg`): L1 is not coherent across SMs."""
    QKV_CACHE: tl.constexpr = ".cg" if LOAD_CG else ""
    b = bh // HQ
    h = bh % HQ
    hk = h // (HQ // HKV)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rows_c = tl.minimum(rows, SQ - 1)  # clamped: loads in bounds, store masked
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < D
    D_MASK: tl.constexpr = BLOCK_D != D
    cos_base = cos_ptr
    sin_base = sin_ptr
    if ROPE_Q or ROPE_K:
        cos_base = cos_ptr + b * C_SB
        sin_base = sin_ptr + b * C_SB

    q = load_rows(q_ptr + Q_OFF + b * Q_SB + h * Q_SH, rows_c, Q_SS, offs_d, d_ok, D, D_MASK,
                  ROPE_Q, cos_base, sin_base, C_SS, QKV_CACHE)
    k_base = k_ptr + K_OFF + b * K_SB + hk * K_SH
    v_base = v_ptr + V_OFF + b * V_SB + hk * V_SH
    mask_base = mask_ptr
    if MASK_KIND != 0:
        mask_base = mask_ptr + b * MS_B + h * MS_H + rows_c[:, None] * MS_Q

    m_i = tl.full((BLOCK_M,), float("-inf"), tl.float32)
    l_i = tl.zeros((BLOCK_M,), tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)

    if CAUSAL:
        hi = tl.minimum((pid_m + 1) * BLOCK_M, SK)
        full_end = (tl.minimum(pid_m * BLOCK_M, SK) // BLOCK_N) * BLOCK_N
    else:
        hi = SK
        full_end = (SK // BLOCK_N) * BLOCK_N
    # Key blocks every row sees in full: no bounds or causal test.
    for start in range(0, full_end, BLOCK_N):
        cols = start + offs_n
        acc, l_i, m_i = _online_softmax_step(
            acc, l_i, m_i, q, k_base, v_base, cols, mask_base, cols, rows, cols, SK,
            QK_SCALE, MASK_KIND, MS_K, CAUSAL, False, offs_d, d_ok, D, D_MASK, K_SS, V_SS,
            ROPE_K, cos_base, sin_base, C_SS, False, 0, 0, 0, QKV_CACHE)
    # The rest: the last partial block and the causal diagonal.
    for start in range(full_end, hi, BLOCK_N):
        cols = start + offs_n
        cols_c = tl.minimum(cols, SK - 1)
        acc, l_i, m_i = _online_softmax_step(
            acc, l_i, m_i, q, k_base, v_base, cols_c, mask_base, cols_c, rows, cols, SK,
            QK_SCALE, MASK_KIND, MS_K, CAUSAL, True, offs_d, d_ok, D, D_MASK, K_SS, V_SS,
            ROPE_K, cos_base, sin_base, C_SS, False, 0, 0, 0, QKV_CACHE)

    out = acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]
    o_ptrs = o_ptr + b * O_SB + h * O_SH + rows[:, None] * O_SS + offs_d[None, :]
    tl.store(o_ptrs, out.to(o_ptr.dtype.element_ty), mask=(rows[:, None] < SQ) & d_ok[None, :])


@triton.jit
def load_head_rows(base, heads, H_STRIDE: tl.constexpr, offs_d, d_ok, D: tl.constexpr,
                   D_MASK: tl.constexpr, ROPE: tl.constexpr, cos_base, sin_base,
                   CACHE: tl.constexpr):
    """Rows base[heads[g]·H_STRIDE + d] of one position (decode: a [heads, BLOCK_D] tile),
    rotated with row 0 of the rotary table when ROPE (`load_rows` with a table stride of 0)."""
    return load_rows(base, heads, H_STRIDE, offs_d, d_ok, D, D_MASK, ROPE, cos_base, sin_base, 0,
                     CACHE)


@triton.jit
def attention_decode_kernel(q_ptr, k_ptr, v_ptr, mask_ptr, cos_ptr, sin_ptr, kn_ptr, vn_ptr,
                            pos_ptr, po_ptr, plse_ptr, o_ptr, sem_ptr,
                            B: tl.constexpr, HQ: tl.constexpr, HKV: tl.constexpr,
                            SK: tl.constexpr, D: tl.constexpr,
                            QK_SCALE: tl.constexpr, MASK_KIND: tl.constexpr,
                            MS_B: tl.constexpr, MS_H: tl.constexpr, MS_K: tl.constexpr,
                            Q_OFF: tl.constexpr, Q_SB: tl.constexpr, Q_SH: tl.constexpr,
                            K_OFF: tl.constexpr, K_SB: tl.constexpr, K_SH: tl.constexpr,
                            K_SS: tl.constexpr, V_OFF: tl.constexpr, V_SB: tl.constexpr,
                            V_SH: tl.constexpr, V_SS: tl.constexpr,
                            O_SB: tl.constexpr, O_SH: tl.constexpr,
                            ROPE_Q: tl.constexpr, ROPE_K: tl.constexpr, C_SB: tl.constexpr,
                            C_SS: tl.constexpr, WRITE_KV: tl.constexpr,
                            KN_OFF: tl.constexpr, KN_SB: tl.constexpr, KN_SH: tl.constexpr,
                            VN_OFF: tl.constexpr, VN_SB: tl.constexpr, VN_SH: tl.constexpr,
                            KEYS: tl.constexpr, NUM_SPLITS: tl.constexpr, CHUNK: tl.constexpr,
                            BLOCK_G: tl.constexpr, BLOCK_N: tl.constexpr,
                            BLOCK_D: tl.constexpr, BLOCK_S: tl.constexpr):
    """`attention_decode_program` as a launch of its own: grid (NUM_SPLITS, B·HKV, 1)."""
    attention_decode_program(tl.program_id(0), tl.program_id(1), q_ptr, k_ptr, v_ptr, mask_ptr,
                             cos_ptr, sin_ptr, kn_ptr, vn_ptr, pos_ptr, po_ptr, plse_ptr, o_ptr,
                             sem_ptr, B, HQ, HKV, SK, D, QK_SCALE, MASK_KIND, MS_B, MS_H, MS_K,
                             Q_OFF, Q_SB, Q_SH, K_OFF, K_SB, K_SH, K_SS, V_OFF, V_SB, V_SH,
                             V_SS, O_SB, O_SH, ROPE_Q, ROPE_K, C_SB, C_SS, WRITE_KV, KN_OFF,
                             KN_SB, KN_SH, VN_OFF, VN_SB, VN_SH, KEYS, NUM_SPLITS, CHUNK,
                             BLOCK_G, BLOCK_N, BLOCK_D, BLOCK_S, False)


@triton.jit
def attention_decode_program(split, bk, q_ptr, k_ptr, v_ptr, mask_ptr, cos_ptr, sin_ptr,
                             kn_ptr, vn_ptr, pos_ptr, po_ptr, plse_ptr, o_ptr, sem_ptr,
                             B: tl.constexpr, HQ: tl.constexpr, HKV: tl.constexpr,
                             SK: tl.constexpr, D: tl.constexpr,
                             QK_SCALE: tl.constexpr, MASK_KIND: tl.constexpr,
                             MS_B: tl.constexpr, MS_H: tl.constexpr, MS_K: tl.constexpr,
                             Q_OFF: tl.constexpr, Q_SB: tl.constexpr, Q_SH: tl.constexpr,
                             K_OFF: tl.constexpr, K_SB: tl.constexpr, K_SH: tl.constexpr,
                             K_SS: tl.constexpr, V_OFF: tl.constexpr, V_SB: tl.constexpr,
                             V_SH: tl.constexpr, V_SS: tl.constexpr,
                             O_SB: tl.constexpr, O_SH: tl.constexpr,
                             ROPE_Q: tl.constexpr, ROPE_K: tl.constexpr, C_SB: tl.constexpr,
                             C_SS: tl.constexpr, WRITE_KV: tl.constexpr,
                             KN_OFF: tl.constexpr, KN_SB: tl.constexpr, KN_SH: tl.constexpr,
                             VN_OFF: tl.constexpr, VN_SB: tl.constexpr, VN_SH: tl.constexpr,
                             KEYS: tl.constexpr, NUM_SPLITS: tl.constexpr, CHUNK: tl.constexpr,
                             BLOCK_G: tl.constexpr, BLOCK_N: tl.constexpr,
                             BLOCK_D: tl.constexpr, BLOCK_S: tl.constexpr,
                             LOAD_CG: tl.constexpr):
    """Split-KV decode (one query per head), program (split, bk) = (s, b·HKV + hk).

    Program (s, b·HKV + hk) attends the HQ/HKV query heads of kv head hk (rows of one tile) to
    keys [s·CHUNK, min((s+1)·CHUNK, KEYS)); KEYS is SK, or 1 under a causal mask (query 0
    sees key 0 only). NUM_SPLITS == 1: writes the output through O_SB, O_SH (po_ptr, q's dtype;
    plse_ptr unused, None). Otherwise the normalized f32 partial to po[b, h, s, :] and its
    base-2 log-sum-exp (-inf when every key was masked) to plse[b, h, s]; then either
    `attention_decode_reduce_kernel` merges in a second launch (sem_ptr None), or the splits
    merge in this launch: each program counts itself in at the semaphore of its (b, kv head)
    (i32, acquire-release at GPU scope, after a barrier), and the last of the NUM_SPLITS to
    arrive merges the group's partials in split order, writes the output through o_ptr and
    sets the semaphore back to 0 (zero before and after every launch: a persistent buffer).
    The query's rotary position is row 0 of its table.

    WRITE_KV (the decode step of a KV cache, in place): k_ptr / v_ptr are the caches
    [B, HKV, SK, D] and the new key/value rows are read at kn_ptr + KN_OFF + b·KN_SB + h·KN_SH
    (likewise vn); the new key is rotated with row 0 of the table when ROPE_K (the cached keys
    were rotated when written). The slot is pos = pos_ptr[0] (int64): the one program whose key
    range holds it writes both rows there (no program writes when pos is outside [0, KEYS),
    as the select `where(slot == pos, new, cache)` it replaces), and every program takes slot
    pos's key and value from registers instead of memory, so no program reads a row another
    is writing (chunks are disjoint; a row read past a chunk's end is masked, and finite).

    LOAD_CG: q, the new key/value rows and the keys and values (what an earlier stage of the
    same launch may have written: the QKV projection, kiln.kernels.sequence; a decode without
    a cache reads k and v from it) are read from L2 (`.cg`): L1 is not coherent across SMs.
    """
    QKV_CACHE: tl.constexpr = ".cg" if LOAD_CG else ""
    b = bk // HKV
    hk = bk % HKV
    GROUP: tl.constexpr = HQ // HKV
    offs_g = tl.arange(0, BLOCK_G)
    heads = hk * GROUP + tl.minimum(offs_g, GROUP - 1)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < D
    D_MASK: tl.constexpr = BLOCK_D != D
    cos_base = cos_ptr
    sin_base = sin_ptr
    if ROPE_Q or ROPE_K:
        cos_base = cos_ptr + b * C_SB
        sin_base = sin_ptr + b * C_SB

    # The group's query heads as rows: row g at q_base + heads[g]·Q_SH, rotary position 0.
    q = load_head_rows(q_ptr + Q_OFF + b * Q_SB, heads, Q_SH, offs_d, d_ok, D, D_MASK, ROPE_Q,
                       cos_base, sin_base, QKV_CACHE)
    k_base = k_ptr + K_OFF + b * K_SB + hk * K_SH
    v_base = v_ptr + V_OFF + b * V_SB + hk * V_SH
    mask_base = mask_ptr
    if MASK_KIND != 0:
        mask_base = mask_ptr + b * MS_B + heads[:, None] * MS_H
    rows = tl.zeros((BLOCK_G,), tl.int32)  # every row is query 0

    m_i = tl.full((BLOCK_G,), float("-inf"), tl.float32)
    l_i = tl.zeros((BLOCK_G,), tl.float32)
    acc = tl.zeros((BLOCK_G, BLOCK_D), tl.float32)
    start = split * CHUNK
    end = tl.minimum(start + CHUNK, KEYS)
    full_end = start + ((end - start) // BLOCK_N) * BLOCK_N
    new_pos = 0
    k_new = 0
    v_new = 0
    # With WRITE_KV the cached keys are never rotated (ROPE_K is the new key's).
    ROPE_CACHED: tl.constexpr = ROPE_K and not WRITE_KV
    if WRITE_KV:
        new_pos = tl.load(pos_ptr).to(tl.int32)
        one = tl.zeros((1,), tl.int32) + hk
        k_new = tl.sum(load_head_rows(kn_ptr + KN_OFF + b * KN_SB, one, KN_SH, offs_d, d_ok, D,
                                      D_MASK, ROPE_K, cos_base, sin_base, QKV_CACHE)
                       .to(tl.float32), 0)
        v_new = tl.sum(load_head_rows(vn_ptr + VN_OFF + b * VN_SB, one, VN_SH, offs_d, d_ok, D,
                                      D_MASK, False, cos_base, sin_base, QKV_CACHE)
                       .to(tl.float32), 0)
        writes = d_ok & (new_pos >= start) & (new_pos < end)
        tl.store(k_base + new_pos * K_SS + offs_d, k_new.to(k_ptr.dtype.element_ty),
                 mask=writes)
        tl.store(v_base + new_pos * V_SS + offs_d, v_new.to(v_ptr.dtype.element_ty),
                 mask=writes)
    for n0 in range(start, full_end, BLOCK_N):
        cols = n0 + offs_n
        acc, l_i, m_i = _online_softmax_step(
            acc, l_i, m_i, q, k_base, v_base, cols, mask_base, cols, rows, cols, end,
            QK_SCALE, MASK_KIND, MS_K, False, False, offs_d, d_ok, D, D_MASK, K_SS, V_SS,
            ROPE_CACHED, cos_base, sin_base, C_SS, WRITE_KV, new_pos, k_new, v_new,
            QKV_CACHE)
    for n0 in range(full_end, end, BLOCK_N):
        cols = n0 + offs_n
        cols_c = tl.minimum(cols, SK - 1)
        acc, l_i, m_i = _online_softmax_step(
            acc, l_i, m_i, q, k_base, v_base, cols_c, mask_base, cols_c, rows, cols, end,
            QK_SCALE, MASK_KIND, MS_K, False, True, offs_d, d_ok, D, D_MASK, K_SS, V_SS,
            ROPE_CACHED, cos_base, sin_base, C_SS, WRITE_KV, new_pos, k_new, v_new,
            QKV_CACHE)

    out = acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]
    g_ok = offs_g < GROUP
    heads_out = hk * GROUP + offs_g
    if NUM_SPLITS == 1:
        o_ptrs = po_ptr + b * O_SB + heads_out[:, None] * O_SH + offs_d[None, :]
        tl.store(o_ptrs, out.to(po_ptr.dtype.element_ty), mask=g_ok[:, None] & d_ok[None, :])
    else:
        row = (b * HQ + heads_out) * NUM_SPLITS + split
        tl.store(po_ptr + row[:, None] * D + offs_d[None, :], out,
                 mask=g_ok[:, None] & d_ok[None, :])
        lse = tl.where(l_i == 0.0, float("-inf"), m_i + tl.math.log2(l_i))
        tl.store(plse_ptr + row, lse, mask=g_ok)
        if sem_ptr is not None:
            # Every thread's partial is stored before one thread counts the program in
            # (release); the last program reads the others' after its acquire, past L1.
            tl.debug_barrier()
            arrived = tl.atomic_add(sem_ptr + bk, 1, sem="acq_rel", scope="gpu")
            if arrived == NUM_SPLITS - 1:
                merge_splits(po_ptr, plse_ptr, o_ptr, b * HQ + heads_out, g_ok, offs_d, d_ok,
                             b * O_SB + heads_out[:, None] * O_SH, D, NUM_SPLITS, BLOCK_S,
                             BLOCK_G, BLOCK_D)
                tl.atomic_xchg(sem_ptr + bk, 0, sem="relaxed", scope="gpu")


@triton.jit
def merge_splits(po_ptr, plse_ptr, o_ptr, rows, r_ok, offs_d, d_ok, o_offs, D: tl.constexpr,
                 NUM_SPLITS: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_R: tl.constexpr,
                 BLOCK_D: tl.constexpr):
    """The output rows `rows` (b·HQ + h) from their NUM_SPLITS partials (weights 2^(lse - max),
    a split whose keys were all masked weighs 0), written at o_ptr + o_offs [rows, D]."""
    offs_s = tl.arange(0, BLOCK_S)
    s_ok = offs_s < NUM_SPLITS
    lse = tl.load(plse_ptr + rows[:, None] * NUM_SPLITS + offs_s[None, :],
                  mask=r_ok[:, None] & s_ok[None, :], other=float("-inf"),
                  cache_modifier=".cg")
    top = tl.max(lse, 1)
    top = tl.where(top == float("-inf"), 0.0, top)
    total = tl.sum(tl.math.exp2(lse - top[:, None]), 1)
    out = tl.zeros((BLOCK_R, BLOCK_D), tl.float32)
    for s in tl.static_range(NUM_SPLITS):
        lse_s = tl.load(plse_ptr + rows * NUM_SPLITS + s, mask=r_ok, other=float("-inf"),
                        cache_modifier=".cg")
        part = tl.load(po_ptr + (rows * NUM_SPLITS + s)[:, None] * D + offs_d[None, :],
                       mask=r_ok[:, None] & d_ok[None, :], other=0.0, cache_modifier=".cg")
        out += part * tl.math.exp2(lse_s - top)[:, None]
    out = out / tl.where(total == 0.0, 1.0, total)[:, None]
    tl.store(o_ptr + o_offs + offs_d[None, :], out.to(o_ptr.dtype.element_ty),
             mask=r_ok[:, None] & d_ok[None, :])


@triton.jit
def attention_decode_reduce_kernel(po_ptr, plse_ptr, o_ptr,
                                   ROWS: tl.constexpr, NUM_SPLITS: tl.constexpr,
                                   D: tl.constexpr, HQ: tl.constexpr, O_SB: tl.constexpr,
                                   O_SH: tl.constexpr, BLOCK_S: tl.constexpr,
                                   BLOCK_D: tl.constexpr):
    """Merge the split partials of one (b, h) row: grid (B·HQ, 1, 1)."""
    row = tl.program_id(0)
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, BLOCK_D)
    s_ok = offs_s < NUM_SPLITS
    d_ok = offs_d < D
    lse = tl.load(plse_ptr + row * NUM_SPLITS + offs_s, mask=s_ok, other=float("-inf"))
    top = tl.max(lse, 0)
    top = tl.where(top == float("-inf"), 0.0, top)
    w = tl.math.exp2(lse - top)
    part = tl.load(po_ptr + (row * NUM_SPLITS + offs_s)[:, None] * D + offs_d[None, :],
                   mask=s_ok[:, None] & d_ok[None, :], other=0.0)
    total = tl.sum(w, 0)
    out = tl.sum(part * w[:, None], 0) / tl.where(total == 0.0, 1.0, total)
    o_base = o_ptr + (row // HQ) * O_SB + (row % HQ) * O_SH
    tl.store(o_base + offs_d, out.to(o_ptr.dtype.element_ty), mask=d_ok)
