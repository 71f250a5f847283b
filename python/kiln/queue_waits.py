"""A decode loop whose host does not wait for the GPU between steps (CUDA).

IREE's stream scheduler gives every step of a loop (kiln.decode_loop) its own transient
buffers: `hal.device.queue.alloca` before the step's command buffer, `hal.device.queue.dealloca`
after it, each ordered after the work it follows by a wait fence. IREE's CUDA HAL (3.13)
performs both on the host and blocks the calling thread on their wait fences first ("The CUDA
HAL is not currently asynchronous", cuda_device.c): the dealloca after a step's command
buffer waits for that step to finish on the GPU before the host records the next step. Host
recording and GPU execution then take turns instead of overlapping.

`release_loop_waits` rewrites the HAL-phase IR of the named functions (`iree-compile
--compile-to=hal`) so that the host stops waiting there while every fence keeps its meaning:

    %b = hal.device.queue.alloca<%dev> ... wait(%w) signal(%s) pool(...) ...
      becomes
    %b = hal.device.queue.alloca<%dev> ... wait(%none) signal(%a) pool(...) ...   (no host wait)
    hal.device.queue.barrier<%dev> ... wait(join(%w, %a)) signal(%s)              (on the queue)

    hal.device.queue.dealloca<%dev> ... wait(%w) signal(%s) buffer(%b) ...
      becomes
    hal.device.queue.dealloca<%dev> ... wait(%none) signal(%d) buffer(%b) ...
    hal.device.queue.barrier<%dev> ... wait(join(%w, %d)) signal(%s)

Where the op's signal fence is made for it alone — `%s = hal.fence.create` earlier in the same
block, unused until the op — the barrier is left out and the fence becomes a join:

    %b = hal.device.queue.alloca<%dev> ... wait(%none) signal(%a) pool(...) ...
    %s = hal.fence.join at([%w, %a])                  (the create of %s removed)

Every later wait on %s then waits on %w directly. This matters for IREE's deferred work queue,
which issues an action only once each fence it waits on has passed or has a CUDA event from work
already issued, and re-examines pending actions only when the host submits or observes a
signal: a step whose execute waited on barriers that waited on the previous step's execute was
issued only after one such re-examination per barrier in the chain, each a host round trip while
the GPU idled (one long GPU gap per decode step, docs/decisions.md "Decode steps without
barriers"). With joins the next step's execute waits on the previous one's fence itself.

A barrier is queue work (IREE's deferred work queue: CUDA events, no host wait). Allocating
before %w is reached is safe: the buffer is new. Freeing before %w relies on the CUDA HAL's one
FIFO stream: IREE's dealloca is a no-op for buffers from cuMemAlloc (synchronous allocations,
Kiln's default) and a stream-ordered cuMemFreeAsync, queued after the step's launches, for
pool buffers. With IREE's caching allocator (Kiln's generators) a buffer goes back to the cache
only with its last reference, which the step's queued execute holds until the step has run.
Only valid for the CUDA HAL; the CPU HAL's queue is not one FIFO stream.
"""

from __future__ import annotations

import re
from typing import Optional

from kiln.errors import KilnCompileError

# Reflection entry of the public wrapper of every rewritten function: the runtime refuses such an
# artifact where IREE's stream-ordered allocations are on (kiln.runtime.module).
PIPELINED_KEY = "kiln.pipelined_loop"

# hal.device.queue.alloca / dealloca as IREE 3.13 prints them (one op per line).
_QUEUE_OP = re.compile(
    r"^(?P<indent>[ \t]*)(?P<result>%[\w$.\-#]+ = )?hal\.device\.queue\.(?P<op>alloca|dealloca)"
    r"<(?P<device>%[\w$.\-]+) : !hal\.device> affinity\((?P<affinity>[^)]*)\) "
    r"wait\((?P<wait>%[\w$.\-#]+)\) signal\((?P<signal>%[\w$.\-#]+)\)(?P<rest>.*)$")
_BLOCK = re.compile(r"^[ \t]*\^bb")  # a block's label
_FENCE_CREATE = re.compile(r"^[ \t]*(?P<name>%[\w$.\-#]+) = hal\.fence\.create ")
_FUNCTION = re.compile(r"^  util\.func (?:public |private )?@(?P<name>[\w$.\-]+)\(")


