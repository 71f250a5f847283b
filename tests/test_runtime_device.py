"""Device-resident inputs and outputs of loaded modules (CPU driver: local-task).

What the CPU driver supports, and so what these tests cover: torch CPU tensors are imported
without a copy through DLPack; results kept on the device (`outputs="device"`) are
`DeviceTensor`s that the next call takes as they are; `.torch()` exports them through DLPack
(zero-copy on the CPU driver) and `.numpy()` maps them. The CUDA-only paths (a device-to-device
copy where IREE cannot export a result, the staging buffer for downloads) are exercised here
by forcing them, since they are written against the same HAL calls.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.export import Dim

import kiln
import kiln.runtime as kr
import kiln.runtime.device as krd
from kiln.examples.tiny_gpt import TinyGPTConfig, TinyGPTDecode, TinyGPTPrefill, build_tiny_gpt
from kiln.runtime import DeviceTensor

from compare import assert_close


class Affine(torch.nn.Module):
    def forward(self, x, y):
        return x * 2 + y


class TwoOutputs(torch.nn.Module):
    """Two results of different dtypes (IREE packs them into one allocation)."""

    def forward(self, x, mask):
        return torch.where(mask, x, -x), mask.logical_not()


@pytest.fixture(scope="module")
def affine():
    return kiln.load(kiln.compile_to_vmfb(Affine(), _inputs()))


@pytest.fixture(scope="module")
def two_outputs():
    x = torch.randn(4, 8, dtype=torch.bfloat16)
    return kiln.load(kiln.compile_to_vmfb(TwoOutputs(), (x, x > 0)))


def _inputs():
    return torch.randn(4, 8), torch.randn(4, 8)


# ---------------------------------------------------------------------------------------------
# Output modes


def test_device_outputs_are_device_tensors(affine):
    x, y = _inputs()
    out = affine(x, y, outputs="device")
    assert isinstance(out, DeviceTensor)
    assert out.shape == (4, 8) and out.dtype == "float32" and out.device == "cpu"
    assert out.ndim == 2 and out.nbytes == 4 * 8 * 4
    assert repr(out) == "DeviceTensor(shape=(4, 8), dtype=float32, device='cpu')"
    torch.testing.assert_close(out.torch(), x * 2 + y)
    np.testing.assert_allclose(out.numpy(), (x * 2 + y).numpy(), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(out), (x * 2 + y).numpy(), rtol=1e-6)
    torch.testing.assert_close(torch.from_dlpack(out), x * 2 + y)


def test_device_tensors_chain_into_the_next_call(affine):
    x, y = _inputs()
    first = affine(x, y, outputs="device")
    second = affine(first, first, outputs="device")
    third = affine(second, y)  # torch input: auto mode returns torch
    expected = (x * 2 + y) * 3 * 2 + y
    assert isinstance(third, torch.Tensor)
    torch.testing.assert_close(third, expected)
    assert isinstance(affine(first, second), DeviceTensor), "device in → device out (auto)"


def test_auto_mode_follows_the_inputs(affine):
    x, y = _inputs()
    assert isinstance(affine(x.numpy(), y.numpy()), np.ndarray)
    assert isinstance(affine(x, y), torch.Tensor)
    assert isinstance(affine(x.numpy(), y), torch.Tensor), "any torch input → torch"
    device = affine.to_device(x)
    assert isinstance(affine(device, y.numpy()), DeviceTensor)
    assert isinstance(affine(device, y), torch.Tensor), "torch wins over device tensors"


def test_argument_kinds_pick_auto_outputs():
    """The GPU wins over the host, torch over device tensors, anything over numpy."""
    K = kr.ArgumentKind
    assert K.HOST.auto_outputs() == "numpy"
    assert K.DEVICE_TENSOR.auto_outputs() == "device"
    assert (K.TORCH | K.DEVICE_TENSOR).auto_outputs() == "torch-host"
    assert (K.TORCH | K.CUDA | K.DEVICE_TENSOR).auto_outputs() == "torch"
    assert "torch-host" not in kr.OUTPUT_MODES, "a mode of auto only, not a caller's"


@pytest.mark.parametrize("mode, kind", [("numpy", np.ndarray), ("torch", torch.Tensor),
                                        ("device", DeviceTensor)])
def test_outputs_per_call_and_per_load(affine, tiny_vmfb_affine, mode, kind):
    x, y = _inputs()
    assert isinstance(affine(x, y, outputs=mode), kind)
    assert isinstance(affine(x.numpy(), y.numpy(), outputs=mode), kind)
    loaded = kiln.load(tiny_vmfb_affine, outputs=mode)
    assert loaded.outputs == mode
    assert isinstance(loaded(x, y), kind)
    assert isinstance(loaded(x, y, outputs="auto"), torch.Tensor)


@pytest.fixture(scope="module")
def affine_square():
    """Affine on square inputs: a transposed input keeps its shape."""
    return kiln.load(kiln.compile_to_vmfb(Affine(), (torch.randn(8, 8), torch.randn(8, 8))))


@pytest.fixture(scope="module")
def tiny_vmfb_affine():
    return kiln.compile_to_vmfb(Affine(), _inputs())


def test_unknown_outputs_mode(affine, tiny_vmfb_affine):
    x, y = _inputs()
    with pytest.raises(ValueError, match=r"unknown outputs='gpu'.*'auto', 'numpy', 'torch', "
                                         r"'device'"):
        affine(x, y, outputs="gpu")
    with pytest.raises(ValueError, match="unknown outputs='host'"):
        kiln.load(tiny_vmfb_affine, outputs="host")


# ---------------------------------------------------------------------------------------------
# Inputs


def test_torch_cpu_tensors_are_imported_without_copy(affine):
    """The DLPack import keeps the tensor alive while IREE holds it and reads its memory."""
    x, y = _inputs()
    dev = affine._device
    view = dev.hal.from_dlpack_capsule(torch.utils.dlpack.to_dlpack(x))
    x.add_(1.0)  # the imported view sees the change: it is the same memory
    got = affine(DeviceTensor(view, dev, "float32"), y)
    torch.testing.assert_close(got, x * 2 + y)


def test_repeated_tensor_reuses_its_import_and_sees_new_contents(affine):
    x, y = _inputs()
    torch.testing.assert_close(affine(x, y), x * 2 + y)
    entry = affine._entry
    first = entry.imports[0].view
    x.mul_(3.0)  # in place: same storage, so the cached import is still right
    torch.testing.assert_close(affine(x, y), x * 2 + y)
    assert entry.imports[0].view is first
    x.set_(torch.randn(4, 8))  # new storage: imported again
    torch.testing.assert_close(affine(x, y), x * 2 + y)
    assert entry.imports[0].view is not first


def test_reused_tensor_changed_in_place_to_another_view_is_imported_again(affine_square):
    """Same tensor object, same memory, another view of it: the cached import must not be
    reused (its layout is the old one)."""
    x, y = torch.randn(8, 8), torch.randn(8, 8)
    torch.testing.assert_close(affine_square(x, y), x * 2 + y)
    x.t_()  # same object, data_ptr and shape; strides (1, 8) now
    torch.testing.assert_close(affine_square(x, y), x * 2 + y)
    x.t_()
    torch.testing.assert_close(affine_square(x, y), x * 2 + y)
    x.as_strided_((8, 8), (1, 8))  # the same layout change by another route
    torch.testing.assert_close(affine_square(x, y), x * 2 + y)

    z = torch.zeros(64 + 16)
    window = z[:64].view(8, 8)
    torch.testing.assert_close(affine_square(window, y), window * 2 + y)
    window.set_(z.untyped_storage(), 16, (8, 8), (8, 1))  # storage offset 16 (64 bytes)
    z[16:].copy_(torch.arange(64.0))
    torch.testing.assert_close(affine_square(window, y), window * 2 + y)


def test_tensor_with_its_negative_bit_set_keeps_its_sign(affine_square):
    """A lazily negated tensor (negative bit: what `.conj().imag` gives) shares its memory
    with the unnegated values: importing that memory as is would drop the sign."""
    x, y = torch.randn(8, 8), torch.randn(8, 8)
    negated = torch._neg_view(x)
    assert negated.is_neg() and negated.is_contiguous()
    torch.testing.assert_close(affine_square(negated, y), -x * 2 + y)
    assert "resolve_neg" in kr.importable_problem(negated)
    torch.testing.assert_close(affine_square(x, y), x * 2 + y)  # x's import is cached
    x.data = torch._neg_view(x.data)  # in place: same memory, shape, strides and dtype
    assert x.is_neg()
    torch.testing.assert_close(affine_square(x, y), x * 2 + y)


def test_reused_tensor_reinterpreted_as_another_dtype_is_checked_again(affine_square):
    x, y = torch.randn(8, 8), torch.randn(8, 8)
    affine_square(x, y)
    x.data = x.data.view(torch.int32)  # same object, memory, shape and strides; int32 now
    with pytest.raises(ValueError, match="expected dtype float32, got int32"):
        affine_square(x, y)


def test_import_cache_can_be_turned_off(affine, monkeypatch):
    monkeypatch.setattr(affine, "options", kr.RuntimeOptions(cache_imports=False))
    x, y = _inputs()
    for _ in range(2):
        torch.testing.assert_close(affine(x, y), x * 2 + y)
        x.add_(1.0)


def test_importable_problem():
    assert kr.importable_problem(torch.randn(4, 8)) is None
    problem = kr.importable_problem(torch.randn(8, 4).t())
    assert "non-contiguous" in problem and ".contiguous()" in problem
    problem = kr.importable_problem(torch.randn(100)[1:33])
    assert "64-byte aligned" in problem and "offset 1" in problem and ".clone()" in problem


def test_unimportable_cpu_tensors_are_copied(affine):
    x, y = _inputs()
    transposed = torch.randn(8, 4).t()
    torch.testing.assert_close(affine(transposed, y), transposed * 2 + y)
    shifted = torch.randn(100)[1:33].view(4, 8)
    torch.testing.assert_close(affine(shifted, y), shifted * 2 + y)


def test_requires_grad_inputs(affine):
    x, y = _inputs()
    x.requires_grad_(True)
    torch.testing.assert_close(affine(x, y), (x * 2 + y).detach())


def test_to_device(affine):
    x, y = _inputs()
    for value in (x, x.numpy()):
        device = affine.to_device(value)
        assert isinstance(device, DeviceTensor) and device.dtype == "float32"
        assert affine.to_device(device) is device
        torch.testing.assert_close(affine(device, y), x * 2 + y)


def test_bf16_and_bool_device_outputs(two_outputs):
    x = torch.randn(4, 8, dtype=torch.bfloat16)
    mask = torch.rand(4, 8) > 0.5
    values, flipped = two_outputs(x, mask, outputs="device")
    assert values.dtype == "bfloat16" and flipped.dtype == "bool"
    assert torch.equal(values.torch(), torch.where(mask, x, -x))
    assert torch.equal(flipped.torch(), ~mask)
    assert values.numpy().dtype == krd._bfloat16() and flipped.numpy().dtype == np.bool_
    np.testing.assert_array_equal(flipped.numpy(), (~mask).numpy())
    again, _ = two_outputs(values, flipped, outputs="device")  # chained: x → -x where ~mask
    assert torch.equal(again.torch(), torch.where(~mask, values.torch(), -values.torch()))
    numpy_values, numpy_flipped = two_outputs(x, mask, outputs="numpy")
    assert numpy_values.dtype == krd._bfloat16() and numpy_flipped.dtype == np.bool_


# ---------------------------------------------------------------------------------------------
# Errors


def test_device_tensor_wrong_shape_or_dtype(affine, two_outputs):
    x, y = _inputs()
    small = affine.to_device(torch.randn(2, 8))
    with pytest.raises(ValueError, match=r"input 'x' \(#0\): expected shape \(4, 8\), got "
                                         r"\(2, 8\)"):
        affine(small, y)
    values, flipped = two_outputs(torch.randn(4, 8, dtype=torch.bfloat16),
                                  torch.rand(4, 8) > 0.5, outputs="device")
    with pytest.raises(ValueError, match=r"input 'y' \(#1\): expected dtype float32, got bool"):
        affine(x, flipped)
    with pytest.raises(ValueError, match=r"input 'x' \(#0\): expected dtype float32, got "
                                         r"bfloat16"):
        affine(values, y)


def test_device_tensor_of_another_device(affine):
    x, y = _inputs()
    other = krd._Device("cuda", affine._device.hal)  # stands for a module on another device
    stranger = DeviceTensor(affine.to_device(x)._view, other, "float32")
    with pytest.raises(ValueError, match=r"input 'x' \(#0\): a DeviceTensor of device 'cuda' "
                                         r"passed to a module on 'cpu'"):
        affine(stranger, y)
    # the same kind on another HAL device: a module with other cuda_allocators
    pooled = krd._Device("cpu", affine._device.hal, pools=True)
    with pytest.raises(ValueError, match=r"a DeviceTensor of device 'cpu' with other "
                                         r"cuda_allocators \(another HAL device\)"):
        affine(DeviceTensor(affine.to_device(x)._view, pooled, "float32"), y)


def test_torch_tensor_checks_come_first(affine):
    x, y = _inputs()
    with pytest.raises(ValueError, match=r"'y' \(#1\): expected dtype float32, got float16"):
        affine(x, y.half())
    with pytest.raises(ValueError, match=r"'y' \(#1\): expected shape \(4, 8\), got \(8, 4\)"):
        affine(x, torch.randn(4, 8).t())  # wrong shape and not contiguous: the shape first


def test_wrong_arity_with_device_tensors(affine):
    x, _ = _inputs()
    with pytest.raises(ValueError, match=r"expected 2 input\(s\)"):
        affine(affine.to_device(x))


# ---------------------------------------------------------------------------------------------
# The CUDA transfer paths, forced on the CPU driver


def test_torch_copy_when_export_is_refused(affine, monkeypatch):
    x, y = _inputs()
    out = affine(x, y, outputs="device")
    monkeypatch.setattr(affine._device, "can_export", False)
    copied = out.torch()
    torch.testing.assert_close(copied, x * 2 + y)
    copied.zero_()  # a copy: the device tensor is unchanged
    torch.testing.assert_close(out.torch(), x * 2 + y)
    torch.testing.assert_close(torch.from_dlpack(out), x * 2 + y)


@pytest.mark.parametrize("strategy", ["auto", "staging", "iree", "torch"])
def test_host_transfers_of_unmappable_results(two_outputs, monkeypatch, strategy):
    """Both results live in one allocation: the second at an offset (a subspan buffer)."""
    monkeypatch.setattr(krd._Device, "mappable", lambda self, view: False)
    monkeypatch.setattr(two_outputs, "options", kr.RuntimeOptions(host_transfer=strategy))
    x = torch.randn(4, 8, dtype=torch.bfloat16)
    mask = torch.rand(4, 8) > 0.5
    for _ in range(2):  # the staging buffer is reused
        values, flipped = two_outputs(x, mask, outputs="numpy")
        assert values.dtype == krd._bfloat16()
        np.testing.assert_array_equal(values.view(np.int16),
                                      torch.where(mask, x, -x).view(torch.int16).numpy())
        np.testing.assert_array_equal(flipped, (~mask).numpy())


# ---------------------------------------------------------------------------------------------
# A decode loop with the KV cache kept on the device (entry points of one artifact)

CONFIG = TinyGPTConfig(n_layers=2, d_model=64, n_heads=4, max_seq_len=64, vocab_size=128)


def test_decode_loop_keeps_the_kv_cache_on_device():
    model, (prompt,) = build_tiny_gpt(CONFIG, batch=1, seq_len=8)
    with torch.no_grad():
        _, keys, values = model.prefill(prompt)
    past = Dim("past", min=1, max=56)
    run = kiln.load(kiln.compile_entry_points({
        "prefill": (TinyGPTPrefill(model), (prompt,)),
        "decode": (TinyGPTDecode(model), (prompt[:, :1], keys, values),
                   ({}, {3: past}, {3: past})),
    }), outputs="device")
    logits, keys, values = run.prefill(prompt)
    assert isinstance(keys, DeviceTensor) and keys.shape[3] == 8
    tokens = prompt
    for step in range(3):
        token = logits.torch()[:, -1:].argmax(-1)
        tokens = torch.cat([tokens, token], dim=1)
        logits, keys, values = run.decode(token, keys, values)
        assert isinstance(logits, DeviceTensor) and keys.shape[3] == tokens.shape[1]
        with torch.no_grad():
            expected = model(tokens)[:, -1:]
        assert_close(logits.torch(), expected, what=f"decode step {step}")


def test_runtime_options_per_load_and_bad_values(tiny_vmfb_affine):
    options = kr.RuntimeOptions(cache_imports=False, host_transfer="staging")
    loaded = kiln.load(tiny_vmfb_affine, options=options)
    assert loaded.options is options
    out = loaded(*_inputs(), outputs="device")
    assert out._options is options, "a DeviceTensor keeps its module's options"
    assert kiln.load(tiny_vmfb_affine).options == kr.RuntimeOptions()
    with pytest.raises(ValueError, match="host_transfer='fast'; use one of auto, staging"):
        kr.RuntimeOptions(host_transfer="fast")
    with pytest.raises(ValueError, match="not one string"):
        kr.RuntimeOptions(cuda_flags="--cuda_tracing=0")
    with pytest.raises(TypeError, match="expected kiln.runtime.RuntimeOptions, got dict"):
        kiln.load(tiny_vmfb_affine, options={"cache_imports": False})


def test_cuda_flags_are_parsed_once_per_process(monkeypatch):
    parsed = []
    monkeypatch.setattr(krd, "_parsed_cuda_flags", None)
    monkeypatch.setattr(krd._iree_runtime().flags, "parse_flags", lambda *f: parsed.append(f))
    assert kr.parse_cuda_flags(("--cuda_tracing=1",)) == ("--cuda_tracing=1",)
    assert kr.parse_cuda_flags(None) == ("--cuda_tracing=1",)
    assert kr.parse_cuda_flags(["--cuda_tracing=1"]) == ("--cuda_tracing=1",)
    assert parsed == [("--cuda_tracing=1",)]
    with pytest.raises(kiln.KilnLoadError, match="already runs with"):
        kr.parse_cuda_flags(("--cuda_tracing=0",))


def test_cuda_flags_default_to_streams_and_follow_the_environment(monkeypatch):
    """Streams by default (docs/decisions.md, "CUDA runtime: streams, not graphs");
    $KILN_CUDA_FLAGS replaces the default, and a value that is not flags is refused."""
    parsed = []
    monkeypatch.setattr(krd, "_parsed_cuda_flags", None)
    monkeypatch.setattr(krd._iree_runtime().flags, "parse_flags", lambda *f: parsed.append(f))
    monkeypatch.delenv("KILN_CUDA_FLAGS", raising=False)
    assert "--cuda_use_streams=true" in kr.CUDA_RUNTIME_FLAGS
    assert "--cuda_async_allocations=false" in kr.CUDA_RUNTIME_FLAGS  # DLPack export needs it
    assert krd.default_cuda_flags() == kr.CUDA_RUNTIME_FLAGS
    monkeypatch.setenv("KILN_CUDA_FLAGS", " --cuda_use_streams=false  --cuda_tracing=0 ")
    assert kr.parse_cuda_flags(None) == ("--cuda_use_streams=false", "--cuda_tracing=0")
    assert parsed == [("--cuda_use_streams=false", "--cuda_tracing=0")]
    monkeypatch.setattr(krd, "_parsed_cuda_flags", None)
    monkeypatch.setenv("KILN_CUDA_FLAGS", "streams")
    with pytest.raises(kiln.KilnLoadError, match=r"KILN_CUDA_FLAGS='streams': expected IREE"):
        kr.parse_cuda_flags(None)



def test_import_cache_entries_are_frozen_records(tiny_vmfb_affine):
    loaded = kiln.load(tiny_vmfb_affine)
    x, y = _inputs()
    loaded(x, y)
    record = loaded._entry.imports[0]
    assert record.tensor is x and record.kind is kr.ArgumentKind.TORCH
    with pytest.raises(AttributeError):
        record.view = None


def test_cpu_calls_wait_as_sched_batch(monkeypatch):
    """RuntimeOptions.cpu_batch_wait: a CPU call runs with the calling thread as SCHED_BATCH and
    restores SCHED_OTHER after; a thread already under another policy is left alone; off, the
    policy is never touched."""
    import os

    from kiln.runtime.device import batch_scheduled_wait

    if not hasattr(os, "sched_setscheduler"):
        pytest.skip("no sched_setscheduler on this platform")
    seen = []
    real = os.sched_setscheduler
    monkeypatch.setattr(os, "sched_setscheduler",
                        lambda pid, policy, param: (seen.append(policy), real(pid, policy, param)))
    assert os.sched_getscheduler(0) == os.SCHED_OTHER
    with batch_scheduled_wait():
        assert os.sched_getscheduler(0) == os.SCHED_BATCH
    assert os.sched_getscheduler(0) == os.SCHED_OTHER and seen == [os.SCHED_BATCH, os.SCHED_OTHER]

    class Double(torch.nn.Module):
        def forward(self, x):
            return x * 2

    x = torch.ones(4)
    run = kiln.load(kiln.compile_to_vmfb(Double(), (x,), cache=False))
    seen.clear()
    assert torch.equal(torch.as_tensor(run(x)), x * 2)
    assert seen == [os.SCHED_BATCH, os.SCHED_OTHER] and os.sched_getscheduler(0) == os.SCHED_OTHER
    seen.clear()
    run.options = kiln.runtime.RuntimeOptions(cpu_batch_wait=False)
    run(x)
    assert seen == []
    real(0, os.SCHED_BATCH, os.sched_param(0))  # another policy already: left alone
    try:
        seen.clear()
        with batch_scheduled_wait():
            assert os.sched_getscheduler(0) == os.SCHED_BATCH
        assert seen == []
    finally:
        real(0, os.SCHED_OTHER, os.sched_param(0))


def test_cuda_allocators_make_a_device_of_their_own(monkeypatch):
    """RuntimeOptions.cuda_allocators: Kiln creates a CUDA device with IREE's allocators around
    its own (iree.runtime's cached device has none), one per allocator list; without them
    IREE's device is used as before. A string is refused (a sequence of specs is meant)."""
    rt = krd._iree_runtime()
    created = []

    class FakeDriver:
        def create_device_by_uri(self, uri, allocators=None):
            created.append((uri, allocators))
            return f"device{len(created)}"

    monkeypatch.setattr(krd, "_CUDA_DEVICES_WITH_ALLOCATORS", {})
    monkeypatch.setattr(rt, "get_driver", lambda name: FakeDriver())
    monkeypatch.setattr(rt, "Config", lambda *a, **k: (a, k))
    assert krd.cuda_hal_config(("caching",)) == ((), {"device": "device1"})
    assert krd.cuda_hal_config(["caching"]) == ((), {"device": "device1"})  # one per list
    assert created == [("cuda", ["caching"])]
    assert krd.cuda_hal_config(()) == (("cuda",), {})
    assert kr.RuntimeOptions(cuda_allocators=["caching"]).cuda_allocators == ("caching",)
    # None: the process default from $KILN_CUDA_ALLOCATORS, else none
    monkeypatch.delenv("KILN_CUDA_ALLOCATORS", raising=False)
    assert krd.cuda_allocators(kr.RuntimeOptions()) == ()
    monkeypatch.setenv("KILN_CUDA_ALLOCATORS", " caching ")
    assert krd.cuda_allocators(kr.RuntimeOptions()) == ("caching",)
    assert krd.cuda_allocators(kr.RuntimeOptions(cuda_allocators=())) == ()
    with pytest.raises(ValueError, match="cuda_allocators takes a sequence"):
        kr.RuntimeOptions(cuda_allocators="caching")


def test_a_pooling_device_hands_no_result_memory_to_torch(tiny_vmfb_affine):
    """Where released buffers are pooled (cuda_allocators), a result's own memory must not
    reach torch: a later call could reuse it while torch's stream still reads it. Such a
    _Device exports no capsule of a result and moves results to the host through staging."""
    import numpy as np

    module = kiln.load(tiny_vmfb_affine, device="cpu", outputs="device")
    out = module(*_inputs())
    pooled = krd._Device("cpu", module._device.hal, pools=True)
    assert module._device.capsule(out._view) is not None  # the ordinary device exports
    assert pooled.capsule(out._view) is None
    copy = pooled.to_torch(out._view, "float32")  # a copy in memory torch allocated
    np.testing.assert_array_equal(copy.numpy(), out.numpy())
    assert copy.data_ptr() != torch.from_dlpack(out).data_ptr()
    assert copy.dtype == torch.float32 and tuple(copy.shape) == out.shape
    pooled_tensor = kr.DeviceTensor(out._view, pooled, out.dtype)
    np.testing.assert_array_equal(torch.from_dlpack(pooled_tensor).numpy(), out.numpy())
    # a whole call: every result copied, the aliases released once after all of them
    released = []
    pooled.release_aliases = lambda held: (released.append(len(held)), held.clear())
    inputs = _inputs()
    expected = module(*inputs, outputs="numpy")
    module._device = pooled
    copies = module(*inputs, outputs="torch")
    copies = copies if isinstance(copies, tuple) else (copies,)
    assert released == [len(copies)]
    np.testing.assert_array_equal(copies[0].numpy(),
                                  expected[0] if isinstance(expected, tuple) else expected)
