"""An external-weights archive (`.irpa`) bound to its artifact (`weights="external"`).

The archive holds only bytes under keys, and IREE reads whatever bytes sit under a key: another
model's archive with the same keys, or a same-keyed one with larger tensors, would run and give
wrong values. So the artifact records what it was compiled with, in the `kiln.parameters`
reflection entry (built by `record`):

    {"scope": "model", "count": 2, "bytes": 65536, "digest": "<sha256 hex>",
     "parameters": [{"key": "0.weight", "shape": [128, 64], "dtype": "float32",
                     "bytes": 32768, "sha256": "<hex>"}, ...]}

`digest` = sha256 over the parameters sorted by key, each as (key, byte length, sha256 of its
bytes) (`combined_digest`); a per-parameter sha256 lets the check at load name the parameter
whose bytes differ. `verify` recomputes it from the archive itself (no torch, no compiler) and
refuses a mismatch with KilnLoadError naming the first bad parameter. Digests are computed on
threads (hashlib releases the GIL) straight from the memory-mapped archive.

Where an artifact's archive lives (`parameters_path`) is part of the artifact contract
(kiln.artifact); it is re-exported here.
"""

from __future__ import annotations

import hashlib
import os
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

from kiln.artifact import parameters_path  # noqa: F401 (kiln.archive.parameters_path)
from kiln.errors import KilnLoadError

_CHUNK = 1 << 24  # bytes per hashlib update (splat entries are expanded chunk by chunk)


def sha256_hex(buffer) -> str:
    """sha256 of a contiguous buffer (numpy array, memoryview), hashed in chunks so the GIL is
    released for each (hashlib does that for updates over 2 KiB)."""
    view = memoryview(buffer).cast("B")
    digest = hashlib.sha256()
    for start in range(0, len(view), _CHUNK):
        digest.update(view[start:start + _CHUNK])
    return digest.hexdigest()


def _splat_sha256_hex(pattern: bytes, length: int) -> str:
    """sha256 of `pattern` repeated to `length` bytes (an archive's splat entry)."""
    digest = hashlib.sha256()
    if pattern:
        block = pattern * max(1, _CHUNK // len(pattern))
        while length > 0:
            piece = block[:length]
            digest.update(piece)
            length -= len(piece)
    return digest.hexdigest()


def _parallel(function: Callable, items: Sequence, sizes: Sequence[int]) -> list:
    """`function` over `items` on threads, largest first (digests of big tensors dominate)."""
    results: list = [None] * len(items)
    order = sorted(range(len(items)), key=lambda i: -sizes[i])
    workers = min(len(items), os.cpu_count() or 1, 8)
    if workers <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for index, result in zip(order, pool.map(lambda i: function(items[i]), order)):
            results[index] = result
    return results


def combined_digest(parameters: Iterable[tuple[str, int, str]]) -> str:
    """sha256 over (key, byte length, sha256 of the bytes) of each parameter, sorted by key:
    one value for the whole set of weights, independent of the archive's layout."""
    digest = hashlib.sha256()
    for key, length, sha256 in sorted(parameters):
        encoded = key.encode("utf-8")
        digest.update(struct.pack("<Q", len(encoded)) + encoded + struct.pack("<Q", length) +
                      bytes.fromhex(sha256))
    return digest.hexdigest()


@dataclass
class RecordedParameter:
    """What the artifact expects under one archive key (from `record`)."""

    key: str
    shape: list
    dtype: str
    bytes: int
    sha256: str

    def describe(self) -> str:
        shape = "x".join(str(d) for d in self.shape) or "scalar"
        return f"'{self.key}' ({shape} {self.dtype}, {self.bytes} bytes)"


def record(scope: str, parameters: Sequence[tuple[str, object, str]]) -> dict:
    """The `kiln.parameters` reflection entry for (key, array, dtype name) of each parameter
    the artifact loads, in the artifact's order."""
    arrays = [array for _, array, _ in parameters]
    digests = _parallel(sha256_hex, arrays, [a.nbytes for a in arrays])
    entries = [{"key": key, "shape": list(array.shape), "dtype": dtype,
                "bytes": int(array.nbytes), "sha256": sha256}
               for (key, array, dtype), sha256 in zip(parameters, digests)]
    return {"scope": scope, "count": len(entries), "bytes": sum(e["bytes"] for e in entries),
            "digest": combined_digest((e["key"], e["bytes"], e["sha256"]) for e in entries),
            "parameters": entries}


@dataclass
class ArchiveEntry:
    """One entry of a loaded archive: its key and length, and its bytes (a buffer such as the
    memory-mapped file view) or, for a splat entry, the repeated pattern."""

    key: str
    length: int
    view: Optional[object] = None
    splat_pattern: Optional[bytes] = None

    def sha256(self) -> str:
        if self.view is None:
            return _splat_sha256_hex(self.splat_pattern or b"", self.length)
        return sha256_hex(self.view)


def verify(info: dict, entries: Sequence[ArchiveEntry], path: Path, contents: bool = True) -> None:
    """Refuse (KilnLoadError) an archive that is not the one `info` (the artifact's
    `kiln.parameters` record) was compiled with: a missing or extra key, a byte length that
    differs, or (with `contents`) bytes whose sha256 differs. Names the first bad parameter."""
    if "parameters" not in info:  # compiled before Kiln recorded its parameters
        if not contents:
            return
        raise KilnLoadError(
            f"the artifact records no digests of its parameters (compiled by an older Kiln), so "
            f"its archive {path} cannot be checked: compile it again (or load with "
            f"verify_parameters=False, unsafe: another archive would run silently)")
    expected = [RecordedParameter(**entry) for entry in info["parameters"]]
    found = {entry.key: entry for entry in entries}
    problem = f"the parameter archive {path} is not the one this artifact was compiled with"
    for parameter in expected:
        if parameter.key not in found:
            raise KilnLoadError(f"{problem}: it has no parameter {parameter.describe()}")
    extra = sorted(set(found) - {p.key for p in expected})
    if extra:
        raise KilnLoadError(f"{problem}: it has parameter(s) the artifact does not use: "
                            f"{', '.join(repr(k) for k in extra[:5])}"
                            f"{f' and {len(extra) - 5} more' if len(extra) > 5 else ''}")
    for parameter in expected:
        length = found[parameter.key].length
        if length != parameter.bytes:
            raise KilnLoadError(f"{problem}: parameter {parameter.describe()} has {length} "
                                f"bytes there (another shape or dtype)")
    if not contents:
        return
    chosen = [found[p.key] for p in expected]
    digests = _parallel(ArchiveEntry.sha256, chosen, [e.length for e in chosen])
    if combined_digest((e.key, e.length, d) for e, d in zip(chosen, digests)) == info["digest"]:
        return
    for parameter, sha256 in zip(expected, digests):
        if sha256 != parameter.sha256:
            raise KilnLoadError(f"{problem}: parameter {parameter.describe()} has other "
                                f"contents (sha256 {sha256[:12]}…, expected "
                                f"{parameter.sha256[:12]}…): weights of another model or "
                                f"compile")
    raise KilnLoadError(f"{problem}: the digest of its parameters differs from the one the "
                        f"artifact records (a damaged .vmfb?)")
