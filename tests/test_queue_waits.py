"""kiln.queue_waits: a CUDA decode loop whose queue allocations and deallocations no longer block
the host on their wait fences (compile option pipeline_loops)."""

from __future__ import annotations

import re

import pytest
import torch

import kiln
from kiln.errors import KilnCompileError
from kiln.queue_waits import release_loop_waits

transformers = pytest.importorskip("transformers")

HAL = """\
  util.func public @step(%arg0: !hal.buffer_view) -> !hal.buffer_view attributes {iree.abi.stub, iree.reflection = {kiln.signature = "{}"}} {
    util.return %arg0 : !hal.buffer_view
  }
  util.func public @step$async(%arg0: !hal.fence, %arg1: !hal.fence) {
    %0 = util.null : !hal.fence
    %buffer = hal.device.queue.alloca<%__device_0 : !hal.device> affinity(%c-1_i64) wait(%arg0) signal(%fence) pool(%c0_i64) type(%memory_type) usage(%buffer_usage) flags("None") : !hal.buffer{%c256} loc(#loc3)
    hal.device.queue.execute<%__device_0 : !hal.device> affinity(%c-1_i64) wait(%fence) signal(%fence_1) commands(%cmd) flags("None")
    hal.device.queue.dealloca<%__device_0 : !hal.device> affinity(%c-1_i64) wait(%fence_1) signal(%arg1) buffer(%buffer : !hal.buffer) flags(PreferOrigin)
    util.return
  }
  util.func public @other$async(%arg0: !hal.fence, %arg1: !hal.fence) {
    %buffer = hal.device.queue.alloca<%__device_0 : !hal.device> affinity(%c-1_i64) wait(%arg0) signal(%arg1) pool(%c0_i64) type(%memory_type) usage(%buffer_usage) flags("None") : !hal.buffer{%c256}
    util.return
  }
"""


def test_release_loop_waits_moves_each_wait_onto_the_queue():
    text, count = release_loop_waits(HAL, ["step$async"])
    assert count == 2
    step, other = text.split("util.func public @other$async")
    # The allocation and deallocation wait on nothing; a barrier after each waits for both the
    # original fence and the op, and signals the op's original fence.
    assert re.search(r"%buffer = hal\.device\.queue\.alloca<%__device_0 : !hal\.device> "
                     r"affinity\(%c-1_i64\) wait\(%kiln_nowait_1\) signal\(%kiln_queued_1\) "
                     r"pool\(%c0_i64\).*: !hal\.buffer\{%c256\} loc\(#loc3\)", step)
    assert "%kiln_after_1 = hal.fence.join at([%arg0, %kiln_queued_1])" in step
    assert ("hal.device.queue.barrier<%__device_0 : !hal.device> affinity(%c-1_i64) "
            "wait(%kiln_after_1) signal(%fence)") in step
    assert re.search(r"hal\.device\.queue\.dealloca<.*wait\(%kiln_nowait_2\) "
                     r"signal\(%kiln_queued_2\) buffer\(%buffer : !hal\.buffer\) "
                     r"flags\(PreferOrigin\)", step)
    assert "wait(%kiln_after_2) signal(%arg1)" in step
    assert "%kiln_nowait_2 = util.null : !hal.fence" in step
    assert "kiln_" not in other and "wait(%arg0) signal(%arg1)" in other
    # The public wrapper says so in its reflection (the runtime's check_runtime_flags).
    assert 'iree.reflection = {kiln.pipelined_loop = "true", kiln.signature = "{}"}' in step


def test_pipelined_artifacts_need_synchronous_allocations():
    from kiln.errors import KilnLoadError
    from kiln.queue_waits import check_runtime_flags
    from kiln.runtime import CUDA_RUNTIME_FLAGS

    marked = {"decode_loop": {"kiln.pipelined_loop": "true"}, "decode": {}}
    check_runtime_flags(marked, CUDA_RUNTIME_FLAGS)  # Kiln's default flags
    check_runtime_flags({"decode": {}}, ("--cuda_use_streams=true",))  # nothing pipelined
    with pytest.raises(KilnLoadError, match=r"decode_loop: compiled with pipeline_loops.*"
                                            r"add --cuda_async_allocations=false"):
        check_runtime_flags(marked, ("--cuda_use_streams=true", "--cuda_tracing=0"))


