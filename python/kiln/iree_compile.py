"""iree-compile as a subprocess Kiln supervises, and the reproducer of a compile that failed.

Limits: IREE can grow without bound on some inputs (a data-dependent shape ran 8 minutes and
reached 24 GB before the machine killed it, leaving only "IREE could not compile the model:").
Kiln runs the `iree-compile` binary of iree-base-compiler itself, with the flags
`iree.compiler.compile_str` used (BASE_FLAGS) and Kiln's, polls its resident memory (with its
children: the CPU target's linker) and wall time, and stops it past either limit:
  KILN_IREE_COMPILE_TIMEOUT_S      seconds (default 3600: large models compile for minutes)
  KILN_IREE_COMPILE_MAX_MEMORY_MB  MB of RSS (default 80% of the machine's memory, or of the
                                   cgroup's limit where lower, read at each check: some
                                   virtual machines grow their memory as it is used);
                                   0 turns a limit off
A stopped compile says which limit, its value, how long it ran and how to raise it. A compile
that fails without diagnostics says its exit status or the signal that ended it.

Reproducer: written with `tempfile.mkstemp` (unpredictable name, mode 0600) in $TMPDIR; tensor
literals of more than one number (weights as `dense_resource` blobs, small weights and folded
constants as dense elements) are replaced by zero splats of the same type, which keeps the file
small, free of the model's data, and still compilable; set KILN_REPRODUCER_WEIGHTS=1 to keep
them (a failure that depends on values).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from kiln.bindings import iree_compile_tool
from kiln.ir_text import mlir_unescape

TIMEOUT_ENV = "KILN_IREE_COMPILE_TIMEOUT_S"
MEMORY_ENV = "KILN_IREE_COMPILE_MAX_MEMORY_MB"
REPRODUCER_WEIGHTS_ENV = "KILN_REPRODUCER_WEIGHTS"
DEFAULT_TIMEOUT_S = 3600.0
DEFAULT_MEMORY_FRACTION = 0.8
# What iree.compiler.compile_str puts before the caller's flags (the artifact stays the same).
BASE_FLAGS = ("--iree-input-type=auto",
              "--iree-vm-bytecode-module-output-format=flatbuffer-binary",
              "--mlir-print-debuginfo", "--mlir-print-op-on-diagnostic=false")
# Polling: often at first (small compiles end in a second), then every half second.
FIRST_POLL_S, MAX_POLL_S = 0.02, 0.5
_WRITE_CHUNK = 1 << 24  # characters of IR encoded and written at a time (no second full copy)


@dataclass(frozen=True)
class Limits:
    """Wall-time (s) and resident-memory limits of one iree-compile; None: no limit. Memory is
    `max_memory_mb`, or `memory_fraction` of the machine's memory read at each check (some
    virtual machines report little memory at first and grow it as it is used)."""

    timeout_s: Optional[float]
    max_memory_mb: Optional[int] = None
    memory_fraction: Optional[float] = None

    @classmethod
    def from_environment(cls) -> "Limits":
        timeout = _setting(TIMEOUT_ENV, float, DEFAULT_TIMEOUT_S)
        memory = _setting(MEMORY_ENV, int, None)
        if memory is None:
            return cls(timeout or None, None, DEFAULT_MEMORY_FRACTION)
        return cls(timeout or None, memory or None)

    def memory_limit_mb(self) -> Optional[int]:
        if self.max_memory_mb or not self.memory_fraction:
            return self.max_memory_mb
        total = machine_memory_mb()
        return int(total * self.memory_fraction) if total else None

    def describe_memory(self, limit_mb: int) -> str:
        if self.max_memory_mb:
            return f"the memory limit of {limit_mb} MB ({MEMORY_ENV})"
        return (f"the memory limit of {limit_mb} MB ({self.memory_fraction:.0%} of this "
                f"machine's memory; {MEMORY_ENV} sets another)")


def _setting(name: str, kind, default):
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"{name}={text!r}: expected a non-negative "
                         f"{'number' if kind is float else 'integer'} (0 turns the limit off)")
    return value


def machine_memory_mb() -> Optional[int]:
    """Physical memory in MB, or the cgroup (v2/v1) limit of this process where lower."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total // (1 << 20)