def release_loop_waits(hal_text: str, functions: list[str]) -> tuple[str, int]:
    """(`hal_text` with the queue allocas/deallocas of `functions` rewritten as in the module
    docstring, how many were rewritten). A function named but absent raises KilnCompileError."""
    lines = hal_text.split("\n")
    wanted = set(functions)
    found: set[str] = set()
    out: list[Optional[str]] = []
    created: dict[str, int] = {}  # fence name -> index in `out` of its hal.fence.create
    current = None
    counter = 0
    for line in lines:
        header = _FUNCTION.match(line)
        if header:
            current = header["name"] if header["name"] in wanted else None
            created = {}
            if current:
                found.add(current)
        elif line.startswith("  }"):
            current = None
        match = _QUEUE_OP.match(line) if current else None
        if match is None:
            fence = _FENCE_CREATE.match(line) if current else None
            if fence:
                created[fence["name"]] = len(out)
            out.append(line)
            continue
        counter += 1
        indent, device, affinity = match["indent"], match["device"], match["affinity"]
        wait, signal = match["wait"], match["signal"]
        none, done = f"%kiln_nowait_{counter}", f"%kiln_queued_{counter}"
        out += [
            f"{indent}{none} = util.null : !hal.fence",
            f"{indent}{done} = hal.fence.create device({device} : !hal.device) "
            f'flags("None") : !hal.fence',
            f"{indent}{match['result'] or ''}hal.device.queue.{match['op']}<{device} : "
            f"!hal.device> affinity({affinity}) wait({none}) signal({done}){match['rest']}",
        ]
        create = created.pop(signal, None)
        if create is not None and _unused_in_block(out[create + 1:-3], signal):
            out[create] = None  # the fence is the join below from here on
            out.append(f"{indent}{signal} = hal.fence.join at([{wait}, {done}]) "
                       f'flags("None") -> !hal.fence')
            continue
        joined = f"%kiln_after_{counter}"
        out += [
            f"{indent}{joined} = hal.fence.join at([{wait}, {done}]) "
            f'flags("None") -> !hal.fence',
            f"{indent}hal.device.queue.barrier<{device} : !hal.device> affinity({affinity}) "
            f'wait({joined}) signal({signal}) flags("None")',
        ]
    missing = sorted(wanted - found)
    if missing:
        raise KilnCompileError(f"release_loop_waits: no function {', '.join(missing)} in the "
                               f"HAL-phase IR")
    return _mark_wrappers("\n".join(line for line in out if line is not None), functions), \
        counter


def _unused_in_block(lines: list, name: str) -> bool:
    """Whether `lines` (None: removed) neither use the SSA value `name` nor start a block (the
    join must stay in the block of the create it replaces)."""
    use = re.compile(re.escape(name) + r"(?![\w$.\-#])")
    return not any(line is not None and (use.search(line) or _BLOCK.match(line))
                   for line in lines)


def _mark_wrappers(hal_text: str, functions: list[str]) -> str:
    """Add PIPELINED_KEY to the reflection of each `f$async`'s public wrapper `f`."""
    for name in functions:
        wrapper = name[:-len("$async")] if name.endswith("$async") else name
        header = re.search(rf"^  util\.func public @{re.escape(wrapper)}\(.*$", hal_text, re.M)
        if header is None or "iree.reflection = {" not in header.group(0):
            raise KilnCompileError(f"release_loop_waits: no public @{wrapper} with a reflection "
                                   f"in the HAL-phase IR")
        marked = header.group(0).replace("iree.reflection = {",
                                         f'iree.reflection = {{{PIPELINED_KEY} = "true", ', 1)
        hal_text = hal_text[:header.start()] + marked + hal_text[header.end():]
    return hal_text


def check_runtime_flags(reflections: dict, cuda_flags) -> None:
    """KilnLoadError where an artifact with a pipelined loop meets CUDA runtime flags without
    synchronous allocations: the rewrite is measured only with them (IREE's default is
    stream-ordered allocations, which Kiln's default flags turn off)."""
    from kiln.errors import KilnLoadError
    from kiln.runtime.device import SYNCHRONOUS_ALLOCATIONS

    pipelined = sorted(n for n, r in reflections.items() if PIPELINED_KEY in r)
    if pipelined and SYNCHRONOUS_ALLOCATIONS not in (cuda_flags or ()):
        raise KilnLoadError(
            f"{', '.join(pipelined)}: compiled with pipeline_loops (kiln.queue_waits), which runs "
            f"only with IREE's synchronous CUDA allocations, but this process's CUDA flags are "
            f"{list(cuda_flags or ())}; add {SYNCHRONOUS_ALLOCATIONS} (Kiln's default, "
            f"kiln.runtime.CUDA_RUNTIME_FLAGS) or compile with pipeline_loops=False")
