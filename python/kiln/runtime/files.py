"""Artifact files on disk: a parameter archive (`.irpa`) written through IREE's runtime, and an
artifact saved with its archive as a pair (kiln.artifact.parameters_path names the archive)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import numpy as np

from kiln.artifact import parameters_path
from kiln.runtime.device import _iree_runtime

def write_parameter_archive(path: Union[str, Path], arrays: dict) -> Path:
    """Write {key: numpy array} as an IREE parameter archive (.irpa) at `path`."""
    rt = _iree_runtime()
    index = rt.ParameterIndex()
    for key, array in arrays.items():
        index.add_buffer(key, np.ascontiguousarray(array))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    index.create_archive_file(str(path))
    os.chmod(path, 0o666 & ~_umask())  # IREE creates it 0640; make it readable like the .vmfb
    return path


def save_artifact(path: Union[str, Path], vmfb: bytes, parameters: Optional[dict] = None) -> Path:
    """Write a `.vmfb` to `path` and, with external weights ({key: numpy array}), its archive
    to `parameters_path(path)`, as a pair: both go to temporary names beside their targets,
    then are renamed, archive first and artifact last, so a failure never leaves a new
    artifact beside an old archive (a stale pair left by a crash between the two renames is
    refused at load: the digests differ). Returns `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    renames: list[tuple[Path, Path]] = []
    try:
        if parameters:
            target = parameters_path(path)
            renames.append((_temporary_beside(target), target))
            write_parameter_archive(renames[-1][0], parameters)
        renames.append((_temporary_beside(path), path))
        renames[-1][0].write_bytes(vmfb)
        os.chmod(renames[-1][0], 0o666 & ~_umask())
        for temporary, target in renames:
            os.replace(temporary, target)
    finally:
        for temporary, _ in renames:
            temporary.unlink(missing_ok=True)  # left only by a failure
    return path


def _temporary_beside(target: Path) -> Path:
    """A fresh, empty file in `target`'s folder (a rename there is atomic)."""
    import tempfile

    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    return Path(name)


def _umask() -> int:
    try:  # read without setting it (os.umask would change it for other threads meanwhile)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022