class IreeCompileFailure(Exception):
    """iree-compile failed: `diagnostics` (its stderr), `returncode`, and `stopped` (why Kiln
    stopped it: a limit), `seconds` it ran and the peak `memory_mb` seen."""

    def __init__(self, diagnostics: str, returncode: int, seconds: float, memory_mb: int,
                 stopped: Optional[str] = None):
        self.diagnostics, self.returncode, self.stopped = diagnostics, returncode, stopped
        self.seconds, self.memory_mb = seconds, memory_mb
        super().__init__(self.summary())

    def exit_status(self) -> str:
        if self.returncode < 0:
            try:
                name = signal.Signals(-self.returncode).name
            except ValueError:
                name = f"signal {-self.returncode}"
            killed = " (SIGKILL from outside Kiln: often the system's out-of-memory killer)" \
                if self.returncode == -signal.SIGKILL and not self.stopped else ""
            return f"was killed by signal {name}{killed}"
        return f"exited with status {self.returncode}"

    def summary(self) -> str:
        if self.stopped:
            return (f"iree-compile was stopped after {self.seconds:.1f} s (peak resident "
                    f"memory {self.memory_mb} MB): {self.stopped}")
        text = f"iree-compile {self.exit_status()} after {self.seconds:.1f} s"
        if not self.diagnostics.strip():
            text += " and printed no diagnostics"
        return text


def _process_tree_rss_mb(pid: int) -> int:
    """Resident memory of `pid` and its descendants, in MB (0 where /proc cannot tell)."""
    total_kb = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
                    break
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                pending += [int(c) for c in children]
        except (OSError, ValueError):
            continue
    return total_kb // 1024


def _feed(stream, text: str) -> None:
    try:
        for start in range(0, len(text), _WRITE_CHUNK):
            stream.write(text[start:start + _WRITE_CHUNK].encode("utf-8"))
        stream.close()
    except (BrokenPipeError, OSError, ValueError):
        pass  # the compiler stopped reading (it failed, or was stopped): its status says why


def write_bytecode_with_weights(ir_text: str, weights: dict, path: Path) -> Path:
    """Write `ir_text` as MLIR bytecode to `path` with each `#stream.parameter.named` global
    whose key is in `weights` ({archive key: numpy array}) initialized by that array as a
    resource blob: iree-compile then sees the weights as literals (constant evaluation included)
    and reads them as raw bytes, where text would carry them as hex (2 characters a byte)."""
    from iree.compiler import ir

    with ir.Context():
        module = ir.Module.parse(ir_text)
        for op in module.body.operations:
            if op.operation.name != "util.global":
                continue
            initial = op.attributes["initial_value"] if "initial_value" in op.attributes \
                else None
            match = _NAMED_PARAMETER.fullmatch(str(initial)) if initial is not None else None
            key = mlir_unescape(match["key"]) if match is not None else None
            if key not in weights:
                continue
            array = np.ascontiguousarray(weights[key])
            tensor_type = ir.TypeAttr(op.attributes["type"]).value
            op.attributes["initial_value"] = ir.DenseResourceElementsAttr.get_from_buffer(
                memoryview(array.reshape(-1).view(np.uint8)), f"kiln_weight_{match['key']}",
                tensor_type, alignment=array.itemsize)
        with open(path, "wb") as file:
            module.operation.write_bytecode(file)
    return path


_NAMED_PARAMETER = re.compile(r'#stream\.parameter\.named<"[^"]*"::"(?P<key>(?:[^"\\]|\\.)*)">'
                              r'(?: : .*)?')