def test_release_loop_waits_names_a_missing_function():
    with pytest.raises(KilnCompileError, match=r"no function decode_loop\$async"):
        release_loop_waits(HAL, ["decode_loop$async"])


def tiny_gpt2():
    config = transformers.GPT2Config(vocab_size=96, n_positions=32, n_embd=32, n_layer=1,
                                     n_head=4, bos_token_id=0, eos_token_id=1)
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(config).eval()


@pytest.mark.parametrize("option, devices, loops, expected", [
    (None, ("cuda",), ("decode",), ["decode_loop$async"]),  # auto: CUDA alone
    (None, ("cpu", "cuda"), ("decode",), []),  # the CPU HAL's queue is not one stream
    (None, ("cpu",), ("decode",), []),
    (False, ("cuda",), ("decode",), []),
    (True, ("cuda",), (), []),  # nothing to pipeline
])
def test_which_loops_are_pipelined(option, devices, loops, expected):
    from kiln.compiler import CompileOptions, StateBinding, _pipelined_loops
    from kiln.targets import CompileTarget

    options = CompileOptions.from_kwargs({"pipeline_loops": option})
    target = CompileTarget(devices=devices)
    assert _pipelined_loops(options, target, StateBinding((), loops)) == expected


def test_pipeline_loops_option_errors():
    with pytest.raises(ValueError, match=r"pipeline_loops='yes': choose None \(auto\)"):
        kiln.compile_generator(tiny_gpt2(), max_seq_len=8, pipeline_loops="yes")


def test_pipeline_loops_needs_a_cuda_only_target():
    with pytest.raises(KilnCompileError, match=r"pipeline_loops=True needs target='cuda'"):
        kiln.compile_generator(tiny_gpt2(), max_seq_len=8, target="cpu", decode_loop=True,
                               prefill_chunks=(4,), pipeline_loops=True, cache=False)


def test_pipelined_cuda_generator_compiles_without_host_waits_in_its_loop(tmp_path):
    """IREE's HAL IR of a real CUDA generator (compiled without a GPU): the rewrite finds the
    loop's queue allocations/deallocations, IREE accepts the rewritten IR, and none of them
    waits on a fence any more (each waits on a null fence; barriers carry the ordering)."""
    from kiln.bindings import iree_compiler
    from kiln.targets import CompileTarget, iree_flags

    text = kiln.compile_generator(tiny_gpt2(), max_seq_len=8, target="cuda",
                                  prefill_chunks=(4,), compile_to="iree-input")
    source = tmp_path / "generator.mlir"
    source.write_text(text)
    compiler = iree_compiler()
    flags = iree_flags(CompileTarget(devices=("cuda",)))
    hal = compiler.compile_file(str(source), extra_args=flags + ["--compile-to=hal"]).decode()
    released, count = release_loop_waits(hal, ["decode_loop$async"])
    loop = released[released.index("util.func public @decode_loop$async("):]
    loop = loop[:loop.index("\n  util.func ")]
    queue_ops = [line for line in loop.splitlines()
                 if "hal.device.queue.alloca" in line or "hal.device.queue.dealloca" in line]
    assert count == len(queue_ops) >= 4  # the loop body's and those around it
    assert all(re.search(r"wait\(%kiln_nowait_\d+\)", line) for line in queue_ops)
    assert re.search(r'util\.func public @decode_loop\(.*iree\.reflection = '
                     r'\{kiln\.pipelined_loop = "true"', released)
    rewritten = tmp_path / "released.mlir"
    rewritten.write_text(released)
    vmfb = compiler.compile_file(str(rewritten), extra_args=flags + ["--compile-from=hal"])
    assert len(vmfb) > 10_000


