"""Compile cache storage: artifacts (`.vmfb` bytes) and their JSON metadata, by key.

    KILN_CACHE_DIR     where entries live (default: $XDG_CACHE_HOME/kiln, i.e. ~/.cache/kiln)
    KILN_CACHE=0       turn the cache off (as does the compile option `cache=False`)
    KILN_CACHE_MAX_MB  prune least-recently-used artifacts above this size (default 2048)

This module stores bytes and JSON and knows nothing of models or the compiler: the key is
computed by `kiln.compile_key` (a digest of the exported program and of everything else that
decides the artifact), and `kiln.compiler` looks entries up and stores them.

An entry is `<key>.vmfb` plus `<key>.json` ({"format", "key", "size", "sha256", "created",
"kiln_version", "meta": caller's JSON}). Both are written atomically (temporary file, then
`os.replace`); the json is written last and acts as the commit marker. On read the size and
sha256 are verified: a corrupt, truncated, stale or unreadable entry is logged as a warning
(logger `kiln.cache`), deleted, and treated as a miss. No method raises: cache I/O never fails
a compile (a broken cache costs a compile, nothing else).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

logger = logging.getLogger("kiln.cache")

CACHE_FORMAT = 2  # 2: keys from the exported program only (no module key, no alias files)
DEFAULT_MAX_MB = 2048
_OFF_VALUES = {"0", "false", "off", "no"}


def cache_dir() -> Path:
    """$KILN_CACHE_DIR, else $XDG_CACHE_HOME/kiln, else ~/.cache/kiln."""
    explicit = os.environ.get("KILN_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "kiln"


def cache_enabled(option: bool = True) -> bool:
    """The compile option `cache` and the environment switch `KILN_CACHE=0` together."""
    return bool(option) and os.environ.get("KILN_CACHE", "1").strip().lower() not in _OFF_VALUES


def max_bytes() -> int:
    """$KILN_CACHE_MAX_MB in bytes; "inf" means no limit; unreadable or negative values fall
    back to the default with a warning (a typo in a setting must not fail a compile)."""
    text = os.environ.get("KILN_CACHE_MAX_MB")
    if text is None:
        return DEFAULT_MAX_MB * 2**20
    try:
        megabytes = float(text)
    except ValueError:
        megabytes = math.nan
    if math.isinf(megabytes) and megabytes > 0:
        return 2**63 - 1
    if not math.isfinite(megabytes) or megabytes < 0:
        logger.warning("kiln cache: KILN_CACHE_MAX_MB=%r is not a size in MB; using %d",
                       text, DEFAULT_MAX_MB)
        return DEFAULT_MAX_MB * 2**20
    return int(megabytes * 2**20)


@dataclass(frozen=True)
class CacheEntry:
    """A verified entry: the artifact's bytes and the JSON its writer stored with it."""

    key: str
    vmfb: bytes
    meta: dict


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would keep a shared cache private
        os.replace(tmp, path)
    except BaseException:
        _unlink(Path(tmp))
        raise


def _unlink(*paths: Path) -> None:
    for path in paths:
        try:
            path.unlink()
        except OSError:  # already gone, or not ours to delete: the next write replaces it
            pass


class CompileCache:
    """The on-disk store: `<key>.vmfb` + `<key>.json` under `root`."""

    def __init__(self, root: Optional[Path] = None):
        self.root = Path(root) if root is not None else cache_dir() / f"v{CACHE_FORMAT}"

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.root / f"{key}.vmfb", self.root / f"{key}.json"

    def get(self, key: str) -> Optional[CacheEntry]:
        """The verified entry, or None. Corrupt or stale entries are deleted with a warning."""
        vmfb_path, meta_path = self._paths(key)
        try:
            meta_text = meta_path.read_text()
        except FileNotFoundError:
            return None
        except Exception as error:  # noqa: BLE001 - a permission problem, a folder, ...
            logger.warning("kiln cache: cannot read %s: %s", meta_path, error)
            return None
        try:
            record = json.loads(meta_text)
            data = vmfb_path.read_bytes()
        except (ValueError, OSError) as error:
            return self._discard(key, f"unreadable ({type(error).__name__}: {error})")
        if not isinstance(record, dict) or record.get("format") != CACHE_FORMAT or \
                record.get("key") != key or not isinstance(record.get("meta"), dict):
            return self._discard(key, "stale (written by another cache format)")
        if len(data) != record.get("size") or \
                hashlib.sha256(data).hexdigest() != record.get("sha256"):
            return self._discard(key, f"corrupt ({len(data)} bytes, sha256 does not match)")
        now = time.time()
        try:
            os.utime(meta_path, (now, now))  # recency for pruning
        except OSError:
            pass
        return CacheEntry(key, data, record["meta"])

    def _discard(self, key: str, why: str) -> None:
        logger.warning("kiln cache: entry %s… in %s is %s; deleting it and rebuilding",
                       key[:16], self.root, why)
        _unlink(*self._paths(key))
        return None

    def put(self, key: str, vmfb: bytes, meta: dict) -> bool:
        """Store an entry; False (with a warning) when it could not be written."""
        from kiln import __version__

        record = {"format": CACHE_FORMAT, "key": key, "size": len(vmfb),
                  "sha256": hashlib.sha256(vmfb).hexdigest(), "kiln_version": __version__,
                  "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "meta": meta}
        vmfb_path, meta_path = self._paths(key)
        try:
            text = json.dumps(record, indent=1).encode()
            self.root.mkdir(parents=True, exist_ok=True)
            _atomic_write(vmfb_path, vmfb)
            _atomic_write(meta_path, text)  # commit marker
            return True
        except Exception as error:  # noqa: BLE001 - never fail a compile over the cache
            logger.warning("kiln cache: cannot write %s: %s: %s", self.root,
                           type(error).__name__, error)
            return False

    def entries(self) -> list[Path]:
        return sorted(self.root.glob("*.json")) if self.root.is_dir() else []

    def prune(self, limit: int) -> None:
        """Delete least recently used entries until the artifacts take at most `limit` bytes."""
        try:
            entries = []
            for meta_path in self.entries():
                vmfb_path = meta_path.with_suffix(".vmfb")
                try:
                    entries.append((meta_path.stat().st_mtime, vmfb_path.stat().st_size,
                                    meta_path, vmfb_path))
                except FileNotFoundError:
                    continue
            total = sum(size for _, size, _, _ in entries)
            for _, size, meta_path, vmfb_path in sorted(entries):
                if total <= limit:
                    break
                _unlink(meta_path, vmfb_path)
                total -= size
        except Exception as error:  # noqa: BLE001 - pruning is housekeeping only
            logger.warning("kiln cache: cannot prune %s: %s", self.root, error)


def clear(root: Optional[Path] = None) -> int:
    """Delete every entry; returns how many artifacts were removed."""
    store = CompileCache(root)
    count = 0
    if store.root.is_dir():
        for path in list(store.root.iterdir()):
            if path.suffix in (".vmfb", ".json", ".tmp"):
                count += path.suffix == ".vmfb"
                _unlink(path)
    return count


def iter_entries(root: Optional[Path] = None) -> Iterable[dict]:
    """Metadata records of every entry (for tooling and tests)."""
    for meta_path in CompileCache(root).entries():
        try:
            record = json.loads(meta_path.read_text())
        except (ValueError, OSError):
            continue
        if isinstance(record, dict):
            yield record
