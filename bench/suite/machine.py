"""What machine a result comes from: CPU, GPU, versions, commit; the tag in result file names."""

from __future__ import annotations

import hashlib
import os
import platform
import re
import subprocess
from pathlib import Path

from bench.suite.config import REPO


def machine_info(device: str) -> dict:
    info = {"hostname_hash": hashlib.sha256(platform.node().encode()).hexdigest()[:8],
            "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform()}
    from kiln.targets import host_cpu_kind, read_cpuinfo  # kiln from KILN_PYTHON (run_suite)

    cpu = read_cpuinfo()
    if cpu.lines:
        info["cpu"] = cpu.model_name
        info["cpu_kind"] = host_cpu_kind()
        info["cpu_family_model"] = f"{cpu.field('cpu family')}/{cpu.field('model')}"
        info["isa"] = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni",
                                   "amx_tile") if f in cpu.flags]
    try:
        mem = re.findall(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        info["ram_gb"] = round(int(mem[0]) / 2**20, 1) if mem else None
    except OSError:
        pass
    for package in ("torch", "transformers", "numpy", "onnxruntime", "onnx", "onnxscript",
                    "iree-base-compiler", "iree-base-runtime", "torch-mlir"):
        try:
            from importlib.metadata import version

            info[package] = version(package)
        except Exception:
            pass
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "python",
                                "passes", "dialects"], capture_output=True, text=True,
                               timeout=30).stdout.strip()
        if commit:
            info["kiln_commit"] = commit + (f" + {len(dirty.splitlines())} uncommitted "
                                            f"file(s) in python/ passes/ dialects/"
                                            if dirty else "")
    except Exception:
        pass
    if device == "cuda":
        try:
            text = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                   "--format=csv,noheader"], capture_output=True, text=True,
                                  timeout=30).stdout.strip().splitlines()[0]
            info["gpu"], info["driver"], info["gpu_memory"] = [p.strip() for p in
                                                               text.split(",")]
        except Exception:
            info["gpu"] = "unknown"
    return info


def machine_tag(info: dict, device: str) -> str:
    """The machine's name in result files: the GPU's, or on CPU the host kind Kiln's presets are
    chosen by (kiln.targets.host_cpu_kind: vendor and widest vector ISA) and the core count, so
    that two CPU models of one vendor that take different presets get tables of their own."""
    if device == "cuda":
        name = info.get("gpu", "gpu")
    else:
        name = f"{info.get('cpu_kind', 'cpu')}-{info['cores']}core"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