def test_cuda_generators_are_pipelined_by_default():
    """compile_generator(target="cuda") with default options runs the two-phase compile: the
    artifact's loop carries the marker the runtime checks; pipeline_loops=False leaves it out."""
    model = tiny_gpt2()
    pipelined = kiln.compile_generator(model, max_seq_len=8, target="cuda",
                                       prefill_chunks=(4,), cache=False)
    plain = kiln.compile_generator(model, max_seq_len=8, target="cuda", prefill_chunks=(4,),
                                   pipeline_loops=False, cache=False)
    assert b"kiln.pipelined_loop" in pipelined and b"decode_loop" in pipelined
    assert b"kiln.pipelined_loop" not in plain and b"decode_loop" in plain


LOCAL_FENCES = """\
  util.func public @step(%arg0: !hal.buffer_view) -> !hal.buffer_view attributes {iree.abi.stub, iree.reflection = {kiln.signature = "{}"}} {
    util.return %arg0 : !hal.buffer_view
  }
  util.func public @step$async(%arg0: !hal.fence, %arg1: !hal.fence) {
    %fence = hal.fence.create device(%__device_0 : !hal.device) flags("None") : !hal.fence
    %buffer = hal.device.queue.alloca<%__device_0 : !hal.device> affinity(%c-1_i64) wait(%arg0) signal(%fence) pool(%c0_i64) type(%memory_type) usage(%buffer_usage) flags("None") : !hal.buffer{%c256}
    %fence_1 = hal.fence.create device(%__device_0 : !hal.device) flags("None") : !hal.fence
    hal.device.queue.execute<%__device_0 : !hal.device> affinity(%c-1_i64) wait(%fence) signal(%fence_1) commands(%cmd) flags("None")
    %fence_2 = hal.fence.create device(%__device_0 : !hal.device) flags("None") : !hal.fence
    %fence_20 = hal.fence.join at([%fence_2]) flags("None") -> !hal.fence
    hal.device.queue.dealloca<%__device_0 : !hal.device> affinity(%c-1_i64) wait(%fence_1) signal(%fence_2) buffer(%buffer : !hal.buffer) flags(PreferOrigin)
    hal.device.queue.barrier<%__device_0 : !hal.device> affinity(%c-1_i64) wait(%fence_20) signal(%arg1) flags("None")
    util.return
  }
"""


def test_a_fence_made_for_the_op_becomes_a_join_without_a_barrier():
    """A signal fence created for the alloca alone is replaced by the join of the original
    wait and the op's own fence (no barrier: the next step's work waits on the previous step's
    fence itself); a fence used before its op keeps the barrier form."""
    text, count = release_loop_waits(LOCAL_FENCES, ["step$async"])
    assert count == 2
    step = text.split("util.func public @step$async")[1]
    assert "%fence = hal.fence.create" not in step
    assert re.search(r"alloca<.*wait\(%kiln_nowait_1\) signal\(%kiln_queued_1\)", step)
    assert '%fence = hal.fence.join at([%arg0, %kiln_queued_1]) flags("None") -> !hal.fence' \
        in step
    assert step.index("%fence = hal.fence.join") < step.index("wait(%fence) signal(%fence_1)")
    assert "wait(%kiln_after_1)" not in step and "%kiln_after_1" not in step
    # %fence_2 is used (by a join) between its create and the dealloca: barrier form
    assert "%fence_2 = hal.fence.create" in step
    assert "%kiln_after_2 = hal.fence.join at([%fence_1, %kiln_queued_2])" in step
    assert "wait(%kiln_after_2) signal(%fence_2)" in step


def test_a_fence_created_in_another_block_keeps_the_barrier():
    other_block = LOCAL_FENCES.replace(
        '    %buffer = hal.device.queue.alloca', '    cf.br ^bb1\n  ^bb1:\n    %buffer = '
        'hal.device.queue.alloca', 1)
    text, _ = release_loop_waits(other_block, ["step$async"])
    assert "%fence = hal.fence.create" in text
    assert "wait(%kiln_after_1) signal(%fence)" in text