def run_iree_compile(ir_text: str, flags: list[str], limits: Optional[Limits] = None,
                     weights: Optional[dict] = None) -> bytes:
    """The .vmfb iree-compile makes of `ir_text` with `flags`, under `limits` (default: from
    the environment); IreeCompileFailure when it fails or is stopped. `weights` ({archive key:
    numpy array}, the parameters `ir_text`'s `#stream.parameter.named` globals name) go with
    it as MLIR bytecode (write_bytecode_with_weights): the artifact holds them inline."""
    limits = limits or Limits.from_environment()
    with tempfile.TemporaryDirectory(prefix="kiln-iree-") as folder:
        output, errors = Path(folder) / "out.vmfb", Path(folder) / "stderr.txt"
        source = str(write_bytecode_with_weights(ir_text, weights, Path(folder) / "input.mlirbc")) \
            if weights else "-"  # "-": the text on stdin
        command = [iree_compile_tool(), source, *BASE_FLAGS, *flags, "-o", str(output)]
        with open(errors, "wb") as stderr:
            process = subprocess.Popen(command,
                                       stdin=subprocess.PIPE if source == "-" else
                                       subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=stderr,
                                       start_new_session=True)  # one group: its linker too
        feeder = threading.Thread(target=_feed, args=(process.stdin, ir_text), daemon=True) \
            if source == "-" else None
        start = time.monotonic()
        if feeder is not None:
            feeder.start()
        stopped, peak, poll = None, 0, FIRST_POLL_S
        try:
            while True:
                try:
                    process.wait(timeout=poll)
                    break
                except subprocess.TimeoutExpired:
                    pass
                poll = min(poll * 2, MAX_POLL_S)
                elapsed = time.monotonic() - start
                peak = max(peak, _process_tree_rss_mb(process.pid))
                memory_limit = limits.memory_limit_mb()
                if memory_limit and peak > memory_limit:
                    stopped = (f"it passed {limits.describe_memory(memory_limit)}; raise it "
                               f"with {MEMORY_ENV}=<MB>, 0 for no limit, if the machine has "
                               f"the memory")
                elif limits.timeout_s and elapsed > limits.timeout_s:
                    stopped = (f"it passed the time limit of {limits.timeout_s:g} s "
                               f"({TIMEOUT_ENV}); raise it with {TIMEOUT_ENV}=<seconds>, 0 "
                               f"for no limit")
                if stopped:
                    _kill_group(process)
                    break
        except BaseException:  # KeyboardInterrupt included: never leave the compiler running
            _kill_group(process)
            raise
        finally:
            if feeder is not None:
                feeder.join(timeout=5)
        seconds = time.monotonic() - start
        if process.returncode == 0 and stopped is None:
            return output.read_bytes()
        diagnostics = errors.read_text(errors="replace")
        raise IreeCompileFailure(diagnostics, process.returncode, seconds, peak, stopped)


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()
    process.wait()


# ------------------------------------------------------------------------------- reproducer

_RESOURCE_SECTION = re.compile(r"\n\{-#\s*dialect_resources:")
# A tensor literal's value that holds more than one number: a resource blob, hex-encoded or
# listed elements (splats, one number each, stay).
_LITERAL = re.compile(r'(torch\.vtensor\.literal\()(dense_resource<[^>]*>|dense<"0x[0-9A-Fa-f]*">|'
                      r'dense<\[[^>]*\]>)(\s*:\s*tensor<([^>]*)>\))')


def _zero(element_type: str) -> str:
    if element_type == "i1":
        return "false"
    if re.fullmatch(r"[su]?i\d+|index", element_type):
        return "0"
    if element_type.startswith("complex"):
        return "(0.000000e+00,0.000000e+00)"
    return "0.000000e+00"


def strip_weights(ir_text: str) -> str:
    """`ir_text` with the value of every tensor literal that holds more than one number
    (weights: `dense_resource` blobs; hex-encoded or listed constants) replaced by a zero splat
    of the same tensor type, and the resource section dropped."""
    end = _RESOURCE_SECTION.search(ir_text)
    body = ir_text[:end.start() + 1] if end else ir_text

    def zero(match: re.Match) -> str:
        element_type = match.group(4).rsplit("x", 1)[-1].strip()
        return f"{match.group(1)}dense<{_zero(element_type)}>{match.group(3)}"

    return _LITERAL.sub(zero, body)


# A util.global backed by a named parameter (inline weights handed over as bytecode).
_PARAMETER_GLOBAL = re.compile(r"^(  util\.global private @\w+ = )#stream\.parameter\.named<[^>]*>"
                               r"( : tensor<([^>]*)>)$", re.M)


def write_reproducer(ir_text: str, weights: Optional[dict] = None) -> tuple[Path, str]:
    """(path, what it holds) of the IR for IREE saved privately (module docstring). `weights`:
    the arrays `ir_text`'s parameter globals name (run_iree_compile); kept, the reproducer is
    MLIR bytecode holding them, else those globals become zero splats like other literals."""
    keep = os.environ.get(REPRODUCER_WEIGHTS_ENV, "") not in ("", "0")
    bytecode = bool(weights) and keep
    descriptor, name = tempfile.mkstemp(prefix="kiln-iree-input-",
                                        suffix=".mlirbc" if bytecode else ".mlir")
    if bytecode:
        os.close(descriptor)
        write_bytecode_with_weights(ir_text, weights, Path(name))
    else:
        if weights:
            ir_text = _PARAMETER_GLOBAL.sub(
                lambda m: f"{m[1]}dense<{_zero(m[3].rsplit('x', 1)[-1].strip())}>{m[2]}",
                ir_text)
        with os.fdopen(descriptor, "w") as file:
            file.write(ir_text if keep else strip_weights(ir_text))
    what = ("with the model's weights" if keep else
            f"weights and other tensor constants replaced by zeros; "
            f"{REPRODUCER_WEIGHTS_ENV}=1 keeps them")
    return Path(name), what
