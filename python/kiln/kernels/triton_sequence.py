"""Triton source of the synchronization between the stages of a sequence launch: several
launches run as one (kiln.kernels.sequence generates the entry kernel that calls these).

The sequence's i32 semaphore buffer starts with [ticket, done_0, ..., done_{S-1}]: zero before
every launch, and left zero by it.

* A program's ticket is its place in the order programs started (an atomic counter), not its
  program id: a program only ever waits for programs holding lower tickets, which are running
  or finished, so stages wait for each other without a cooperative launch and whatever order
  the GPU starts programs in (the trick of CUB's decoupled look-back).
* Stage s > 0 waits until stage s-1's done counter holds all its programs; each program counts
  itself done (release) after all of its work and after a barrier (every thread's stores
  issued). Waiting for the previous stage covers every earlier one: its programs all waited
  for theirs before counting themselves done.
* The last stage's done counter doubles as the exit count: when the last of its programs
  counts itself in, every program of the launch has passed its last use of the header (its
  ticket, its wait, its count), so that program sets the header back to zero.
"""

import triton
import triton.language as tl


@triton.jit
def take_ticket(seq_ptr):
    """This program's ticket: how many programs of the launch took theirs before it."""
    return tl.atomic_add(seq_ptr, 1, sem="relaxed", scope="gpu")


@triton.jit
def wait_for_stage(done_ptr, PROGRAMS: tl.constexpr):
    """Spin until the done counter at `done_ptr` reaches PROGRAMS (acquire: the stage's writes
    are visible to this program's later loads, which skip L1: LOAD_CG)."""
    while tl.atomic_add(done_ptr, 0, sem="acquire", scope="gpu") < PROGRAMS:
        pass


@triton.jit
def finish_stage(done_ptr):
    """Count this program done at `done_ptr` after every thread's stores."""
    tl.debug_barrier()
    tl.atomic_add(done_ptr, 1, sem="release", scope="gpu")


@triton.jit
def finish_sequence(seq_ptr, STAGES: tl.constexpr, PROGRAMS: tl.constexpr):
    """`finish_stage` for the last stage (PROGRAMS programs); the last of them to finish sets
    the ticket and every done counter back to zero for the next launch."""
    tl.debug_barrier()
    finished = tl.atomic_add(seq_ptr + STAGES, 1, sem="acq_rel", scope="gpu")
    if finished == PROGRAMS - 1:
        for index in tl.static_range(STAGES + 1):
            tl.atomic_xchg(seq_ptr + index, 0, sem="relaxed", scope="gpu")
