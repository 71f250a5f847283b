"""Launch configurations: the measured table (`table.json`) and defaults for unknown shapes.

Table format (written by bench/gpu/autotune_kernels.py on the GPU; see docs/kernels.md):

    {"format": 1, "device": "NVIDIA H100 80GB HBM3", "triton": "3.6.0", "measured": "<date>",
     "entries": {"<key>": {"config": {<fields of the config record>},
                           "us": <median µs of the chosen config on the key's first shape>,
                           "shapes": [<the shapes measured for this key>],
                           "candidates": <how many configs were timed>}, ...}}

Keys (shape classes; `pow2(x)` is x rounded up to a power of two, at least 16):
    linear/<weight_layout>/m<pow2(M), at least 1>/n<N>/k<K>  GemmConfig
    attention_prefill/d<pow2(D)>/sq<pow2(Sq)>/<causal|full>  PrefillConfig
    attention_decode/d<pow2(D)>/kv<pow2(Sk)>           DecodeConfig

$KILN_KERNEL_TABLE names another table file (the autotuner's fresh output, say).
A shape whose key is not in the table takes the entry nearest to it (same op; distance in
log2 of the sizes, a different layout or causal flag counts half a doubling) when one is within
`NEAR_ENOUGH`, else the default of its size class. Every config is then fitted to the shape
(`fit_*`: tiles no larger than the padded sizes, split counts that leave no empty split).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional

TABLE_PATH = Path(__file__).with_name("table.json")
TABLE_FORMAT = 1
NEAR_ENOUGH = 3.0  # log2 units
SMEM_LIMIT = 232448  # bytes of dynamic shared memory per block on Hopper (plan.ARCHS per arch)


def pow2(x: int, floor: int = 16) -> int:
    return max(floor, 1 << max(0, (int(x) - 1).bit_length()))


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class GemmConfig:
    block_m: int
    block_n: int
    block_k: int
    group_m: int = 8
    split_k: int = 1
    num_warps: int = 4
    num_stages: int = 3

    def label(self) -> str:
        return (f"{self.block_m}x{self.block_n}x{self.block_k}g{self.group_m}s{self.split_k}"
                f"w{self.num_warps}p{self.num_stages}")


@dataclass(frozen=True)
class PrefillConfig:
    block_m: int
    block_n: int
    num_warps: int = 4
    num_stages: int = 2

    def label(self) -> str:
        return f"{self.block_m}x{self.block_n}w{self.num_warps}p{self.num_stages}"


@dataclass(frozen=True)
class DecodeConfig:
    block_n: int
    target_programs: int = 264  # splits = target_programs / (B·HKV), within [1, key blocks]
    num_warps: int = 4
    num_stages: int = 2

    def label(self) -> str:
        return f"{self.block_n}t{self.target_programs}w{self.num_warps}p{self.num_stages}"


CONFIG_TYPES = {"linear": GemmConfig, "attention_prefill": PrefillConfig,
                "attention_decode": DecodeConfig}


# ---------------------------------------------------------------------------------------------
# Keys


def linear_key(m: int, n: int, k: int, weight_layout: str) -> str:
    return f"linear/{weight_layout}/m{pow2(m, 1)}/n{n}/k{k}"


def prefill_key(sq: int, d: int, causal: bool) -> str:
    return f"attention_prefill/d{pow2(d)}/sq{pow2(sq)}/{'causal' if causal else 'full'}"


def decode_key(sk: int, d: int) -> str:
    return f"attention_decode/d{pow2(d)}/kv{pow2(sk)}"


def _parse_key(key: str) -> tuple[str, dict]:
    op, *parts = key.split("/")
    fields = {}
    for part in parts:
        if part in ("causal", "full", "out_in", "in_out"):
            fields["flag"] = part
        else:
            head = part.rstrip("0123456789")
            fields[head] = int(part[len(head):])
    return op, fields


def _distance(a: dict, b: dict) -> float:
    total = 0.0
    for name in set(a) | set(b):
        if name == "flag":
            total += 0.0 if a.get(name) == b.get(name) else 0.5
        elif name in a and name in b:
            total += abs(math.log2(a[name]) - math.log2(b[name]))
        else:
            total += 10.0
    return total


# ---------------------------------------------------------------------------------------------
# Table


@lru_cache(maxsize=None)
def _load_table(path: str) -> dict:
    try:
        table = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    if table.get("format") != TABLE_FORMAT:
        return {}
    return table.get("entries", {})


def table_path() -> Path:
    """$KILN_KERNEL_TABLE (a freshly tuned table, say) or the committed table.json."""
    return Path(os.environ.get("KILN_KERNEL_TABLE") or TABLE_PATH)


def table_entries(path: Optional[Path] = None) -> dict:
    return _load_table(str(path or table_path()))


def reload_table() -> None:
    _load_table.cache_clear()


def lookup(key: str, table: Optional[dict] = None):
    """(config record, the table key it came from) or (None, "") when nothing is near."""
    entries = table_entries() if table is None else table
    op, want = _parse_key(key)
    kind = CONFIG_TYPES[op]
    if key in entries:
        return kind(**entries[key]["config"]), key
    best, best_key = None, ""
    best_distance = NEAR_ENOUGH
    for other, entry in entries.items():
        other_op, fields = _parse_key(other)
        if other_op != op:
            continue
        distance = _distance(want, fields)
        if distance < best_distance:
            best, best_key, best_distance = entry, other, distance
    if best is None:
        return None, ""
    return kind(**best["config"]), best_key


# ---------------------------------------------------------------------------------------------
# Defaults and fitting


def default_gemm(m: int, n: int, k: int) -> GemmConfig:
    if m <= 16:
        config = GemmConfig(16, 64, 128, 1, split_k=1, num_warps=4, num_stages=4)
        tiles = cdiv(n, 64)
        config = dataclasses.replace(config, split_k=max(1, min(8, 132 // max(1, tiles))))
    elif m <= 64:
        config = GemmConfig(64, 64, 64, 8, 1, 4, 4)
        if cdiv(m, 64) * cdiv(n, 64) < 66:
            config = dataclasses.replace(config, split_k=2)
    elif m <= 256:
        config = GemmConfig(64, 128, 64, 8, 1, 4, 4)
    else:
        config = GemmConfig(128, 128, 64, 8, 1, 8, 3)
    return config


def fit_gemm(config: GemmConfig, m: int, n: int, k: int, smem_limit: int = SMEM_LIMIT,
             operands: int = 2) -> tuple[GemmConfig, int, bool]:
    """The config fitted to the shape (and to `smem_limit` bytes of shared memory for
    `operands` tiles per stage: X and W, or X and two W tiles for the gated GEMM), the K range
    per split and whether K needs no mask."""
    bm = min(config.block_m, pow2(m))
    bn = min(config.block_n, pow2(n))
    bk = min(config.block_k, pow2(k))
    blocks = cdiv(k, bk)
    per_split = cdiv(blocks, max(1, min(config.split_k, blocks)))
    split = cdiv(blocks, per_split)
    stages = config.num_stages
    while stages > 1 and (bm * bk + (operands - 1) * bk * bn) * 2 * stages > smem_limit:
        stages -= 1
    fitted = dataclasses.replace(config, block_m=bm, block_n=bn, block_k=bk, split_k=split,
                                 num_stages=stages)
    k_split = per_split * bk
    even_k = k % bk == 0 and k_split * split == k
    return fitted, k_split, even_k


# A GEMM without split-K should still start about this many programs (a wave on a 132-SM H100/H200;
# the split-K configs of the table start 100-500 for decode shapes).
MIN_PROGRAMS_WITHOUT_SPLIT = 96


def without_split_k(config: GemmConfig, m: int, n: int) -> GemmConfig:
    """`config` as one launch (no split-K partials and reduce): split_k 1, and the N tile halved
    (down to 16) while fewer than MIN_PROGRAMS_WITHOUT_SPLIT tiles would run, so that a
    decode-shaped GEMM still spreads its weight reads over the GPU."""
    block_n = config.block_n
    tiles = lambda bn: cdiv(m, min(config.block_m, pow2(m))) * cdiv(n, bn)  # noqa: E731
    while block_n > 16 and tiles(block_n) < MIN_PROGRAMS_WITHOUT_SPLIT:
        block_n //= 2
    return dataclasses.replace(config, split_k=1, block_n=block_n)


def default_prefill(sq: int, d: int, causal: bool) -> PrefillConfig:
    if d > 128:
        return PrefillConfig(64, 32, 4, 2)
    if sq <= 64:
        return PrefillConfig(64, 64, 4, 2)
    return PrefillConfig(128, 64, 8, 2)


def fit_prefill(config: PrefillConfig, sq: int, sk: int) -> PrefillConfig:
    return dataclasses.replace(config, block_m=min(config.block_m, pow2(sq)),
                               block_n=min(config.block_n, pow2(sk)))


def default_decode(sk: int, d: int) -> DecodeConfig:
    return DecodeConfig(64 if d <= 128 else 32, 264, 4, 2)


def fit_decode(config: DecodeConfig, keys: int, programs: int) -> tuple[DecodeConfig, int, int]:
    """The config fitted to `keys` keys and `programs` = B·HKV: (config, splits, chunk)."""
    bn = min(config.block_n, pow2(keys))
    blocks = cdiv(keys, bn)
    splits = max(1, min(blocks, cdiv(config.target_programs, programs)))
    chunk = cdiv(blocks, splits) * bn
    splits = cdiv(keys, chunk)
    return dataclasses.replace(config, block_n=bn), splits, chunk
